"""The HTTP API's server (`bft.node.api_server.ApiServer`) on 127.0.0.1, port 0, with real
hypercorn and raw sockets playing slow, silent, greedy and rude clients: a request head or body
that does not arrive in time is cut (408), an answer nobody reads is cut by the send deadline,
idle keep-alive connections are closed, connections beyond the cap are refused at once (503) and
counted, a dropped event subscriber's connection is closed, HTTP/2 is not served, 300 unread
multi-megabyte answers stay within the answer budget, every refusal is logged at INFO and a client
that hangs up is not an error.

Real sockets, so no virtual clock: deadlines are made small through `ApiSettings`, and every wait
is bounded by `trio.fail_after` and every loop by a count.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing
from core_helpers import GENESIS_BLOCK, make_block, make_qc, qc_for
from prometheus_client import CollectorRegistry
from test_node_api import FakeNode

from bft.core.messages import Block
from bft.node.api import AnswerBudget, make_app
from bft.node.api_json import block_json
from bft.node.api_server import SEND_SLICE_BYTES, ApiServer, connection_limit
from bft.node.commits import FEED_BUFFER_BLOCKS
from bft.node.config import ApiSettings

LOCALHOST = "127.0.0.1"
# Deadlines of the server under test: small, so that the tests are quick, and far apart, so that
# which one fired is never in doubt.
HEAD_S = 0.5
BODY_S = 1.5
SEND_S = 0.5
KEEP_ALIVE_S = 1.0
TEST_DEADLINE_S = 20.0
MIB = 1024 * 1024

SETTINGS = ApiSettings(
    header_timeout_s=HEAD_S,
    body_timeout_s=BODY_S,
    send_timeout_s=SEND_S,
    keep_alive_timeout_s=KEEP_ALIVE_S,
    max_connections=64,
    max_answer_bytes_in_flight=64 * MIB,
)

# A real block with several megabytes of transactions (random: nothing compresses them).
BIG_TX_BYTES = 1024 * 1024 - 64
BIG_BLOCK: Block = make_block(GENESIS_BLOCK, 1, txs=tuple(os.urandom(BIG_TX_BYTES) for _ in range(4)))


class BigBlocks(FakeNode):
    """A NodeView whose block 1 is BIG_BLOCK, as the runtime writes it (`block_json`)."""

    def block(self, height: int) -> dict[str, Any] | None:
        self._enter("block")
        if height != 1:
            return None
        return block_json(BIG_BLOCK, qc_for(BIG_BLOCK), make_qc(BIG_BLOCK.id, BIG_BLOCK.view + 2))


class Served:
    """A server under test, and the client connections opened to it (closed with it)."""

    def __init__(self, server: ApiServer, port: int, registry: CollectorRegistry, budget: AnswerBudget):
        self.server = server
        self.port = port
        self.registry = registry
        self.budget = budget
        self.clients: list[trio.SocketStream] = []

    async def connect(self, receive_buffer_bytes: int | None = None) -> trio.SocketStream:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer_bytes is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        stream = trio.SocketStream(sock)
        self.clients.append(stream)
        await sock.connect((LOCALHOST, self.port))
        return stream

    def metric(self, name: str, **labels: str) -> float:
        value = self.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


@asynccontextmanager
async def serving(view: FakeNode, settings: ApiSettings = SETTINGS) -> AsyncIterator[Served]:
    registry = CollectorRegistry()
    budget = AnswerBudget(settings.max_answer_bytes_in_flight)
    app = make_app(view, body_timeout_s=settings.body_timeout_s, budget=budget)
    server = ApiServer(app, settings, registry)
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(server.run, f"{LOCALHOST}:0")
        assert len(urls) == 1 and urls[0].startswith(f"http://{LOCALHOST}:")
        served = Served(server, int(urls[0].rsplit(":", 1)[1]), registry, budget)
        try:
            yield served
        finally:
            for stream in served.clients:
                stream.socket.close()
            nursery.cancel_scope.cancel()


async def read_all(stream: trio.SocketStream, max_reads: int = 100_000) -> bytes:
    """Everything until the server closes (EOF or reset); bounded by the caller's deadline."""
    data = bytearray()
    for _ in range(max_reads):
        try:
            chunk = await stream.receive_some(SEND_SLICE_BYTES)
        except trio.BrokenResourceError:
            break
        if not chunk:
            break
        data += chunk
    else:
        raise AssertionError("the server never closed the connection")
    return bytes(data)


async def read_response(stream: trio.SocketStream, max_reads: int = 100_000) -> bytes:
    """One whole response with a content-length (its head arrives apart from its body)."""
    data = bytearray()
    for _ in range(max_reads):
        head, found, body = bytes(data).partition(b"\r\n\r\n")
        if found:
            length = parse(bytes(data))[1].get("content-length")
            assert length is not None, head
            if len(body) >= int(length):
                return bytes(data)
        chunk = await stream.receive_some(SEND_SLICE_BYTES)
        assert chunk, f"the connection closed after {bytes(data)[:300]!r}"
        data += chunk
    raise AssertionError("no whole response")


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of the first response in `raw`."""
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status, *_ = status_line.split(" ")
    assert version == "HTTP/1.1", status_line
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", len(body)))
    return int(status), headers, body[:length]


def error_of(raw: bytes, status: int) -> str:
    got, headers, body = parse(raw)
    assert got == status, raw[:300]
    assert headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert isinstance(doc, dict) and isinstance(doc["error"], str) and doc["error"]
    return str(doc["error"])


def reset(stream: trio.SocketStream) -> None:
    """Close with SO_LINGER 0: the kernel sends a reset, as a crashed client's would."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    stream.socket.close()


async def wait_for(condition: Callable[[], bool], max_polls: int = 2000) -> None:
    for _ in range(max_polls):
        if condition():
            return
        await trio.sleep(0.01)
    raise AssertionError("condition not met")


def _subscribed(view: FakeNode, count: int) -> bool:
    return view.calls.count("subscribe") == count


def refusal_lines(caplog: pytest.LogCaptureFixture, **fields: object) -> list[logging.LogRecord]:
    wanted = [f"{k}={v}" for k, v in fields.items()]
    return [r for r in caplog.records if all(w in r.getMessage().split(" ") for w in wanted)]


GET_STATUS = b"GET /status HTTP/1.1\r\nHost: node\r\n\r\n"


@pytest.fixture
def node() -> FakeNode:
    return FakeNode()


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="bft")


# --- request head and keep-alive -----------------------------------------------------------------


async def test_a_request_head_that_stalls_gets_a_408_and_is_closed(
    node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            await stream.send_all(b"GET /status HTTP/1.1\r\nHo")
            begun = trio.current_time()
            raw = await read_all(stream)
            took = trio.current_time() - begun
            assert "request head not received within" in error_of(raw, 408)
            assert took >= HEAD_S * 0.9, "not before its deadline (the metric says which one fired)"
            assert served.metric("bft_api_timeouts_total", phase="head") == 1
            assert served.metric("bft_api_responses_total", status="408") == 1
            await wait_for(lambda: served.server.open_connections == 0)
    (line,) = refusal_lines(caplog, event="request_refused", status=408)
    assert line.levelno == logging.INFO
    assert "client=127.0.0.1" in line.getMessage()
    assert node.calls == [], "nothing reached the app"


async def test_a_head_trickled_a_byte_at_a_time_is_cut_at_its_deadline(node: FakeNode) -> None:
    """Each byte arriving does not extend the deadline (hypercorn's idle timer alone would not
    either, but a per-read timeout would)."""
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            head = b"GET /status HTTP/1.1\r\nX-Slow: " + b"a" * 1000
            sent = 0
            received = b""
            for byte in head:  # far more bytes than fit in the deadline at this pace
                await stream.send_all(bytes([byte]))
                sent += 1
                with trio.move_on_after(HEAD_S / 10):
                    received = await stream.receive_some(SEND_SLICE_BYTES)
                if received:
                    break
            assert sent < len(head), "cut before the head was complete"
            raw = received + await read_all(stream)
            assert "request head not received" in error_of(raw, 408)
            assert served.metric("bft_api_timeouts_total", phase="head") == 1


async def test_an_idle_connection_is_closed_silently_after_the_keep_alive_timeout(node: FakeNode) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            silent = await served.connect()
            used = await served.connect()
            await used.send_all(GET_STATUS)
            first = await read_response(used)
            assert parse(first)[0] == 200
            begun = trio.current_time()
            assert await read_all(silent) == b"", "no byte of a request: closed without a response"
            assert await read_all(used) == b"", "after a response: closed without another"
            assert trio.current_time() - begun >= KEEP_ALIVE_S * 0.8
            assert served.metric("bft_api_timeouts_total", phase="head") == 0
            await wait_for(lambda: served.server.open_connections == 0)


async def test_keep_alive_serves_several_requests_on_one_connection(node: FakeNode) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            for _ in range(3):
                await stream.send_all(GET_STATUS)
                status, _, body = parse(await read_response(stream))
                assert status == 200 and json.loads(body)["node"] == 2
            assert served.server.open_connections == 1


# --- request body --------------------------------------------------------------------------------


async def test_a_body_sent_a_byte_a_second_is_cut_within_the_body_deadline(
    node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            await stream.send_all(b"POST /txs HTTP/1.1\r\nHost: node\r\nContent-Length: 1000\r\n\r\n")
            begun = trio.current_time()
            received = bytearray()
            for _ in range(30):  # one byte a second, until the server answers
                await stream.send_all(b" ")
                with trio.move_on_after(1.0):
                    received += await stream.receive_some(SEND_SLICE_BYTES)
                if received:
                    break
            took = trio.current_time() - begun
            raw = bytes(received) + await read_all(stream)
            assert "request body not received within" in error_of(raw, 408)
            assert parse(raw)[1]["connection"] == "close"
            assert took >= BODY_S * 0.9, "not before its deadline"
            assert node.submissions == []
            await wait_for(lambda: served.server.open_connections == 0)
    (line,) = refusal_lines(caplog, event="request_refused", status=408)
    assert line.levelno == logging.INFO
    assert "method=POST" in line.getMessage() and "path=/txs" in line.getMessage()


async def test_a_body_in_time_is_served(node: FakeNode) -> None:
    body = b'{"txs": ["YQ=="]}'
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            head = f"POST /txs HTTP/1.1\r\nHost: node\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            await stream.send_all(head + body[:5])
            await trio.sleep(BODY_S / 3)
            await stream.send_all(body[5:])
            status, _, answer = parse(await read_response(stream))
            assert status == 200, answer
            assert node.submissions == [([b"a"], False)]


# --- sending -------------------------------------------------------------------------------------


async def test_an_answer_nobody_reads_is_cut_by_the_send_deadline() -> None:
    view = BigBlocks()
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(view) as served:
            stream = await served.connect(receive_buffer_bytes=4096)
            await stream.send_all(b"GET /blocks/1 HTTP/1.1\r\nHost: node\r\n\r\n")
            await wait_for(lambda: served.budget.in_flight_bytes > 0)
            await wait_for(lambda: served.server.open_connections == 0)
            assert served.metric("bft_api_timeouts_total", phase="send") == 1
            assert served.budget.in_flight_bytes == 0, "the answer's budget is released"
            # The client gets the first part of the answer, then the connection ends.
            raw = await read_all(stream)
            assert parse(raw)[0] == 200
            assert len(raw) < 5 * MIB


async def test_a_slow_reader_that_keeps_reading_gets_the_whole_answer() -> None:
    """The send deadline measures progress, not the total time of an answer."""
    view = BigBlocks()
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(view) as served:
            stream = await served.connect(receive_buffer_bytes=64 * 1024)
            await stream.send_all(b"GET /blocks/1 HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n")
            raw = bytearray()
            begun = trio.current_time()
            for reads in range(1, 100_000):
                chunk = await stream.receive_some(256 * 1024)
                if not chunk:
                    break
                raw += chunk
                if reads % 5 == 0:
                    await trio.sleep(SEND_S / 5)
            assert trio.current_time() - begun > SEND_S * 2, "slower in total than the deadline"
            status, _, body = parse(bytes(raw))
            assert status == 200
            assert json.loads(body)["id"] == BIG_BLOCK.id.hex()
            assert served.metric("bft_api_timeouts_total", phase="send") == 0


# --- the connection cap --------------------------------------------------------------------------


async def test_connections_beyond_the_cap_are_refused_at_once_and_counted(
    node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ApiSettings(
        header_timeout_s=HEAD_S,
        keep_alive_timeout_s=TEST_DEADLINE_S,
        max_connections=3,
        send_timeout_s=SEND_S,
    )
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node, settings) as served:
            assert served.server.max_connections == 3
            assert served.metric("bft_api_max_connections") == 3
            held = [await served.connect() for _ in range(3)]
            await wait_for(lambda: served.server.open_connections == 3)
            refused = [await served.connect() for _ in range(5)]
            for stream in refused:
                assert error_of(await read_all(stream), 503) == "too many connections"
            assert served.metric("bft_api_connections_refused_total") == 5
            assert served.metric("bft_api_connections") == 3
            # The held ones are served as usual, and once one goes its place is free again.
            await held[0].send_all(GET_STATUS)
            assert parse(await read_response(held[0]))[0] == 200
            await held[1].aclose()
            await wait_for(lambda: served.server.open_connections == 2)
            again = await served.connect()
            await again.send_all(GET_STATUS)
            assert parse(await read_response(again))[0] == 200
    lines = refusal_lines(caplog, event="api_connection_refused", status=503)
    assert len(lines) == 1, "thinned: one line per client, status and reason in a window"
    assert lines[0].levelno == logging.INFO
    assert "max_connections=3" in lines[0].getMessage()


def test_the_cap_leaves_the_reserve_of_descriptors_free() -> None:
    soft, _ = connection_limit(1)  # raises nothing: the test process has room for one
    cap, limit = connection_limit(10**7, reserve=256)
    assert limit >= soft
    assert cap == limit - 256, "everything above the reserve, and no more"


# --- event streams -------------------------------------------------------------------------------


def _big_event(height: int) -> dict[str, Any]:
    # As large as the runtime's event of a block of 1000 transactions.
    return {"height": height, "txs": 1000, "tx_hashes": [f"{height:064x}"] * 1000}


async def test_a_dropped_event_subscriber_is_disconnected_at_once(
    node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    """The client reads the head, then nothing: the stream's sends get stuck (the send deadline is
    long here), the feed drops the subscriber, and its connection closes at once."""
    settings = ApiSettings(send_timeout_s=TEST_DEADLINE_S * 10, max_connections=8)
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node, settings) as served:
            stream = await served.connect(receive_buffer_bytes=4096)
            await stream.send_all(b"GET /events HTTP/1.1\r\nHost: node\r\n\r\n")
            await wait_for(lambda: len(node.feed) == 1)
            published = 0
            while len(node.feed) == 1 and published < FEED_BUFFER_BLOCKS + 200:
                published += 1
                node.feed.publish(_big_event(published))
                await trio.sleep(0)  # the stream sends what it can
            assert len(node.feed) == 0, "dropped for lagging"
            begun = trio.current_time()
            await wait_for(lambda: served.server.open_connections == 0)
            assert trio.current_time() - begun < settings.send_timeout_s / 10, "by the drop, not a deadline"
            raw = await read_all(stream)
            assert raw.startswith(b"HTTP/1.1 200")
            assert b"event: block\nid: 1\n" in raw
    (line,) = refusal_lines(caplog, event="events_stream_closed")
    assert line.levelno == logging.INFO


async def test_an_event_stream_that_is_read_stays_open(node: FakeNode) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            await stream.send_all(b"GET /events HTTP/1.1\r\nHost: node\r\n\r\n")
            await wait_for(lambda: len(node.feed) == 1)
            raw = bytearray()
            for height in range(1, 4):
                node.feed.publish(_big_event(height))
                for _ in range(100):
                    if f"id: {height}\n".encode() in raw:
                        break
                    raw += await stream.receive_some(SEND_SLICE_BYTES)
            await trio.sleep(KEEP_ALIVE_S + HEAD_S)  # longer than every idle deadline
            assert served.server.open_connections == 1
            assert len(node.feed) == 1


# --- HTTP/2 --------------------------------------------------------------------------------------


async def test_an_h2c_upgrade_is_ignored_and_served_as_http_1_1(node: FakeNode) -> None:
    request = (
        b"GET /status HTTP/1.1\r\nHost: node\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            await stream.send_all(request)
            raw = await read_response(stream)
            assert not raw.startswith(b"HTTP/1.1 101"), "no switch to HTTP/2"
            status, headers, body = parse(raw)
            assert status == 200 and "upgrade" not in headers
            assert json.loads(body)["node"] == 2
            # Still HTTP/1.1 on this connection.
            await stream.send_all(GET_STATUS)
            assert parse(await read_response(stream))[0] == 200


async def test_a_websocket_upgrade_is_ignored_and_served_as_http_1_1(node: FakeNode) -> None:
    request = (
        b"GET /status HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            await stream.send_all(request)
            status, headers, body = parse(await read_response(stream))
            assert status == 200 and "upgrade" not in headers, "no 101, and no WebSocket stream"
            assert json.loads(body)["node"] == 2


async def test_the_http2_preface_gets_a_505(node: FakeNode, caplog: pytest.LogCaptureFixture) -> None:
    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
    settings_frame = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            await stream.send_all(preface + settings_frame)
            raw = await read_all(stream)
            assert "HTTP/2 is not served" in error_of(raw, 505)
            assert served.metric("bft_api_responses_total", status="505") == 1
    (line,) = refusal_lines(caplog, event="request_refused", status=505)
    assert line.levelno == logging.INFO
    assert node.calls == []


# --- bad heads and logs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET /status HTTP/1.1\r\nHost: node\r\nX-Big: " + b"a" * (64 * 1024) + b"\r\n\r\n", 431),
    ],
    ids=["malformed", "oversized"],
)
async def test_a_bad_head_is_refused_in_json_and_logged(
    node: FakeNode, caplog: pytest.LogCaptureFixture, head: bytes, status: int
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            with contextlib.suppress(trio.BrokenResourceError):  # closed before all of it is sent
                await stream.send_all(head)
            error_of(await read_all(stream), status)
    (line,) = refusal_lines(caplog, event="request_refused", status=status)
    assert line.levelno == logging.INFO


async def test_app_refusals_are_logged_at_info_and_thinned(
    node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            for i in range(20):
                await stream.send_all(f"GET /blocks/{100 + i} HTTP/1.1\r\nHost: node\r\n\r\n".encode())
                assert parse(await read_response(stream))[0] == 404
            await stream.send_all(b"GET /nope" + b"x" * 500 + b" HTTP/1.1\r\nHost: node\r\n\r\n")
            assert parse(await read_response(stream))[0] == 404
            assert served.metric("bft_api_responses_total", status="404") == 21
    blocks = refusal_lines(caplog, event="request_refused", status=404, method="GET", path="/blocks/100")
    assert len(blocks) == 1, "20 refusals of one client, status and route: one line"
    assert blocks[0].levelno == logging.INFO
    assert 'reason="no committed block at height 100"' in blocks[0].getMessage()
    (unknown,) = [r for r in refusal_lines(caplog, event="request_refused") if "/nope" in r.getMessage()]
    assert len(unknown.getMessage()) < 600, "the path is cut"


async def test_a_client_that_resets_mid_answer_or_mid_body_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    view = BigBlocks()
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(view) as served:
            for subscribed in range(1, 4):
                reader = await served.connect(receive_buffer_bytes=4096)
                await reader.send_all(b"GET /blocks/1 HTTP/1.1\r\nHost: node\r\n\r\n")
                assert (await reader.receive_some(1024)).startswith(b"HTTP/1.1 200")
                reset(reader)
                uploader = await served.connect()
                await uploader.send_all(b"POST /txs HTTP/1.1\r\nHost: node\r\nContent-Length: 100\r\n\r\n{")
                await trio.sleep(0.05)
                reset(uploader)
                stream_reader = await served.connect()
                await stream_reader.send_all(b"GET /events HTTP/1.1\r\nHost: node\r\n\r\n")
                await wait_for(functools.partial(_subscribed, view, subscribed))
                reset(stream_reader)
            await wait_for(lambda: served.server.open_connections == 0)
            assert served.budget.in_flight_bytes == 0
            assert view.submissions == []
            stream = await served.connect()
            await stream.send_all(GET_STATUS)
            assert parse(await read_response(stream))[0] == 200
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert noisy == [], [r.getMessage()[:300] for r in noisy]


async def test_an_exception_in_the_app_is_still_logged_as_an_error(
    node: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    """Hiding hypercorn's start banner must not hide its real errors (nor ours)."""
    node.broken.add("status")
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            stream = await served.connect()
            await stream.send_all(GET_STATUS)
            assert error_of(await read_response(stream), 500) == "internal error"
            await wait_for(lambda: any(r.name == "bft.api.server" for r in caplog.records))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert {r.name for r in errors} == {"bft.api", "bft.api.server"}
    assert all(r.exc_info for r in errors), "with the traceback"
    assert not [r for r in caplog.records if r.name == "bft.api.server" and r.levelno < logging.ERROR]


# --- memory held by answers nobody reads ---------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


UNREAD_ANSWERS = 300
BUDGET_BYTES = 32 * MIB
# What 300 unread answers may add to the process: the budget, plus what rendering 300 answers of
# ~5.6 MB leaves in the allocator and the state of 300 connections (measured: ~72 MiB with a budget
# too small for any answer). Measured with the budget: ~107 MiB; with a budget large enough for all
# of them (the code before it): 1651 MiB.
RSS_GROWTH_BOUND_BYTES = BUDGET_BYTES + 128 * MIB


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from /proc")
async def test_300_unread_block_answers_stay_within_the_answer_budget() -> None:
    view = BigBlocks()
    settings = ApiSettings(
        send_timeout_s=TEST_DEADLINE_S * 10, max_connections=1024, max_answer_bytes_in_flight=BUDGET_BYTES
    )
    request = b"GET /blocks/1 HTTP/1.1\r\nHost: node\r\n\r\n"
    clients: list[trio.SocketStream] = []
    with trio.fail_after(TEST_DEADLINE_S * 3):
        async with serving(view, settings) as served:
            warm = await served.connect()
            await warm.send_all(request)
            answer_bytes = len(await read_response(warm))
            await wait_for(lambda: served.budget.in_flight_bytes == 0)
            await warm.aclose()
            baseline = _rss_bytes()
            for _ in range(UNREAD_ANSWERS):
                stream = await served.connect(receive_buffer_bytes=4096)
                await stream.send_all(request)
                clients.append(stream)

            def answered() -> float:
                return served.metric("bft_api_responses_total", status="200") + served.metric(
                    "bft_api_responses_total", status="503"
                )

            await wait_for(lambda: answered() == UNREAD_ANSWERS + 1, max_polls=5000)
            growth = _rss_bytes() - baseline
            in_flight = served.budget.in_flight_bytes
            held = served.metric("bft_api_responses_total", status="200") - 1
            busy = served.metric("bft_api_responses_total", status="503")
            for stream in clients:
                reset(stream)
            await wait_for(lambda: served.server.open_connections == 0)
            assert served.budget.in_flight_bytes == 0
    print(
        f"answer {answer_bytes} bytes; {held:.0f} unread answers held ({in_flight} bytes), "
        f"{busy:.0f} refused busy; RSS growth {growth / MIB:.1f} MiB"
    )
    assert 0 < in_flight <= BUDGET_BYTES
    assert held >= 1 and busy >= 1 and held + busy == UNREAD_ANSWERS
    assert growth < RSS_GROWTH_BOUND_BYTES, f"RSS grew {growth / MIB:.1f} MiB"


async def test_a_large_answer_beyond_the_budget_is_a_503_with_retry_after() -> None:
    view = BigBlocks()
    settings = ApiSettings(max_answer_bytes_in_flight=MIB)
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(view, settings) as served:
            stream = await served.connect()
            await stream.send_all(b"GET /blocks/1 HTTP/1.1\r\nHost: node\r\n\r\n")
            raw = await read_response(stream)
            assert "busy" in error_of(raw, 503)
            assert parse(raw)[1]["retry-after"] == "1"
            # The connection closes: requests pipelined behind a busy refusal are not served.
            assert parse(raw)[1]["connection"] == "close"
            assert await read_all(stream) == b""
            again = await served.connect()
            await again.send_all(GET_STATUS)  # small answers are not charged
            assert parse(await read_response(again))[0] == 200


async def test_a_half_close_while_a_response_is_being_sent_waits_for_it() -> None:
    # hypercorn half-closes a connection from another task than the one sending a response; on
    # one trio stream the two met as BusyResourceError, which crashed a node under slow bodies.
    from bft.node.api_server import _DeadlineStream

    ours, theirs = trio.socket.socketpair()
    server_side = _DeadlineStream(trio.SocketStream(ours), send_timeout_s=10.0, on_send_timeout=lambda: None)
    client_side = trio.SocketStream(theirs)
    answer = os.urandom(4 * 1024 * 1024)  # far more than the socket buffers: the send blocks
    received = bytearray()
    with trio.fail_after(TEST_DEADLINE_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server_side.send_all, answer)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(server_side.send_eof)
            await trio.testing.wait_all_tasks_blocked()
            for _ in range(100_000):
                chunk = await client_side.receive_some(SEND_SLICE_BYTES)
                if not chunk:
                    break
                received += chunk
    assert bytes(received) == answer
    await server_side.aclose()
    await client_side.aclose()


async def test_a_failure_serving_one_connection_is_logged_and_the_api_serves_on(
    node: FakeNode, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bft.node import api_server

    original = api_server._Connection.run
    failures = [RuntimeError("a bug in serving one client")]

    async def run_once_failing(self: api_server._Connection) -> None:
        if failures:
            raise failures.pop()
        await original(self)

    monkeypatch.setattr(api_server._Connection, "run", run_once_failing)
    with trio.fail_after(TEST_DEADLINE_S):
        async with serving(node) as served:
            first = await served.connect()
            await first.send_all(GET_STATUS)
            assert await read_all(first) == b""
            second = await served.connect()
            await second.send_all(GET_STATUS)
            assert parse(await read_response(second))[0] == 200
    (line,) = refusal_lines(caplog, event="api_connection_failed")
    assert line.levelno == logging.ERROR and "RuntimeError" in line.getMessage()


async def test_a_large_block_asked_for_again_and_again_is_read_and_rendered_once() -> None:
    view = BigBlocks()
    settings = ApiSettings(send_timeout_s=TEST_DEADLINE_S * 10, max_answer_bytes_in_flight=BUDGET_BYTES)
    request = b"GET /blocks/1 HTTP/1.1\r\nHost: node\r\n\r\n"
    clients: list[trio.SocketStream] = []
    with trio.fail_after(TEST_DEADLINE_S * 3):
        async with serving(view, settings) as served:
            for _ in range(50):
                stream = await served.connect(receive_buffer_bytes=4096)
                await stream.send_all(request)
                clients.append(stream)

            def answered() -> float:
                return served.metric("bft_api_responses_total", status="200") + served.metric(
                    "bft_api_responses_total", status="503"
                )

            await wait_for(lambda: answered() == 50, max_polls=5000)
            busy = served.metric("bft_api_responses_total", status="503")
            for stream in clients:
                reset(stream)
            await wait_for(lambda: served.server.open_connections == 0)
    # Once read and rendered; the others were served from the rendered copy or refused as busy
    # before anything was read (the budget holds only a few answers of this size).
    assert view.calls.count("block") == 1
    assert busy >= 1


def test_rendered_blocks_keep_the_newest_within_their_bound() -> None:
    from bft.node.api import RenderedBlocks

    rendered = RenderedBlocks(max_bytes=10_000)
    for height in range(1, 101):
        rendered.put(height, bytes(1000))
    assert rendered.size_bytes <= 10_000
    assert rendered.get(100) is not None and rendered.get(1) is None
    rendered.put(101, bytes(20_000))  # larger than the whole bound: not kept
    assert rendered.get(101) is None and rendered.size_bytes <= 10_000
