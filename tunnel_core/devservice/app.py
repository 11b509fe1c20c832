"""The local tunnel service: the runtime wire contract plus the MCP front door.

Runtime API (Bearer runtime key bound to the tunnel, see ``credentials``): ``GET /v1/tunnels/{id}``,
``GET /v1/tunnels/{id}/poll``, ``POST /v1/tunnels/{id}/response``. Front door (what hosted MCP clients call):
``POST /v1/mcp/{id}`` enqueues a ``jsonrpc`` command and answers with JSON, or with SSE
carrying each ``jsonrpc_notify`` and then the final message when the caller accepts
``text/event-stream``; ``DELETE /v1/mcp/{id}`` becomes ``session_termination``. With front-door
authentication on, each front-door request needs the tunnel's caller token (``FrontDoorGuard``).

A front-door caller that disconnects before a client took its command withdraws it; once a
client has it, the command runs to its own deadline (its answer is then refused with 404).
Channel names are checked (``CHANNEL_RE``), bodies nested deeper than ``max_json_depth`` are
refused, and the backend may refuse channels no client of the tunnel declared
(``unknown_channel``, ``serve``).
"""

from __future__ import annotations

import json
import logging
import time
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
from tunnel_core.devservice.jsonbody import DEFAULT_MAX_DEPTH, JSONBodyError, parse_json
from tunnel_core.devservice.oauth_routes import OAuthRewriteMiddleware, oauth_routes
from tunnel_core.devservice.registry import build_registry
from tunnel_core.devservice.testcontrols import TestControls, TestControlsMiddleware
from tunnel_core.logs import LogThrottle
from tunnel_core.wire.models import CHANNEL_RE, TUNNEL_ID_RE, TunnelResponsePayload
from tunnel_core.wire.status import status_text

log = logging.getLogger("tunnel_client.tunnelservice")
# Refusals are what anonymous or hostile input produces: their log lines are throttled per status
# (see LogThrottle), answers and failures of served calls are always logged.
_REFUSALS = frozenset({400, 401, 403, 404, 405, 408, 413, 415, 429, 431})
_refusal_log = LogThrottle()


def _admit_refusal(route: str, status: int) -> tuple[bool, dict[str, Any]]:
    """Whether to log this refusal, and the field that reports lines dropped before it."""
    if status not in _REFUSALS:
        return True, {}
    dropped = _refusal_log.admit(f"{route}:{status}")
    if dropped is None:
        return False, {}
    return True, ({"suppressed_similar": dropped} if dropped else {})

# Never queued for the tunnel client: framing and hop-by-hop headers of the front-door hop.
_DROP_INBOUND = frozenset({"host", "content-length", "connection", "keep-alive", "transfer-encoding", "te",
                           "upgrade", "accept-encoding", "proxy-connection"})
MAX_BODY = 4 * 1024 * 1024
MAX_POLL_CHANNELS = 64  # channel parameters one poll may name


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
    max_json_depth: int = DEFAULT_MAX_DEPTH  # deeper front-door bodies get 400 invalid_json_payload
    # Point resource_metadata of relayed WWW-Authenticate headers at this service's PRMD route, as
    # the hosted service does (dev tunnel-service and dev proxy turn it on); off = exact pass-through.
    rewrite_www_authenticate: bool = True  # resource_metadata in a relayed 401 points at the tunnel
    # dev proxy --client-last-seen-timeout: a front-door call for a tunnel no client polled within this
    # many seconds (and none is polling now) is refused at once with 503 tunnel_client_not_seen,
    # instead of waiting out the response timeout; None = always wait (tunnel-service, serve).
    client_last_seen_timeout: float | None = None


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


async def _until_disconnect(request: Request) -> None:
    """Return when the caller's connection is gone (the request body must already be read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


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
        broker.wake_all()  # waiting polls re-check their key: a revoked one ends its poll at once

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
        refused: tuple[int, str, str, str] | None = None
        if not TUNNEL_ID_RE.match(tunnel_id):
            refused = (400, "The tunnel ID is not a tunnel_<32 lowercase alphanumeric> value.",
                       "invalid_tunnel_id_format", "invalid_request_error")
        verdict = gate.runtime(bearer(request), tunnel_id) if runtime and refused is None else "ok"
        if verdict == "invalid":
            refused = (401, "Missing or invalid runtime API key.", "invalid_api_key", "invalid_request_error")
        elif verdict == "forbidden":
            refused = (403, "This runtime API key is not bound to this tunnel; use the key issued for it.",
                       "tunnel_use_forbidden", "permission_error")
        elif refused is None and tunnel_id not in broker.tunnels:
            refused = (404, f"Tunnel {tunnel_id} not found.", "tunnel_not_found", "invalid_request_error")
        if refused is None:
            return tunnel_id, None
        if runtime:  # front-door refusals are logged with the caller's outcome
            admit, dropped = _admit_refusal("runtime", refused[0])
            if admit:
                log.info("runtime request refused", extra={
                    "status_code": refused[0], "error_code": refused[2], "tunnel_id": tunnel_id[:64],
                    "http_method": request.method, "path": request.url.path[:200], **dropped})
        return tunnel_id, api_error(refused[0], refused[1], refused[2], typ=refused[3])

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
        if channels is not None and (len(channels) > MAX_POLL_CHANNELS
                                     or not all(CHANNEL_RE.match(c) for c in channels)):
            return api_error(400, f"channel: give at most {MAX_POLL_CHANNELS} channel names of 1-64 lowercase "
                             "letters, digits, '_' or '-'.", "invalid_channel")
        timeout = min(max(timeout_ms, 0) / 1000, config.max_poll_timeout)
        commands: list[dict[str, Any]] = []
        key = bearer(request)
        poller = poller_from_headers(request.headers.get("x-tunnel-client-instance-id"),
                                     request.headers.get("x-tunnel-mcp-server-info"))
        failed: DeliveryError | None = None
        async with anyio.create_task_group() as tg:

            async def take() -> None:
                nonlocal commands, failed
                try:
                    commands = await broker.poll(tunnel_id, limit, timeout, channels, poller=poller,
                                                 allowed=lambda: gate.runtime(key, tunnel_id) == "ok")
                except DeliveryError as exc:  # the queue backend is unavailable
                    failed = exc
                tg.cancel_scope.cancel()

            async def until_disconnect() -> None:
                # A poller whose client has gone must stop waiting: otherwise it would take
                # commands that nobody receives, and hold up the server's shutdown.
                await _until_disconnect(request)
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
            raw = parse_json(body, 0)  # the client is authenticated; only the parser's own limit applies
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
        """One info line per caller outcome (status, tunnel, channel, duration, failure source)."""
        outcome = _Outcome(request.path_params["tunnel_id"], request.query_params.get("channel", "main"),
                           request.method)
        try:
            resp = await _front_door(request, outcome)
        except anyio.get_cancelled_exc_class():
            outcome.log(499, failure="caller_gone")
            raise
        except Exception:
            outcome.log(500, failure="service_error")
            raise
        if isinstance(resp, StreamingResponse):
            return resp  # logged when the stream ends
        outcome.log(resp.status_code, body=getattr(resp, "body", b""))
        return resp

    async def _front_door(request: Request, outcome: _Outcome) -> Response:
        tunnel_id, err = tunnel_or_error(request, runtime=False)
        if err:
            return err
        if request.method == "GET":
            return Response(status_code=405, headers={"Allow": "POST, DELETE"})
        window = config.client_last_seen_timeout
        q = broker.tunnels.get(tunnel_id)
        if window is not None and q is not None and not q.seen_within(window, time.time()):
            return api_error(503, f"no tunnel-client has polled tunnel {tunnel_id} in the last "
                             f"{format_seconds(window)} (--client-last-seen-timeout); check that it runs and "
                             "reaches this service", "tunnel_client_not_seen")
        channel = request.query_params.get("channel", "main")
        if not CHANNEL_RE.match(channel):
            return api_error(400, "channel: use 1-64 lowercase letters, digits, '_' or '-'.", "invalid_channel")
        headers = _inbound_headers(request.headers.items())
        if request.method == "DELETE":
            if "mcp-session-id" not in {k.lower() for k in headers}:
                return api_error(400, "DELETE requires the Mcp-Session-Id header.", "missing_mcp_session_id")
            command = {"command_type": "session_termination", "channel": channel,
                       "created_at": _now_rfc3339(), "response_timeout": _duration_ms(config.response_timeout),
                       "headers": headers}
            return await _finish_plain(request, tunnel_id, command, is_request=False)
        body = await request.body()
        if len(body) > config.max_body:
            return api_error(413, "Request body too large.", "request_body_too_large")
        try:
            message = parse_json(body, config.max_json_depth)
        except JSONBodyError as exc:
            message = exc
        if not isinstance(message, dict):
            why = f" {message}" if isinstance(message, JSONBodyError) else ""
            return api_error(400, "The MCP request body must be a JSON object." + why, "invalid_json_payload")
        outcome.rpc_method = str(message.get("method") or "")[:64]
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
            return await _finish_sse(request, tunnel_id, command, message.get("id"), outcome)
        return await _finish_plain(request, tunnel_id, command, is_request=is_request, rpc_id=message.get("id"))

    def _wait_budget(command: dict[str, Any]) -> float:
        """How long the front door waits: the command's own deadline plus a second of slack."""
        timeout = parse_response_timeout(command.get("response_timeout"))
        return (config.response_timeout if timeout is None else timeout) + 1.0

    async def _wait(request: Request, p: Pending, *, terminal: bool) -> dict[str, Any] | None:
        """The first payload for ``p`` (with ``terminal``: the first terminal one); None when the
        budget ran out or the caller disconnected (the caller's ``forget`` then withdraws the command)."""
        got: dict[str, Any] | None = None
        async with anyio.create_task_group() as tg:

            async def caller_gone() -> None:
                await _until_disconnect(request)
                tg.cancel_scope.cancel()

            tg.start_soon(caller_gone)
            with anyio.move_on_after(_wait_budget(p.command)):
                async for payload in p.receive:
                    if not terminal or payload.get("resp_type") != "jsonrpc_notify":
                        got = payload
                        break
            tg.cancel_scope.cancel()
        return got

    async def _finish_plain(request: Request, tunnel_id: str, command: dict[str, Any], *, is_request: bool,
                            rpc_id: Any = None) -> Response:
        try:
            p = await broker.submit(tunnel_id, command)
        except DeliveryError as exc:
            return api_error(exc.status, exc.message, exc.code)
        try:
            final = await _wait(request, p, terminal=True)
        finally:
            broker.forget(tunnel_id, p.request_id)
        if final is None:
            return _timeout_response(is_request, rpc_id, _no_answer(tunnel_id, p))
        status = _answer_status(int(final.get("resp_code") or 200))
        hdrs = {k: ", ".join(v) for k, v in (final.get("resp_headers") or {}).items()}
        body = final.get("resp_json")
        if body is None:
            hdrs.pop("Content-Type", None)
            return Response(status_code=status, headers=hdrs)
        hdrs["Content-Type"] = "application/json"
        return Response(json.dumps(body, separators=(",", ":")), status_code=status, headers=hdrs)

    def _no_answer(tunnel_id: str, p: Pending) -> _NoAnswer:
        """Why a caller got no answer: nobody took the command, or the client that took it stayed silent."""
        waited = format_seconds(_wait_budget(p.command) - 1.0)
        if p.polled:
            return _NoAnswer("client_timeout", "tunnel_client_not_connected",
                             f"the tunnel-client took the request but sent no answer within {waited}; "
                             "check its log and its MCP server")
        q = broker.tunnels.get(tunnel_id)
        last = q.last_poll if q is not None else 0.0
        seen = "never polled" if not last else f"last poll {format_seconds(max(0.0, time.time() - last))} ago"
        return _NoAnswer("no_poller", "tunnel_client_not_seen",
                         f"no tunnel-client polled tunnel {tunnel_id} within {waited} ({seen}); "
                         "start `tunnel-client run` for this tunnel, or check its /readyz")

    async def _finish_sse(request: Request, tunnel_id: str, command: dict[str, Any], rpc_id: Any,
                          outcome: _Outcome) -> Response:
        try:
            p = await broker.submit(tunnel_id, command)
        except DeliveryError as exc:
            return api_error(exc.status, exc.message, exc.code)
        # Wait for the first message so the status line and session headers are real.
        budget = _wait_budget(command)
        try:
            first = await _wait(request, p, terminal=False)
        except BaseException:
            broker.forget(tunnel_id, p.request_id)
            raise
        if first is None:
            broker.forget(tunnel_id, p.request_id)
            return _timeout_response(True, rpc_id, _no_answer(tunnel_id, p))
        status = _answer_status(int(first.get("resp_code") or 200))
        hdrs = {k: ", ".join(v) for k, v in (first.get("resp_headers") or {}).items() if k.lower() != "content-type"}
        if first.get("resp_type") != "jsonrpc_notify":
            # Nothing to stream: a single JSON answer is valid for an SSE-capable caller too.
            broker.forget(tunnel_id, p.request_id)
            hdrs["Content-Type"] = "application/json"
            return Response(json.dumps(first.get("resp_json") or {}, separators=(",", ":")), status_code=status,
                            headers=hdrs)

        async def stream() -> AsyncIterator[bytes]:
            last: dict[str, Any] = {}
            try:
                yield _sse(first.get("resp_json") or {})
                with anyio.move_on_after(budget):
                    async for payload in p.receive:
                        last = payload
                        yield _sse(payload.get("resp_json") or {})
                        if payload.get("resp_type") != "jsonrpc_notify":
                            return
            finally:
                broker.forget(tunnel_id, p.request_id)
                if last.get("resp_type", "jsonrpc_notify") == "jsonrpc_notify":
                    outcome.log(200, failure="stream_ended_without_answer")
                else:
                    outcome.log(_answer_status(int(last.get("resp_code") or 200)), payload=last.get("resp_json"))

        return StreamingResponse(stream(), status_code=200 if status < 300 else status, headers=hdrs,
                                 media_type="text/event-stream")

    async def healthz(request: Request) -> Response:
        """Liveness, and when each tunnel was last polled: the first thing to look at after a 504."""
        now = time.time()
        return JSONResponse({"status": "ok", "tunnels": [
            {"tunnel_id": q.tunnel_id, "last_poll": _iso(q.last_poll) if q.last_poll else None,
             "seconds_since_last_poll": round(now - q.last_poll, 3) if q.last_poll else None,
             **({"connected": q.seen_within(config.client_last_seen_timeout, now)}
                if config.client_last_seen_timeout is not None else {})}
            for q in broker.tunnels.values()]})

    app = Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
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


@dataclass(frozen=True, slots=True)
class _NoAnswer:
    reason: str  # failure source in the service's log: no_poller | client_timeout
    code: str  # API error code for callers that sent no JSON-RPC request
    detail: str


def _timeout_response(is_request: bool, rpc_id: Any, why: _NoAnswer) -> Response:
    if not is_request:
        return api_error(504, f"Gateway Timeout: {why.detail}.", why.code)
    body = {"jsonrpc": "2.0", "id": rpc_id, "error": {
        "code": -32603, "message": f"{status_text(504)}: {why.detail}",
        "data": {"tunnel_service": {"reason": why.reason, "detail": why.detail}}}}
    return JSONResponse(body, status_code=504)


@dataclass(slots=True)
class _Outcome:
    """What the service logs about one front-door call, once its status is known."""

    tunnel_id: str
    channel: str
    method: str
    rpc_method: str = ""
    started: float = field(default_factory=time.monotonic)

    def log(self, status: int, *, failure: str = "", body: bytes = b"", payload: Any = None) -> None:
        admit, dropped = _admit_refusal("front_door", status)
        if not admit:
            return
        if not failure and status >= 400:
            failure = _failure_source(body, payload)
        log.info("front door request", extra={
            "status_code": status, "tunnel_id": self.tunnel_id[:64], "channel": self.channel[:64],
            "http_method": self.method, "rpc_method": self.rpc_method,
            "duration_ms": round((time.monotonic() - self.started) * 1000, 1),
            "failure_source": failure, **dropped})


def _failure_source(body: bytes, payload: Any) -> str:
    """The bounded source of a failed answer: tunnel_failure.source, the service's reason, or the API error code."""
    if payload is None and body:
        try:
            payload = json.loads(body)
        except ValueError:
            return "upstream"
    err = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(err, dict):
        return "upstream"
    data = err.get("data")
    if isinstance(data, dict):
        for key, field_name in (("tunnel_failure", "source"), ("tunnel_service", "reason")):
            inner = data.get(key)
            if isinstance(inner, dict) and isinstance(inner.get(field_name), str):
                return str(inner[field_name])[:64]
    code = err.get("code")
    return code[:64] if isinstance(code, str) else "upstream"


def format_seconds(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s".replace(".0s", "s")


def _iso(ts: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _now_rfc3339() -> str:
    return _iso(time.time())
