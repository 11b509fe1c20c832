"""The local tunnel service: the runtime wire contract plus the MCP front door.

Runtime API (Bearer runtime key bound to the tunnel, see ``credentials``): ``GET /v1/tunnels/{id}``,
``GET /v1/tunnels/{id}/poll``, ``POST /v1/tunnels/{id}/response`` (``runtime``). Front door (what
hosted MCP clients call): ``POST|DELETE /v1/mcp/{id}`` (``frontdoor``). With front-door
authentication on, each front-door request needs the tunnel's caller token (``FrontDoorGuard``).

The three routes every relayed call goes through (front door, poll, response) are matched first
and served as raw ASGI handlers (``ServiceApp``); every other request (admin API, metadata,
``/healthz``, OAuth discovery, and any variant of those paths Starlette would redirect or refuse)
goes through the Starlette app, which routes to the same handlers. What a request gets does not
depend on which way it came.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tunnel_core.devservice.admin import build_admin_routes
from tunnel_core.devservice.broker import Broker
from tunnel_core.devservice.config import MAX_BODY, ServiceConfig
from tunnel_core.devservice.credentials import FrontDoorGuard, Gate
from tunnel_core.devservice.frontdoor import FrontDoor, format_seconds, iso
from tunnel_core.devservice.oauth_routes import oauth_routes
from tunnel_core.devservice.registry import build_registry
from tunnel_core.devservice.runtime import RuntimeRoutes, tunnel_refusal
from tunnel_core.devservice.testcontrols import TestControlsMiddleware
from tunnel_core.wire.models import TUNNEL_ID_RE

__all__ = ["MAX_BODY", "ServiceApp", "ServiceConfig", "api_error", "build_gate", "build_service_app",
           "format_seconds"]

def api_error(status: int, message: str, code: str | None, typ: str = "invalid_request_error",
              headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": typ, "param": None, "code": code}},
                        status_code=status, headers=headers)


def build_gate(broker: Broker, config: ServiceConfig) -> Gate:
    """The registry (attached to ``broker``) and the credentials over it; the broker follows registry changes.

    Raises ``store.StoreError`` when ``config.data_dir`` cannot be used.
    """
    registry = build_registry(broker.backend, config.data_dir)
    broker.registry = registry
    static = set(broker.tunnels)  # served from flags: never removed by a registry change
    known: set[str] = set()

    def follow() -> None:
        nonlocal known
        for rec in registry.tunnels.values():
            q = broker.add_tunnel(rec.id, rec.name, rec.description)
            q.name, q.description = rec.name, rec.description
        for gone in known - set(registry.tunnels) - static:
            broker.remove_tunnel(gone)
        known = set(registry.tunnels)
        broker.wake_all()  # waiting polls re-check their key: a revoked one ends its poll at once

    registry.on_change(follow)
    follow()
    return Gate(registry, unbound_runtime_keys=config.runtime_keys, unbound_tunnels=config.unbound_key_tunnels,
                bound_runtime_keys=config.bound_runtime_keys, caller_tokens=config.caller_tokens,
                policy=config.front_door)


Handler = Callable[[Scope, Receive, Send, str], Awaitable[None]]


class _Routed:
    """A raw handler as a Starlette endpoint: the tunnel id comes from the route's path parameter."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send, scope["path_params"]["tunnel_id"])


class ServiceApp:
    """Raw dispatch of the hot routes; everything else goes to ``other`` (the guarded Starlette app).

    Matched here: ``GET|POST|DELETE /v1/mcp/tunnel_<32>`` (after the caller-token check),
    ``GET /v1/tunnels/{id}/poll`` and ``POST /v1/tunnels/{id}/response``: exactly the requests
    Starlette would route to the same handlers without a redirect or a 405.
    """

    lean_http = True  # needs no lifespan: netserve serves it with the service's own server (svcserver)

    def __init__(self, other: ASGIApp, guard: FrontDoorGuard, front_door: FrontDoor, runtime: RuntimeRoutes) -> None:
        self.other = other
        self.guard = guard
        self.front_door = front_door
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            method: str = scope["method"]
            if path.startswith("/v1/mcp/"):
                tunnel_id = path[8:]
                if method in ("POST", "DELETE", "GET") and TUNNEL_ID_RE.match(tunnel_id):
                    kept, refusal = self.guard.screen(scope, tunnel_id)
                    if kept is None:
                        await self.guard.refuse(scope, send, tunnel_id, refusal)
                        return
                    await self.front_door({**scope, "headers": kept}, receive, send, tunnel_id)
                    return
            elif path.startswith("/v1/tunnels/"):
                if method == "GET" and path.endswith("/poll"):
                    tunnel_id = path[12:-5]
                    if tunnel_id and "/" not in tunnel_id:
                        await self.runtime.poll(scope, receive, send, tunnel_id)
                        return
                elif method == "POST" and path.endswith("/response"):
                    tunnel_id = path[12:-9]
                    if tunnel_id and "/" not in tunnel_id:
                        await self.runtime.response(scope, receive, send, tunnel_id)
                        return
        await self.other(scope, receive, send)


def build_service_app(broker: Broker, config: ServiceConfig, gate: Gate | None = None) -> ASGIApp:
    """The service's ASGI app; ``gate`` when the caller built it already (``build_gate``), to share it."""
    gate = gate or build_gate(broker, config)
    front_door = FrontDoor(broker, gate, config)
    runtime = RuntimeRoutes(broker, gate, max_poll_timeout=config.max_poll_timeout, max_body=config.max_body)

    async def metadata(request: Request) -> Response:
        refused = tunnel_refusal(broker, gate, request.scope, request.path_params["tunnel_id"], runtime=True)
        if refused is not None:
            return Response(refused.body, refused.status, media_type="application/json")
        q = broker.tunnels[request.path_params["tunnel_id"]]
        return JSONResponse({"id": q.tunnel_id, "name": q.name, "description": q.description})

    async def healthz(request: Request) -> Response:
        """Liveness, and when each tunnel was last polled: the first thing to look at after a 504."""
        now = time.time()
        return JSONResponse({"status": "ok", "tunnels": [
            {"tunnel_id": q.tunnel_id, "last_poll": iso(q.last_poll) if q.last_poll else None,
             "seconds_since_last_poll": round(now - q.last_poll, 3) if q.last_poll else None,
             **({"connected": q.seen_within(config.client_last_seen_timeout, now)}
                if config.client_last_seen_timeout is not None else {})}
            for q in broker.tunnels.values()]})

    starlette = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *build_admin_routes(broker, gate, admin_keys=config.admin_keys, runtime_metadata=metadata),
            Route("/v1/tunnels/{tunnel_id}", metadata, methods=["GET"]),
            Route("/v1/tunnels/{tunnel_id}/poll", _Routed(runtime.poll), methods=["GET"]),
            Route("/v1/tunnels/{tunnel_id}/response", _Routed(runtime.response), methods=["POST"]),
            Route("/v1/mcp/{tunnel_id}", _Routed(front_door), methods=["GET", "POST", "DELETE"]),
            *oauth_routes(broker, response_timeout=config.response_timeout),
        ]
    )
    guard = FrontDoorGuard(starlette, gate)
    app: ASGIApp = ServiceApp(guard, guard, front_door, runtime)
    if config.test_controls is not None:
        return TestControlsMiddleware(app, config.test_controls)
    return app
