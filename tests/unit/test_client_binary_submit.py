"""The client's binary submissions (`Client(..., binary=True)`, `AsyncClient` alike): the body it
sends is one the node's own parser (`bft.node.api.parse_binary_submission`) reads back to the same
transactions and the same wait, for `submit` and the ledger's `put`, `delete` and `cas`; the
default stays the JSON body, unchanged. And `bft bench`, which submits in the binary body unless
told `--json-body`, and says which in its report.
"""

from __future__ import annotations

import argparse
import contextlib
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException

from bft import client as client_module
from bft.app.kv import cas_tx, del_tx, put_tx
from bft.bench import add_command
from bft.bench.load import default_kit
from bft.bench.options import options_from_args
from bft.bench.report import BenchReport, report_table
from bft.bench.stats import Tally
from bft.client import AsyncClient, Client, RequestRefused, SubmitResult, tx_hash
from bft.node.api import MAX_TXS_PER_REQUEST, parse_binary_submission, parse_submission
from bft.txframe import BINARY_MEDIA_TYPE

URL = "http://node.test:26601"


class ParsingNode:
    """Answers `POST /txs` as the node does: the body parsed by the node's parser for its
    Content-Type, one result per transaction (committed at height 4 when asked to wait). Records
    what each request carried: (body kind, transactions, wait for commit)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.parsed: list[tuple[str, list[bytes], bool]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if (request.method, request.url.path) != ("POST", "/txs"):
            return httpx.Response(404, json={"error": "not found"})
        binary = request.headers.get("content-type") == BINARY_MEDIA_TYPE
        try:
            if binary:
                txs, wait_commit = parse_binary_submission(request.content, QueryParams(request.url.query))
            else:
                txs, wait_commit = parse_submission(request.content)
        except HTTPException as exc:
            return httpx.Response(exc.status_code, json={"error": exc.detail})
        self.parsed.append(("binary" if binary else "json", txs, wait_commit))
        status = {"status": "committed", "height": 4} if wait_commit else {"status": "accepted"}
        return httpx.Response(200, json={"results": [{"hash": tx_hash(tx), **status} for tx in txs]})

    def client(self, *, binary: bool) -> Client:
        return Client(URL, binary=binary, transport=httpx.MockTransport(self.handle))

    def async_client(self, *, binary: bool) -> AsyncClient:
        return AsyncClient(URL, binary=binary, transport=httpx.MockTransport(self.handle))


@pytest.fixture
def node() -> ParsingNode:
    return ParsingNode()


TXS = [b"one", b"", b"\x00\x00\x00\x05 looks like a length", b"\xff" * 1000]


def test_a_binary_submission_parses_back_to_the_same_transactions(node: ParsingNode) -> None:
    with node.client(binary=True) as client:
        results = client.submit(TXS)
    assert node.parsed == [("binary", TXS, False)]
    (request,) = node.requests
    assert request.headers["content-type"] == BINARY_MEDIA_TYPE
    assert (request.url.path, request.url.query) == ("/txs", b"wait=none")
    assert results == [SubmitResult(tx_hash(tx), "accepted") for tx in TXS]


def test_a_binary_submission_waits_for_commit_through_the_query_string(node: ParsingNode) -> None:
    with node.client(binary=True) as client:
        results = client.submit(TXS, wait="commit")
    assert node.parsed == [("binary", TXS, True)]
    assert node.requests[0].url.query == b"wait=commit"
    assert [(r.status, r.height) for r in results] == [("committed", 4)] * len(TXS)


def test_the_ledgers_operations_go_in_the_binary_body_too(node: ParsingNode) -> None:
    with node.client(binary=True) as client:
        client.put("k", "v", nonce=1)
        client.delete("k", wait="none")
        client.cas("k", None, "w")
    assert node.parsed == [
        ("binary", [put_tx("k", "v", 1)], True),
        ("binary", [del_tx("k")], False),
        ("binary", [cas_tx("k", None, "w")], True),
    ]


def test_the_default_is_the_json_body_as_before(node: ParsingNode) -> None:
    with node.client(binary=False) as client:
        client.submit(TXS)
    with Client(URL, transport=httpx.MockTransport(node.handle)) as client:
        client.submit(TXS, wait="commit")
    assert node.parsed == [("json", TXS, False), ("json", TXS, True)]
    assert all(r.url.query == b"" and r.headers["content-type"] == "application/json" for r in node.requests)


def test_what_the_client_refuses_it_refuses_before_sending_whatever_the_body(node: ParsingNode) -> None:
    with node.client(binary=True) as client:
        with pytest.raises(ValueError, match="no transactions"):
            client.submit([])
        with pytest.raises(ValueError, match="wait must be"):
            client.submit([b"a"], wait="later")
        with pytest.raises(TypeError, match="bytes"):
            client.submit(["text"])  # type: ignore[list-item]
    assert node.requests == []


def test_a_node_refusing_the_binary_body_raises_request_refused() -> None:
    # As a node from before the binary body would: it reads the bytes as JSON.
    def refuse(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"error": "body is not valid JSON"})

    with (
        Client(URL, binary=True, transport=httpx.MockTransport(refuse)) as client,
        pytest.raises(RequestRefused) as info,
    ):
        client.submit([b"a"])
    assert info.value.status_code == 400 and "JSON" in info.value.message


async def test_the_async_client_submits_the_same_binary_body(node: ParsingNode) -> None:
    async with node.async_client(binary=True) as client:
        results = await client.submit(TXS, wait="commit")
        await client.put("k", "v")
    assert node.parsed == [("binary", TXS, True), ("binary", [put_tx("k", "v")], True)]
    assert [r.committed for r in results] == [True] * len(TXS)
    with Client(URL, binary=True, transport=httpx.MockTransport(node.handle)) as blocking:
        blocking.submit(TXS, wait="commit")
    assert node.requests[0].content == node.requests[2].content


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=40), st.sampled_from(["none", "commit"]))
def test_any_transactions_parse_back_from_the_clients_binary_body(txs: list[bytes], wait: str) -> None:
    node = ParsingNode()
    with node.client(binary=True) as client:
        results = client.submit(txs, wait=wait)
    assert node.parsed == [("binary", txs, wait == "commit")]
    assert [r.hash for r in results] == [tx_hash(tx) for tx in txs]


def test_the_most_transactions_parse_back(node: ParsingNode) -> None:
    txs = [i.to_bytes(4, "big") * 64 for i in range(MAX_TXS_PER_REQUEST)]
    with node.client(binary=True) as client:
        results = client.submit(txs)
    assert node.parsed == [("binary", txs, False)]
    assert len(results) == MAX_TXS_PER_REQUEST


# --- bft bench: the binary body by default, --json-body for the JSON one ---------------------------


def _bench_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bft")
    add_command(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["bench", *argv])


def test_the_bench_submits_in_the_binary_body_unless_told_json_body() -> None:
    binary = options_from_args(_bench_args())
    as_json = options_from_args(_bench_args("--json-body", "--json"))
    assert (binary.json_body, binary.body) == (False, "binary")
    assert (as_json.json_body, as_json.body, as_json.json) == (True, "json", True)
    for opts in (binary, as_json):
        report = BenchReport(opts, Tally(), [])
        assert report.to_json()["body"] == opts.body
        assert report_table(report).row_count > 0


def test_the_bench_kit_opens_clients_with_the_body_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[tuple[str, bool]] = []

    def recording(url: str, *, binary: bool, **kwargs: Any) -> AbstractAsyncContextManager[None]:
        opened.append((url, binary))
        return contextlib.nullcontext()

    monkeypatch.setattr(client_module, "AsyncClient", recording)
    default_kit().open(URL)
    default_kit(binary=False).open(URL)
    assert opened == [(URL, True), (URL, False)]
