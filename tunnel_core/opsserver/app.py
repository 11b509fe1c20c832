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

from tunnel_core.opsserver import probes
from tunnel_core.opsserver.context import OpsContext
from tunnel_core.opsserver.guard import Guard

NO_CACHE = {"Cache-Control": "no-store"}


def build_ops_app(ctx: OpsContext) -> Any:
    """The ASGI app of the operator listener, loopback/same-origin guard included.

    GET/HEAD of the probe paths are answered without a framework (they are open to every
    client, so the guard has nothing to check); anything else goes to the full app, built
    on first use.
    """
    full: Any = None

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal full
        if scope["type"] == "http" and scope["path"] in probes.PATHS and scope["method"] in ("GET", "HEAD"):
            status, ctype, body = probes.answer(ctx, scope["path"])
            headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
            if scope["path"] != "/metrics":
                headers.append((b"cache-control", b"no-store"))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        if full is None:
            full = build_full_app(ctx)
        await full(scope, receive, send)

    return app


def build_full_app(ctx: OpsContext) -> Any:
    """Every route of the listener (UI, APIs, Harpoon, and the probes for other methods) on Starlette."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from tunnel_core.opsserver import api, harpoon, ui

    def probe(path: str) -> Any:
        async def endpoint(_: Request) -> Response:
            status, ctype, body = probes.answer(ctx, path)
            return Response(body, status_code=status, media_type=ctype,
                            headers=None if path == "/metrics" else NO_CACHE)

        return endpoint

    app = Starlette(routes=[
        *(Route(path, probe(path), methods=["GET"]) for path in sorted(probes.PATHS)),
        *ui.routes(ctx),
        *api.routes(ctx),
        *harpoon.routes(ctx),
    ])
    return Guard(app, allow_remote=ctx.allow_remote_ui)
