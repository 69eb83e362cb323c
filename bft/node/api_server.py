"""The HTTP API's server: the accept loop, the connection cap, every deadline of a connection, and
HTTP/1.1 only, around hypercorn's per-connection machinery (`TCPServer`, `H11Protocol`).

Owns: listening on `[api] listen`; the cap on connections served at once (`ApiSettings.
max_connections`, lowered to what the descriptor limit allows once `RESERVED_DESCRIPTORS` are kept
for the node); the refusal of connections beyond it; the request-head, keep-alive and send
deadlines; refusing HTTP/2 (cleartext); the log lines and metrics of all of these.
May not: route or answer requests (`bft.node.api` does), or touch the node.

Why it exists (the attack campaign of issue 9): hypercorn's `serve` accepts every connection, has
no deadline for a request head that trickles in, and sends each response under a shield with no
deadline, so a client that never reads holds its connection, task and answer forever. About a
thousand such clients exhausted a node's descriptors, and the node died writing its safety record.

What hypercorn 0.18 does and what is added here:
- Request head: hypercorn's idle timer (`keep_alive_timeout`) runs from the connection's start
  (or the end of the last response) until a head is parsed, whatever arrives. Here it is two
  deadlines: `keep_alive_timeout_s` while no byte of a request has come (then a silent close, as
  nginx does), and `header_timeout_s` from its first byte (then a 408 and a close).
- Request body: read by the app under `body_timeout_s` (`bft.node.api._read_body`); a request the
  app does not read is answered and the connection closed (h11 cannot reuse it).
- Sends: `_DeadlineStream` splits every send into `SEND_SLICE_BYTES` slices, each of which must be
  accepted by the socket within `send_timeout_s` (nginx's `send_timeout`: no progress, not total
  time); past it the connection is cut, which also ends hypercorn's shielded send.
- Memory held by answers nobody reads: with the send deadline and the cap, at most
  `max_connections` x one answer, and large answers are bounded further by the app's answer
  budget (`bft.node.api.AnswerBudget`).
- HTTP/2: hypercorn switches to HTTP/2 on `Upgrade: h2c` (cleartext upgrade) or on the
  prior-knowledge preface `PRI * HTTP/2.0`, neither documented nor bounded like HTTP/1.1. Here
  `Upgrade: h2c` is ignored (the request is served as HTTP/1.1, which RFC 9110 7.8 allows) and
  the preface gets a 505. `Upgrade: websocket` is ignored the same way (no route uses it), and
  TLS and HTTP/3 are not served at all.

Descriptors: at start the soft RLIMIT_NOFILE is raised towards `max_connections +
RESERVED_DESCRIPTORS` (at most the hard limit, as nginx's `worker_rlimit_nofile`); the cap is
then what fits below the soft limit with the reserve left for SQLite, the p2p transport, logs and
the safety record. A connection beyond the cap is accepted, answered with a canned 503 in one
non-blocking write, and closed at once, so it costs no task and holds no descriptor.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import resource
import socket
import struct
from collections.abc import Callable
from typing import Any, Final, Protocol, cast

import h11
import trio
from hypercorn.app_wrappers import ASGIWrapper
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Closed
from hypercorn.logging import Logger as HypercornLogger
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ASGIFramework, ConnectionState
from hypercorn.utils import parse_socket_addr, repr_socket_addr
from prometheus_client import CollectorRegistry, Counter, Gauge
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bft.node.config import ApiSettings
from bft.node.errors import ConfigError
from bft.node.logs import RateLimitedLog, kv

log = logging.getLogger("bft.api")

# Descriptors kept for the node itself: SQLite (blocks, app, their journals), the p2p listener and
# one or two connections per validator, the log file, the safety record's temp file and directory.
RESERVED_DESCRIPTORS: Final = 256
# A send is cut if the client's socket accepts no slice of this size for `send_timeout_s`.
SEND_SLICE_BYTES: Final = 64 * 1024
# While accept() finds no free descriptor (EMFILE and friends), it is retried this often.
ACCEPT_RETRY_S: Final = 0.1
# Connections the kernel may hold completed for us to accept (they cost no descriptor until then).
LISTEN_BACKLOG: Final = 511
# A path or reason in a log line is cut to this many characters (a client chooses them).
LOG_TEXT_CHARS: Final = 120
# The key under which a request's ASGI scope["state"] carries its `ConnectionControl`.
CONNECTION_STATE_KEY: Final = "bft_connection"

_OUT_OF_DESCRIPTORS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def _canned_refusal(status: str, reason: str) -> bytes:
    body = json.dumps({"error": reason}).encode()
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "retry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


_TOO_MANY_CONNECTIONS: Final = _canned_refusal("503 Service Unavailable", "too many connections")


class ConnectionControl(Protocol):
    """What a request handler may do to its connection (found in scope["state"])."""

    def abort(self) -> None:
        """Close the connection now, whatever is being sent or read on it."""


def connection_limit(wanted: int, reserve: int = RESERVED_DESCRIPTORS) -> tuple[int, int]:
    """(connections the API may serve at once, the soft descriptor limit in force). Raises the soft
    RLIMIT_NOFILE to `wanted + reserve` if it is lower (up to the hard limit). ConfigError if the
    limit leaves no room for a single connection above the reserve."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + reserve
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY:
        return wanted, soft
    if soft - reserve < 1:
        raise ConfigError(
            f"the descriptor limit ({soft}, hard {hard}) leaves no room for API connections once "
            f"{reserve} are kept for the node; raise it (ulimit -n)"
        )
    return min(wanted, soft - reserve), soft


def _clip(text: object) -> str:
    text = str(text)
    return text if len(text) <= LOG_TEXT_CHARS else text[:LOG_TEXT_CHARS] + "..."


class ApiMetrics:
    """The server's metrics, in the node's registry: `bft_api_connections` (open now),
    `bft_api_max_connections` (the cap in force), `bft_api_connections_refused_total` (beyond the
    cap), `bft_api_timeouts_total{phase}` (phase: head, send), `bft_api_responses_total{status}`
    (every response status sent, the server's own refusals included)."""

    def __init__(self, registry: CollectorRegistry, open_now: Callable[[], float], cap: Callable[[], float]):
        Gauge("bft_api_connections", "HTTP API connections open", registry=registry).set_function(open_now)
        Gauge(
            "bft_api_max_connections", "HTTP API connections served at once, at most", registry=registry
        ).set_function(cap)
        self.refused = Counter(
            "bft_api_connections_refused",
            "HTTP API connections refused at once because the cap was reached",
            registry=registry,
        )
        self.timeouts = Counter(
            "bft_api_timeouts",
            "HTTP API connections cut by a deadline, by phase (head: request head; send: a response)",
            ["phase"],
            registry=registry,
        )
        self.responses = Counter(
            "bft_api_responses", "HTTP API responses, by status", ["status"], registry=registry
        )


class _ServerLog(HypercornLogger):
    """hypercorn's own messages as the node's key=value lines on `bft.api.server`: an error (an
    exception out of the app) with its traceback, its information lines (start banners) at DEBUG.
    No access log: refusals are logged by whoever refuses."""

    def __init__(self, config: HypercornConfig) -> None:
        self.access_log_format = config.access_log_format
        self.access_logger = None
        self.error_logger = self._logger = logging.getLogger("bft.api.server")

    def _line(self, message: str, args: tuple[Any, ...]) -> str:
        return kv(event="http_server", detail=message % args if args else message)

    async def critical(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._logger.critical(self._line(message, args), **kwargs)

    async def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._logger.error(self._line(message, args), **kwargs)

    async def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._logger.error(self._line(message, args), exc_info=True, **kwargs)

    async def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._logger.warning(self._line(message, args), **kwargs)

    async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._logger.debug(self._line(message, args), **kwargs)

    async def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        self._logger.debug(self._line(message, args), **kwargs)

    async def log(self, level: int, message: str, *args: Any, **kwargs: Any) -> None:
        self._logger.log(level if level > logging.INFO else logging.DEBUG, self._line(message, args))


class _DeadlineStream(trio.abc.HalfCloseableStream):
    """A client's socket stream with the send deadline, and a count of the bytes received (which
    tells the head deadline when a request has begun). `abort` (also `ConnectionControl`) closes
    the socket at once: a task blocked sending or receiving on it gets ClosedResourceError.

    Sends are serialized here: hypercorn sends a response under its own lock but half-closes
    (`send_eof`) and answers a malformed pipelined head from other tasks without it, so a 408 in
    slices and a 400 or a close could otherwise meet on the socket (trio's BusyResourceError)."""

    def __init__(self, stream: trio.SocketStream, send_timeout_s: float, on_send_timeout: Callable[[], None]):
        self._stream = stream
        self._send_timeout_s = send_timeout_s
        self._on_send_timeout = on_send_timeout
        self._aborted = False
        self.received_bytes = 0
        self._arrival = trio.Event()
        self._send_lock = trio.Lock()

    @property
    def socket(self) -> trio.socket.SocketType:
        return self._stream.socket

    def abort(self) -> None:
        # A reset, not a FIN: the client is not reading, so a FIN would wait behind everything
        # still queued for it, the kernel would keep that queue, and the client would never learn
        # it was cut (nginx's reset_timedout_connection).
        self._aborted = True
        with contextlib.suppress(OSError):
            self._stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._stream.socket.close()

    async def next_arrival(self) -> None:
        """Return once more bytes have been received."""
        await self._arrival.wait()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._aborted:
            raise trio.ClosedResourceError("the connection was cut")
        view = memoryview(data)
        async with self._send_lock:
            for start in range(0, len(view), SEND_SLICE_BYTES):
                with trio.move_on_after(self._send_timeout_s) as deadline:
                    await self._stream.send_all(view[start : start + SEND_SLICE_BYTES])
                if deadline.cancelled_caught:
                    self._on_send_timeout()
                    self.abort()
                    detail = f"the client accepted nothing for {self._send_timeout_s} s"
                    raise trio.BrokenResourceError(detail)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        async with self._send_lock:
            if not self._aborted:
                await self._stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._aborted:
            raise trio.ClosedResourceError("the connection was cut")
        data = await self._stream.receive_some(max_bytes)
        if data:
            self.received_bytes += len(data)
            self._arrival.set()
            self._arrival = trio.Event()
        return bytes(data)

    async def aclose(self) -> None:
        await self._stream.aclose()


class _Http2Refused(Exception):
    """The HTTP/2 prior-knowledge preface arrived."""


class _Http11(H11Protocol):
    """hypercorn's HTTP/1.1, minus HTTP/2 and WebSocket: an `Upgrade` header (h2c, websocket) is
    ignored, the `PRI * HTTP/2.0` preface gets a 505; every response hypercorn makes itself (a
    malformed or oversized request head, or a refusal of ours) is JSON `{"error": ...}` and
    reported to `on_refused`."""

    def __init__(
        self,
        *args: Any,
        on_refused: Callable[[int, str, str, str], None],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._on_refused = on_refused

    def has_partial_head(self) -> bool:
        """Whether bytes of a next request are already buffered (pipelined after the last one)."""
        return isinstance(self.connection, h11.Connection) and bool(self.connection.trailing_data[0])

    async def handle(self, event: Any) -> None:
        try:
            await super().handle(event)
        except _Http2Refused:
            await self.refuse(505, "HTTP/2 is not served here: use HTTP/1.1", "PRI", "*")

    async def _check_protocol(self, event: h11.Request) -> None:
        # No call to super(): that is what switches to HTTP/2 (a 101 for h2c, or the preface).
        if event.method == b"PRI" and event.target == b"*" and event.http_version == b"2.0":
            raise _Http2Refused

    async def _create_stream(self, request: h11.Request) -> None:
        # Without its Upgrade header, a WebSocket handshake is an ordinary request (and answered
        # as one, which a WebSocket client takes as a refusal): no WebSocket stream is opened.
        headers = [(name, value) for name, value in request.headers if name.lower() != b"upgrade"]
        if len(headers) != len(request.headers):
            request = h11.Request(
                method=request.method,
                target=request.target,
                headers=headers,
                http_version=request.http_version,
            )
        await super()._create_stream(request)

    async def _send_error_response(self, status_code: int) -> None:
        # hypercorn calls this when h11 cannot parse a request head (hint 400, or 431 beyond
        # h11_max_incomplete_size) and closes the connection after it.
        reason = (
            f"request head larger than {self.config.h11_max_incomplete_size} bytes"
            if status_code == 431
            else "malformed request head"
        )
        await self._send_refusal(status_code, reason, "-", "-")

    async def refuse(self, status: int, reason: str, method: str, path: str) -> None:
        """A JSON refusal, then the connection is closed (nothing more of it is read)."""
        await self._send_refusal(status, reason, method, path)
        await self.send(Closed())

    async def _send_refusal(self, status: int, reason: str, method: str, path: str) -> None:
        self._on_refused(status, reason, method, path)
        body = json.dumps({"error": reason}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            *self.config.response_headers("h11"),
        ]
        await self._send_h11_event(h11.Response(status_code=status, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


class _Connection(TCPServer):
    """One client connection: hypercorn's TCPServer with HTTP/1.1 only (no TLS or ALPN, so no
    HTTP/2) and the head and keep-alive deadlines in its idle timer."""

    def __init__(self, server: ApiServer, stream: _DeadlineStream, client_host: str) -> None:
        # TCPServer is typed for an SSLStream; it only calls the Stream methods on it (and
        # `.socket`), which _DeadlineStream has.
        super().__init__(server.app, server.hypercorn, server.context, {}, cast(Any, stream))
        self._server = server
        self._deadline_stream = stream
        self._client_host = client_host
        self._http: _Http11 | None = None
        self._read_ended = False

    async def run(self) -> None:
        sock = self._deadline_stream.socket
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            local = parse_socket_addr(sock.family, sock.getsockname())
            async with TaskGroup() as task_group:
                self._task_group = task_group
                state = ConnectionState({CONNECTION_STATE_KEY: self._deadline_stream})
                self._http = _Http11(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    state,
                    False,
                    client,
                    local,
                    self.protocol_send,
                    on_refused=self._on_refused,
                )
                # TCPServer calls only handle() on its protocol, which _Http11 has.
                self.protocol = cast(ProtocolWrapper, self._http)
                await self.idle_task.restart(self._task_group, self._idle_timeout)
                await self._read_data()
                # The client closed its side (or reset it): no request can follow, so no head
                # deadline is needed; hypercorn leaves it running, or starts it again when a
                # response in flight ends, which holds the connection until it fires.
                self._read_ended = True
                await self.idle_task.stop()
        except OSError:
            pass  # the client reset the connection before we got its address
        finally:
            await self._close()

    def _on_refused(self, status: int, reason: str, method: str, path: str) -> None:
        self._server.on_refused(self._client_host, status, reason, method, path)

    async def _idle_timeout(self) -> None:
        """Runs while the connection waits for a request head: hypercorn starts it when the
        connection opens and after each response, and cancels it once a head has been parsed."""
        http, stream, settings = self._http, self._deadline_stream, self._server.settings
        assert http is not None
        if self._read_ended:
            with trio.CancelScope(shield=True):
                await self._initiate_server_close()
            return
        before = stream.received_bytes
        if not http.has_partial_head():
            with trio.move_on_after(settings.keep_alive_timeout_s):
                while stream.received_bytes == before:
                    await stream.next_arrival()
            if stream.received_bytes == before:
                log.debug(kv(event="api_keep_alive_expired", client=self._client_host))
                with trio.CancelScope(shield=True):
                    await self._initiate_server_close()
                return
        await trio.sleep(settings.header_timeout_s)
        self._server.on_timeout(self._client_host, "head", settings.header_timeout_s)
        with trio.CancelScope(shield=True):
            reason = f"request head not received within {settings.header_timeout_s} s"
            with contextlib.suppress(
                trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError
            ):
                await http.refuse(408, reason, "-", "-")
            await self._initiate_server_close()


def _observed(app: ASGIApp, responses: Counter) -> ASGIApp:
    """`app`, counting the status of every response it starts."""

    async def observed(scope: Scope, receive: Receive, send: Send) -> None:
        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                responses.labels(str(message["status"])).inc()
            await send(message)

        await app(scope, receive, counted)

    return observed


class ApiServer:
    """Serves an ASGI app over HTTP/1.1 with `ApiSettings`' deadlines and connection cap; see the
    module header. Metrics go to `registry`."""

    def __init__(
        self,
        app: ASGIApp,
        settings: ApiSettings,
        registry: CollectorRegistry,
        *,
        reserved_descriptors: int = RESERVED_DESCRIPTORS,
    ) -> None:
        self.settings = settings
        self.open_connections = 0
        self.max_connections = 0  # set by run()
        self._reserved = reserved_descriptors
        self.metrics = ApiMetrics(registry, lambda: self.open_connections, lambda: self.max_connections)
        self.app = ASGIWrapper(cast(ASGIFramework, _observed(app, self.metrics.responses)))
        config = HypercornConfig()
        config.accesslog = None
        config.logger_class = _ServerLog
        config.include_server_header = False
        # hypercorn's own timers are replaced by ours (see _Connection); these keep it out of the way.
        config.keep_alive_timeout = settings.keep_alive_timeout_s
        config.read_timeout = None
        # Connections the kernel completes before we accept them (nginx's default): a burst
        # larger than hypercorn's 100 would see its SYNs dropped and retried a second later.
        config.backlog = LISTEN_BACKLOG
        self.hypercorn = config
        self.context = WorkerContext(None)
        # Refusal lines per client host, status and reason (the metrics count every one).
        self._refusal_log = RateLimitedLog(log)

    async def run(
        self, listen: str, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on `listen` ("host:port") and serve until cancelled; `task_status.started` with
        the bound URLs once listening."""
        self.max_connections, descriptors = connection_limit(self.settings.max_connections, self._reserved)
        self.hypercorn.bind = [listen]
        sockets = self.hypercorn.create_sockets()
        listeners = []
        urls = []
        try:
            for sock in sockets.insecure_sockets:
                sock.listen(self.hypercorn.backlog)
                listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
                urls.append(f"http://{repr_socket_addr(sock.family, sock.getsockname())}")
            async with trio.open_nursery() as nursery:
                for listener in listeners:
                    nursery.start_soon(self._accept, listener, nursery)
                s = self.settings
                log.info(
                    kv(
                        event="api_listening",
                        urls=",".join(urls),
                        max_connections=self.max_connections,
                        descriptor_limit=descriptors,
                        header_timeout_s=s.header_timeout_s,
                        body_timeout_s=s.body_timeout_s,
                        send_timeout_s=s.send_timeout_s,
                        keep_alive_timeout_s=s.keep_alive_timeout_s,
                    )
                )
                task_status.started(urls)
        finally:
            for listener in listeners:
                listener.socket.close()
            for sock in sockets.insecure_sockets:
                sock.close()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _OUT_OF_DESCRIPTORS:
                    raise
                line = kv(event="api_accept_failed", error=errno.errorcode.get(exc.errno or 0, exc.errno))
                self._refusal_log.log(logging.WARNING, ("accept", exc.errno), line)
                await trio.sleep(ACCEPT_RETRY_S)
                continue
            host = _peer_host(stream.socket)
            if self.open_connections >= self.max_connections:
                self._refuse_connection(stream, host)
                continue
            self.open_connections += 1
            nursery.start_soon(self._serve, stream, host)

    async def _serve(self, stream: trio.SocketStream, host: str) -> None:
        try:
            on_timeout = _bind(self.on_timeout, host, "send", self.settings.send_timeout_s)
            deadline_stream = _DeadlineStream(stream, self.settings.send_timeout_s, on_timeout)
            await _Connection(self, deadline_stream, host).run()
        except Exception as exc:
            # A bug in serving one client (ours or the HTTP library's) ends that connection,
            # never the node: the API's tasks run in the node's nursery.
            line = kv(event="api_connection_failed", client=host, error=f"{type(exc).__name__}: {exc}")
            if self._refusal_log.log(logging.ERROR, ("connection_failed", type(exc).__name__), line):
                log.error(kv(event="api_connection_failed_traceback", client=host), exc_info=exc)
        finally:
            self.open_connections -= 1
            stream.socket.close()

    def _refuse_connection(self, stream: trio.SocketStream, host: str) -> None:
        """Beyond the cap: a canned 503 in one non-blocking write (a fresh socket's send buffer is
        empty, so it never waits), then close. Whatever request already arrived is read and
        dropped first, so that the close is a FIN the client can read the 503 before, not a reset."""
        sock = stream.socket
        try:
            fd = sock.fileno()
            with contextlib.suppress(OSError):
                os.read(fd, SEND_SLICE_BYTES)
            os.write(fd, _TOO_MANY_CONNECTIONS)
        except OSError:
            pass  # the client is gone already
        finally:
            sock.close()
        self.metrics.refused.inc()
        self.metrics.responses.labels("503").inc()
        line = kv(
            event="api_connection_refused",
            client=host,
            status=503,
            reason="too many connections",
            max_connections=self.max_connections,
        )
        self._refusal_log.log(logging.INFO, (host, 503, "too many connections"), line)

    def on_refused(self, host: str, status: int, reason: str, method: str, path: str) -> None:
        """A refusal made by the server itself (not the app): counted and logged, thinned."""
        self.metrics.responses.labels(str(status)).inc()
        line = kv(
            event="request_refused",
            client=host,
            status=status,
            method=_clip(method),
            path=_clip(path),
            reason=_clip(reason),
        )
        self._refusal_log.log(logging.INFO, (host, status, reason), line)

    def on_timeout(self, host: str, phase: str, timeout_s: float) -> None:
        self.metrics.timeouts.labels(phase).inc()
        line = kv(event="api_timeout", client=host, phase=phase, timeout_s=timeout_s)
        self._refusal_log.log(logging.INFO, (host, "timeout", phase), line)


def _peer_host(sock: trio.socket.SocketType) -> str:
    try:
        return str(sock.getpeername()[0])
    except OSError:
        return "?"


def _bind(
    f: Callable[[str, str, float], None], host: str, phase: str, timeout_s: float
) -> Callable[[], None]:
    return lambda: f(host, phase, timeout_s)
