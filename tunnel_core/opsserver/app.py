"""The operator listener: probes and metrics for machines, the UI and its JSON APIs for people.

    /healthz /readyz /metrics        open to every client (see guard.py)
    / /ui /assets/* /favicon.ico     the UI (ui.py)
    /api/*                           JSON APIs, log stream, support bundle (api.py, bundle.py)

:class:`OpsContext` is everything the listener reads; the composition root fills it in.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tunnel_core.logs import LogBuffer
from tunnel_core.opsserver import api, ui
from tunnel_core.opsserver.guard import Guard
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.state import RuntimeState
from tunnel_core.relay.traffic import TrafficRecorder

NO_CACHE = {"Cache-Control": "no-store"}

# Returns the /api/oauth body (reference shape: discovery_urls, metadata, error, pending,
# www_authenticate_probe, metadata_source, authorization_server_count, ...) or None while
# OAuth discovery is not configured. Called on every request: keep it a cheap snapshot.
OAuthStatusProvider = Callable[[], Mapping[str, Any] | None]


@dataclass(slots=True)
class OpsContext:
    """What the operator listener shows. Only ``state``, ``metrics`` and ``status`` are required."""

    state: RuntimeState
    metrics: RelayMetrics
    status: Callable[[], Mapping[str, Any]]
    allow_remote_ui: bool = False
    logs: LogBuffer | None = None
    traffic: TrafficRecorder | None = None
    # Plug-in point for OAuth discovery: set it to a provider and the OAuth tab fills in.
    oauth: OAuthStatusProvider | None = None
    # The support bundle's runtime section (argv, environment, config); see bundle.runtime_snapshot.
    runtime: Callable[[], Mapping[str, Any]] | None = None
    # Extra /api/system members (e.g. CA bundle or proxy health once those exist).
    system_extra: Callable[[], Mapping[str, Any]] | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    sse_ping_seconds: float = 15.0


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
    ])
    return Guard(app, allow_remote=ctx.allow_remote_ui)


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""
