"""Outbound HTTP pools per route (control plane, each MCP channel, Harpoon) from settings.

Proxy precedence per route: per-channel ``http-proxy`` > ``--mcp.http-proxy`` /
``--control-plane.http-proxy`` / ``--harpoon.http-proxy`` > ``--http-proxy`` > the standard
``HTTP(S)_PROXY``/``NO_PROXY`` variables (only when no explicit proxy; an explicit proxy
ignores NO_PROXY). A Unix-socket binding never uses a proxy. ``--ca-bundle`` is added to
the system trust of every pool. An MCP client certificate is presented only to that
channel's MCP origin; a control-plane certificate only to the control plane.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

from tunnel_core.config.network import NetworkSettings
from tunnel_core.config.settings import Binding, Settings
from tunnel_core.httpio import HTTPPool, ProxyRoute, default_ssl_context

OPENAI_API = "https://api.openai.com"
OPENAI_MTLS_API = "https://mtls.api.openai.com"


class TLSContexts:
    """One system-trust context (plus the CA bundle) shared by every pool, and one per client certificate."""

    def __init__(self, net: NetworkSettings) -> None:
        self._net = net
        self._base: ssl.SSLContext | None = None
        self._with_cert: dict[tuple[str, str], ssl.SSLContext] = {}

    @property
    def base(self) -> ssl.SSLContext:
        if self._base is None:
            self._base = default_ssl_context(self._net.ca_bundle)
        return self._base

    def base_or_later(self) -> ssl.SSLContext | Callable[[], ssl.SSLContext]:
        """The base context now when a CA bundle must be checked at start, else a way to build it on first use.

        Loading the system trust store costs ~9 ms of the start, and a relay whose control plane and
        targets are all http:// never needs it.
        """
        if self._net.ca_bundle:
            return self.base
        return lambda: self.base

    def with_cert(self, cert: str, key: str) -> ssl.SSLContext:
        ctx = self._with_cert.get((cert, key))
        if ctx is None:
            ctx = self._with_cert[(cert, key)] = default_ssl_context(self._net.ca_bundle, (cert, key))
        return ctx


def proxy_route(net: NetworkSettings, route: str, channel_proxy: str = "") -> ProxyRoute:
    explicit, source = net.proxy(route, channel_proxy)
    return ProxyRoute(explicit, source, {} if explicit else dict(net.env_proxies))


def mcp_pool(settings: Settings, binding: Binding, tls: TLSContexts, *, max_connections: int) -> HTTPPool:
    net = settings.network
    cert, key = (binding.client_cert, binding.client_key) if binding.client_cert else (
        net.mcp_client_cert, net.mcp_client_key)
    return HTTPPool(
        max_connections=max_connections,
        ssl_context=tls.base_or_later(),
        proxy=None if binding.unix_socket else proxy_route(net, "mcp", binding.http_proxy),
        client_cert_context=tls.with_cert(cert, key) if cert else None,
        client_cert_origin=binding.url if cert else "",
        unix_socket=binding.unix_socket,
        raw_log=settings.http_raw_unsafe,
    )


def control_plane_base_url(settings: Settings) -> str:
    """The control-plane URL; with a client certificate, api.openai.com becomes its mTLS host."""
    base = settings.control_plane_url
    if settings.network.control_plane_client_cert and settings.base_url.rstrip("/") == OPENAI_API:
        base = OPENAI_MTLS_API + settings.url_path
    return base


def control_plane_pool(settings: Settings, tls: TLSContexts, *, max_connections: int) -> HTTPPool:
    net = settings.network
    ctx = (tls.with_cert(net.control_plane_client_cert, net.control_plane_client_key)
           if net.control_plane_client_cert else tls.base_or_later())
    return HTTPPool(max_connections=max_connections, ssl_context=ctx, proxy=proxy_route(net, "control_plane"))


def harpoon_route(settings: Settings) -> ProxyRoute:
    """Harpoon's proxy: ``--harpoon.http-proxy`` > ``--http-proxy`` > environment."""
    if settings.harpoon.http_proxy:
        return ProxyRoute(settings.harpoon.http_proxy, "harpoon")
    return proxy_route(settings.network, "harpoon")


def harpoon_pool(settings: Settings, tls: TLSContexts, unix_socket: str = "") -> HTTPPool:
    """A small pool for Harpoon calls (a Unix-socket target is dialled directly)."""
    route = ProxyRoute() if unix_socket else harpoon_route(settings)
    return HTTPPool(max_connections=8, ssl_context=tls.base_or_later(), proxy=route, unix_socket=unix_socket)


def route_summary(settings: Settings) -> dict[str, Any]:
    """Where each route's traffic goes (for /api/status): proxy (credentials removed) or direct."""
    net = settings.network
    mcp = []
    for b in settings.bindings:
        if b.kind != "http":
            continue
        route = ProxyRoute() if b.unix_socket else proxy_route(net, "mcp", b.http_proxy)
        mcp.append({"channel": b.channel, "target": b.url, "unix_socket": b.unix_socket,
                    "proxy_source": route.source, "proxy": route.describe(),
                    "client_certificate": bool(b.client_cert or net.mcp_client_cert)})
    cp = proxy_route(net, "control_plane")
    return {
        "control_plane_route": {"target": control_plane_base_url(settings), "proxy_source": cp.source,
                                "proxy": cp.describe(),
                                "client_certificate": bool(net.control_plane_client_cert)},
        "mcp_routes": mcp,
        "ca_bundle": net.ca_bundle,
    }
