"""The binary body of `POST /txs` (`Content-Type: application/octet-stream`, the framing of
`bft.txframe`, `wait` in the query string), beside the JSON one: served by the real app
(`bft.node.api.make_app`, in process), over the real node's submission path (`Node.submit`: its
mempool and the key-value ledger's check) where what counts is what gets admitted, and over the
in-memory `FakeNode` of `test_node_api` where what counts is what reaches the node.

The binary body admits exactly what the JSON body admits for the same transactions (same status
codes and results, byte for byte), at volume too; a zero-length transaction is passed on and
rejected by the mempool, as an empty base64 string is; malformed framings, bad query strings and
too many transactions are refused with a JSON 400 or 413 before anything reaches the node; and no
body or query string makes the parser raise anything but those refusals.
"""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from test_node_api import FakeNode, assert_error

from bft.bench.txs import build_tx
from bft.core.wire import MAX_TX_SIZE_BYTES
from bft.node.api import MAX_BODY_BYTES, MAX_TXS_PER_REQUEST, RETRY_AFTER_S, make_app, parse_binary_submission
from bft.node.api_json import b64
from bft.node.compose import open_ports
from bft.node.runtime import Node
from bft.node.testnet import write_testnet
from bft.txframe import BINARY_MEDIA_TYPE, LENGTH_PREFIX_BYTES, decode_binary_txs, encode_binary_txs
from crypto.hashing import sha256

URL = "http://node"
BINARY = {"content-type": BINARY_MEDIA_TYPE}
RUN = "0123abcd"


def _put(i: int) -> bytes:
    return json.dumps({"op": "put", "key": f"k-{i}", "value": "v"}).encode()


def _frame(length: int, data: bytes = b"") -> bytes:
    """One length prefix saying `length`, then `data` (which need not be that long)."""
    return struct.pack(">I", length) + data


def _json_body(txs: Sequence[bytes], wait: str = "none") -> bytes:
    return json.dumps({"txs": [b64(tx) for tx in txs], "wait": wait}).encode()


# --- fixtures --------------------------------------------------------------------------------------


def _open_node(home: Path, port: int) -> Node:
    """A node whose submissions go through its real mempool and application check (no network)."""
    node = Node(write_testnet(4, home, port)[0])
    node._start_program(open_ports(node.safety_store, node.blocks, node.executor, node.mempool, node.batches))
    return node


@pytest.fixture
async def twin_nodes(tmp_path: Path) -> AsyncIterator[tuple[Node, Node]]:
    """Two fresh, identical nodes: one takes the JSON body, the other the binary one (a node
    reads trio's clock as it starts: built in the test's run)."""
    nodes = (_open_node(tmp_path / "json", 29900), _open_node(tmp_path / "binary", 29920))
    yield nodes
    for node in nodes:
        node.blocks.close()


@pytest.fixture
def fake() -> FakeNode:
    return FakeNode()


@pytest.fixture
async def client(fake: FakeNode) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=make_app(fake), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=URL) as c:
        yield c


def _http(node: Node) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=make_app(node)), base_url=URL)


async def _both(nodes: tuple[Node, Node], txs: Sequence[bytes]) -> tuple[httpx.Response, httpx.Response]:
    """`txs` submitted to the first node in the JSON body, to the second in the binary one."""
    async with _http(nodes[0]) as as_json, _http(nodes[1]) as as_binary:
        by_json = await as_json.post("/txs", content=_json_body(txs))
        by_binary = await as_binary.post("/txs", content=encode_binary_txs(txs), headers=BINARY)
    return by_json, by_binary


def _assert_same_answer(by_json: httpx.Response, by_binary: httpx.Response, txs: Sequence[bytes]) -> None:
    assert by_binary.status_code == by_json.status_code
    assert by_binary.headers["content-type"] == by_json.headers["content-type"] == "application/json"
    assert by_binary.content == by_json.content
    results = by_binary.json()["results"]
    assert [r["hash"] for r in results] == [sha256(tx).hex() for tx in txs]


# --- the same admissions as the JSON body ----------------------------------------------------------


async def test_the_binary_body_admits_what_the_json_body_admits(twin_nodes: tuple[Node, Node]) -> None:
    txs = [
        _put(1),
        b"",  # zero-length: the mempool rejects it, whichever body carried it
        _put(2),
        _put(1),  # the same bytes again: one transaction
        b"\x00\xff not a ledger transaction",  # refused by the application's check
        b"x" * (MAX_TX_SIZE_BYTES + 1),  # larger than a transaction may be
        _put(3),
    ]
    by_json, by_binary = await _both(twin_nodes, txs)
    _assert_same_answer(by_json, by_binary, txs)
    statuses = [r["status"] for r in by_binary.json()["results"]]
    assert statuses == ["accepted", "rejected", "accepted", "accepted", "rejected", "rejected", "accepted"]
    assert [len(node.mempool) for node in twin_nodes] == [3, 3]


async def test_a_zero_length_transaction_is_rejected_as_an_empty_base64_one_is(
    twin_nodes: tuple[Node, Node],
) -> None:
    by_json, by_binary = await _both(twin_nodes, [b""])
    _assert_same_answer(by_json, by_binary, [b""])
    assert by_binary.status_code == 200
    assert by_binary.json() == {
        "results": [{"hash": sha256(b"").hex(), "status": "rejected", "error": "empty transaction"}]
    }


async def test_the_most_transactions_of_256_bytes_are_admitted_alike(twin_nodes: tuple[Node, Node]) -> None:
    txs = [build_tx(RUN, 0, seq, 256) for seq in range(MAX_TXS_PER_REQUEST)]
    by_json, by_binary = await _both(twin_nodes, txs)
    _assert_same_answer(by_json, by_binary, txs)
    assert by_binary.status_code == 200
    assert {r["status"] for r in by_binary.json()["results"]} == {"accepted"}
    assert [len(node.mempool) for node in twin_nodes] == [MAX_TXS_PER_REQUEST] * 2


async def test_a_body_near_the_limit_admits_what_the_json_body_admits_in_two(
    twin_nodes: tuple[Node, Node],
) -> None:
    """The most transactions, as large as fits one binary body: in base64 they need two JSON
    requests (one is over the limit), and the two answers together are the binary one."""
    size = MAX_BODY_BYTES // MAX_TXS_PER_REQUEST - LENGTH_PREFIX_BYTES
    txs = [build_tx(RUN, 1, seq, size) for seq in range(MAX_TXS_PER_REQUEST)]
    body = encode_binary_txs(txs)
    assert MAX_BODY_BYTES - len(body) < MAX_TXS_PER_REQUEST
    half = MAX_TXS_PER_REQUEST // 2
    async with _http(twin_nodes[0]) as as_json, _http(twin_nodes[1]) as as_binary:
        assert_error(await as_json.post("/txs", content=_json_body(txs)), 413, mentions="body larger")
        first = await as_json.post("/txs", content=_json_body(txs[:half]))
        second = await as_json.post("/txs", content=_json_body(txs[half:]))
        by_binary = await as_binary.post("/txs", content=body, headers=BINARY)
    assert first.status_code == second.status_code == by_binary.status_code == 200
    assert by_binary.json()["results"] == first.json()["results"] + second.json()["results"]
    assert {r["status"] for r in by_binary.json()["results"]} == {"accepted"}


async def test_a_body_of_exactly_the_limit_is_taken_and_one_byte_more_is_413(
    client: httpx.AsyncClient, fake: FakeNode
) -> None:
    tx = b"t" * (MAX_BODY_BYTES - LENGTH_PREFIX_BYTES)
    response = await client.post("/txs", content=encode_binary_txs([tx]), headers=BINARY)
    assert response.status_code == 200
    assert fake.submissions == [([tx], False)]
    over = encode_binary_txs([tx + b"t"])
    assert_error(await client.post("/txs", content=over, headers=BINARY), 413, mentions=str(MAX_BODY_BYTES))
    assert len(fake.submissions) == 1


# --- wait, and which body a request has ------------------------------------------------------------


async def test_wait_commit_in_the_query_string_waits_for_commit(
    client: httpx.AsyncClient, fake: FakeNode
) -> None:
    body = encode_binary_txs([b"x"])
    response = await client.post("/txs?wait=commit", content=body, headers=BINARY)
    assert response.status_code == 200
    assert response.json() == {"results": [{"hash": sha256(b"x").hex(), "status": "committed", "height": 2}]}
    await client.post("/txs?wait=none", content=encode_binary_txs([b"y"]), headers=BINARY)
    await client.post("/txs", content=encode_binary_txs([b"z"]), headers=BINARY)
    assert fake.submissions == [([b"x"], True), ([b"y"], False), ([b"z"], False)]


@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream", "Application/Octet-Stream", "application/octet-stream; charset=binary"],
)
async def test_the_binary_media_type_picks_the_binary_body(
    client: httpx.AsyncClient, fake: FakeNode, content_type: str
) -> None:
    body = encode_binary_txs([b"one", b"two"])
    response = await client.post("/txs", content=body, headers={"content-type": content_type})
    assert response.status_code == 200
    assert fake.submissions == [([b"one", b"two"], False)]


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain", "application/octets"])
async def test_any_other_content_type_keeps_the_json_body(
    client: httpx.AsyncClient, fake: FakeNode, content_type: str | None
) -> None:
    headers = {} if content_type is None else {"content-type": content_type}
    binary = encode_binary_txs([b"one"])
    assert_error(await client.post("/txs", content=binary, headers=headers), 400, mentions="JSON")
    # Its query string is not read, as before the binary body existed.
    response = await client.post("/txs?wait=commit", content=_json_body([b"one"]), headers=headers)
    assert response.status_code == 200
    assert fake.submissions == [([b"one"], False)]


async def test_a_full_mempool_is_503_with_retry_after_and_the_results(
    client: httpx.AsyncClient, fake: FakeNode
) -> None:
    fake.mempool = [b"p", b"q"]
    response = await client.post("/txs", content=encode_binary_txs([b"fits", b"overflows"]), headers=BINARY)
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "rejected"]


# --- refusals --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        (b"", "empty"),
        (b"\x00", "truncated length prefix at offset 0: 1 of 4"),
        (b"\x00\x00", "truncated length prefix at offset 0: 2 of 4"),
        (b"\x00\x00\x00", "truncated length prefix at offset 0: 3 of 4"),
        (_frame(3, b"abc") + b"\x00\x00", "truncated length prefix at offset 7: 2 of 4"),
        (_frame(4, b"abc"), "offset 0 declares 4 bytes, but only 3 follow"),
        (_frame(1, b"a") + _frame(2**32 - 1, b"b"), "transaction 1 at offset 5 declares 4294967295 bytes"),
        (_frame(0) + _frame(8), "transaction 1 at offset 4 declares 8 bytes, but only 0 follow"),
    ],
    ids=["empty", "prefix-1", "prefix-2", "prefix-3", "prefix-after-a-tx", "short", "huge", "after-empty"],
)
async def test_a_malformed_binary_body_is_400_naming_the_offset(
    client: httpx.AsyncClient, fake: FakeNode, body: bytes, mentions: str
) -> None:
    assert_error(await client.post("/txs", content=body, headers=BINARY), 400, mentions=mentions)
    assert fake.submissions == []


@pytest.mark.parametrize("size", [0, 1])
async def test_one_transaction_too_many_is_413(client: httpx.AsyncClient, fake: FakeNode, size: int) -> None:
    body = encode_binary_txs([b"t" * size] * (MAX_TXS_PER_REQUEST + 1))
    response = await client.post("/txs", content=body, headers=BINARY)
    assert_error(response, 413, mentions=f"more than {MAX_TXS_PER_REQUEST} transactions")
    most = encode_binary_txs([b"t" * size] * MAX_TXS_PER_REQUEST)
    fake.mempool = []
    response = await client.post("/txs", content=most, headers=BINARY)
    assert response.status_code == 503  # the fake's mempool is tiny; what matters is it got them all
    assert [len(txs) for txs, _ in fake.submissions] == [MAX_TXS_PER_REQUEST]


@pytest.mark.parametrize(
    ("query", "mentions"),
    [
        ("wait=later", "'later'"),
        ("wait=Commit", "'Commit'"),
        ("wait=", "''"),
        ("wait", "''"),
        ("wait=commit&wait=none", "2 times"),
        ("wait=none&wait=none", "2 times"),
        ("Wait=commit", "unknown query parameters: ['Wait']"),
        ("txs=1", "unknown query parameters: ['txs']"),
        ("wait=commit&extra=1", "['extra']"),
        ("wait=%FF", "not '\ufffd'"),  # not UTF-8: read, and refused, all the same
    ],
)
async def test_a_bad_query_string_is_400(
    client: httpx.AsyncClient, fake: FakeNode, query: str, mentions: str
) -> None:
    response = await client.post(f"/txs?{query}", content=encode_binary_txs([b"x"]), headers=BINARY)
    assert_error(response, 400, mentions=mentions)
    assert fake.submissions == []


# --- properties ------------------------------------------------------------------------------------

_TXS = st.lists(st.binary(max_size=300), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_TXS)
def test_decoding_an_encoding_gives_the_transactions_back(txs: list[bytes]) -> None:
    body = encode_binary_txs(txs)
    assert len(body) == sum(map(len, txs)) + LENGTH_PREFIX_BYTES * len(txs)
    assert decode_binary_txs(body, MAX_TXS_PER_REQUEST) == txs
    if txs:
        assert parse_binary_submission(body, QueryParams("wait=commit")) == (txs, True)


def _framings() -> st.SearchStrategy[bytes]:
    """Bodies near valid framings (some valid, most cut, padded or with a wrong length), and noise."""
    cut = st.tuples(_TXS, st.integers(-8, 8), st.binary(max_size=8)).map(
        lambda t: encode_binary_txs(t[0])[: max(0, len(encode_binary_txs(t[0])) + t[1])] + t[2]
    )
    return st.one_of(st.binary(max_size=400), cut)


_QUERIES = st.one_of(
    st.sampled_from(["", "wait=none", "wait=commit", "wait=x", "wait", "a=1", "wait=none&wait=commit"]),
    st.text(max_size=30),
)


@settings(max_examples=500, deadline=None)
@given(_framings(), _QUERIES)
def test_no_body_or_query_makes_the_parser_raise_anything_but_a_refusal(body: bytes, query: str) -> None:
    try:
        txs, wait_commit = parse_binary_submission(body, QueryParams(query))
    except HTTPException as exc:
        assert exc.status_code in (400, 413), exc
        assert isinstance(exc.detail, str) and exc.detail
        return
    # Taken: the framing is canonical (one body per list of transactions) and within the limits.
    assert 1 <= len(txs) <= MAX_TXS_PER_REQUEST
    assert encode_binary_txs(txs) == body
    assert wait_commit == (QueryParams(query).get("wait") == "commit")
