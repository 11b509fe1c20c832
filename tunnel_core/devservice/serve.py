"""``tunnel-client serve``: the tunnel service in production mode (self-hosted relay).

The same runtime API and MCP front door as ``dev tunnel-service``, with every credential
scoped (runtime keys bound to tunnels, caller tokens on the front door unless opted out; see
``credentials``), behind an edge that a service on a reachable host needs: TLS, bounded request
heads, read and idle timeouts and a connection limit that spares the health endpoints (the
service's own server, ``tunnel_core.svcserver``), a request-body cap, per-tunnel and per-caller rate limits
(429 ``rate_limit_exceeded`` with ``Retry-After``, shared by every instance when the queue is in
Redis), only channels a client named (``unknown_channel``), and the service's own ``/healthz``,
``/readyz`` and ``/metrics``. With
``--engine-queue-backend redis`` any number of instances share one Redis behind any load
balancer (see docs/self-hosting.md).

Composition root: ``run_service(options, stop, on_ready)`` builds the backend, broker, app and
edge, runs them in one task group, and on ``stop`` stops handing out work before the listener
closes, so queued commands stay queued for the other instances.
"""

from __future__ import annotations

import json
import logging
import math
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunnel_core.devservice.backends import build_backend
from tunnel_core.devservice.broker import Broker
from tunnel_core.devservice.credentials import CALLER_TOKEN_HEADER, FrontDoorPolicy, Gate, digest
from tunnel_core.errors import ConfigError

log = logging.getLogger("tunnel_client.tunnelservice")

CALLER_TOKEN_KEY = CALLER_TOKEN_HEADER.lower().encode()
_FRONT_DOOR = re.compile(r"^/v1/mcp/([^/]+)$")
_RUNTIME = re.compile(r"^/v1/tunnels/([^/]+)(/poll|/response)?$")


@dataclass(slots=True)
class ServeOptions:
    listen: str = "127.0.0.1:8080"
    tunnel_ids: list[str] = field(default_factory=list)
    runtime_keys: set[str] = field(default_factory=set, repr=False)  # unbound: valid for unbound_key_tunnels
    unbound_key_tunnels: frozenset[str] = frozenset()
    bound_runtime_keys: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (tunnel id, key)
    caller_tokens: list[tuple[str, str]] = field(default_factory=list, repr=False)  # (tunnel id, token)
    front_door: FrontDoorPolicy = field(default_factory=lambda: FrontDoorPolicy(default=True))
    tls_client_ca_file: str = ""  # mutual TLS: client certificates signed by these CAs are required
    admin_keys: dict[str, str | None] = field(default_factory=dict, repr=False)
    data_dir: str = ""
    response_timeout: float = 30.0
    queue_backend: str = "inmem"
    redis_url: str = field(default="", repr=False)
    instance_id: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_key_password: str = field(default="", repr=False)
    max_body: int = 4 * 1024 * 1024
    rate_limit: float = 0.0  # front-door requests per second per tunnel; 0 = off
    rate_burst: int = 0  # 0 = max(1, 2 x rate)
    runtime_rate_limit: float = 0.0  # poll/response/metadata requests per second per tunnel; 0 = off
    max_queued: int = 10_000
    max_connections: int = 0  # connections served normally (health endpoints get a reserve); 0 = unlimited
    reclaim_after: float = 10.0
    max_header_size: int = 64 * 1024  # request line + headers, bytes (431 above)
    max_headers: int = 100  # header fields per request (431 above)
    header_timeout: float = 10.0  # a request head must arrive within this
    body_timeout: float = 15.0  # a request body must arrive within this after its head
    idle_timeout: float = 30.0  # a kept-alive connection with no request is closed after this
    max_json_depth: int = 64  # deeper front-door bodies get 400
    caller_rate_limit: float = 0.0  # requests per second per caller address on the anonymous routes; 0 = off
    caller_rate_burst: int = 0  # 0 = max(1, 2 x rate)
    forwarded_allow_ips: str = ""  # trust X-Forwarded-For from these proxies for the caller address
    encryption_keys: list[str] = field(default_factory=list, repr=False)  # seal commands stored in Redis


@dataclass(frozen=True, slots=True)
class Served:
    base_url: str
    instance_id: str


class ServiceMetrics:
    """Prometheus metrics of one service instance (private registry; no tunnel ids in labels:
    on this unauthenticated front door a tunnel id is a capability)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("tunnel_service_http_requests", "HTTP requests answered", ["route", "code"],
                                registry=r)
        self.rate_limited = Counter("tunnel_service_rate_limited", "Requests refused with 429", ["route"],
                                    registry=r)
        self.too_large = Counter("tunnel_service_request_body_too_large", "Requests refused with 413", registry=r)
        self.guarded = Counter("tunnel_service_connections_refused", "Requests refused or connections closed by "
                               "the connection guard (head_too_large, too_many_headers, head_timeout, body_timeout, "
                               "connection_limit)", ["reason"], registry=r)
        self.broker_events = Gauge("tunnel_service_broker_events", "Broker event counts since start "
                                   "(commands_enqueued, commands_polled, responses_routed, responses_refused_*)",
                                   ["event"], registry=r)
        self.pending = Gauge("tunnel_service_pending_callers", "Front-door callers waiting on this instance",
                             registry=r)
        self.tunnels = Gauge("tunnel_service_tunnels", "Tunnels served by this instance", registry=r)
        self.queue_depth = Gauge("tunnel_service_queue_depth", "Commands queued (all tunnels; -1 unknown)",
                                 registry=r)
        self.backend_up = Gauge("tunnel_service_queue_backend_up", "1 when the queue backend is usable", registry=r)

    async def render(self, broker: Broker) -> bytes:
        for event, count in list(broker.stats.items()):
            self.broker_events.labels(event).set(count)
        self.pending.set(sum(len(q.pending) for q in broker.tunnels.values()))
        self.tunnels.set(len(broker.tunnels))
        depth: Callable[[], Any] | None = getattr(broker.backend, "depth", None)
        if depth is not None:
            self.queue_depth.set(await depth())
        else:
            self.queue_depth.set(sum(len(q.queued) for q in broker.tunnels.values()))
        self.backend_up.set(0 if await broker.backend.check() else 1)
        out: bytes = generate_latest(self.registry)
        return out


def _route(path: str) -> tuple[str, str]:
    """(route name, tunnel id) of a request path; tunnel id '' when the route has none."""
    m = _FRONT_DOOR.match(path)
    if m:
        return "front_door", m.group(1)
    m = _RUNTIME.match(path)
    if m:
        return {"/poll": "poll", "/response": "response"}.get(m.group(2) or "", "tunnel"), m.group(1)
    return "other", ""


async def _send_json(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body, separators=(",", ":")).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def _error(message: str, code: str, typ: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": typ, "param": None, "code": code}}


class Edge:
    """ASGI middleware: /healthz, /readyz, /metrics, the body cap and per-tunnel rate limits."""

    def __init__(self, app: ASGIApp, broker: Broker, options: ServeOptions, instance_id: str,
                 metrics: ServiceMetrics | None = None, gate: Gate | None = None) -> None:
        self.app = app
        self.gate = gate
        self.broker = broker
        self.options = options
        self.instance_id = instance_id
        self.metrics = metrics or ServiceMetrics()
        self.started = time.time()
        self._counters: dict[tuple[str, int], Any] = {}  # (route, status) -> its requests counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path in ("/healthz", "/readyz", "/metrics") and scope["method"] == "GET":
            await self._own(path, send)
            return
        route, tunnel_id = _route(path)
        status = 0

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, counted, route, tunnel_id)
        finally:
            key = (route, status or 499)
            child = self._counters.get(key)
            if child is None:  # routes and statuses are closed sets: the table stays small
                child = self._counters[key] = self.metrics.requests.labels(route, str(key[1]))
            child.inc()

    async def _limited(self, send: Send, route: str, key: str, rate: float, burst: int, what: str) -> bool:
        """Charge one request to ``key``; when over its rate, answer 429 and return True."""
        wait = await self.broker.backend.admit(key, rate, burst or max(1, math.ceil(2 * rate)))
        if wait <= 0:
            return False
        self.metrics.rate_limited.labels(route).inc()
        await _send_json(send, 429, _error(f"Too many requests {what}; retry after the delay.",
                                           "rate_limit_exceeded", "rate_limit_error"),
                         {"Retry-After": str(max(1, math.ceil(wait)))})
        return True

    def _caller(self, scope: Scope, route: str, tunnel_id: str) -> str:
        """Who a request is charged to: its caller token when the tunnel requires one and it is valid (a
        token cannot be made up to get a fresh budget), else its address (X-Forwarded-For from a proxy
        named by --forwarded-allow-ips)."""
        if route == "front_door" and self.gate is not None and self.gate.policy.required(tunnel_id):
            token = next((v.decode("latin-1").strip() for k, v in scope["headers"] if k == CALLER_TOKEN_KEY), "")
            if token and self.gate.caller_allowed(token, tunnel_id):
                return "token:" + digest(token)[:32]
        client = scope.get("client")
        return f"addr:{client[0] if client else 'unknown'}"

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, route: str, tunnel_id: str) -> None:
        o = self.options
        runtime = route in ("poll", "response", "tunnel")
        # Unauthenticated routes (front door, OAuth metadata, unknown paths) are charged to the caller: its
        # valid caller token, else its address. Runtime routes have their own per-tunnel limit.
        if o.caller_rate_limit > 0 and not runtime:
            if await self._limited(send, route, f"caller:{self._caller(scope, route, tunnel_id)}",
                                   o.caller_rate_limit, o.caller_rate_burst, "from this caller"):
                return
        rate = o.rate_limit if route == "front_door" else (o.runtime_rate_limit if runtime else 0.0)
        # Only requests that would pass their credential check, to tunnels served here, spend a tunnel's
        # budget: anonymous traffic cannot starve real callers, and junk tunnel ids create no limiter state.
        if rate > 0 and tunnel_id in self.broker.tunnels and (
                self.gate is None or self.gate.admits(route, scope["headers"], tunnel_id)):
            if await self._limited(send, route, f"{route}:{tunnel_id}", rate, o.rate_burst, "for this tunnel"):
                return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = self.options.max_body
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        self.metrics.too_large.inc()
        await _send_json(send, 413, _error(f"The request body exceeds {self.options.max_body} bytes.",
                                           "request_body_too_large", "invalid_request_error"),
                         {"Connection": "close"})

    async def _own(self, path: str, send: Send) -> None:
        if path == "/metrics":
            data = await self.metrics.render(self.broker)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]})
            await send({"type": "http.response.body", "body": data})
            return
        problem = await self.broker.backend.check()
        body: dict[str, Any] = {"status": "ok" if not problem else "degraded", "instance_id": self.instance_id,
                "queue_backend": self.broker.backend.name, "uptime_seconds": round(time.time() - self.started, 3),
                "front_door_auth": self.options.front_door.describe()}
        if problem:
            body["reason"] = problem
        if warnings := front_door_warnings(self.options.front_door):
            body["warnings"] = warnings
        # /healthz: the process serves (always 200); /readyz: it can also queue work.
        await _send_json(send, 503 if problem and path == "/readyz" else 200, body)


def front_door_warnings(policy: FrontDoorPolicy) -> list[str]:
    """What /healthz and the start-up log say when some front doors take anonymous callers."""
    if not policy.default:
        return ["front-door authentication is off (--front-door-auth none): anyone who knows a tunnel id can "
                "call its MCP server through this service"]
    if policy.open_tunnels:
        return [f"front-door authentication is off for {len(policy.open_tunnels)} tunnel(s) "
                "(--front-door-auth TUNNEL_ID=none)"]
    return []


@dataclass(slots=True)
class Service:
    """One built service instance: broker, edge-wrapped app and instance id."""

    broker: Broker
    app: Edge
    instance_id: str


def build_service(options: ServeOptions, env: Mapping[str, str]) -> Service:
    """Build the backend, broker and app. Synchronous: a Redis backend connects once here and the
    tunnel store opens here, so a wrong URL or data directory fails before anything is served."""
    from tunnel_core.devservice.app import ServiceConfig, build_gate, build_service_app

    backend = build_backend(options.queue_backend, options.redis_url, env=env, instance_id=options.instance_id,
                            max_queued=options.max_queued, reclaim_after=options.reclaim_after,
                            known_channels_only=True, encryption_keys=options.encryption_keys)
    instance_id = getattr(backend, "instance_id", "") or options.instance_id or "inmem"
    broker = Broker(backend)
    for t in options.tunnel_ids:
        broker.add_tunnel(t)
    config = ServiceConfig(
        runtime_keys=options.runtime_keys, unbound_key_tunnels=options.unbound_key_tunnels,
        bound_runtime_keys=options.bound_runtime_keys, caller_tokens=options.caller_tokens,
        front_door=options.front_door, response_timeout=options.response_timeout, admin_keys=options.admin_keys,
        data_dir=options.data_dir, max_body=options.max_body, max_json_depth=options.max_json_depth)
    gate = build_gate(broker, config)
    app = build_service_app(broker, config, gate)
    return Service(broker, Edge(app, broker, options, instance_id, gate=gate), instance_id)


def server_limits(options: ServeOptions, on_event: Callable[[str], None] | None = None) -> Any:
    """The bounds of the service's server (``svcserver.Limits``): heads, bodies, idle time, connections."""
    from tunnel_core.svcserver import Limits

    return Limits(max_head_bytes=options.max_header_size, max_headers=options.max_headers,
                  head_timeout=options.header_timeout, body_timeout=options.body_timeout,
                  idle_timeout=options.idle_timeout, max_connections=options.max_connections, on_event=on_event)


def tls_context(options: ServeOptions) -> ssl.SSLContext | None:
    """The server's TLS context (None without ``--tls-cert-file``); mutual TLS with ``--tls-client-ca-file``.

    Raises ConfigError naming the flag when a certificate, key or password does not load."""
    if not options.tls_cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(options.tls_cert_file, options.tls_key_file or None,
                            password=options.tls_key_password or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--tls-cert-file/--tls-key-file: cannot load the certificate and key ({exc}); give a PEM "
                          "certificate chain, its private key, and --tls-key-password if the key is encrypted") from None
    if options.tls_client_ca_file:
        try:
            ctx.load_verify_locations(options.tls_client_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"--tls-client-ca-file: cannot load {options.tls_client_ca_file} ({exc}); give PEM "
                              "CA certificates") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def run_service(
    options: ServeOptions, service: Service, stop: anyio.Event, on_ready: Callable[[Served], None],
) -> None:
    """Serve until ``stop`` is set; ``on_ready`` is called once the listener accepts and the queue is up."""
    from tunnel_core.netserve import bind, serve_service

    broker, instance_id = service.broker, service.instance_id
    tls = tls_context(options)
    sock = bind(options.listen, what="--listen")
    async with broker.running(), anyio.create_task_group() as tg:
        metrics = service.app.metrics
        served = serve_service(service.app, sock, tg, ssl_context=tls,
                               limits=server_limits(options, lambda why: metrics.guarded.labels(why).inc()),
                               forwarded_allow_ips=options.forwarded_allow_ips or None)
        log.info("tunnel service started", extra={
            "listen": served.url, "instance_id": instance_id, "queue_backend": broker.backend.name,
            "tunnels": len(broker.tunnels), "tls": bool(options.tls_cert_file),
            "mutual_tls": bool(options.tls_client_ca_file), "front_door_auth": options.front_door.describe()})
        for warning in front_door_warnings(options.front_door):
            log.warning(warning)
        on_ready(Served(served.url, instance_id))
        await stop.wait()
        broker.close()  # waiting polls answer at once; queued commands stay for the other instances
        served.stop()
