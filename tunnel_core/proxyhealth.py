"""The proxy health checker (``--proxy.check-interval``, default 60 s).

Each outbound route (the control plane, each MCP channel, each Harpoon target) either goes
direct or through a proxy (explicit, or ``HTTP(S)_PROXY`` for that URL). Once at start and
then every interval, each proxied route is checked the way its traffic would use the proxy:

1. ``tcp``: connect to the proxy (TLS first for an ``https://`` proxy), at most 5 s;
2. ``connect``: ``CONNECT <target host:port>`` (with ``Proxy-Authorization`` when the proxy
   URL carries credentials), at most 5 s; a 2xx answer is healthy.

A route's state is ``direct``, ``healthy`` or ``unhealthy`` (a proxied route starts
unhealthy until its first check), with the last 10 checks kept. Failures are classified
like the reference: ``dial_error`` / ``timeout`` in phase ``tcp``, ``connect_error`` /
``timeout`` / ``bad_status`` in phase ``connect``. Nothing here affects traffic or
readiness: it tells an operator which proxy is broken before the relay's own errors do.

Shown in ``/api/system`` (``proxy_identity_map``, ``proxy_health``), in
``/api/harpoon/status`` (Harpoon's routes) and as ``proxy_*`` metrics keyed by
``proxy_id`` (a short hash of the proxy's host and port, never its credentials).
"""

from __future__ import annotations

import base64
import logging
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import anyio
from anyio.abc import ByteStream
from anyio.streams.tls import TLSStream

from tunnel_core.netconfig import control_plane_base_url, harpoon_route, proxy_route
from tunnel_core.promtext import CollectorRegistry, Counter, GaugeMetricFamily, Histogram
from tunnel_core.records import record

if TYPE_CHECKING:
    from tunnel_core.config.settings import Settings
    from tunnel_core.targets.harpoon_registry import HarpoonTarget

log = logging.getLogger("tunnel_client.proxyhealth")

PHASE_TIMEOUT = 5.0
HISTORY = 10
MAX_STATUS_LINE = 8192
PHASE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


@record(frozen=True, slots=True)
class Route:
    """One outbound route; ``proxy`` is the full proxy URL (credentials included) or "" for direct."""

    kind: str  # control_plane | mcp_channel | harpoon
    name: str
    target: str
    proxy_source: str
    proxy: str = field(default="", repr=False)

    @property
    def route_mode(self) -> str:
        return "proxy" if self.proxy else "direct"

    @property
    def proxy_url(self) -> str:
        """The proxy URL without credentials."""
        if not self.proxy:
            return ""
        parts = urlsplit(self.proxy)
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()

    @property
    def proxy_id(self) -> str:
        if not self.proxy:
            return ""
        parts = urlsplit(self.proxy)
        where = f"{parts.scheme}://{parts.hostname}:{_port(parts.scheme, parts.port)}"
        import hashlib  # (with OpenSSL's digests) only when a proxy is configured

        return "proxy-" + hashlib.sha256(where.encode()).hexdigest()[:10]

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name

    def view(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "target": self.target, "route_mode": self.route_mode,
                "proxy_source": self.proxy_source, "proxy_url": self.proxy_url, "proxy_id": self.proxy_id}


@record(frozen=True, slots=True)
class Check:
    timestamp: float
    success: bool
    tcp_duration_ms: int = 0
    connect_duration_ms: int = 0
    error_phase: str = ""
    error_reason: str = ""
    http_status_category: str = ""

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"timestamp": _iso(self.timestamp), "success": self.success}
        for name in ("tcp_duration_ms", "connect_duration_ms", "error_phase", "error_reason", "http_status_category"):
            value = getattr(self, name)
            if value:
                out[name] = value
        return out


@record(slots=True)
class _Status:
    route: Route
    last_check: float = 0.0
    last_success: float = 0.0
    history: deque[Check] = field(default_factory=lambda: deque(maxlen=HISTORY))

    @property
    def state(self) -> str:
        if not self.route.proxy:
            return "direct"
        return "healthy" if self.history and self.history[-1].success else "unhealthy"


def _port(scheme: str, port: int | None) -> int:
    return port or (443 if scheme == "https" else 80)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""


def target_authority(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{_port(parts.scheme, parts.port)}" if host else ""


class ProxyHealth:
    """Checks every proxied route at start and then each ``interval`` seconds; see the module doc."""

    def __init__(self, routes: Callable[[], list[Route]], interval: float, *,
                 tls: Callable[[], ssl.SSLContext] | None = None, registry: CollectorRegistry | None = None) -> None:
        self._routes = routes
        self.interval = interval
        self._tls = tls
        self._status: dict[tuple[str, str], _Status] = {}
        self._phase: Histogram | None = None
        self._failures: Counter | None = None
        if registry is not None:
            self._phase = Histogram("proxy_check_phase_duration_seconds", "Proxy check phase durations",
                                    ["proxy_id", "phase"], registry=registry, buckets=PHASE_BUCKETS)
            self._failures = Counter("proxy_check_failures", "Proxy check failures by phase and reason",
                                     ["proxy_id", "phase", "reason"], registry=registry)
            registry.register(_Gauges(self))
        self._refresh()

    def _refresh(self) -> list[_Status]:
        """The current routes (Harpoon's change as discovery registers targets), history kept per route."""
        current = []
        for route in self._routes():
            status = self._status.get(route.key)
            if status is None or status.route != route:
                status = self._status[route.key] = _Status(route)
            current.append(status)
        keep = {s.route.key for s in current}
        for key in [k for k in self._status if k not in keep]:
            del self._status[key]
        return current

    async def run(self) -> None:
        """Check forever (until cancelled)."""
        while True:
            await self.check_all()
            await anyio.sleep(self.interval)

    async def check_all(self) -> None:
        for status in self._refresh():
            if status.route.proxy:
                self._record(status, await self.check(status.route))

    def _record(self, status: _Status, check: Check) -> None:
        before = status.state if status.history else ""
        status.history.append(check)
        status.last_check = check.timestamp
        if check.success:
            status.last_success = check.timestamp
        route = status.route
        if self._phase is not None:
            if check.tcp_duration_ms:
                self._phase.labels(route.proxy_id, "tcp").observe(check.tcp_duration_ms / 1000)
            if check.connect_duration_ms:
                self._phase.labels(route.proxy_id, "connect").observe(check.connect_duration_ms / 1000)
        if not check.success and self._failures is not None:
            self._failures.labels(route.proxy_id, check.error_phase, check.error_reason).inc()
        if status.state != before:  # log changes only, not every interval
            level = logging.INFO if check.success else logging.WARNING
            log.log(level, "proxy route " + status.state, extra={
                "route_kind": route.kind, "route_name": route.name, "proxy_id": route.proxy_id,
                "proxy_url": route.proxy_url, "target": target_authority(route.target),
                "error_phase": check.error_phase, "error_reason": check.error_reason})

    async def check(self, route: Route) -> Check:
        """One check of ``route`` through its proxy."""
        started = time.time()
        proxy = urlsplit(route.proxy)
        target = target_authority(route.target)
        if not proxy.hostname:
            return Check(started, False, error_phase="tcp", error_reason="missing_proxy_host")
        if not target:
            return Check(started, False, error_phase="connect", error_reason="missing_target_host")
        t0 = time.monotonic()
        stream: ByteStream
        try:
            with anyio.fail_after(PHASE_TIMEOUT):
                stream = await anyio.connect_tcp(proxy.hostname, _port(proxy.scheme, proxy.port))
                if proxy.scheme == "https":
                    stream = await TLSStream.wrap(stream, hostname=proxy.hostname,
                                                  ssl_context=self._tls() if self._tls else ssl.create_default_context())
        except TimeoutError:
            return Check(started, False, _ms(t0), error_phase="tcp", error_reason="timeout")
        except (OSError, ssl.SSLError, anyio.BrokenResourceError):
            return Check(started, False, _ms(t0), error_phase="tcp", error_reason="dial_error")
        tcp_ms = _ms(t0)
        t1 = time.monotonic()
        try:
            with anyio.fail_after(PHASE_TIMEOUT):
                await stream.send(_connect_request(target, proxy.username, proxy.password))
                line = await _status_line(stream)
        except TimeoutError:
            return Check(started, False, tcp_ms, _ms(t1), "connect", "timeout")
        except (OSError, ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream, ValueError):
            return Check(started, False, tcp_ms, _ms(t1), "connect", "connect_error")
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
        parts = line.split(" ", 2)
        code = parts[1] if len(parts) > 1 else ""
        category = f"{code[0]}xx" if code[:1].isdigit() else ""
        if not code.startswith("2"):
            return Check(started, False, tcp_ms, _ms(t1), "connect", "bad_status", category)
        return Check(started, True, tcp_ms, _ms(t1), http_status_category=category)

    # -- views --

    def statuses(self) -> list[_Status]:
        return sorted(self._refresh(), key=lambda s: (s.route.kind, s.route.name))

    def health(self) -> list[dict[str, Any]]:
        """``/api/system`` ``proxy_health``."""
        out = []
        for s in self.statuses():
            entry: dict[str, Any] = {"route": s.route.view(), "health_state": s.state}
            if s.last_check:
                entry["last_check"] = _iso(s.last_check)
            if s.last_success:
                entry["last_success"] = _iso(s.last_success)
            entry["history"] = [c.view() for c in s.history]
            out.append(entry)
        return out

    def identity_map(self) -> list[dict[str, str]]:
        """``/api/system`` ``proxy_identity_map``: one entry per distinct proxy."""
        seen: dict[str, dict[str, str]] = {}
        for s in self.statuses():
            r = s.route
            if r.proxy and r.proxy_id not in seen:
                seen[r.proxy_id] = {"proxy_id": r.proxy_id, "proxy_url": r.proxy_url, "proxy_source": r.proxy_source}
        return list(seen.values())

    def route_views(self) -> list[dict[str, Any]]:
        """Each route with its state (for ``/api/harpoon/status`` ``proxy_routes``)."""
        return [{**s.route.view(), "health_state": s.state} for s in self.statuses()]


def routes_of(settings: Settings, harpoon_targets: Callable[[], Iterable[HarpoonTarget]]) -> Callable[[], list[Route]]:
    """The routes of this configuration, as the pools in ``netconfig`` would send their traffic."""

    def build() -> list[Route]:
        net = settings.network
        cp_url = control_plane_base_url(settings)
        cp = proxy_route(net, "control_plane")
        out = [Route("control_plane", "control-plane", cp_url, cp.source, cp.proxy_for(cp_url) or "")]
        for b in settings.bindings:
            if b.kind != "http":
                out.append(Route("mcp_channel", b.channel, "", "stdio"))
            elif b.unix_socket:
                out.append(Route("mcp_channel", b.channel, b.url, "unix_socket"))
            else:
                r = proxy_route(net, "mcp", b.http_proxy)
                out.append(Route("mcp_channel", b.channel, b.url, r.source, r.proxy_for(b.url) or ""))
        hr = harpoon_route(settings)
        for t in harpoon_targets():
            if t.unix_socket:
                out.append(Route("harpoon", t.label, t.url, "unix_socket"))
            else:
                out.append(Route("harpoon", t.label, t.url, hr.source, hr.proxy_for(t.url) or ""))
        return out

    return build


def _ms(since: float) -> int:
    return max(1, int((time.monotonic() - since) * 1000))


def _connect_request(target: str, user: str | None, password: str | None) -> bytes:
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if user is not None:
        token = base64.b64encode(f"{unquote(user)}:{unquote(password or '')}".encode()).decode("ascii")
        lines.append(f"Proxy-Authorization: Basic {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _status_line(stream: ByteStream) -> str:
    buf = b""
    while b"\n" not in buf:
        if len(buf) > MAX_STATUS_LINE:
            raise ValueError("proxy status line too long")
        buf += await stream.receive()
    return buf.split(b"\n", 1)[0].decode("latin-1").strip()


class _Gauges:
    """``proxy_health_state``, ``proxy_last_check_timestamp``, ``proxy_last_success_timestamp`` per proxy.

    Several routes may share a proxy: it is healthy (1) only while all of them are."""

    def __init__(self, checker: ProxyHealth) -> None:
        self._checker = checker

    def collect(self) -> Iterator[Any]:
        state = GaugeMetricFamily("proxy_health_state", "1 when the proxy is healthy, 0 when unhealthy",
                                  labels=["proxy_id"])
        last_check = GaugeMetricFamily("proxy_last_check_timestamp", "Unix time of the last proxy check",
                                       labels=["proxy_id"])
        last_ok = GaugeMetricFamily("proxy_last_success_timestamp", "Unix time of the last successful proxy check",
                                    labels=["proxy_id"])
        per: dict[str, list[_Status]] = {}
        for s in self._checker.statuses():
            if s.route.proxy:
                per.setdefault(s.route.proxy_id, []).append(s)
        for proxy_id, group in sorted(per.items()):
            state.add_metric([proxy_id], 1.0 if all(s.state == "healthy" for s in group) else 0.0)
            checked = max(s.last_check for s in group)
            if checked:
                last_check.add_metric([proxy_id], int(checked))
            succeeded = max(s.last_success for s in group)
            if succeeded:
                last_ok.add_metric([proxy_id], int(succeeded))
        yield state
        yield last_check
        yield last_ok
