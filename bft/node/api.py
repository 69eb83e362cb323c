"""The node's HTTP/JSON API, served by hypercorn on trio (DESIGN.md, "Interfaces other programs
rely on").

Owns: routes (the operator endpoints `/health`, `/net_info`, `/consensus_state` and
`/unconfirmed_txs` included: typed snapshots from the `NodeView`, shaped by `bft.node.api_json`),
JSON shapes, the two bodies of `POST /txs` (JSON, or with `Content-Type: application/octet-stream`
the length-prefixed transactions of `bft.txframe`, `wait` then in the query string; the answer is
JSON either way), request limits, and the refusal of bad requests: malformed JSON, bad base64, a
malformed binary body, an oversized body, a body that does not arrive within its deadline (408),
an unknown path or a wrong method each get a 4xx with `{"error": ...}`, logged at INFO (thinned
per client, status and route); nothing a client sends takes the node down. Also the bound on the memory of
answers being sent (`AnswerBudget`) and the end of an event stream whose subscriber was dropped.
May not: touch the replica; it reads and submits through the `NodeView` the runtime provides.
Connections, their deadlines and their cap belong to `bft.node.api_server`, which also gives each
request a `ConnectionControl` (under `CONNECTION_STATE_KEY` in the ASGI scope's "state"); served
another way (tests drive the app in process), there is none and nothing here needs one.

A client that hangs up is not an error: `ClientDisconnect` is logged at DEBUG, no traceback.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Final, Protocol

import trio
from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bft.node.api_json import b64, consensus_state_json, health_json, net_info_json, pending_txs_json
from bft.node.api_server import CONNECTION_STATE_KEY, LOG_TEXT_CHARS, SEND_SLICE_BYTES, ConnectionControl
from bft.node.commits import TooManyWaiting
from bft.node.config import ApiSettings
from bft.node.health import Health
from bft.node.logs import RateLimitedLog, kv
from bft.node.metrics import CONTENT_TYPE
from bft.node.operator_views import ConsensusState, NetInfo, PendingTxs
from bft.txframe import BINARY_MEDIA_TYPE, decode_binary_txs

log = logging.getLogger("bft.api")

MAX_BODY_BYTES: Final = 8 * 1024 * 1024
MAX_TXS_PER_REQUEST: Final = 10_000
RETRY_AFTER_S: Final = 1
# An idle event stream gets a comment line this often, so proxies and clients see it is alive.
EVENTS_KEEPALIVE_S: Final = 15.0
_HASH_HEX_CHARS: Final = 64
# `GET /evidence` returns this many items unless `limit` asks for fewer (or more, up to the max).
EVIDENCE_PAGE: Final = 50
MAX_EVIDENCE_PAGE: Final = 100
# `GET /unconfirmed_txs` lists this many hashes unless `limit` asks otherwise (0 up to the max),
# as CometBFT's does.
# How long `GET /kv/<key>?min_height=H` waits for this node to reach H.
MIN_HEIGHT_WAIT_S: Final = 5.0
UNCONFIRMED_PAGE: Final = 30
MAX_UNCONFIRMED_PAGE: Final = 100
# An answer larger than this is charged to the AnswerBudget while it is sent, in slices.
BUDGETED_ANSWER_BYTES: Final = 64 * 1024
# Rendered block answers kept (`RenderedBlocks`): a few dozen blocks of the default 1 MB limit.
RENDERED_BLOCKS_BYTES: Final = 32 * 1024 * 1024
_DEFAULTS: Final = ApiSettings()


class NodeView(Protocol):
    def status(self) -> dict[str, Any]: ...
    def block(self, height: int) -> dict[str, Any] | None: ...
    def pruned_below(self) -> int: ...
    def snapshots(self) -> list[dict[str, Any]]: ...
    def snapshot_chunk(self, height: int, format: int, index: int) -> bytes | None: ...
    def snapshot_txs(self, height: int, after: bytes) -> bytes | None: ...
    async def submit(self, txs: list[bytes], wait_commit: bool) -> tuple[list[dict[str, Any]], bool]: ...
    def tx(self, h: bytes) -> dict[str, Any] | None: ...
    def kv(self, key: str) -> dict[str, Any]: ...
    async def wait_height(self, height: int, timeout_s: float) -> int: ...
    def evidence(self, limit: int, before: int | None) -> list[dict[str, Any]]: ...
    def health(self) -> Health: ...
    def net_info(self) -> NetInfo: ...
    def consensus_state(self) -> ConsensusState: ...
    def unconfirmed_txs(self, limit: int) -> PendingTxs: ...
    def render_metrics(self) -> bytes: ...
    def subscribe(self, on_drop: Callable[[], None]) -> trio.MemoryReceiveChannel[dict[str, Any]]: ...


class AnswerBudget:
    """Bytes of large answers being sent at once. Why: an answer waits in memory until the client
    reads it, so a few hundred clients that ask for multi-megabyte blocks and never read would
    hold gigabytes (the send deadline frees them, but only after it). With the budget, what
    unread large answers hold is at most `max_bytes`; beyond it, a 503 with Retry-After."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.in_flight_bytes = 0

    def take(self, size_bytes: int) -> bool:
        if self.in_flight_bytes + size_bytes > self.max_bytes:
            return False
        self.in_flight_bytes += size_bytes
        return True

    def release(self, size_bytes: int) -> None:
        self.in_flight_bytes -= size_bytes


# As Starlette's JSONResponse renders; built once (`json.dumps` with arguments builds one per call).
_RENDERER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def _render(doc: Any) -> bytes:
    return _RENDERER.encode(doc).encode()


class _BudgetedAnswer(Response):
    """A rendered JSON answer charged to the budget until it is sent (or the connection is cut),
    sent in slices so that the server's send deadline measures progress."""

    media_type = "application/json"

    def __init__(self, body: bytes, budget: AnswerBudget, status_code: int) -> None:
        super().__init__(body, status_code=status_code)
        self._budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        size = len(self.body)
        try:
            await send(
                {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            )
            view = memoryview(self.body)
            for start in range(0, size, SEND_SLICE_BYTES):
                end = start + SEND_SLICE_BYTES
                await send({"type": "http.response.body", "body": view[start:end], "more_body": end < size})
        finally:
            self.body = b""
            self._budget.release(size)


class _BudgetedBytes(_BudgetedAnswer):
    """The same, for binary answers (snapshot chunks and transaction records)."""

    media_type = "application/octet-stream"


class RenderedBlocks:
    """Rendered `GET /blocks/<height>` answers, newest kept, at most `max_bytes` of them. Why: a
    committed block never changes, and rendering a large one (reading it, base64, JSON) costs
    milliseconds of the node's one thread for a request of a few bytes; clients that ask for the
    same large blocks again and again (or never read them and ask again) cost a lookup."""

    def __init__(self, max_bytes: int = RENDERED_BLOCKS_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._bodies: OrderedDict[int, bytes] = OrderedDict()

    def get(self, height: int) -> bytes | None:
        body = self._bodies.get(height)
        if body is not None:
            self._bodies.move_to_end(height)
        return body

    def put(self, height: int, body: bytes) -> None:
        if len(body) > self.max_bytes or height in self._bodies:
            return
        self._bodies[height] = body
        self.size_bytes += len(body)
        while self.size_bytes > self.max_bytes:
            _, old = self._bodies.popitem(last=False)
            self.size_bytes -= len(old)


def _busy(budget: AnswerBudget) -> HTTPException:
    # Connection: close, so that requests pipelined behind this one are not each read, routed and
    # refused in turn (a client that pipelines and never reads would make every one cost us).
    return HTTPException(
        503,
        f"busy: {budget.in_flight_bytes} bytes of answers are being sent (at most {budget.max_bytes})",
        headers={"Retry-After": str(RETRY_AFTER_S), "Connection": "close"},
    )


def _answer(doc: Any, budget: AnswerBudget, status_code: int = 200) -> Response:
    """`doc` as a JSON answer; a large one only if the budget has room for it, else a 503."""
    return _rendered_answer(_render(doc), budget, status_code)


def _rendered_answer(
    body: bytes, budget: AnswerBudget, status_code: int = 200, *, binary: bool = False
) -> Response:
    if len(body) <= BUDGETED_ANSWER_BYTES:
        media_type = "application/octet-stream" if binary else "application/json"
        return Response(body, status_code=status_code, media_type=media_type)
    if not budget.take(len(body)):
        raise _busy(budget)
    return (_BudgetedBytes if binary else _BudgetedAnswer)(body, budget, status_code)


def _path_int(request: Request, name: str) -> int:
    raw = request.path_params[name]
    if not _is_decimal(raw) or len(raw) > 18:
        raise HTTPException(400, f"{name} must be a non-negative integer, not {_clip(raw)!r}")
    return int(raw)


def _strict_b64(text: object, where: str) -> bytes:
    if not isinstance(text, str):
        raise HTTPException(400, f"{where} must be a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise HTTPException(400, f"{where} is not valid base64: {exc}") from exc
    if b64(data) != text:
        raise HTTPException(400, f"{where} is not canonical base64 (padding or trailing bits)")
    return data


def _is_decimal(text: str) -> bool:
    # isascii: str.isdigit() alone also accepts digits int() refuses (superscripts) or reads
    # (other scripts' digits), so a path or header could reach int() and fail, or alias a number.
    return text.isascii() and text.isdigit()


def _query_int(request: Request, name: str, low: int, high: int | None) -> int | None:
    """The integer query parameter `name` (None if absent), within [low, high]; else a 400."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    raw = values[0]
    bound = f"{low}..{high}" if high is not None else f">= {low}"
    if len(values) > 1 or not _is_decimal(raw) or len(raw) > 18:
        raise HTTPException(400, f"{name} must be one integer {bound}")
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise HTTPException(400, f"{name} must be an integer {bound}, not {value}")
    return value


async def _read_body(request: Request, timeout_s: float) -> bytes:
    """The body, all of it within `timeout_s` (else a 408: a body sent a byte a second would
    otherwise hold its connection for days), and at most MAX_BODY_BYTES (else a 413)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not _is_decimal(declared) or int(declared) > MAX_BODY_BYTES):
        raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    with trio.move_on_after(timeout_s) as deadline:
        # aclosing: refusing mid-stream must close the generator now, not leave it to the GC.
        async with contextlib.aclosing(request.stream()) as chunks:
            async for chunk in chunks:
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
    if deadline.cancelled_caught:
        raise HTTPException(
            408, f"request body not received within {timeout_s} s", headers={"Connection": "close"}
        )
    return bytes(body)


def _path_of(request: Request) -> str:
    """The request's path for a log line, clipped. Not `request.url.path`: building the URL decodes
    the query string as UTF-8, and a client may send other bytes there (HTTP/2 would carry them;
    it is refused here, but the handlers must not depend on that), so a refusal (or the 500
    handler itself) would raise instead of answering."""
    return _clip(request.scope.get("path", ""))


def _refuse_duplicate_fields(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        raise ValueError("a field appears twice")
    return doc


def parse_submission(body: bytes) -> tuple[list[bytes], bool]:
    """`{"txs": [b64...], "wait": "none"|"commit"}` -> (transactions, wait for commit)."""
    try:
        doc = json.loads(body, object_pairs_hook=_refuse_duplicate_fields)
    except (ValueError, RecursionError) as exc:
        # ValueError: JSONDecodeError, bad UTF-8 and over-long integers; RecursionError: deep nesting.
        raise HTTPException(400, f"body is not valid JSON: {type(exc).__name__}: {exc}") from exc
    if not isinstance(doc, dict):
        raise HTTPException(400, 'body must be a JSON object {"txs": [...], "wait": ...}')
    unknown = set(doc) - {"txs", "wait"}
    if unknown:
        raise HTTPException(400, f"unknown fields: {sorted(unknown)}")
    txs = doc.get("txs")
    if not isinstance(txs, list) or not txs:
        raise HTTPException(400, '"txs" must be a non-empty list of base64 strings')
    if len(txs) > MAX_TXS_PER_REQUEST:
        raise HTTPException(413, f"more than {MAX_TXS_PER_REQUEST} transactions in one request")
    wait = doc.get("wait", "none")
    if wait not in ("none", "commit"):
        raise HTTPException(400, f'"wait" must be "none" or "commit", not {wait!r}')
    return [_strict_b64(tx, f"txs[{i}]") for i, tx in enumerate(txs)], wait == "commit"


def parse_binary_submission(body: bytes, query: QueryParams) -> tuple[list[bytes], bool]:
    """A binary body (`bft.txframe`: each transaction a 4-byte big-endian length and its bytes)
    and the query string `[wait=none|commit]` -> (transactions, wait for commit). The limits and
    refusals of `parse_submission`: at least one transaction (400), at most MAX_TXS_PER_REQUEST
    (413); a zero-length one is passed on, as an empty base64 string is, for the mempool to
    reject; a malformed framing is a 400 naming the offset."""
    unknown = set(query) - {"wait"}
    if unknown:
        raise HTTPException(400, f"unknown query parameters: {sorted(unknown)}")
    waits = query.getlist("wait")
    if len(waits) > 1:
        raise HTTPException(400, f"the query parameter wait is given {len(waits)} times, at most once")
    wait = waits[0] if waits else "none"
    if wait not in ("none", "commit"):
        raise HTTPException(400, f'the query parameter wait must be "none" or "commit", not {wait!r}')
    decoded = decode_binary_txs(body, MAX_TXS_PER_REQUEST)
    if not isinstance(decoded, list):
        if decoded.too_many:
            raise HTTPException(413, f"more than {MAX_TXS_PER_REQUEST} transactions in one request")
        raise HTTPException(400, f"binary body is malformed: {decoded.reason}")
    if not decoded:
        raise HTTPException(400, "binary body is empty: it must frame at least one transaction")
    return decoded, wait == "commit"


def _is_binary(request: Request) -> bool:
    """Whether the request's Content-Type is the binary body's (parameters ignored, any case)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0]
    return media_type.strip().lower() == BINARY_MEDIA_TYPE


def make_app(
    view: NodeView,
    *,
    body_timeout_s: float = _DEFAULTS.body_timeout_s,
    budget: AnswerBudget | None = None,
) -> Starlette:
    """The API over `view`. `budget` bounds the large answers being sent (default: a budget of
    `ApiSettings.max_answer_bytes_in_flight`)."""
    answers = budget if budget is not None else AnswerBudget(_DEFAULTS.max_answer_bytes_in_flight)
    rendered = RenderedBlocks()
    # Refusal lines per client host, status and route (not the reason: it quotes what the client
    # sent, so a client could make every line unique and defeat the thinning).
    refusal_log = RateLimitedLog(log)

    async def status(request: Request) -> Response:
        return _answer(view.status(), answers)

    async def block(request: Request) -> Response:
        raw = request.path_params["height"]
        if not _is_decimal(raw) or len(raw) > 18:
            raise HTTPException(400, f"height must be a non-negative integer, not {raw!r}")
        height = int(raw)
        if answers.in_flight_bytes + BUDGETED_ANSWER_BYTES > answers.max_bytes:
            raise _busy(answers)  # before reading or rendering anything
        body = rendered.get(height)
        if body is None:
            found = view.block(height)
            if found is None and 1 <= height < (earliest := view.pruned_below()):
                raise HTTPException(410, f"block {height} is pruned: this node keeps heights from {earliest}")
            if found is None:
                raise HTTPException(404, f"no committed block at height {raw}")
            body = _render(found)
            rendered.put(height, body)
        return _rendered_answer(body, answers)

    async def snapshots(request: Request) -> Response:
        """`GET /snapshots`: the snapshots this node serves to a joining peer (`bft.node.statesync`)."""
        return _answer({"snapshots": view.snapshots()}, answers)

    async def snapshot_chunk(request: Request) -> Response:
        """`GET /snapshots/<height>/<format>/<index>`: one chunk of a snapshot, as the application
        wrote it (binary)."""
        height, fmt, index = (_path_int(request, name) for name in ("height", "format", "index"))
        if answers.in_flight_bytes + BUDGETED_ANSWER_BYTES > answers.max_bytes:
            raise _busy(answers)
        chunk = view.snapshot_chunk(height, fmt, index)
        if chunk is None:
            raise HTTPException(404, f"no chunk {index} of a format {fmt} snapshot at height {height} here")
        return _rendered_answer(chunk, answers, binary=True)

    async def snapshot_txs(request: Request) -> Response:
        """`GET /snapshots/<height>/txs[?after=<hash>]`: a page of the transaction records of the
        snapshot at `height`, in hash order, those above `after` (`bft.node.tx_set`, binary; an
        empty page is the end)."""
        height = _path_int(request, "height")
        unknown = set(request.query_params) - {"after"}
        if unknown:
            raise HTTPException(400, f"unknown query parameters: {sorted(unknown)}")
        raw = request.query_params.get("after", "")
        if raw and (len(raw) != _HASH_HEX_CHARS or any(c not in "0123456789abcdef" for c in raw)):
            raise HTTPException(400, f"after is a transaction hash: {_HASH_HEX_CHARS} lowercase hex digits")
        if answers.in_flight_bytes + BUDGETED_ANSWER_BYTES > answers.max_bytes:
            raise _busy(answers)
        page = view.snapshot_txs(height, bytes.fromhex(raw))
        if page is None:
            raise HTTPException(404, f"no snapshot at height {height} here")
        return _rendered_answer(page, answers, binary=True)

    async def submit(request: Request) -> Response:
        body = await _read_body(request, body_timeout_s)
        if _is_binary(request):
            txs, wait_commit = parse_binary_submission(body, request.query_params)
        else:
            txs, wait_commit = parse_submission(body)
        results, full = await view.submit(txs, wait_commit)
        if full:
            response = _answer({"results": results}, answers, status_code=503)
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response
        return _answer({"results": results}, answers)

    async def tx(request: Request) -> Response:
        raw = request.path_params["hash"]
        if len(raw) != _HASH_HEX_CHARS or any(c not in "0123456789abcdef" for c in raw):
            raise HTTPException(400, f"a transaction hash is {_HASH_HEX_CHARS} lowercase hex digits")
        found = view.tx(bytes.fromhex(raw))
        if found is None:
            raise HTTPException(404, f"transaction {raw} is not committed")
        return _answer(found, answers)

    async def key_value(request: Request) -> Response:
        """`GET /kv/<key>[?min_height=H]`: the committed value and the height it was read at.
        With `min_height`, the read waits (at most `MIN_HEIGHT_WAIT_S`) until this node has
        committed height H, else a 503: a client that passes the highest height it was ever
        acknowledged never reads a state older than its own writes, whichever node it asks."""
        key = request.path_params["key"]
        if not key:
            raise HTTPException(400, "empty key")
        unknown = set(request.query_params) - {"min_height"}
        if unknown:
            raise HTTPException(400, f"unknown query parameters: {sorted(unknown)}")
        min_height = _query_int(request, "min_height", 0, None)
        if min_height is not None:
            reached = await view.wait_height(min_height, MIN_HEIGHT_WAIT_S)
            if reached < min_height:
                detail = (
                    f"this node is at height {reached}, below min_height {min_height}; retry or ask another"
                )
                body = _render({"error": detail, "height": reached})
                return Response(body, 503, headers={"Retry-After": "1"}, media_type="application/json")
        try:
            found = view.kv(key)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from exc
        if found["value"] is None:
            detail = f"no committed value for key {key!r}"
            return _answer({"error": detail, "key": key, "height": found["height"]}, answers, 404)
        return _answer(found, answers)

    async def evidence(request: Request) -> Response:
        """`GET /evidence[?limit=N][&before=SEQ]`: kept equivocations, newest first; the next page
        is `before=` the last item's `seq`."""
        unknown = set(request.query_params) - {"limit", "before"}
        if unknown:
            raise HTTPException(400, f"unknown query parameters: {sorted(unknown)}")
        limit = _query_int(request, "limit", 1, MAX_EVIDENCE_PAGE)
        before = _query_int(request, "before", 1, None)
        return _answer(view.evidence(EVIDENCE_PAGE if limit is None else limit, before), answers)

    async def health(request: Request) -> Response:
        """`GET /health`: 200 while healthy, else 503 (`bft.node.health`), the same JSON shape
        either way, so a load balancer reads the status and an operator the reason."""
        verdict = view.health()
        return _answer(health_json(verdict), answers, status_code=200 if verdict.healthy else 503)

    async def net_info(request: Request) -> Response:
        return _answer(net_info_json(view.net_info()), answers)

    async def consensus_state(request: Request) -> Response:
        return _answer(consensus_state_json(view.consensus_state()), answers)

    async def unconfirmed_txs(request: Request) -> Response:
        """`GET /unconfirmed_txs[?limit=N]`: the mempool's count, bytes and oldest N hashes."""
        unknown = set(request.query_params) - {"limit"}
        if unknown:
            raise HTTPException(400, f"unknown query parameters: {sorted(unknown)}")
        limit = _query_int(request, "limit", 0, MAX_UNCONFIRMED_PAGE)
        pending = view.unconfirmed_txs(UNCONFIRMED_PAGE if limit is None else limit)
        return _answer(pending_txs_json(pending), answers)

    async def metrics(request: Request) -> Response:
        return Response(view.render_metrics(), media_type=CONTENT_TYPE)

    async def events(request: Request) -> Response:
        dropped = trio.Event()
        try:
            channel = view.subscribe(dropped.set)
        except TooManyWaiting as exc:
            raise HTTPException(503, str(exc)) from exc
        connection = request.scope.get("state", {}).get(CONNECTION_STATE_KEY)
        return _EventStream(channel, dropped, connection, _client_host(request))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        host = _client_host(request)
        route = getattr(request.scope.get("route"), "path", "-")
        line = kv(
            event="request_refused",
            client=host,
            status=exc.status_code,
            method=_clip(request.method),
            path=_path_of(request),
            reason=_clip(exc.detail),
        )
        refusal_log.log(logging.INFO, (host, exc.status_code, route), line)
        body = _render({"error": exc.detail})
        return Response(body, status_code=exc.status_code, headers=exc.headers, media_type="application/json")

    async def client_gone(request: Request, exc: Exception) -> Response:
        # Nobody reads this answer; what matters is that a hang-up is not logged as a failure.
        log.debug(kv(event="client_disconnected", client=_client_host(request), path=_path_of(request)))
        return Response(status_code=400)

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.exception(kv(event="request_failed", path=_path_of(request)))
        return Response(_render({"error": "internal error"}), status_code=500, media_type="application/json")

    app = Starlette(
        routes=[
            Route("/status", status, methods=["GET"]),
            Route("/blocks/{height}", block, methods=["GET"]),
            Route("/txs", submit, methods=["POST"]),
            Route("/tx/{hash}", tx, methods=["GET"]),
            Route("/kv/{key:path}", key_value, methods=["GET"]),
            Route("/evidence", evidence, methods=["GET"]),
            Route("/snapshots", snapshots, methods=["GET"]),
            Route("/snapshots/{height}/txs", snapshot_txs, methods=["GET"]),
            Route("/snapshots/{height}/{format}/{index}", snapshot_chunk, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/net_info", net_info, methods=["GET"]),
            Route("/consensus_state", consensus_state, methods=["GET"]),
            Route("/unconfirmed_txs", unconfirmed_txs, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/events", events, methods=["GET"]),
        ],
        exception_handlers={
            HTTPException: http_error,
            ClientDisconnect: client_gone,
            Exception: internal_error,
        },
    )
    app.router.redirect_slashes = False  # "/status/" is an unknown path (404), not a redirect
    return app


def _clip(text: object) -> str:
    text = str(text)
    return text if len(text) <= LOG_TEXT_CHARS else text[:LOG_TEXT_CHARS] + "..."


def _client_host(request: Request) -> str:
    return request.client.host if request.client is not None else "-"


class _EventStream(Response):
    """Server-sent events: one `block` event per committed block, a comment line when idle. If
    the node drops the subscriber for lagging, the stream ends at once and the connection is
    closed (its buffered events are discarded; the client reconnects): waiting for it to drain
    would keep the connection, this task and up to FEED_BUFFER_BLOCKS events for a client that
    does not read."""

    def __init__(
        self,
        channel: trio.MemoryReceiveChannel[dict[str, Any]],
        dropped: trio.Event,
        connection: ConnectionControl | None,
        client: str,
    ) -> None:
        super().__init__(status_code=200)
        self.raw_headers = [
            (b"content-type", b"text/event-stream; charset=utf-8"),
            (b"cache-control", b"no-cache"),
        ]
        self._channel = channel
        self._dropped = dropped
        self._connection = connection
        self._client = client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        disconnected = False

        async def until_disconnect(cancel: trio.CancelScope) -> None:
            nonlocal disconnected
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected = True
            cancel.cancel()

        async def until_dropped(cancel: trio.CancelScope) -> None:
            await self._dropped.wait()
            log.info(
                kv(event="events_stream_closed", client=self._client, reason="subscriber dropped (lagging)")
            )
            if self._connection is not None:
                # Ends a send that is stuck on a client that does not read (hypercorn shields it).
                self._connection.abort()
            cancel.cancel()

        with self._channel:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(until_disconnect, nursery.cancel_scope)
                nursery.start_soon(until_dropped, nursery.cancel_scope)
                await self._stream(send)
                nursery.cancel_scope.cancel()
        if self._dropped.is_set() and self._connection is not None:
            self._connection.abort()  # idempotent; the stream may have seen its channel end first
        elif not disconnected:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, send: Send) -> None:
        await send(
            {"type": "http.response.body", "body": b": committed blocks from now on\n\n", "more_body": True}
        )
        while True:
            event: dict[str, Any] | None = None
            with trio.move_on_after(EVENTS_KEEPALIVE_S):
                try:
                    event = await self._channel.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    return
            if event is None:
                text = ": keepalive\n\n"
            else:
                text = f"event: block\nid: {event['height']}\ndata: {json.dumps(event)}\n\n"
            await send({"type": "http.response.body", "body": text.encode(), "more_body": True})
