"""The node's HTTP/JSON API, served by hypercorn on trio.

Owns: routes, JSON shapes and the refusal of bad requests (a 4xx with `{"error": ...}`).
May not: touch the replica; it reads a `NodeView` the runtime provides.
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bft.core.messages import QuorumCert


class NodeView(Protocol):
    def status(self) -> dict[str, Any]: ...
    def block(self, height: int) -> dict[str, Any] | None: ...


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def qc_json(qc: QuorumCert) -> dict[str, Any]:
    return {
        "view": qc.view,
        "block_id": qc.block_id.hex(),
        "signatures": [{"signer": s, "signature": b64(sig)} for s, sig in qc.signatures],
    }


def make_app(view: NodeView) -> Starlette:
    async def status(request: Request) -> JSONResponse:
        return JSONResponse(view.status())

    async def block(request: Request) -> JSONResponse:
        raw = request.path_params["height"]
        if not raw.isdigit() or len(raw) > 18:
            raise HTTPException(400, f"height must be a non-negative integer, not {raw!r}")
        found = view.block(int(raw))
        if found is None:
            raise HTTPException(404, f"no committed block at height {raw}")
        return JSONResponse(found)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    return Starlette(
        routes=[
            Route("/status", status, methods=["GET"]),
            Route("/blocks/{height}", block, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
    )
