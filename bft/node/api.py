"""The node's HTTP/JSON API, served by hypercorn on trio (DESIGN.md, "Interfaces other programs
rely on").

Owns: routes, JSON shapes, request limits, and the refusal of bad requests: malformed JSON, bad
base64, an oversized body, an unknown path or a wrong method each get a 4xx with
`{"error": ...}`; nothing a client sends takes the node down.
May not: touch the replica; it reads and submits through the `NodeView` the runtime provides.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Final, Protocol

import trio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bft.node.api_json import b64
from bft.node.commits import TooManyWaiting
from bft.node.logs import kv
from bft.node.metrics import CONTENT_TYPE

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


class NodeView(Protocol):
    def status(self) -> dict[str, Any]: ...
    def block(self, height: int) -> dict[str, Any] | None: ...
    async def submit(self, txs: list[bytes], wait_commit: bool) -> tuple[list[dict[str, Any]], bool]: ...
    def tx(self, h: bytes) -> dict[str, Any] | None: ...
    def kv(self, key: str) -> dict[str, Any] | None: ...
    def evidence(self, limit: int, before: int | None) -> list[dict[str, Any]]: ...
    def render_metrics(self) -> bytes: ...
    def subscribe(self) -> trio.MemoryReceiveChannel[dict[str, Any]]: ...


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


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not _is_decimal(declared) or int(declared) > MAX_BODY_BYTES):
        raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    # aclosing: refusing mid-stream must close the generator now, not leave it to the GC.
    async with contextlib.aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise HTTPException(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _path_of(request: Request) -> str:
    """The request's path for a log line. Not `request.url.path`: building the URL decodes the
    query string as UTF-8, and over HTTP/2 a client may send any bytes there, so a refusal (or the
    500 handler itself) would raise instead of answering."""
    return str(request.scope.get("path", ""))


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


def make_app(view: NodeView) -> Starlette:
    async def status(request: Request) -> JSONResponse:
        return JSONResponse(view.status())

    async def block(request: Request) -> JSONResponse:
        raw = request.path_params["height"]
        if not _is_decimal(raw) or len(raw) > 18:
            raise HTTPException(400, f"height must be a non-negative integer, not {raw!r}")
        found = view.block(int(raw))
        if found is None:
            raise HTTPException(404, f"no committed block at height {raw}")
        return JSONResponse(found)

    async def submit(request: Request) -> JSONResponse:
        txs, wait_commit = parse_submission(await _read_body(request))
        results, full = await view.submit(txs, wait_commit)
        if full:
            headers = {"Retry-After": str(RETRY_AFTER_S)}
            return JSONResponse({"results": results}, status_code=503, headers=headers)
        return JSONResponse({"results": results})

    async def tx(request: Request) -> JSONResponse:
        raw = request.path_params["hash"]
        if len(raw) != _HASH_HEX_CHARS or any(c not in "0123456789abcdef" for c in raw):
            raise HTTPException(400, f"a transaction hash is {_HASH_HEX_CHARS} lowercase hex digits")
        found = view.tx(bytes.fromhex(raw))
        if found is None:
            raise HTTPException(404, f"transaction {raw} is not committed")
        return JSONResponse(found)

    async def key_value(request: Request) -> JSONResponse:
        key = request.path_params["key"]
        if not key:
            raise HTTPException(400, "empty key")
        try:
            found = view.kv(key)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from exc
        if found is None:
            raise HTTPException(404, f"no committed value for key {key!r}")
        return JSONResponse(found)

    async def evidence(request: Request) -> JSONResponse:
        """`GET /evidence[?limit=N][&before=SEQ]`: kept equivocations, newest first; the next page
        is `before=` the last item's `seq`."""
        unknown = set(request.query_params) - {"limit", "before"}
        if unknown:
            raise HTTPException(400, f"unknown query parameters: {sorted(unknown)}")
        limit = _query_int(request, "limit", 1, MAX_EVIDENCE_PAGE)
        before = _query_int(request, "before", 1, None)
        return JSONResponse(view.evidence(EVIDENCE_PAGE if limit is None else limit, before))

    async def metrics(request: Request) -> Response:
        return Response(view.render_metrics(), media_type=CONTENT_TYPE)

    async def events(request: Request) -> StreamingResponse:
        try:
            channel = view.subscribe()
        except TooManyWaiting as exc:
            raise HTTPException(503, str(exc)) from exc
        return StreamingResponse(
            _event_stream(channel),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        if exc.status_code < 500:
            log.info(
                kv(event="request_refused", path=_path_of(request), status=exc.status_code, reason=exc.detail)
            )
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception(kv(event="request_failed", path=_path_of(request)))
        return JSONResponse({"error": "internal error"}, status_code=500)

    app = Starlette(
        routes=[
            Route("/status", status, methods=["GET"]),
            Route("/blocks/{height}", block, methods=["GET"]),
            Route("/txs", submit, methods=["POST"]),
            Route("/tx/{hash}", tx, methods=["GET"]),
            Route("/kv/{key:path}", key_value, methods=["GET"]),
            Route("/evidence", evidence, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/events", events, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
    )
    app.router.redirect_slashes = False  # "/status/" is an unknown path (404), not a redirect
    return app


async def _event_stream(channel: trio.MemoryReceiveChannel[dict[str, Any]]) -> AsyncIterator[str]:
    """Server-sent events: one `block` event per committed block; the stream ends if the
    subscriber lagged so far behind that the node dropped it (the client reconnects)."""
    with channel:
        yield ": committed blocks from now on\n\n"
        while True:
            event: dict[str, Any] | None = None
            with trio.move_on_after(EVENTS_KEEPALIVE_S):
                try:
                    event = await channel.receive()
                except trio.EndOfChannel:
                    return
            if event is None:
                yield ": keepalive\n\n"
            else:
                yield f"event: block\nid: {event['height']}\ndata: {json.dumps(event)}\n\n"
