"""The local tunnel service: the runtime wire contract plus the MCP front door.

Runtime API (Bearer runtime key bound to the tunnel, see ``credentials``): ``GET /v1/tunnels/{id}``,
``GET /v1/tunnels/{id}/poll``, ``POST /v1/tunnels/{id}/response``. Front door (what hosted MCP clients call):
``POST /v1/mcp/{id}`` enqueues a ``jsonrpc`` command and answers with JSON, or with SSE
carrying each ``jsonrpc_notify`` and then the final message when the caller accepts
``text/event-stream``; ``DELETE /v1/mcp/{id}`` becomes ``session_termination``. With front-door
authentication on, each front-door request needs the tunnel's caller token (``FrontDoorGuard``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from tunnel_core.config.durations import parse_response_timeout
from tunnel_core.devservice.admin import build_admin_routes
from tunnel_core.devservice.backends.base import poller_from_headers
from tunnel_core.devservice.broker import Broker, DeliveryError, Pending
from tunnel_core.devservice.credentials import FrontDoorGuard, FrontDoorPolicy, Gate
from tunnel_core.devservice.oauth_routes import OAuthRewriteMiddleware, oauth_routes
from tunnel_core.devservice.registry import build_registry
from tunnel_core.devservice.testcontrols import TestControls, TestControlsMiddleware
from tunnel_core.wire.models import TUNNEL_ID_RE, TunnelResponsePayload
from tunnel_core.wire.status import status_text

log = logging.getLogger("tunnel_client.tunnelservice")

# Never queued for the tunnel client: framing and hop-by-hop headers of the front-door hop.
_DROP_INBOUND = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
                           "upgrade", "accept-encoding", "proxy-connection"})
MAX_BODY = 4 * 1024 * 1024


@dataclass(slots=True)
class ServiceConfig:
    runtime_keys: set[str] = field(default_factory=set, repr=False)  # unbound runtime keys
    # Tunnels an unbound runtime key may use; None = every tunnel (dev tunnel-service, dev proxy).
    unbound_key_tunnels: frozenset[str] | None = None
    bound_runtime_keys: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (tunnel id, key)
    caller_tokens: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (tunnel id, token)
    front_door: FrontDoorPolicy = field(default_factory=FrontDoorPolicy)  # default: no caller tokens needed
    response_timeout: float = 30.0
    max_poll_timeout: float = 60.0
    test_controls: TestControls | None = None  # fault knobs and request record, tests only
    admin_keys: dict[str, str | None] = field(default_factory=dict, repr=False)  # key -> org scope (None: any)
    data_dir: str = ""  # admin-created tunnels persist here (SQLite); "" keeps them in memory
    max_body: int = MAX_BODY  # front-door request and response-POST body cap, bytes
    # Point resource_metadata of relayed WWW-Authenticate headers at this service's PRMD route, as
    # the hosted service does (dev tunnel-service and dev proxy turn it on); off = exact pass-through.
    rewrite_www_authenticate: bool = True  # resource_metadata in a relayed 401 points at the tunnel


def api_error(status: int, message: str, code: str | None, typ: str = "invalid_request_error",
              headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": typ, "param": None, "code": code}},
                        status_code=status, headers=headers)


def _duration_ms(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def _inbound_headers(items: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    pairs = list(items)
    # Headers the caller nominated in Connection are hop-by-hop for this hop too (RFC 9110 7.6.1);
    # Connection itself is dropped below, so the tunnel client could no longer tell them apart.
    nominated = {tok.strip().lower() for k, v in pairs if k.lower() == "connection" for tok in v.split(",")}
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        if k.lower() not in _DROP_INBOUND and k.lower() not in nominated:
            out.setdefault(k, []).append(v)
    return out


def _answer_status(code: int) -> int:
    if code < 200 or code > 599:
        return 502
    return code


def _sse(payload: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


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

    registry.on_change(follow)
    follow()
    return Gate(registry, unbound_runtime_keys=config.runtime_keys, unbound_tunnels=config.unbound_key_tunnels,
                bound_runtime_keys=config.bound_runtime_keys, caller_tokens=config.caller_tokens,
                policy=config.front_door)


def build_service_app(broker: Broker, config: ServiceConfig, gate: Gate | None = None) -> ASGIApp:
    """The service's ASGI app; ``gate`` when the caller built it already (``build_gate``), to share it."""
    gate = gate or build_gate(broker, config)

    def tunnel_or_error(request: Request, *, runtime: bool) -> tuple[str, Response | None]:
        tunnel_id = request.path_params["tunnel_id"]
        if not TUNNEL_ID_RE.match(tunnel_id):
            return tunnel_id, api_error(400, "The tunnel ID is not a tunnel_<32 lowercase alphanumeric> value.",
                                        "invalid_tunnel_id_format")
        verdict = gate.runtime(bearer(request), tunnel_id) if runtime else "ok"
        if verdict == "invalid":
            return tunnel_id, api_error(401, "Missing or invalid runtime API key.", "invalid_api_key")
        if verdict == "forbidden":
            return tunnel_id, api_error(403, "This runtime API key is not bound to this tunnel; use the key "
                                        "issued for it.", "tunnel_use_forbidden", typ="permission_error")
        if tunnel_id not in broker.tunnels:
            return tunnel_id, api_error(404, f"Tunnel {tunnel_id} not found.", "tunnel_not_found")
        return tunnel_id, None

    async def metadata(request: Request) -> Response:
        tunnel_id, err = tunnel_or_error(request, runtime=True)
        if err:
            return err
        q = broker.tunnels[tunnel_id]
        return JSONResponse({"id": tunnel_id, "name": q.name, "description": q.description})

    async def poll(request: Request) -> Response:
        tunnel_id, err = tunnel_or_error(request, runtime=True)
        if err:
            return err
        try:
            limit = int(request.query_params.get("limit", "1"))
            timeout_ms = int(request.query_params.get("timeout_ms", "30000"))
        except ValueError:
            return api_error(400, "limit and timeout_ms must be integers.", None)
        if not 1 <= limit <= 25:
            return api_error(400, "limit must be between 1 and 25.", None)
        channels = set(request.query_params.getlist("channel")) or None
        timeout = min(max(timeout_ms, 0) / 1000, config.max_poll_timeout)
        commands: list[dict[str, Any]] = []
        poller = poller_from_headers(request.headers.get("x-tunnel-client-instance-id"),
                                     request.headers.get("x-tunnel-mcp-server-info"))
        failed: DeliveryError | None = None
        async with anyio.create_task_group() as tg:

            async def take() -> None:
                nonlocal commands, failed
                try:
                    commands = await broker.poll(tunnel_id, limit, timeout, channels, poller=poller)
                except DeliveryError as exc:  # the queue backend is unavailable
                    failed = exc
                tg.cancel_scope.cancel()

            async def until_disconnect() -> None:
                # A poller whose client has gone must stop waiting: otherwise it would take
                # commands that nobody receives, and hold up the server's shutdown.
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(take)
            tg.start_soon(until_disconnect)
        if failed is not None:
            return api_error(failed.status, failed.message, failed.code, headers={"Retry-After": "1"})
        if not commands:
            return Response(status_code=204)
        return JSONResponse({"commands": commands})

    async def response(request: Request) -> Response:
        tunnel_id, err = tunnel_or_error(request, runtime=True)
        if err:
            return err
        shard = request.headers.get("x-tunnel-shard-token", "")
        if not shard:
            return api_error(400, "X-Tunnel-Shard-Token header is required.", None)
        body = await request.body()
        if len(body) > config.max_body:
            return api_error(413, "Response body too large.", "request_body_too_large")
        try:
            raw = json.loads(body)
            TunnelResponsePayload.model_validate(raw)
        except (ValueError, ValidationError):
            return api_error(400, "The response payload is not a valid TunnelResponsePayload.",
                             "invalid_json_payload")
        try:
            await broker.respond(tunnel_id, shard, raw)
        except DeliveryError as exc:
            return api_error(exc.status, exc.message, exc.code)
        return JSONResponse({"status": "ok"})

    async def front_door(request: Request) -> Response:
        tunnel_id, err = tunnel_or_error(request, runtime=False)
        if err:
            return err
        if request.method == "GET":
            return Response(status_code=405, headers={"Allow": "POST, DELETE"})
        headers = _inbound_headers(request.headers.items())
        if request.method == "DELETE":
            if "mcp-session-id" not in {k.lower() for k in headers}:
                return api_error(400, "DELETE requires the Mcp-Session-Id header.", "missing_mcp_session_id")
            command = {"command_type": "session_termination", "channel": request.query_params.get("channel", "main"),
                       "created_at": _now_rfc3339(), "response_timeout": _duration_ms(config.response_timeout),
                       "headers": headers}
            return await _finish_plain(tunnel_id, command, is_request=False)
        body = await request.body()
        if len(body) > config.max_body:
            return api_error(413, "Request body too large.", "request_body_too_large")
        try:
            message = json.loads(body)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            return api_error(400, "The MCP request body must be a JSON object.", "invalid_json_payload")
        channel = request.query_params.get("channel", "main")
        response_timeout = _duration_ms(config.response_timeout)
        if config.test_controls is not None and "response_timeout" in request.query_params:
            response_timeout = request.query_params["response_timeout"]
        command = {
            "command_type": "jsonrpc",
            "channel": channel,
            "created_at": _now_rfc3339(),
            "response_timeout": response_timeout,
            "headers": headers,
            "jsonrpc": message,
        }
        is_request = "method" in message and "id" in message
        wants_sse = "text/event-stream" in request.headers.get("accept", "")
        if is_request and wants_sse:
            return await _finish_sse(tunnel_id, command, message.get("id"))
        return await _finish_plain(tunnel_id, command, is_request=is_request, rpc_id=message.get("id"))

    def _wait_budget(command: dict[str, Any]) -> float:
        """How long the front door waits: the command's own deadline plus a second of slack."""
        timeout = parse_response_timeout(command.get("response_timeout"))
        return (config.response_timeout if timeout is None else timeout) + 1.0

    async def _wait_terminal(p: Pending) -> dict[str, Any] | None:
        with anyio.move_on_after(_wait_budget(p.command)):
            async for payload in p.receive:
                if payload.get("resp_type") != "jsonrpc_notify":
                    return payload
        return None

    async def _finish_plain(tunnel_id: str, command: dict[str, Any], *, is_request: bool,
                            rpc_id: Any = None) -> Response:
        try:
            p = await broker.submit(tunnel_id, command)
        except DeliveryError as exc:
            return api_error(exc.status, exc.message, exc.code)
        try:
            final = await _wait_terminal(p)
        finally:
            broker.forget(tunnel_id, p.request_id)
        if final is None:
            return _timeout_response(is_request, rpc_id)
        status = _answer_status(int(final.get("resp_code") or 200))
        hdrs = {k: ", ".join(v) for k, v in (final.get("resp_headers") or {}).items()}
        body = final.get("resp_json")
        if body is None:
            hdrs.pop("Content-Type", None)
            return Response(status_code=status, headers=hdrs)
        hdrs["Content-Type"] = "application/json"
        return Response(json.dumps(body, separators=(",", ":")), status_code=status, headers=hdrs)

    async def _finish_sse(tunnel_id: str, command: dict[str, Any], rpc_id: Any) -> Response:
        try:
            p = await broker.submit(tunnel_id, command)
        except DeliveryError as exc:
            return api_error(exc.status, exc.message, exc.code)
        # Wait for the first message so the status line and session headers are real.
        first: dict[str, Any] | None = None
        budget = _wait_budget(command)
        with anyio.move_on_after(budget):
            first = await p.receive.receive()
        if first is None:
            broker.forget(tunnel_id, p.request_id)
            return _timeout_response(True, rpc_id)
        status = _answer_status(int(first.get("resp_code") or 200))
        hdrs = {k: ", ".join(v) for k, v in (first.get("resp_headers") or {}).items() if k.lower() != "content-type"}
        if first.get("resp_type") != "jsonrpc_notify":
            # Nothing to stream: a single JSON answer is valid for an SSE-capable caller too.
            broker.forget(tunnel_id, p.request_id)
            hdrs["Content-Type"] = "application/json"
            return Response(json.dumps(first.get("resp_json") or {}, separators=(",", ":")), status_code=status,
                            headers=hdrs)

        async def stream() -> AsyncIterator[bytes]:
            try:
                yield _sse(first.get("resp_json") or {})
                with anyio.move_on_after(budget):
                    async for payload in p.receive:
                        yield _sse(payload.get("resp_json") or {})
                        if payload.get("resp_type") != "jsonrpc_notify":
                            return
            finally:
                broker.forget(tunnel_id, p.request_id)

        return StreamingResponse(stream(), status_code=200 if status < 300 else status, headers=hdrs,
                                 media_type="text/event-stream")

    app = Starlette(
        routes=[
            *build_admin_routes(broker, gate, admin_keys=config.admin_keys, runtime_metadata=metadata),
            Route("/v1/tunnels/{tunnel_id}", metadata, methods=["GET"]),
            Route("/v1/tunnels/{tunnel_id}/poll", poll, methods=["GET"]),
            Route("/v1/tunnels/{tunnel_id}/response", response, methods=["POST"]),
            Route("/v1/mcp/{tunnel_id}", front_door, methods=["GET", "POST", "DELETE"]),
            *oauth_routes(broker, response_timeout=config.response_timeout),
        ]
    )
    if config.rewrite_www_authenticate:
        app = OAuthRewriteMiddleware(app)  # type: ignore[assignment]  # WWW-Authenticate -> tunnel PRMD URL
    guarded: ASGIApp = FrontDoorGuard(app, gate)
    if config.test_controls is not None:
        return TestControlsMiddleware(guarded, config.test_controls)
    return guarded


def _timeout_response(is_request: bool, rpc_id: Any) -> Response:
    if not is_request:
        return api_error(504, "The tunnel client did not answer in time.", "tunnel_client_not_connected")
    body = {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": -32603, "message": status_text(504)}}
    return JSONResponse(body, status_code=504)


def _now_rfc3339() -> str:
    import datetime

    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
