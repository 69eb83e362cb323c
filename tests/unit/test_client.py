"""The Python client of the node's API, against a fake node (httpx.MockTransport): request shapes,
response parsing, refusals and connection errors, and block verification with real keys and QCs."""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx
import pytest
from core_helpers import CHAIN, GENESIS_BLOCK, GENESIS_QC, KEYS, chain, make_block, make_qc, qc_for, vi

from bft import client as client_module
from bft.app.kv import cas_tx, del_tx, put_tx
from bft.client import (
    AsyncClient,
    BadResponse,
    CertificateError,
    Client,
    ClientError,
    KvEntry,
    KvRead,
    NodeUnavailable,
    RequestRefused,
    SubmitResult,
    VerifiedBlock,
    node_url,
    tx_hash,
    verify_block,
)
from bft.core.blocktree import genesis
from bft.core.certs import Certifier
from bft.core.messages import Block, QuorumCert
from bft.core.types import BlockId, ValidatorIndex, View
from bft.node.config import Genesis, GenesisValidator
from crypto.keys import PrivateKey
from crypto.signing import SignatureCache

URL = "http://node.test:26601"


def genesis_for(keys: Iterable[PrivateKey], chain_id: str = CHAIN) -> Genesis:
    return Genesis(
        chain_id,
        tuple(
            GenesisValidator(i, k.public_key, f"127.0.0.1:{30000 + 2 * i}", f"127.0.0.1:{30001 + 2 * i}")
            for i, k in enumerate(keys)
        ),
    )


GENESIS = genesis_for(KEYS)
CERTIFIER = Certifier(CHAIN, GENESIS.validator_set(), GENESIS_QC, SignatureCache())
STRANGERS = [PrivateKey.from_seed(bytes([0x40 + i]) * 32) for i in range(4)]

# A committed chain as the node would serve it: each block extends the one before in the next view,
# so any three in a row form a three-chain that commits the first (and its ancestors).
B1 = Block(View(1), 1, GENESIS_BLOCK.id, vi(1), GENESIS_QC, (b"tx-a", b"\x00\xffbinary"), 0, bytes(32))
B2 = Block(View(2), 2, B1.id, vi(2), qc_for(B1), (), app_height=1, app_hash=bytes([0x11]) * 32)
B3 = Block(View(3), 3, B2.id, vi(3), qc_for(B2), (b"tx-c",), app_height=2, app_hash=bytes([0x22]) * 32)
B4 = Block(View(4), 4, B3.id, vi(0), qc_for(B3), (), app_height=3, app_hash=bytes([0x33]) * 32)
MAIN = (GENESIS_BLOCK, B1, B2, B3, B4)

# A chain whose views skip 3: 1, 2, 4, 5, 6. Only blocks 3, 4, 5 (views 4, 5, 6) are a three-chain:
# once block 5 is certified, blocks 1, 2 and 3 commit together.
GAPPED = tuple(chain(GENESIS_BLOCK, [1, 2, 4, 5, 6]))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def qc_doc(qc: QuorumCert) -> dict[str, Any]:
    return {
        "view": qc.view,
        "block_id": qc.block_id.hex(),
        "signatures": [{"signer": s, "signature": b64(sig)} for s, sig in qc.signatures],
    }


def entry_doc(block: Block) -> dict[str, Any]:
    """The node's JSON for a block of a commit proof: the block's own fields only."""
    return {
        "height": block.height,
        "view": block.view,
        "id": block.id.hex(),
        "parent_id": block.parent_id.hex(),
        "proposer": block.proposer,
        "txs": [b64(tx) for tx in block.txs],
        "justify": qc_doc(block.qc),
        "app_height": block.app_height,
        "app_hash": block.app_hash.hex(),
    }


def block_doc(
    block: Block,
    qc: QuorumCert | None = None,
    proof: Sequence[Block] | None = None,
    commit_qc: QuorumCert | None = None,
) -> dict[str, Any]:
    """The node's JSON for a committed block, certified by `qc` (by default signed by 0, 1, 2).

    `proof` is its commit proof, by default the two blocks after it on MAIN (none off MAIN); an
    empty proof is left out. `commit_qc` defaults to a QC for the proof's last block.
    """
    if proof is None:
        at = next((i for i, b in enumerate(MAIN) if b.id == block.id), len(MAIN))
        proof = MAIN[at + 1 : at + 3]
    doc = entry_doc(block)
    doc["qc"] = qc_doc(qc if qc is not None else qc_for(block))
    if proof:
        doc["commit_proof"] = [entry_doc(b) for b in proof]
    if commit_qc is not None or proof:
        doc["commit_qc"] = qc_doc(commit_qc if commit_qc is not None else qc_for(proof[-1]))
    return doc


class FakeNode:
    """Answers requests from a table of (method, raw path) -> handler; records every request."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = {}
        self.requests: list[httpx.Request] = []

    def on(self, method: str, path: str, status: int = 200, body: Any = None, **kw: Any) -> None:
        self.routes[(method, path)] = lambda request: httpx.Response(status, json=body, **kw)

    def accept_all(self, status: str = "accepted", height: int | None = None) -> None:
        """POST /txs answers every transaction with `status`, correctly hashed."""

        def answer(request: httpx.Request) -> httpx.Response:
            txs = json.loads(request.content)["txs"]
            results = [self._result(tx, status, height) for tx in txs]
            return httpx.Response(200, json={"results": results})

        self.routes[("POST", "/txs")] = answer

    @staticmethod
    def _result(tx_b64: str, status: str, height: int | None) -> dict[str, Any]:
        result: dict[str, Any] = {"hash": tx_hash(base64.b64decode(tx_b64)), "status": status}
        if height is not None:
            result["height"] = height
        return result

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.raw_path.decode("ascii")))
        if route is None:
            return httpx.Response(404, json={"error": "not found"})
        return route(request)

    def client(self, genesis: Genesis | None = GENESIS) -> Client:
        return Client(URL, genesis, transport=httpx.MockTransport(self.handle))

    def async_client(self, genesis: Genesis | None = GENESIS) -> AsyncClient:
        return AsyncClient(URL, genesis, transport=httpx.MockTransport(self.handle))

    def sent_json(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


def serving(doc: dict[str, Any], height: int = 1) -> FakeNode:
    fake = FakeNode()
    fake.on("GET", f"/blocks/{height}", body=doc)
    return fake


# Submitting


def test_submit_sends_base64_txs_and_reads_results_in_order(node: FakeNode) -> None:
    node.accept_all()
    txs = [b"one", b"\x00\xff two"]
    with node.client() as client:
        results = client.submit(txs)
    assert node.sent_json() == {"txs": [b64(tx) for tx in txs], "wait": "none"}
    assert node.requests[0].url.path == "/txs"
    assert results == [SubmitResult(tx_hash(tx), "accepted") for tx in txs]
    assert [r.committed or r.retryable for r in results] == [False, False]


def test_submit_wait_commit_reports_heights(node: FakeNode) -> None:
    node.accept_all("committed", height=7)
    with node.client() as client:
        (result,) = client.submit([b"x"], wait="commit")
    assert node.sent_json()["wait"] == "commit"
    assert result.committed and result.height == 7 and result.error is None


def test_a_committed_result_carries_the_applications_code_and_log(node: FakeNode) -> None:
    # A cas whose expectation failed is in the chain (committed) but changed nothing (code 3).
    refused = {"hash": tx_hash(b"a"), "status": "committed", "height": 5, "index": 2, "code": 3}
    refused["log"] = "cas mismatch: current value differs"
    applied = {"hash": tx_hash(b"b"), "status": "committed", "height": 5, "index": 3, "code": 0}
    node.on("POST", "/txs", body={"results": [refused, applied]})
    with node.client() as client:
        first, second = client.submit([b"a", b"b"], wait="commit")
    assert first == SubmitResult(
        tx_hash(b"a"), "committed", 5, index=2, code=3, log="cas mismatch: current value differs"
    )
    assert first.committed and not first.applied
    assert second == SubmitResult(tx_hash(b"b"), "committed", 5, index=3, code=0)
    assert second.committed and second.applied and second.log is None


def test_without_a_code_a_result_is_not_known_to_be_applied(node: FakeNode) -> None:
    node.accept_all("committed", height=7)
    with node.client() as client:
        (result,) = client.submit([b"x"], wait="commit")
    assert result.committed and result.code is None and not result.applied


def test_mempool_full_returns_retryable_results_instead_of_raising(node: FakeNode) -> None:
    body = {
        "results": [
            {"hash": tx_hash(b"a"), "status": "accepted"},
            {"hash": tx_hash(b"b"), "status": "rejected", "error": "mempool full"},
        ]
    }
    node.on("POST", "/txs", 503, body, headers={"Retry-After": "2"})
    with node.client() as client:
        accepted, full = client.submit([b"a", b"b"])
    assert accepted == SubmitResult(tx_hash(b"a"), "accepted")
    assert full.status == "rejected" and full.retryable and not full.committed
    assert full.retry_after_s == 2.0


def test_rejected_for_another_reason_is_not_retryable(node: FakeNode) -> None:
    body = {"results": [{"hash": tx_hash(b"a"), "status": "rejected", "error": "malformed transaction"}]}
    node.on("POST", "/txs", body=body)
    with node.client() as client:
        (result,) = client.submit([b"a"])
    assert result.status == "rejected" and not result.retryable and result.retry_after_s is None


def test_a_503_without_results_is_a_refusal(node: FakeNode) -> None:
    node.on("POST", "/txs", 503, {"error": "shutting down"})
    with node.client() as client, pytest.raises(RequestRefused) as info:
        client.submit([b"a"])
    assert info.value.status_code == 503 and info.value.message == "shutting down"


def test_4xx_raises_request_refused_with_the_nodes_message(node: FakeNode) -> None:
    node.on("POST", "/txs", 413, {"error": "body larger than 4194304 bytes"})
    with node.client() as client, pytest.raises(RequestRefused) as info:
        client.submit([b"a"])
    assert info.value.status_code == 413
    assert info.value.message == "body larger than 4194304 bytes"
    assert "413" in str(info.value) and "4194304" in str(info.value)
    assert isinstance(info.value, ClientError)


def test_a_refusal_without_json_carries_the_body_text() -> None:
    handler = lambda request: httpx.Response(500, text="internal trouble")  # noqa: E731
    with Client(URL, transport=httpx.MockTransport(handler)) as client, pytest.raises(RequestRefused) as info:
        client.status()
    assert info.value.status_code == 500 and info.value.message == "internal trouble"


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ({"results": []}, "0 results for 1 transactions"),
        ({"results": [{"hash": tx_hash(b"other"), "status": "accepted"}]}, "not the submitted"),
        ({"results": [{"hash": tx_hash(b"a"), "status": "maybe"}]}, "results[0].status"),
        ({"results": [{"hash": tx_hash(b"a"), "status": "committed", "height": -1}]}, "results[0].height"),
        ({"results": [{"hash": tx_hash(b"a"), "status": "rejected", "error": 3}]}, "results[0].error"),
        ({"results": [{"hash": tx_hash(b"a"), "status": "committed", "code": -1}]}, "results[0].code"),
        ({"results": [{"hash": tx_hash(b"a"), "status": "committed", "code": "3"}]}, "results[0].code"),
        ({"results": [{"hash": tx_hash(b"a"), "status": "committed", "log": 3}]}, "results[0].log"),
        ({"results": [{"hash": tx_hash(b"a"), "status": "committed", "index": 1.5}]}, "results[0].index"),
        ({"results": [{"status": "accepted"}]}, "results[0].hash is missing"),
        ({"results": "none"}, "results is a string"),
        ([], "not a JSON object"),
    ],
)
def test_malformed_submit_answers_are_bad_responses(node: FakeNode, body: Any, complaint: str) -> None:
    node.on("POST", "/txs", body=body)
    with node.client() as client, pytest.raises(BadResponse, match=re.escape(complaint)):
        client.submit([b"a"])


def test_a_body_that_is_not_json_is_a_bad_response(node: FakeNode) -> None:
    node.routes[("GET", "/status")] = lambda request: httpx.Response(200, text="<html>")
    with node.client() as client, pytest.raises(BadResponse, match="not JSON"):
        client.status()


def test_submit_refuses_bad_arguments_before_sending(node: FakeNode) -> None:
    with node.client() as client:
        with pytest.raises(ValueError, match="wait"):
            client.submit([b"a"], wait="soon")
        with pytest.raises(ValueError, match="no transactions"):
            client.submit([])
        with pytest.raises(TypeError, match="str"):
            not_bytes: list[Any] = ["text"]  # the wrong type is the point: checked at run time
            client.submit(not_bytes)
    assert node.requests == []


def test_kv_helpers_submit_the_ledgers_canonical_transactions_and_wait_for_commit(node: FakeNode) -> None:
    node.accept_all("committed", height=3)
    with node.client() as client:
        put = client.put("k", "v")
        client.delete("k", nonce=5)
        client.cas("k", None, "w", nonce="n", wait="none")
    sent = [node.sent_json(i) for i in range(3)]
    assert [base64.b64decode(s["txs"][0]) for s in sent] == [
        put_tx("k", "v"),
        del_tx("k", nonce=5),
        cas_tx("k", None, "w", nonce="n"),
    ]
    assert [s["wait"] for s in sent] == ["commit", "commit", "none"]
    assert put == SubmitResult(tx_hash(put_tx("k", "v")), "committed", 3)


# Connection problems


def test_connection_error_raises_node_unavailable() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with Client(URL, transport=httpx.MockTransport(refuse)) as client, pytest.raises(NodeUnavailable) as info:
        client.status()
    assert "GET http://node.test:26601/status" in str(info.value) and "refused" in str(info.value)


def test_timeout_raises_node_unavailable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with (
        Client(URL, transport=httpx.MockTransport(slow)) as client,
        pytest.raises(NodeUnavailable, match="time"),
    ):
        client.put("k", "v")


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_a_closed_port_raises_node_unavailable() -> None:
    with Client(f"127.0.0.1:{closed_port()}", timeout_s=5.0) as client, pytest.raises(NodeUnavailable):
        client.status()


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://127.0.0.1:26601", "http://127.0.0.1:26601"),
        ("127.0.0.1:26601", "http://127.0.0.1:26601"),
        (" https://node.example/api/ ", "https://node.example/api"),
    ],
)
def test_node_url_normalises(given: str, expected: str) -> None:
    assert node_url(given) == expected


@pytest.mark.parametrize("bad", ["ftp://host:1", "http://", "http://[::1"])
def test_node_url_refuses_what_is_not_an_http_url(bad: str) -> None:
    with pytest.raises(ClientError, match="not a node URL"):
        node_url(bad)


# Reading the ledger


def test_get_returns_the_entry(node: FakeNode) -> None:
    node.on("GET", "/kv/color", body={"key": "color", "value": "blue", "height": 12})
    with node.client() as client:
        assert client.get("color") == KvEntry("color", "blue", 12)


def test_get_of_an_absent_key_is_none(node: FakeNode) -> None:
    node.on("GET", "/kv/nothing", 404, {"error": "no such key"})
    with node.client() as client:
        assert client.get("nothing") is None


@pytest.mark.parametrize(
    ("key", "raw_path"),
    [("a/b c", "/kv/a%2Fb%20c"), ("ü?#", "/kv/%C3%BC%3F%23"), ("..", "/kv/%2E%2E"), (".", "/kv/%2E")],
)
def test_get_encodes_the_key_as_one_path_segment(node: FakeNode, key: str, raw_path: str) -> None:
    node.on("GET", raw_path, body={"key": key, "value": "v", "height": 1})
    with node.client() as client:
        assert client.get(key) == KvEntry(key, "v", 1)


def test_get_refuses_an_answer_for_another_key(node: FakeNode) -> None:
    node.on("GET", "/kv/a", body={"key": "b", "value": "v", "height": 1})
    with node.client() as client, pytest.raises(BadResponse, match="asked for key 'a'"):
        client.get("a")


def test_read_gives_the_height_of_a_present_and_of_an_absent_key(node: FakeNode) -> None:
    node.on("GET", "/kv/a", body={"key": "a", "value": "v", "height": 5})
    node.on(
        "GET", "/kv/gone", 404, {"error": "no committed value for key 'gone'", "key": "gone", "height": 6}
    )
    with node.client() as client:
        assert client.read("a") == KvRead("a", "v", 5)
        assert client.read("gone") == KvRead("gone", None, 6)


def test_read_with_min_height_asks_for_it_and_a_node_behind_is_refused(node: FakeNode) -> None:
    node.on("GET", "/kv/a?min_height=9", body={"key": "a", "value": "v", "height": 9})
    node.on(
        "GET",
        "/kv/b?min_height=9",
        503,
        {"error": "this node is at height 4, below min_height 9", "height": 4},
    )
    with node.client() as client:
        assert client.read("a", min_height=9) == KvRead("a", "v", 9)
        with pytest.raises(RequestRefused, match="below min_height 9"):
            client.read("b", min_height=9)
        with pytest.raises(ValueError, match="min_height"):
            client.read("a", min_height=-1)


def test_tx_returns_the_record_or_none_before_commit(node: FakeNode) -> None:
    h = tx_hash(b"a")
    record = {"hash": h, "height": 4, "index": 0, "result": {"code": 0, "log": "put", "data": b64(b"null")}}
    node.on("GET", f"/tx/{h}", body=record)
    with node.client() as client:
        assert client.tx(h.upper()) == record
        assert client.tx(tx_hash(b"b")) is None
        with pytest.raises(ValueError, match="64 hex"):
            client.tx("abc")


def test_status_returns_the_nodes_object(node: FakeNode) -> None:
    status = {
        "node": 0,
        "chain_id": CHAIN,
        "view": 9,
        "height": 6,
        "leader": 1,
        "last_block_id": "00",
        "peers": 3,
    }
    node.on("GET", "/status", body=status)
    with node.client() as client:
        assert client.status() == status


# Blocks: what a client accepts


def test_a_correctly_signed_block_verifies() -> None:
    with serving(block_doc(B2), height=2).client() as client:
        got = client.block(2)
    assert got is not None
    assert (got.height, got.view, got.id, got.parent_id, got.proposer) == (2, 2, B2.id.hex(), B1.id.hex(), 2)
    assert (got.txs, got.app_height, got.app_hash) == ((), 1, "11" * 32)
    assert got.qc == qc_for(B2) and got.block == B2 and got.block.qc == qc_for(B1)
    assert got.proven_committed and got.commit_height == 2
    assert got.commit_proof == (B3, B4) and got.commit_qc == qc_for(B4)


def test_binary_transactions_come_back_as_bytes() -> None:
    with serving(block_doc(B1)).client() as client:
        got = client.block(1)
    assert got is not None and got.txs == B1.txs


def test_a_quorum_of_any_three_signers_verifies() -> None:
    with serving(block_doc(B1, make_qc(B1.id, 1, signers=(3, 1, 2)))).client() as client:
        assert client.block(1) is not None


@pytest.mark.parametrize("proof", [(), (B1, B2)], ids=["committed-by-definition", "with-a-proof"])
def test_the_genesis_block_verifies_with_the_genesis_qc(proof: tuple[Block, ...]) -> None:
    with serving(block_doc(GENESIS_BLOCK, GENESIS_QC, proof), height=0).client() as client:
        got = client.block(0)
    assert got is not None and got.id == GENESIS_BLOCK.id.hex()
    assert got.commit_height == 0 and got.commit_proof == proof


def test_the_genesis_of_another_chain_is_refused() -> None:
    other, other_qc = genesis("another-chain")
    with (
        serving(block_doc(other, other_qc, ()), height=0).client() as client,
        pytest.raises(CertificateError, match="a view-0 QC that is not the genesis QC"),
    ):
        client.block(0)


def test_to_json_reads_back_to_the_same_block() -> None:
    verified = verify_block(
        block_doc(B2), Certifier(CHAIN, GENESIS.validator_set(), GENESIS_QC, SignatureCache())
    )
    assert verify_block(verified.to_json(), CERTIFIER) == verified
    assert json.loads(json.dumps(verified.to_json())) == block_doc(B2)
    unproven = verify_block(verified.to_json(), None)
    assert unproven.block == verified.block and unproven.commit_height is None


def test_to_json_of_an_unproven_block_has_no_proof() -> None:
    unproven = verify_block(block_doc(B2), None)
    assert unproven.to_json() == {k: v for k, v in block_doc(B2).items() if not k.startswith("commit_")}


def test_a_block_above_the_tip_is_none(node: FakeNode) -> None:
    node.on("GET", "/blocks/99", 404, {"error": "no committed block at height 99"})
    with node.client() as client:
        assert client.block(99) is None


def test_verifying_needs_the_genesis_but_reading_unverified_does_not() -> None:
    with serving(block_doc(B1)).client(genesis=None) as client:
        with pytest.raises(ValueError, match="genesis"):
            client.block(1)
        got = client.block(1, verify=False)
    assert isinstance(got, VerifiedBlock) and got.block == B1
    assert not got.proven_committed and got.commit_height is None
    assert got.commit_qc is None and got.commit_proof == ()


@pytest.mark.parametrize("proof", [(), (B2,), (B3, B4)], ids=["none", "too-short", "unlinked"])
def test_reading_unverified_does_not_read_the_commit_proof(proof: tuple[Block, ...]) -> None:
    with serving(block_doc(B1, proof=proof, commit_qc=qc_for(B4))).client() as client:
        got = client.block(1, verify=False)
        with pytest.raises(CertificateError, match=r"commit[ _]proof"):
            client.block(1)
    assert got is not None and got.block == B1 and got.commit_height is None


# Blocks: what a client refuses


def _forged(block: Block) -> QuorumCert:
    """Signatures of the right indices over the right vote, by keys the genesis does not list."""
    stranger = Certifier(CHAIN, genesis_for(STRANGERS).validator_set(), GENESIS_QC, SignatureCache())
    votes = [stranger.sign_vote(STRANGERS[i], vi(i), block.view, block.id) for i in (0, 1, 2)]
    return QuorumCert(block.view, block.id, tuple((v.author, v.signature) for v in votes))


def _with_duplicate_signer(block: Block) -> QuorumCert:
    qc = make_qc(block.id, block.view, signers=(0, 1))
    return QuorumCert(qc.view, qc.block_id, (*qc.signatures, qc.signatures[0]))


def _with_unknown_signer(block: Block) -> QuorumCert:
    qc = make_qc(block.id, block.view)
    return QuorumCert(qc.view, qc.block_id, (*qc.signatures[:2], (ValidatorIndex(7), qc.signatures[2][1])))


@pytest.mark.parametrize(
    ("qc_of", "complaint"),
    [
        (_forged, "bad signature from validator 0"),
        (lambda b: make_qc(b.id, b.view, signers=(0, 1)), "2 distinct signers, need 3"),
        (_with_duplicate_signer, "duplicate signer 0"),
        (_with_unknown_signer, "unknown signer 7"),
        (lambda b: make_qc(B2.id, B2.view), "the QC certifies block"),
        (lambda b: make_qc(b.id, b.view + 1), "the QC is for view 2"),
        (lambda b: make_qc(b.id, b.view, chain_id="another-chain"), "bad signature"),
        (lambda b: GENESIS_QC, "the QC certifies block"),
    ],
)
def test_a_block_without_a_valid_qc_for_it_is_refused(
    qc_of: Callable[[Block], QuorumCert], complaint: str
) -> None:
    with serving(block_doc(B1, qc_of(B1))).client() as client, pytest.raises(CertificateError) as info:
        client.block(1)
    assert complaint in str(info.value) and str(info.value).startswith("block 1: ")


def test_a_node_of_another_chain_is_refused() -> None:
    other_chain = genesis_for(KEYS, "another-chain")
    with (
        serving(block_doc(B1)).client(other_chain) as client,
        pytest.raises(CertificateError, match="bad sig"),
    ):
        client.block(1)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        target: Any = doc
        for name in parents:
            target = target[int(name)] if isinstance(target, list) else target[name]
        if value is _DELETE:
            del target[last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


_DELETE = object()


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        # Contents that no longer hash to the signed id.
        (_set("txs", [b64(b"tx-a"), b64(b"tampered")]), "is not the hash of the block's contents"),
        (_set("txs", []), "is not the hash of the block's contents"),
        (_set("app_hash", "22" * 32), "is not the hash of the block's contents"),
        (_set("app_height", 1), "is not the hash of the block's contents"),
        (_set("proposer", 2), "is not the hash of the block's contents"),
        # An id rewritten to match the QC, contents unchanged.
        (_set("id", B2.id.hex()), "is not the hash of the block's contents"),
        # Malformed fields.
        (_set("txs.1", "not base64!"), r"txs\[1\] is 'not base64!', not valid base64"),
        (_set("txs.0", "dHgtYQ"), "not valid base64"),
        (_set("txs.0", "dHgtYR=="), "not canonical base64"),
        (_set("txs.0", 5), r"txs\[0\] is int, not a base64 string"),
        (
            _set("qc.signatures.0.signature", "%%%"),
            r"qc.signatures\[0\].signature is '%%%', not valid base64",
        ),
        (_set("qc.signatures.0.signer", True), r"qc.signatures\[0\].signer is True"),
        (_set("justify.signatures", None), "justify.signatures is null, not an array"),
        (_set("id", B1.id.hex().upper()), "id is .*, not lowercase hex"),
        (_set("parent_id", "00" * 31), "parent_id is 31 bytes, not 32"),
        (_set("qc.block_id", "zz"), "qc.block_id is 'zz', not lowercase hex"),
        (_set("view", "1"), "view is '1', not a non-negative integer"),
        (_set("height", -1), "height is -1, not a non-negative integer"),
        (_set("app_height", 2**64), "app_height is"),
        (_set("app_hash", "00" * 65), "app_hash is longer than 64 bytes"),
        (_set("qc", []), "qc is an array, not a JSON object"),
        (_set("justify", _DELETE), "justify is missing"),
    ],
)
def test_a_tampered_or_malformed_block_is_refused(
    change: Callable[[dict[str, Any]], None], complaint: str
) -> None:
    doc = copy.deepcopy(block_doc(B1))
    change(doc)
    with serving(doc).client() as client, pytest.raises(CertificateError, match=complaint):
        client.block(1)


def test_a_consistent_block_whose_justify_is_not_its_parent_is_refused() -> None:
    orphan = Block(View(3), 1, B1.id, vi(3), qc_for(B2), (), 0, bytes(32))
    with (
        serving(block_doc(orphan)).client() as client,
        pytest.raises(CertificateError, match="not the parent"),
    ):
        client.block(1)


def test_another_height_than_asked_is_refused() -> None:
    fake = serving(block_doc(B1), height=2)
    with fake.client() as client, pytest.raises(CertificateError, match="sent block 1 instead"):
        client.block(2)


def test_unverified_reading_still_checks_the_id() -> None:
    doc = block_doc(B1)
    doc["txs"] = []
    with serving(doc).client(genesis=None) as client, pytest.raises(CertificateError, match="not the hash"):
        client.block(1, verify=False)


def test_a_refused_block_is_a_bad_response_and_a_client_error() -> None:
    assert issubclass(CertificateError, BadResponse) and issubclass(BadResponse, ClientError)
    assert issubclass(NodeUnavailable, ClientError) and issubclass(RequestRefused, ClientError)


def test_block_heights_are_checked_before_sending(node: FakeNode) -> None:
    with node.client() as client, pytest.raises(ValueError, match="height"):
        client.block(-1)
    assert node.requests == []


def test_tx_hash_is_sha256_hex() -> None:
    assert tx_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert BlockId(bytes.fromhex(tx_hash(b""))) == hashlib.sha256(b"").digest()


# Blocks: the commit proof. A certified block is not a committed one: the three-chain must be shown.


@pytest.mark.parametrize(
    ("block", "proof", "commit_height"),
    [
        (B1, (B2, B3), 1),  # the block is b itself: exactly b' and b''
        (B1, (B2, B3, B4), 2),  # the block is below b = B2
        (GAPPED[0], GAPPED[1:], 3),  # a batch: blocks 1, 2 and 3 committed by the three-chain 3, 4, 5
        (GAPPED[1], GAPPED[2:], 3),
        (GAPPED[2], GAPPED[3:], 3),
    ],
    ids=["block-is-b", "block-below-b", "batch-oldest", "batch-middle", "batch-block-is-b"],
)
def test_a_valid_commit_proof_is_accepted(block: Block, proof: tuple[Block, ...], commit_height: int) -> None:
    with serving(block_doc(block, proof=proof), height=block.height).client() as client:
        got = client.block(block.height)
    assert got is not None and got.block == block and got.proven_committed
    assert got.commit_proof == proof and got.commit_qc == qc_for(proof[-1])
    assert got.commit_height == commit_height


def _stranger_of(parent: Block, view: int) -> Block:
    """A child of `parent` whose justify QC is signed by keys the genesis does not list."""
    return Block(View(view), parent.height + 1, parent.id, vi(view % 4), _forged(parent), ())


# Certified blocks whose views are not consecutive: the commit QC is valid, but commits nothing.
_NOT_COMMITTED = [
    (GAPPED[0], GAPPED[1:3], "commit proof: views 1, 2, 4 are not consecutive"),
    (GAPPED[1], GAPPED[2:4], "commit proof: views 2, 4, 5 are not consecutive"),
    (B1, (B2, make_block(B2, 4)), "commit proof: views 1, 2, 4 are not consecutive"),
    (B1, (make_block(B1, 3), make_block(make_block(B1, 3), 4)), "commit proof: views 1, 3, 4 are not"),
]

# Children of B1 that hash and link correctly but break a rule of the block tree, and of B2 and B1
# whose justify QCs are forged.
_TOO_HIGH = Block(View(2), 3, B1.id, vi(2), qc_for(B1), ())
_SAME_VIEW = Block(View(1), 2, B1.id, vi(2), qc_for(B1), ())
_OLD_JUSTIFY = Block(View(2), 2, B1.id, vi(2), make_qc(B1.id, 0), ())
_WRONG_JUSTIFY = Block(View(2), 2, B1.id, vi(2), GENESIS_QC, ())
_X2 = _stranger_of(B1, 2)
_X3 = _stranger_of(B2, 3)


@pytest.mark.parametrize(
    ("block", "proof", "commit_qc", "complaint"),
    [
        *((block, proof, None, complaint) for block, proof, complaint in _NOT_COMMITTED),
        # Broken links: a proof that does not hang from the block, or not from itself.
        (
            B1,
            (B3, B4),
            None,
            f"commit_proof[0] (height 3, view 3) extends {B2.id.hex()}, not the block before",
        ),
        (B1, (B2, B4), None, "commit_proof[1] (height 4, view 4) extends"),
        (B1, (B3, B2), None, "commit_proof[0] (height 3, view 3) extends"),
        (B2, (B1, B3), None, "commit_proof[0] (height 1, view 1) extends"),
        (B1, (B2,), None, "commit proof: 1 block(s), need at least 2 (b' and b'' of a three-chain)"),
        (
            B1,
            (_TOO_HIGH, make_block(_TOO_HIGH, 3)),
            None,
            "commit_proof[0] (height 3, view 2) is not one above the block before it (height 1)",
        ),
        (
            B1,
            (_SAME_VIEW, make_block(_SAME_VIEW, 2)),
            None,
            "commit_proof[0] (height 2, view 1) is not of a later view than the block before it (view 1)",
        ),
        (
            B1,
            (_OLD_JUSTIFY, make_block(_OLD_JUSTIFY, 3)),
            None,
            "commit_proof[0] (height 2, view 2) carries a justify QC of view 0 for a block of view 1",
        ),
        (
            B1,
            (_WRONG_JUSTIFY, make_block(_WRONG_JUSTIFY, 3)),
            None,
            f"commit_proof[0].justify certifies {GENESIS_BLOCK.id.hex()}, not the parent {B1.id.hex()}",
        ),
        # The commit QC: for another block, another view, or not by 2f+1 genesis validators.
        (B1, (B2, B3), qc_for(B2), f"the commit QC certifies block {B2.id.hex()}, not the last block"),
        (B1, (B2, B3), make_qc(B3.id, 4), "the commit QC is for view 4, the last block of the commit"),
        (B1, (B2, B3), _forged(B3), "the commit QC does not verify against the genesis validators: bad sig"),
        (B1, (B2, B3), make_qc(B3.id, 3, signers=(0, 1)), "2 distinct signers, need 3"),
        (
            B1,
            (B2, B3),
            _with_duplicate_signer(B3),
            "the commit QC does not verify against the genesis validators: duplicate signer 0",
        ),
        (B1, (B2, B3), _with_unknown_signer(B3), "unknown signer 7"),
        (B1, (B2, B3), make_qc(B3.id, 3, chain_id="another-chain"), "the commit QC does not verify"),
        # The QCs of b and b' (the justify QCs of b' and b''), also by 2f+1 genesis validators.
        (B1, (_X2, make_block(_X2, 3)), None, "commit proof: the QC of block 1 (the justify QC of block 2)"),
        (B1, (B2, _X3), None, "commit proof: the QC of block 2 (the justify QC of block 3) does not verify"),
    ],
)
def test_a_commit_proof_that_does_not_prove_the_commit_is_refused(
    block: Block, proof: tuple[Block, ...], commit_qc: QuorumCert | None, complaint: str
) -> None:
    doc = block_doc(block, proof=proof, commit_qc=commit_qc)
    with (
        serving(doc, height=block.height).client() as client,
        pytest.raises(CertificateError) as info,
    ):
        client.block(block.height)
    assert complaint in str(info.value) and str(info.value).startswith(f"block {block.height}: ")


def test_a_certified_block_whose_views_skip_is_not_committed() -> None:
    # Block 1 and the commit QC's block are each certified by 2f+1 genesis validators; no three-chain
    # of consecutive views links them, so a leader may still abandon block 1.
    doc = block_doc(GAPPED[0], proof=GAPPED[1:3])
    with serving(doc).client() as client, pytest.raises(CertificateError) as info:
        client.block(1)
    assert str(info.value) == (
        "block 1: commit proof: views 1, 2, 4 are not consecutive"
        " (blocks 1, 2, 3 are certified, not a three-chain)"
    )


# Blocks under the two-chain rule (a genesis with "commit_chain": 2): a QC for b' commits b when
# b' is b's child in the next view, so a proof may be one block.

TWO_CHAIN_GENESIS = dataclasses.replace(GENESIS, commit_chain=2)


@pytest.mark.parametrize(
    ("block", "proof", "commit_height"),
    [
        (B1, (B2,), 1),  # the block is b itself: exactly b'
        (B1, (B2, B3), 2),  # the block is below b = B2
        (GAPPED[0], GAPPED[1:2], 1),  # views 1, 2: consecutive
        (GAPPED[1], GAPPED[2:4], 3),  # views 2, 4 skip; blocks 2 and 3 committed by the two-chain 3, 4
    ],
    ids=["block-is-b", "block-below-b", "consecutive-views", "batch"],
)
def test_a_two_chain_client_accepts_a_two_chain_proof(
    block: Block, proof: tuple[Block, ...], commit_height: int
) -> None:
    with serving(block_doc(block, proof=proof), height=block.height).client(TWO_CHAIN_GENESIS) as client:
        got = client.block(block.height)
    assert got is not None and got.block == block and got.proven_committed
    assert got.commit_proof == proof and got.commit_qc == qc_for(proof[-1])
    assert got.commit_height == commit_height


def test_a_one_block_proof_commits_under_the_two_chain_rule_only() -> None:
    doc = block_doc(B1, proof=(B2,))
    with serving(doc).client(GENESIS) as three, pytest.raises(CertificateError) as info:
        three.block(1)
    assert (
        str(info.value) == "block 1: commit proof: 1 block(s), need at least 2 (b' and b'' of a three-chain)"
    )
    with serving(doc).client(TWO_CHAIN_GENESIS) as two:
        got = two.block(1)
    assert got is not None and got.commit_height == 1


@pytest.mark.parametrize(
    ("block", "proof", "commit_qc", "complaint"),
    [
        (
            GAPPED[1],
            GAPPED[2:3],
            None,
            "block 2: commit proof: views 2, 4 are not consecutive"
            " (blocks 2, 3 are certified, not a two-chain)",
        ),
        (B1, (make_block(B1, 3),), None, "block 1: commit proof: views 1, 3 are not consecutive"),
        (B1, (), qc_for(B1), "block 1: commit proof: 0 block(s), need at least 1 (b' of a two-chain)"),
        (B1, (B2,), qc_for(B1), f"block 1: the commit QC certifies block {B1.id.hex()}, not the last block"),
        (B1, (B2,), _forged(B2), "block 1: the commit QC does not verify against the genesis validators"),
        # The QC of b (the justify QC of b'), also by 2f+1 genesis validators.
        (
            B1,
            (_X2,),
            None,
            "block 1: commit proof: the QC of block 1 (the justify QC of block 2) does not verify",
        ),
    ],
    ids=["views-skip", "views-skip-at-b", "empty", "commit-qc-of-b", "forged-commit-qc", "forged-qc-of-b"],
)
def test_a_two_chain_client_refuses_what_does_not_prove_a_two_chain_commit(
    block: Block, proof: tuple[Block, ...], commit_qc: QuorumCert | None, complaint: str
) -> None:
    doc = block_doc(block, proof=proof, commit_qc=commit_qc)
    if not proof:
        doc["commit_proof"] = []
    with (
        serving(doc, height=block.height).client(TWO_CHAIN_GENESIS) as client,
        pytest.raises(CertificateError) as info,
    ):
        client.block(block.height)
    assert str(info.value).startswith(complaint)


def test_verify_block_takes_the_commit_rule() -> None:
    doc = block_doc(B1, proof=(B2,))
    assert verify_block(doc, CERTIFIER, commit_chain=2).commit_height == 1
    with pytest.raises(CertificateError, match="need at least 2"):
        verify_block(doc, CERTIFIER)
    with pytest.raises(ValueError, match="commit_chain must be one of"):
        verify_block(doc, CERTIFIER, commit_chain=4)


_NOT_HASH = "is not the hash of the block's contents"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (_set("commit_proof", _DELETE), "block 1: commit proof: missing"),
        (_set("commit_proof", None), "block 1: commit proof: missing"),
        (_set("commit_proof", []), "block 1: commit proof: 0 block(s), need at least 2"),
        (_set("commit_proof", {}), "block 1: commit_proof is an object, not an array"),
        (_set("commit_proof.0", 5), r"block 1: commit_proof[0] is int, not a JSON object"),
        (_set("commit_qc", _DELETE), "block 1: commit_qc is missing"),
        # An entry whose contents no longer hash to its id, or whose id was rewritten.
        (
            _set("commit_proof.0.txs", [b64(b"tampered")]),
            f"block 1: commit_proof[0].id {B2.id.hex()} {_NOT_HASH}",
        ),
        (_set("commit_proof.1.app_hash", "00" * 32), f"commit_proof[1].id {B3.id.hex()} {_NOT_HASH}"),
        (_set("commit_proof.1.proposer", 1), f"commit_proof[1].id {B3.id.hex()} {_NOT_HASH}"),
        (_set("commit_proof.1.id", B4.id.hex()), f"commit_proof[1].id {B4.id.hex()} {_NOT_HASH}"),
        # Entries are read as strictly as the block itself.
        (_set("commit_proof.1.view", "3"), "block 1: commit_proof[1].view is '3', not a non-negative"),
        (_set("commit_proof.0.txs", ["dHgtYR=="]), r"commit_proof[0].txs[0] is 'dHgtYR==', not canonical"),
        (_set("commit_proof.0.justify.signatures.0.signer", -1), "commit_proof[0].justify.signatures[0]"),
        (_set("commit_proof.1.parent_id", "AB" * 32), "commit_proof[1].parent_id is 'ABAB"),
        (_set("commit_proof.1.app_hash", "00" * 65), "commit_proof[1].app_hash is longer than 64 bytes"),
    ],
)
def test_a_missing_malformed_or_tampered_commit_proof_is_refused(
    change: Callable[[dict[str, Any]], None], complaint: str
) -> None:
    doc = copy.deepcopy(block_doc(B1))
    change(doc)
    with serving(doc).client() as client, pytest.raises(CertificateError) as info:
        client.block(1)
    assert complaint in str(info.value)


def test_an_over_long_commit_proof_is_refused_before_it_is_read() -> None:
    doc = block_doc(B1)
    doc["commit_proof"] = [entry_doc(B2)] * (client_module.MAX_COMMIT_PROOF_BLOCKS + 1)
    with serving(doc).client() as client, pytest.raises(CertificateError) as info:
        client.block(1)
    assert str(info.value) == "block 1: commit proof: 1001 blocks, more than the 1000 accepted"


def test_the_proof_length_bound_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "MAX_COMMIT_PROOF_BLOCKS", 3)
    with serving(block_doc(GAPPED[1], proof=GAPPED[2:]), height=2).client() as client:
        got = client.block(2)
    assert got is not None and len(got.commit_proof) == 3
    with (
        serving(block_doc(GAPPED[0], proof=GAPPED[1:])).client() as client,
        pytest.raises(CertificateError, match="4 blocks, more than the 3 accepted"),
    ):
        client.block(1)


# The async client: the same readers behind awaited requests


async def test_async_submit_and_mempool_full(node: FakeNode) -> None:
    body = {"results": [{"hash": tx_hash(b"a"), "status": "rejected", "error": "mempool full"}]}
    node.on("POST", "/txs", 503, body, headers={"Retry-After": "1"})
    async with node.async_client() as client:
        (result,) = await client.submit([b"a"], wait="commit")
    assert result.retryable and result.retry_after_s == 1.0
    assert node.sent_json() == {"txs": [b64(b"a")], "wait": "commit"}


async def test_async_put_get_tx_status(node: FakeNode) -> None:
    node.accept_all("committed", height=2)
    node.on("GET", "/kv/k", body={"key": "k", "value": "v", "height": 2})
    node.on("GET", "/status", body={"node": 1, "height": 2})
    async with node.async_client() as client:
        assert (await client.put("k", "v")).committed
        assert (await client.delete("k")).committed
        assert (await client.cas("k", "v", "w")).committed
        assert await client.get("k") == KvEntry("k", "v", 2)
        assert await client.get("absent") is None
        assert await client.tx(tx_hash(b"x")) is None
        assert (await client.status())["node"] == 1


async def test_async_refusal_and_unavailable(node: FakeNode) -> None:
    node.on("POST", "/txs", 400, {"error": "bad base64 in txs[0]"})
    async with node.async_client() as client:
        with pytest.raises(RequestRefused, match="bad base64"):
            await client.submit([b"a"])

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with AsyncClient(URL, transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(NodeUnavailable):
            await client.status()


async def test_async_block_verifies_and_refuses_forgeries() -> None:
    async with serving(block_doc(B1)).async_client() as client:
        got = await client.block(1)
    assert got is not None and got.block == B1 and got.commit_height == 1
    async with serving(block_doc(GAPPED[0], proof=GAPPED[1:3])).async_client() as client:
        with pytest.raises(CertificateError, match="views 1, 2, 4 are not consecutive"):
            await client.block(1)
    async with serving(block_doc(B1, _forged(B1))).async_client() as client:
        with pytest.raises(CertificateError, match="bad signature"):
            await client.block(1)
    async with serving(block_doc(B1)).async_client() as client:
        assert await client.block(5) is None


async def test_async_a_closed_port_raises_node_unavailable_under_trio() -> None:
    async with AsyncClient(f"127.0.0.1:{closed_port()}", timeout_s=5.0) as client:
        with pytest.raises(NodeUnavailable, match="cannot reach the node"):
            await client.get("k")
