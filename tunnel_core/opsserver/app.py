"""Operator listener: /healthz, /readyz, /metrics, /api/status and a minimal /ui page."""

from __future__ import annotations

import html
import ipaddress
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tunnel_core import __version__
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.state import RuntimeState

NO_CACHE = {"Cache-Control": "no-store"}


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in ("", "localhost")


def build_ops_app(
    state: RuntimeState, metrics: RelayMetrics, status: Callable[[], dict[str, Any]], *, allow_remote_ui: bool = False
) -> Starlette:
    async def healthz(_: Request) -> Response:
        metrics.liveness.set(1)
        return PlainTextResponse("live", headers=NO_CACHE)

    async def readyz(_: Request) -> Response:
        ready, text = state.readiness()
        metrics.readiness.set(1 if ready else 0)
        return PlainTextResponse(text, status_code=200 if ready else 503, headers=NO_CACHE)

    async def metrics_endpoint(_: Request) -> Response:
        ready, _text = state.readiness()
        metrics.readiness.set(1 if ready else 0)
        metrics.liveness.set(1)
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def guarded(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def inner(request: Request) -> Response:
            if not allow_remote_ui and not _is_loopback(request):
                return PlainTextResponse("forbidden: UI is served to loopback clients only", status_code=403)
            result: Response = await handler(request)
            return result

        return inner

    async def api_status(_: Request) -> Response:
        return JSONResponse(status(), headers=NO_CACHE)

    async def ui(_: Request) -> Response:
        data = status()
        ready, text = state.readiness()
        rows = "".join(
            f"<tr><td>{html.escape(c['name'])}</td><td>{html.escape(c['transport_kind'])}</td>"
            f"<td>{html.escape(c['target'])}</td><td>{html.escape(c['probe_status'])}</td></tr>"
            for c in data["channels"]
        )
        meta = data.get("tunnel_metadata") or {}
        page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>tunnel-client</title><meta name="viewport" content="width=device-width">
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}td,th{{padding:.2rem .8rem;text-align:left}}
.ok{{color:#0a7d32}}.bad{{color:#b00020}}</style></head><body>
<h1>tunnel-client <small>{html.escape(__version__)}</small></h1>
<p>Ready: <strong id="ready" class="{'ok' if ready else 'bad'}">{html.escape(text)}</strong></p>
<table><tr><th>Tunnel</th><td id="tunnel-id">{html.escape(data['control_plane_tunnel_id'])}</td></tr>
<tr><th>Name</th><td>{html.escape(str(meta.get('name', '')))}</td></tr>
<tr><th>Control plane</th><td>{html.escape(data['control_plane_base_url'])}</td></tr>
<tr><th>Last successful poll</th><td>{html.escape(data['last_poll_success'] or 'never')}</td></tr>
<tr><th>Uptime</th><td>{int(data['uptime_seconds'])} s</td></tr></table>
<h2>Channels</h2><table><tr><th>Channel</th><th>Transport</th><th>Target</th><th>Probe</th></tr>{rows}</table>
<p><a href="/metrics">metrics</a> · <a href="/api/status">status JSON</a></p></body></html>"""
        return HTMLResponse(page, headers=NO_CACHE)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
            Route("/api/status", guarded(api_status)),
            Route("/ui", guarded(ui)),
            Route("/ui/", guarded(ui)),
            Route("/", guarded(ui)),
        ]
    )


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""
