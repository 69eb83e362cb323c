"""The HTTP/JSON API (`bft.node.api.make_app`) driven in process through httpx's ASGI transport,
over an in-memory `NodeView`: every route's JSON shape, and the refusal of every kind of bad
request with a 4xx (or 503) and a JSON `{"error": ...}`, without taking the app down.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from core_helpers import CHAIN, GENESIS_BLOCK, make_block, make_qc, qc_for
from starlette.applications import Starlette
from starlette.types import Message, Scope
from view_fakes import NoSnapshots

from bft.core.messages import Block, QuorumCert
from bft.node import api
from bft.node.api import (
    EVENTS_KEEPALIVE_S,
    EVIDENCE_PAGE,
    MAX_BODY_BYTES,
    MAX_EVIDENCE_PAGE,
    MAX_TXS_PER_REQUEST,
    MAX_UNCONFIRMED_PAGE,
    RETRY_AFTER_S,
    UNCONFIRMED_PAGE,
    NodeView,
    make_app,
)
from bft.node.api_json import b64, evidence_json, qc_json
from bft.node.commits import FEED_BUFFER_BLOCKS, CommitFeed
from bft.node.health import Health, assess_health
from bft.node.operator_views import CertRef, ConsensusState, NetInfo, PeerInfo, PendingTxs, TimeoutCertRef
from bft.node.storage import StoredEvidence
from crypto.hashing import sha256

METRICS = (
    b"# HELP bft_committed_height Committed height.\n"
    b"# TYPE bft_committed_height gauge\n"
    b"bft_committed_height 1.0\n"
)
MEMPOOL_CAPACITY = 3
DEADLINE_S = 10.0

BLOCK_1 = make_block(GENESIS_BLOCK, 1, txs=(b"tx-a", b"tx-b"))
QC_1 = qc_for(BLOCK_1)
COMMIT_QC_1 = make_qc(BLOCK_1.id, BLOCK_1.view + 2)


HEALTH_ARGS: dict[str, Any] = {"validators": 4, "quorum": 3, "height": 9, "window_s": 5.0}
HEALTHY = assess_health(connected_peers=3, last_commit_age_s=0.1, **HEALTH_ARGS)
NET_INFO = NetInfo(
    listening=("127.0.0.1:26600", "http://127.0.0.1:26601"),
    peers=(
        PeerInfo(1, "127.0.0.1:26602", True, "us", "127.0.0.1:26602", 12.5, 1000, 2000, 6, 1, 2, 3, 4, 400),
        PeerInfo(2, "127.0.0.1:26604", False, None, None, None, 10, 20, 0, 0, 0, 0, 0, 0),
    ),
)
CONSENSUS_STATE = ConsensusState(
    view=12,
    time_in_view_s=0.25,
    next_deadline_in_s=0.75,
    leader=3,
    upcoming_leaders=((13, 3), (14, 0), (15, 0)),
    height=8,
    high_qc=CertRef(11, b"\x11" * 32),
    locked_qc=CertRef(10, b"\x10" * 32),
    last_voted_view=11,
    last_tc=TimeoutCertRef(9, CertRef(8, b"\x08" * 32), (0, 1, 3)),
    timeouts_seen=(0, 2),
    timeouts_sent=1,
    quorum=3,
)


class Boom(Exception):
    """A bug inside a NodeView method."""


class FakeNode(NoSnapshots):
    """An in-memory NodeView: one committed block, a small mempool, a key-value map, and the real
    CommitFeed. A method named in `broken` raises Boom."""

    def __init__(self, max_subscribers: int = 4) -> None:
        self.feed = CommitFeed(max_subscribers=max_subscribers)
        self.height = 1
        self.blocks: dict[int, tuple[Block, QuorumCert, QuorumCert]] = {1: (BLOCK_1, QC_1, COMMIT_QC_1)}
        self.committed: dict[bytes, tuple[int, int]] = {
            sha256(tx): (1, i) for i, tx in enumerate(BLOCK_1.txs)
        }
        self.values: dict[str, str] = {"colour": "blue", "a/b": "slash"}
        self.mempool: list[bytes] = []
        self.submissions: list[tuple[list[bytes], bool]] = []
        self.broken: set[str] = set()
        self.calls: list[str] = []
        # Oldest first, seq 1..; the API shows them newest first.
        self.kept_evidence = [
            StoredEvidence(seq, "vote", seq % 4, 10 + seq, b"first-%d" % seq, b"second-%d" % seq)
            for seq in range(1, 121)
        ]
        self.evidence_asks: list[tuple[int, int | None]] = []
        self.health_now = HEALTHY
        self.pending = [b"pending-%d" % i for i in range(150)]
        self.unconfirmed_asks: list[int] = []
        self.earliest = 1

    def _enter(self, method: str) -> None:
        self.calls.append(method)
        if method in self.broken:
            raise Boom(f"{method} is broken")

    def status(self) -> dict[str, Any]:
        self._enter("status")
        return {
            "node": 2,
            "chain_id": CHAIN,
            "view": 7,
            "height": max(self.blocks),
            "leader": 3,
            "last_block_id": self.blocks[max(self.blocks)][0].id.hex(),
            "peers": 3,
        }

    def pruned_below(self) -> int:
        return self.earliest

    def block(self, height: int) -> dict[str, Any] | None:
        self._enter("block")
        if height not in self.blocks:
            return None
        block, qc, commit_qc = self.blocks[height]
        return {
            "height": block.height,
            "view": block.view,
            "id": block.id.hex(),
            "parent_id": block.parent_id.hex(),
            "txs": [b64(tx) for tx in block.txs],
            "qc": qc_json(qc),
            "commit_qc": qc_json(commit_qc),
            "app_hash": block.app_hash.hex(),
        }

    async def submit(self, txs: list[bytes], wait_commit: bool) -> tuple[list[dict[str, Any]], bool]:
        self._enter("submit")
        self.submissions.append((txs, wait_commit))
        await trio.lowlevel.checkpoint()
        results: list[dict[str, Any]] = []
        full = False
        for tx in txs:
            result: dict[str, Any] = {"hash": sha256(tx).hex(), "status": "accepted"}
            if len(self.mempool) >= MEMPOOL_CAPACITY:
                full = True
                result.update(status="rejected", error="mempool full")
            else:
                self.mempool.append(tx)
                if wait_commit:
                    result.update(status="committed", height=2)
            results.append(result)
        return results, full

    def tx(self, h: bytes) -> dict[str, Any] | None:
        self._enter("tx")
        if h not in self.committed:
            return None
        height, index = self.committed[h]
        return {"hash": h.hex(), "height": height, "index": index, "result": {"code": 0, "log": "ok"}}

    def kv(self, key: str) -> dict[str, Any]:
        self._enter("kv")
        if key == "unanswerable":
            raise ValueError("the application cannot answer /kv queries (code 2)")
        return {"key": key, "value": self.values.get(key), "height": self.height}

    async def wait_height(self, height: int, timeout_s: float) -> int:
        with trio.move_on_after(timeout_s):
            while self.height < height:
                await trio.sleep(0.01)
        return self.height

    def evidence(self, limit: int, before: int | None) -> list[dict[str, Any]]:
        self._enter("evidence")
        self.evidence_asks.append((limit, before))
        newest = [e for e in reversed(self.kept_evidence) if before is None or e.seq < before]
        return [evidence_json(e) for e in newest[:limit]]

    def health(self) -> Health:
        self._enter("health")
        return self.health_now

    def net_info(self) -> NetInfo:
        self._enter("net_info")
        return NET_INFO

    def consensus_state(self) -> ConsensusState:
        self._enter("consensus_state")
        return CONSENSUS_STATE

    def unconfirmed_txs(self, limit: int) -> PendingTxs:
        self._enter("unconfirmed_txs")
        self.unconfirmed_asks.append(limit)
        hashes = tuple(sha256(tx) for tx in self.pending[:limit])
        return PendingTxs(len(self.pending), sum(map(len, self.pending)), hashes)

    def render_metrics(self) -> bytes:
        self._enter("render_metrics")
        return METRICS

    def subscribe(self, on_drop: Callable[[], None]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        self._enter("subscribe")
        return self.feed.subscribe(on_drop)


def _check_view(view: NodeView) -> NodeView:
    return view


@pytest.fixture
def node() -> FakeNode:
    fake = FakeNode()
    _check_view(fake)  # mypy: the fake implements the protocol the app is written against
    return fake


@pytest.fixture
async def client(node: FakeNode) -> AsyncIterator[httpx.AsyncClient]:
    # raise_app_exceptions=False: Starlette re-raises a handler's exception to the server after
    # sending the 500 (hypercorn logs it); here, as on a real server, the client sees the 500.
    transport = httpx.ASGITransport(app=make_app(node), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as c:
        yield c


def assert_error(response: httpx.Response, status: int, *, mentions: str = "") -> str:
    """A refusal: the status, a JSON body that is an object with an "error" string."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body.get("error"), str) and body["error"]
    assert mentions in body["error"]
    return str(body["error"])


def _txs_body(*txs: object, **extra: object) -> bytes:
    return json.dumps({"txs": list(txs), **extra}).encode()


# --- happy paths ---------------------------------------------------------------------------------


async def test_status(client: httpx.AsyncClient) -> None:
    response = await client.get("/status")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    expected_types = {
        "node": int,
        "chain_id": str,
        "view": int,
        "height": int,
        "leader": int,
        "last_block_id": str,
        "peers": int,
    }
    assert {k: type(body[k]) for k in expected_types} == expected_types
    assert body["height"] == 1
    assert body["last_block_id"] == BLOCK_1.id.hex()


async def test_block(client: httpx.AsyncClient) -> None:
    response = await client.get("/blocks/1")
    assert response.status_code == 200
    body = response.json()
    assert body["height"] == 1
    assert body["view"] == BLOCK_1.view
    assert body["id"] == BLOCK_1.id.hex()
    assert body["parent_id"] == GENESIS_BLOCK.id.hex()
    assert [base64.b64decode(tx) for tx in body["txs"]] == [b"tx-a", b"tx-b"]
    assert body["app_hash"] == BLOCK_1.app_hash.hex()
    qc = body["qc"]
    assert qc["view"] == QC_1.view
    assert qc["block_id"] == BLOCK_1.id.hex()
    assert [(s["signer"], base64.b64decode(s["signature"])) for s in qc["signatures"]] == [
        (int(signer), sig) for signer, sig in QC_1.signatures
    ]


async def test_block_above_the_tip_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/blocks/2"), 404, mentions="height 2")
    assert_error(await client.get("/blocks/0"), 404)


async def test_a_pruned_block_is_410_and_says_where_the_node_starts(
    node: FakeNode, client: httpx.AsyncClient
) -> None:
    del node.blocks[1]
    node.earliest = 2
    assert_error(await client.get("/blocks/1"), 410, mentions="keeps heights from 2")
    # Above the tip is still "not committed", and height 0 is never a block.
    assert_error(await client.get("/blocks/2"), 404, mentions="height 2")
    assert_error(await client.get("/blocks/0"), 404)


@pytest.mark.parametrize(
    "raw",
    [
        "abc",
        "-1",
        "1.5",
        "+1",
        "0x1",
        " 1",
        "1" * 19,  # beyond any height, and beyond SQLite's integers
        "%C2%B2",  # "²": str.isdigit() says yes, int() says no
        "%D9%A1",  # ARABIC-INDIC DIGIT ONE: int() would read it as 1
    ],
)
async def test_bad_height_is_400(client: httpx.AsyncClient, node: FakeNode, raw: str) -> None:
    assert_error(await client.get(f"/blocks/{raw}"), 400, mentions="height")
    assert "block" not in node.calls, "a malformed height never reaches the node"


async def test_submit(client: httpx.AsyncClient, node: FakeNode) -> None:
    response = await client.post("/txs", content=_txs_body(b64(b"one"), b64(b"two")))
    assert response.status_code == 200
    assert response.json() == {
        "results": [
            {"hash": sha256(b"one").hex(), "status": "accepted"},
            {"hash": sha256(b"two").hex(), "status": "accepted"},
        ]
    }
    assert node.submissions == [([b"one", b"two"], False)]


async def test_submit_and_wait_for_commit(client: httpx.AsyncClient, node: FakeNode) -> None:
    response = await client.post("/txs", content=_txs_body(b64(b"x"), wait="commit"))
    assert response.status_code == 200
    assert response.json() == {"results": [{"hash": sha256(b"x").hex(), "status": "committed", "height": 2}]}
    response = await client.post("/txs", content=_txs_body(b64(b"y"), wait="none"))
    assert response.status_code == 200
    assert node.submissions == [([b"x"], True), ([b"y"], False)]


async def test_submit_the_largest_allowed_request(client: httpx.AsyncClient, node: FakeNode) -> None:
    node.mempool = []
    many = await client.post("/txs", content=_txs_body(*[b64(b"")] * MAX_TXS_PER_REQUEST))
    assert many.status_code == 503  # the fake's mempool is tiny; what matters is it got them all
    assert len(many.json()["results"]) == MAX_TXS_PER_REQUEST
    body = _txs_body(b64(b"big"))
    padded = body + b" " * (MAX_BODY_BYTES - len(body))
    assert len(padded) == MAX_BODY_BYTES
    node.mempool = []
    response = await client.post("/txs", content=padded)
    assert response.status_code == 200
    assert node.submissions[-1] == ([b"big"], False)


async def test_tx(client: httpx.AsyncClient) -> None:
    h = sha256(b"tx-b").hex()
    response = await client.get(f"/tx/{h}")
    assert response.status_code == 200
    body = response.json()
    assert {"hash", "height", "index", "result"} <= set(body)
    assert (body["hash"], body["height"], body["index"]) == (h, 1, 1)


async def test_tx_not_committed_is_404(client: httpx.AsyncClient) -> None:
    assert_error(await client.get(f"/tx/{sha256(b'never').hex()}"), 404, mentions="not committed")


@pytest.mark.parametrize(
    "raw",
    ["abc", "00" * 31, "00" * 33, "AB" * 32, "g" * 64, "0x" + "00" * 31, "%C2%B2" * 32],
)
async def test_bad_tx_hash_is_400(client: httpx.AsyncClient, node: FakeNode, raw: str) -> None:
    assert_error(await client.get(f"/tx/{raw}"), 400, mentions="hex")
    assert "tx" not in node.calls


async def test_kv(client: httpx.AsyncClient) -> None:
    response = await client.get("/kv/colour")
    assert response.status_code == 200
    assert response.json() == {"key": "colour", "value": "blue", "height": 1}
    # Keys may contain slashes.
    response = await client.get("/kv/a/b")
    assert response.status_code == 200
    assert response.json()["value"] == "slash"


async def test_kv_absent_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/kv/nothing-here")
    assert_error(response, 404, mentions="nothing-here")
    assert response.json()["height"] == 1  # an absent key is also read at a height


async def test_kv_min_height_reached_reads_at_once(client: httpx.AsyncClient) -> None:
    response = await client.get("/kv/colour?min_height=1")
    assert response.status_code == 200
    assert response.json()["height"] == 1


async def test_kv_min_height_waits_for_the_node_to_commit_it(
    client: httpx.AsyncClient, node: FakeNode
) -> None:
    async def commit_later() -> None:
        await trio.sleep(0.05)
        node.height = 3

    async with trio.open_nursery() as nursery:
        nursery.start_soon(commit_later)
        response = await client.get("/kv/colour?min_height=3")
    assert response.status_code == 200
    assert response.json()["height"] == 3


async def test_kv_min_height_not_reached_in_time_is_503_with_the_height(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "MIN_HEIGHT_WAIT_S", 0.05)
    response = await client.get("/kv/colour?min_height=7")
    assert_error(response, 503, mentions="below min_height 7")
    assert response.json()["height"] == 1
    assert response.headers["retry-after"] == "1"


@pytest.mark.parametrize("query", ["min_height=-1", "min_height=x", "min_height=1&min_height=2", "at=3"])
async def test_kv_bad_query_is_400(client: httpx.AsyncClient, query: str) -> None:
    assert_error(await client.get(f"/kv/colour?{query}"), 400)


async def test_kv_empty_key_and_unanswerable_query(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/kv/"), 400, mentions="empty key")
    assert_error(await client.get("/kv/unanswerable"), 404, mentions="cannot answer")


async def test_metrics(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "version=" in response.headers["content-type"]
    assert response.content == METRICS


# --- refusals of bad submissions -----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"{not json}",
        b'{"txs": ["YQ=="],}',
        b"\xff\xfe\xfa",
        b'{"txs": ["YQ=="]} trailing',
    ],
)
async def test_malformed_json_is_400(client: httpx.AsyncClient, node: FakeNode, body: bytes) -> None:
    assert_error(await client.post("/txs", content=body), 400, mentions="JSON")
    assert node.submissions == []


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the parser's recursion limit
        b'{"txs": [' + b"1" * 5000 + b"]}",  # an integer longer than int() converts
    ],
    ids=["deep-nesting", "huge-integer"],
)
async def test_json_the_parser_cannot_take_is_400(client: httpx.AsyncClient, body: bytes) -> None:
    assert_error(await client.post("/txs", content=body), 400, mentions="JSON")


@pytest.mark.parametrize("body", [b"[]", b'["YQ=="]', b'"txs"', b"null", b"42", b"true"])
async def test_json_that_is_not_an_object_is_400(client: httpx.AsyncClient, body: bytes) -> None:
    assert_error(await client.post("/txs", content=body), 400, mentions="JSON object")


async def test_unknown_fields_are_400(client: httpx.AsyncClient, node: FakeNode) -> None:
    error = assert_error(await client.post("/txs", content=_txs_body("YQ==", extra=1)), 400)
    assert "extra" in error
    assert node.submissions == []


@pytest.mark.parametrize(
    "body",
    [
        b"{}",
        b'{"txs": []}',
        b'{"txs": null}',
        b'{"txs": "YQ=="}',
        b'{"txs": {"0": "YQ=="}}',
        b'{"wait": "none"}',
    ],
)
async def test_empty_or_missing_txs_are_400(client: httpx.AsyncClient, body: bytes) -> None:
    assert_error(await client.post("/txs", content=body), 400, mentions='"txs"')


@pytest.mark.parametrize("tx", [1, None, True, ["YQ=="], {"tx": "YQ=="}])
async def test_a_tx_that_is_not_a_string_is_400(
    client: httpx.AsyncClient, node: FakeNode, tx: object
) -> None:
    assert_error(await client.post("/txs", content=_txs_body("YQ==", tx)), 400, mentions="txs[1]")
    assert node.submissions == []


@pytest.mark.parametrize("tx", ["!!!!", "YQ=", "Y Q==", "YQ==\n", "é", "YQ==YQ==", "=YQ="])
async def test_bad_base64_is_400(client: httpx.AsyncClient, node: FakeNode, tx: str) -> None:
    assert_error(await client.post("/txs", content=_txs_body(tx)), 400, mentions="txs[0]")
    assert node.submissions == []


@pytest.mark.parametrize("tx", ["YQ", "YR==", "YWI", "YWJ="])
async def test_non_canonical_base64_is_400(client: httpx.AsyncClient, node: FakeNode, tx: str) -> None:
    """Missing padding, or set trailing bits: other spellings of the same bytes would give one
    transaction several encodings."""
    assert_error(await client.post("/txs", content=_txs_body(tx)), 400, mentions="base64")
    assert node.submissions == []


async def test_too_many_txs_is_413(client: httpx.AsyncClient, node: FakeNode) -> None:
    body = _txs_body(*["YQ=="] * (MAX_TXS_PER_REQUEST + 1))
    assert_error(await client.post("/txs", content=body), 413, mentions=str(MAX_TXS_PER_REQUEST))
    assert node.submissions == []


async def test_oversized_body_with_content_length_is_413(client: httpx.AsyncClient, node: FakeNode) -> None:
    body = _txs_body("YQ==")
    oversized = body + b" " * (MAX_BODY_BYTES + 1 - len(body))
    assert_error(await client.post("/txs", content=oversized), 413, mentions=str(MAX_BODY_BYTES))
    # The declared length alone is enough: the body is not read.
    declared = {"Content-Length": str(MAX_BODY_BYTES + 1)}
    assert_error(await client.post("/txs", content=body, headers=declared), 413)
    assert node.submissions == []


@pytest.mark.parametrize("declared", [b"abc", b"-1", b"1e9", "\u00b2".encode("latin-1")])
async def test_a_content_length_that_is_not_a_number_is_refused(
    client: httpx.AsyncClient, node: FakeNode, declared: bytes
) -> None:
    response = await client.post("/txs", content=b"{}", headers={b"Content-Length": declared})
    assert_error(response, 413)
    assert node.submissions == []


class ChunkedBody(httpx.AsyncByteStream):
    """A request body of unknown length, counting the chunks the server pulled. A plain iterator
    rather than an async generator: the ASGI transport drops the iterator unfinished when the app
    refuses early, and an unfinished async generator would warn when collected."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks
        self.pulled = 0

    def __aiter__(self) -> ChunkedBody:
        return self

    async def __anext__(self) -> bytes:
        if self.pulled == len(self._chunks):
            raise StopAsyncIteration
        self.pulled += 1
        return self._chunks[self.pulled - 1]


async def test_oversized_chunked_body_is_413(client: httpx.AsyncClient, node: FakeNode) -> None:
    megabyte = b" " * (1024 * 1024)
    body = ChunkedBody([b'{"txs": ["YQ=="]}'] + [megabyte] * 20)
    request = httpx.Request("POST", "http://node/txs", headers={"Transfer-Encoding": "chunked"}, stream=body)
    assert "content-length" not in request.headers
    assert_error(await client.send(request), 413, mentions=str(MAX_BODY_BYTES))
    # Refused as soon as the limit was passed, not after buffering everything the client had.
    assert body.pulled == 1 + MAX_BODY_BYTES // len(megabyte)
    assert node.submissions == []


@pytest.mark.parametrize("wait", ["later", "Commit", "", None, True, 1, ["commit"]])
async def test_bad_wait_is_400(client: httpx.AsyncClient, node: FakeNode, wait: object) -> None:
    assert_error(await client.post("/txs", content=_txs_body("YQ==", wait=wait)), 400, mentions='"wait"')
    assert node.submissions == []


async def test_a_full_mempool_is_503_with_retry_after_and_the_results(
    client: httpx.AsyncClient, node: FakeNode
) -> None:
    node.mempool = [b"p", b"q"]
    response = await client.post("/txs", content=_txs_body(b64(b"fits"), b64(b"overflows")))
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    assert response.json() == {
        "results": [
            {"hash": sha256(b"fits").hex(), "status": "accepted"},
            {"hash": sha256(b"overflows").hex(), "status": "rejected", "error": "mempool full"},
        ]
    }


# --- routing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/nope", "/blocks", "/blocks/1/txs", "/tx", "/status/extra", "/events/1"]
)
async def test_unknown_path_is_404_json(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404)


async def test_kv_without_a_key_is_refused_in_json(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/kv"), 404)  # no redirect to "/kv/": an unknown path
    assert_error(await client.get("/kv/"), 400, mentions="empty key")
    assert_error(await client.get("/status/"), 404)


async def test_a_field_given_twice_is_refused(client: httpx.AsyncClient) -> None:
    body = b'{"txs": ["YQ=="], "txs": ["Yg=="]}'
    assert_error(await client.post("/txs", content=body), 400, mentions="twice")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("POST", "/status", "GET"),
        ("GET", "/txs", "POST"),
        ("PUT", "/txs", "POST"),
        ("DELETE", "/kv/colour", "GET"),
        ("POST", "/blocks/1", "GET"),
        ("PATCH", "/metrics", "GET"),
        ("POST", "/events", "GET"),
        ("POST", "/health", "GET"),
        ("PUT", "/net_info", "GET"),
        ("DELETE", "/consensus_state", "GET"),
        ("POST", "/unconfirmed_txs", "GET"),
    ],
)
async def test_wrong_method_is_405_json(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path, content=b"{}")
    assert_error(response, 405)
    assert allowed in response.headers["allow"]


# --- internal errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "broken"),
    [
        ("GET", "/status", "status"),
        ("GET", "/blocks/1", "block"),
        ("POST", "/txs", "submit"),
        ("GET", f"/tx/{'00' * 32}", "tx"),
        ("GET", "/kv/colour", "kv"),
        ("GET", "/metrics", "render_metrics"),
        ("GET", "/events", "subscribe"),
        ("GET", "/evidence", "evidence"),
        ("GET", "/health", "health"),
        ("GET", "/net_info", "net_info"),
        ("GET", "/consensus_state", "consensus_state"),
        ("GET", "/unconfirmed_txs", "unconfirmed_txs"),
    ],
)
async def test_an_exception_in_the_node_is_500_and_the_app_keeps_serving(
    client: httpx.AsyncClient, node: FakeNode, method: str, path: str, broken: str
) -> None:
    node.broken.add(broken)
    content = _txs_body("YQ==") if method == "POST" else None
    response = await client.request(method, path, content=content)
    assert response.status_code == 500
    assert response.json() == {"error": "internal error"}
    assert "Boom" not in response.text, "no internals leak to the client"
    node.broken.clear()
    assert (await client.get("/status")).status_code == 200
    if broken != "subscribe":
        assert (await client.request(method, path, content=content)).status_code in (200, 404)


# --- evidence ------------------------------------------------------------------------------------


async def test_evidence_is_newest_first_with_both_messages_in_base64(
    client: httpx.AsyncClient, node: FakeNode
) -> None:
    response = await client.get("/evidence")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    items = response.json()
    assert isinstance(items, list) and len(items) == EVIDENCE_PAGE
    assert node.evidence_asks == [(EVIDENCE_PAGE, None)]
    assert items[0] == {
        "seq": 120,
        "kind": "vote",
        "validator": 0,
        "view": 130,
        "first": b64(b"first-120"),
        "second": b64(b"second-120"),
    }
    assert [i["seq"] for i in items] == sorted((i["seq"] for i in items), reverse=True)


async def test_evidence_pages_with_limit_and_before(client: httpx.AsyncClient, node: FakeNode) -> None:
    first = (await client.get("/evidence", params={"limit": 3})).json()
    assert [i["seq"] for i in first] == [120, 119, 118]
    after = (await client.get("/evidence", params={"limit": 3, "before": first[-1]["seq"]})).json()
    assert [i["seq"] for i in after] == [117, 116, 115]
    assert (await client.get("/evidence", params={"before": 1})).json() == []
    largest = (await client.get("/evidence", params={"limit": MAX_EVIDENCE_PAGE})).json()
    assert len(largest) == MAX_EVIDENCE_PAGE


@pytest.mark.parametrize(
    "query",
    [
        f"limit={MAX_EVIDENCE_PAGE + 1}",
        "limit=0",
        "limit=-1",
        "limit=ten",
        "limit=\u00b2",
        "limit=1&limit=2",
        "before=0",
        "before=" + "9" * 19,
        "before=",
        "cursor=3",
    ],
)
async def test_bad_evidence_query_is_400(client: httpx.AsyncClient, node: FakeNode, query: str) -> None:
    assert_error(await client.get(f"/evidence?{query}"), 400)
    assert node.evidence_asks == []


# --- server-sent events --------------------------------------------------------------------------


def _block_event(height: int) -> dict[str, Any]:
    return {"height": height, "view": height + 3, "id": f"{height:064x}", "txs": 0, "tx_hashes": []}


def _parse_sse(text: str) -> Iterator[tuple[str, dict[str, str]]]:
    """(kind, fields) per SSE message: kind "comment" for lines starting with ":", else "event"."""
    for message in text.split("\n\n"):
        if not message:
            continue
        if message.startswith(":"):
            yield "comment", {"text": message[1:].strip()}
            continue
        fields = {}
        for line in message.split("\n"):
            name, _, value = line.partition(": ")
            fields[name] = value
        yield "event", fields


async def _wait_until(condition: Callable[[], bool]) -> None:
    """Let other tasks run until `condition` holds (bounded by the caller's deadline)."""
    while not condition():
        await trio.sleep(0)


async def test_events_stream_committed_blocks_and_end_at_once_when_dropped(
    client: httpx.AsyncClient, node: FakeNode
) -> None:
    """httpx's ASGI transport hands over a response only once the app finishes it, so the stream
    is ended the way the node ends it: this subscriber lags and is dropped. What it was sent until
    then arrives in order, the first block first; what was still buffered is discarded (the
    stream ends at once rather than drain a buffer for a client that is not keeping up)."""
    received: list[str] = []

    async def listen() -> None:
        async with client.stream("GET", "/events") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"] == "no-cache"
            received.append((await response.aread()).decode())

    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(listen)
            await _wait_until(lambda: len(node.feed) == 1)
            node.feed.publish(_block_event(1))
            await trio.testing.wait_all_tasks_blocked()  # the stream sends block 1
            published = 1
            # Publish without yielding until the subscriber is dropped: at most the buffer, plus
            # the one that overflows.
            while len(node.feed) == 1 and published < FEED_BUFFER_BLOCKS + 3:
                published += 1
                node.feed.publish(_block_event(published))
            assert len(node.feed) == 0, "the lagging stream was dropped"
    (text,) = received
    messages = list(_parse_sse(text))
    assert messages[0] == ("comment", {"text": "committed blocks from now on"})
    events = [fields for kind, fields in messages[1:] if kind == "event"]
    assert events, "the first block arrived"
    first = events[0]
    assert first["event"] == "block"
    assert first["id"] == "1"
    assert json.loads(first["data"]) == _block_event(1)
    # In order, no gaps, and none of the events buffered when it was dropped.
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    assert len(events) < published - FEED_BUFFER_BLOCKS + 1
    assert all(kind == "event" for kind, _ in messages[1:])


async def test_events_are_sent_as_they_happen_then_keepalives_and_end_on_disconnect(
    node: FakeNode, autojump_clock: trio.testing.MockClock
) -> None:
    """Drives the ASGI app directly (httpx's transport buffers whole responses) to see each event
    leave before the stream ends, a keepalive when idle, and the subscriber released when the
    client goes away."""
    app: Starlette = make_app(node)
    sent_send, sent_receive = trio.open_memory_channel[Message](64)
    disconnected = trio.Event()
    request_read = False

    async def receive() -> Message:
        nonlocal request_read
        if not request_read:
            request_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent_send.send_nowait(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/events",
        "raw_path": b"/events",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"node"), (b"accept", b"text/event-stream")],
        "server": ("node", 80),
        "client": ("127.0.0.1", 1234),
    }

    async def next_body() -> str:
        message = await sent_receive.receive()
        assert message["type"] == "http.response.body"
        assert message.get("more_body") is True, "the stream stays open"
        return bytes(message["body"]).decode()

    with trio.fail_after(EVENTS_KEEPALIVE_S * 10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(app, scope, receive, send)
            start = await sent_receive.receive()
            assert start["type"] == "http.response.start"
            assert start["status"] == 200
            assert await next_body() == ": committed blocks from now on\n\n"
            assert len(node.feed) == 1

            node.feed.publish(_block_event(1))
            begun = trio.current_time()
            body = await next_body()
            assert trio.current_time() == begun, "the event left at once, not at the next keepalive"
            assert body == f"event: block\nid: 1\ndata: {json.dumps(_block_event(1))}\n\n"

            assert await next_body() == ": keepalive\n\n"
            assert trio.current_time() - begun == pytest.approx(EVENTS_KEEPALIVE_S)

            node.feed.publish(_block_event(2))
            assert (await next_body()).startswith("event: block\nid: 2\n")

            disconnected.set()
    # The app returned on disconnect (the nursery closed), and the stream's channel is closed, so
    # the next publish forgets the subscriber.
    node.feed.publish(_block_event(3))
    assert len(node.feed) == 0


async def test_events_refused_when_the_feed_is_at_its_bound(node: FakeNode) -> None:
    node.feed = CommitFeed(max_subscribers=1)
    held = node.feed.subscribe()
    transport = httpx.ASGITransport(app=make_app(node))
    async with httpx.AsyncClient(transport=transport, base_url="http://node") as client:
        assert_error(await client.get("/events"), 503, mentions="subscribers")
        assert len(node.feed) == 1
        # Once a place is free again, the refusal is lifted (the stream itself is tested above).
        held.close()
        node.feed.publish(_block_event(1))
        assert len(node.feed) == 0
        assert (await client.get("/status")).status_code == 200


# --- operator endpoints --------------------------------------------------------------------------


async def test_health_is_200_while_healthy_with_the_numbers_it_was_judged_on(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {
        "healthy": True,
        "reason": None,
        "validators": 4,
        "quorum": 3,
        "connected_validators": 4,
        "height": 9,
        "last_commit_age_s": 0.1,
        "commit_window_s": 5.0,
    }


@pytest.mark.parametrize(
    ("connected_peers", "age_s", "reason"),
    [
        (1, 0.1, "connected to 2 of 4 validators, a quorum is 3"),
        (3, 12.34, "no commit for 12.3 s (at most 5.0 s)"),
        (0, 7.0, "connected to 1 of 4 validators, a quorum is 3; no commit for 7.0 s (at most 5.0 s)"),
    ],
)
async def test_health_is_503_with_the_reason_when_not_healthy(
    client: httpx.AsyncClient, node: FakeNode, connected_peers: int, age_s: float, reason: str
) -> None:
    node.health_now = assess_health(connected_peers=connected_peers, last_commit_age_s=age_s, **HEALTH_ARGS)
    response = await client.get("/health")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert (body["healthy"], body["reason"]) == (False, reason)
    assert body["connected_validators"] == connected_peers + 1


async def test_net_info_lists_where_it_listens_and_every_peer(client: httpx.AsyncClient) -> None:
    response = await client.get("/net_info")
    assert response.status_code == 200
    body = response.json()
    assert body["listening"] == ["127.0.0.1:26600", "http://127.0.0.1:26601"]
    assert body["n_peers"] == 1
    connected, away = body["peers"]
    assert connected == {
        "index": 1,
        "address": "127.0.0.1:26602",
        "connected": True,
        "dialed_by": "us",
        "remote": "127.0.0.1:26602",
        "connected_for_s": 12.5,
        "bytes_sent": 1000,
        "bytes_received": 2000,
        "frames_dropped": 6,
        "dropped": {"outgoing_full": 1, "outgoing_expired": 2, "incoming": 3},
        "queued_frames": 4,
        "queued_bytes": 400,
    }
    assert (away["index"], away["connected"], away["dialed_by"], away["connected_for_s"]) == (
        2,
        False,
        None,
        None,
    )


async def test_consensus_state_shows_view_certificates_timeouts_and_leaders(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/consensus_state")
    assert response.status_code == 200
    assert response.json() == {
        "view": 12,
        "time_in_view_s": 0.25,
        "next_deadline_in_s": 0.75,
        "leader": 3,
        "upcoming_leaders": [{"view": 13, "leader": 3}, {"view": 14, "leader": 0}, {"view": 15, "leader": 0}],
        "height": 8,
        "high_qc": {"view": 11, "block_id": "11" * 32},
        "locked_qc": {"view": 10, "block_id": "10" * 32},
        "last_voted_view": 11,
        "last_tc": {"view": 9, "high_qc": {"view": 8, "block_id": "08" * 32}, "signers": [0, 1, 3]},
        "timeouts": {"seen": [0, 2], "count": 2, "sent": 1, "quorum": 3},
    }


async def test_unconfirmed_txs_counts_and_lists_the_first_hashes(
    client: httpx.AsyncClient, node: FakeNode
) -> None:
    body = (await client.get("/unconfirmed_txs")).json()
    assert body["count"] == 150
    assert body["total_bytes"] == sum(map(len, node.pending))
    assert body["hashes"] == [sha256(tx).hex() for tx in node.pending[:UNCONFIRMED_PAGE]]
    assert len((await client.get("/unconfirmed_txs", params={"limit": 2})).json()["hashes"]) == 2
    assert (await client.get("/unconfirmed_txs", params={"limit": 0})).json()["hashes"] == []
    largest = (await client.get("/unconfirmed_txs", params={"limit": MAX_UNCONFIRMED_PAGE})).json()
    assert len(largest["hashes"]) == MAX_UNCONFIRMED_PAGE
    assert node.unconfirmed_asks == [UNCONFIRMED_PAGE, 2, 0, MAX_UNCONFIRMED_PAGE]


@pytest.mark.parametrize(
    "query",
    [
        f"limit={MAX_UNCONFIRMED_PAGE + 1}",
        "limit=-1",
        "limit=ten",
        "limit=",
        "limit=1.5",
        "limit=\u00b2",
        "limit=1&limit=2",
        "limit=" + "9" * 19,
        "page=2",
    ],
)
async def test_bad_unconfirmed_txs_query_is_400(
    client: httpx.AsyncClient, node: FakeNode, query: str
) -> None:
    assert_error(await client.get(f"/unconfirmed_txs?{query}"), 400)
    assert node.unconfirmed_asks == []
