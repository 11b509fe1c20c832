"""The operator listener: probes and metrics for machines, the UI and its JSON APIs for people.

    /healthz /readyz /metrics        open to every client (see guard.py)
    / /ui /assets/* /favicon.ico     the UI (ui.py)
    /api/*                           JSON APIs, log stream, support bundle (api.py, bundle.py)
    /api/harpoon*, /harpoon/mcp      Harpoon's targets, calls and optional MCP endpoint (harpoon.py)

:class:`~tunnel_core.opsserver.context.OpsContext` is everything the listener reads; the composition
root fills it in.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tunnel_core.opsserver import api, harpoon, ui
from tunnel_core.opsserver.context import OpsContext
from tunnel_core.opsserver.guard import Guard

NO_CACHE = {"Cache-Control": "no-store"}


def build_ops_app(ctx: OpsContext) -> Any:
    """The ASGI app of the operator listener, loopback/same-origin guard included."""

    async def healthz(_: Request) -> Response:
        ctx.metrics.liveness.set(1)
        return PlainTextResponse("live", headers=NO_CACHE)

    async def readyz(_: Request) -> Response:
        ready, text = ctx.state.readiness()
        ctx.metrics.readiness.set(1 if ready else 0)
        return PlainTextResponse(text, status_code=200 if ready else 503, headers=NO_CACHE)

    async def metrics_endpoint(_: Request) -> Response:
        return Response(api.metrics_text(ctx), media_type="text/plain; version=0.0.4; charset=utf-8")

    app = Starlette(routes=[
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        *ui.routes(ctx),
        *api.routes(ctx),
        *harpoon.routes(ctx),
    ])
    return Guard(app, allow_remote=ctx.allow_remote_ui)
