"""The relay's HTTP client: a keep-alive connection pool over aiohttp.

Why aiohttp and not httpx2 (which the mcp SDK depends on): the relay makes three HTTP
exchanges per forwarded MCP call (poll, target, response), so the client's per-request
cost is the product's overhead. Measured on this project's 2-core machine against a
trivial loopback server: httpx2 ~560 us CPU per request, its transport layer httpcore2
~330 us, aiohttp ~170 us; and httpcore2's pool checks every idle connection with a
``poll()`` syscall on each request, which made it slower still at concurrency 32+.
So the relay process uses aiohttp alone for all its outbound HTTP; httpx2 is used only by
one-shot CLI commands, where a request costs nothing worth measuring.

Enterprise networking lives here too, per pool: an explicit proxy or the standard
``HTTP(S)_PROXY``/``NO_PROXY`` variables (:class:`ProxyRoute`), extra CA certificates added
to the system trust, a client certificate presented only to one origin, and dialling a Unix
socket instead of TCP. With none of them configured a request takes the plain path.

Errors: the aiohttp/asyncio exception classes listed in ``NetworkErrors``;
``tunnel_core.targets.failures.classify_exception`` maps them to failure sources.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # untyped in typeshed

import aiohttp

NetworkErrors: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
# Network failures or an answer that is not the JSON it should be.
NetworkOrDecodeErrors: tuple[type[BaseException], ...] = (*NetworkErrors, ValueError)
# Failures where the request can not have been written yet (safe to retry anything).
PreSendErrors: tuple[type[BaseException], ...] = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


def default_ssl_context(ca_bundle: str = "", client_cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """System trust store (via truststore when available, as httpx2 does), TLS 1.2+.

    ``ca_bundle`` (a PEM file) is added to the system trust, never replaces it;
    ``client_cert`` is a (certificate, key) pair of PEM files presented when a server asks.
    Raises OSError / ssl.SSLError when a file cannot be read or parsed.
    """
    try:
        import truststore

        ctx: ssl.SSLContext = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    except ImportError:  # pragma: no cover
        ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_bundle:
        ctx.load_verify_locations(cafile=ca_bundle)
    if client_cert is not None:
        ctx.load_cert_chain(client_cert[0], client_cert[1])
    return ctx


def origin_of(url: str) -> str:
    """``scheme://host:port`` with the default port made explicit and the host lower-cased."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme, 0)
    return f"{scheme}://{host}:{port}"


@dataclass(frozen=True, slots=True)
class ProxyRoute:
    """Which proxy a request takes: ``explicit`` for every URL, else the standard variables.

    An explicit proxy ignores NO_PROXY (the reference's rule) and applies to loopback too;
    environment proxies never apply to localhost or loopback addresses. ``source`` names where the
    choice came from for diagnostics (``channel``, ``mcp``, ``control_plane``, ``harpoon``,
    ``global``, ``env`` or ``direct``).
    """

    explicit: str = ""
    source: str = "direct"
    environment: Mapping[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.explicit or self.environment.get("http") or self.environment.get("https"))

    def proxy_for(self, url: str) -> str | None:
        if self.explicit:
            return self.explicit
        parts = urlsplit(url)
        proxy = self.environment.get(parts.scheme.lower())
        if not proxy or _is_loopback(parts.hostname or ""):
            return None  # like Go's ProxyFromEnvironment: loopback never goes through an env proxy
        if "no" in self.environment and proxy_bypass_environment(parts.netloc, dict(self.environment)):
            return None
        return proxy

    def describe(self) -> str:
        """The proxy URL without credentials, or ``direct``."""
        if self.explicit:
            return _without_userinfo(self.explicit)
        if self.active:
            return "env:" + ",".join(
                f"{k}={_without_userinfo(v)}" for k, v in sorted(self.environment.items()) if k != "no")
        return "direct"


def _is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def _proxy_kwargs(proxy: str) -> dict[str, Any]:
    """aiohttp arguments for one proxy URL; credentials in the URL become Proxy-Authorization."""
    parts = urlsplit(proxy)
    if "@" not in parts.netloc:
        return {"proxy": proxy}
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return {"proxy": _without_userinfo(proxy), "proxy_headers": {"Proxy-Authorization": f"Basic {token}"}}


def _items(raw: Any) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


@dataclass(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        lname = name.lower()
        return next((v for k, v in self.headers if k.lower() == lname), None)

    def header_items(self) -> list[tuple[str, str]]:
        return self.headers


class StreamResponse:
    """A response whose body is read incrementally."""

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = _items(resp.raw_headers)

    def header(self, name: str) -> str | None:
        return self._resp.headers.get(name)

    def header_items(self) -> list[tuple[str, str]]:
        return self.headers

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        async for chunk in self._resp.content.iter_any():
            yield chunk

    async def aread(self) -> bytes:
        return await self._resp.read()


class _LoggedStreamResponse(StreamResponse):
    """A streamed response whose body is also written to the raw HTTP log as it is read."""

    def __init__(self, resp: aiohttp.ClientResponse, url: str) -> None:
        super().__init__(resp)
        self._url = url

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        from tunnel_core import rawhttp

        async for chunk in StreamResponse.aiter_bytes(self):
            rawhttp.log_body(self._url, chunk)
            yield chunk

    async def aread(self) -> bytes:
        from tunnel_core import rawhttp

        data = await StreamResponse.aread(self)
        rawhttp.log_body(self._url, data)
        return data


_NO_EXTRA: dict[str, Any] = {}


class HTTPPool:
    """Keep-alive connection pool with a small request API (headers are (name, value) str pairs).

    ``proxy`` routes requests through a proxy (plain forwarding for http URLs, CONNECT for
    https); ``client_cert_context`` is used instead of ``ssl_context`` only for requests to
    ``client_cert_origin`` (so a client certificate never reaches another server);
    ``unix_socket`` dials that socket for every request (the URL still names the Host).
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 10.0,
        proxy: ProxyRoute | None = None,
        client_cert_context: ssl.SSLContext | None = None,
        client_cert_origin: str = "",
        unix_socket: str = "",
        raw_log: bool = False,
    ) -> None:
        self._max = max_connections
        self._keepalive = keepalive_expiry
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None
        self._proxy = proxy if proxy is not None and proxy.active else None
        self._cert_ctx = client_cert_context
        self._cert_origin = origin_of(client_cert_origin) if client_cert_origin else ""
        self._unix = unix_socket
        # The common case (no proxy, no scoped certificate) adds nothing per request.
        self._plain = self._proxy is None and self._cert_ctx is None
        self._routes: dict[str, dict[str, Any]] = {}
        self._raw = raw_log  # --log.http-raw-unsafe (tunnel_core.rawhttp); off: one boolean test per request

    @property
    def proxy(self) -> ProxyRoute | None:
        return self._proxy

    def _route(self, url: str) -> dict[str, Any]:
        """Per-request aiohttp arguments (proxy, TLS context), cached per origin."""
        parts = url.split("/", 3)
        key = parts[0] + parts[2] if len(parts) > 2 else url
        cached = self._routes.get(key)
        if cached is not None:
            return cached
        kwargs: dict[str, Any] = {}
        if self._proxy is not None:
            proxy = self._proxy.proxy_for(url)
            if proxy:
                kwargs.update(_proxy_kwargs(proxy))
        if self._cert_ctx is not None and origin_of(url) == self._cert_origin:
            kwargs["ssl"] = self._cert_ctx
        if len(self._routes) < 256:
            self._routes[key] = kwargs
        return kwargs

    def _get(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector: aiohttp.BaseConnector
            if self._unix:
                connector = aiohttp.UnixConnector(path=self._unix, limit=self._max, limit_per_host=0,
                                                  keepalive_timeout=self._keepalive)
            else:
                connector = aiohttp.TCPConnector(limit=self._max, limit_per_host=0,
                                                 keepalive_timeout=self._keepalive, ssl=self._ssl)
            self._session = aiohttp.ClientSession(
                connector=connector, skip_auto_headers=("User-Agent",), auto_decompress=True, trust_env=False,
            )
        return self._session

    def _timeout(self, total: float | None) -> aiohttp.ClientTimeout:
        connect = min(self._connect_timeout, total) if total else self._connect_timeout
        return aiohttp.ClientTimeout(total=total, connect=connect)

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: list[tuple[str, str]],
        content: bytes | None = None,
        timeout: float | None = 30.0,
    ) -> Response:
        extra = _NO_EXTRA if self._plain else self._route(url)
        if self._raw:
            from tunnel_core import rawhttp

            rawhttp.log_request(method, url, headers, content)
        async with self._get().request(
            method, url, headers=headers, data=content, timeout=self._timeout(timeout), allow_redirects=False,
            **extra,
        ) as resp:
            body = await resp.read()
            out = Response(resp.status, _items(resp.raw_headers), body)
        if self._raw:
            rawhttp.log_response(url, out.status, out.headers, body)
        return out

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: list[tuple[str, str]],
        content: bytes | None = None,
        timeout: float | None = 30.0,
    ) -> AsyncIterator[StreamResponse]:
        extra = _NO_EXTRA if self._plain else self._route(url)
        if self._raw:
            from tunnel_core import rawhttp

            rawhttp.log_request(method, url, headers, content)
        async with self._get().request(
            method, url, headers=headers, data=content, timeout=self._timeout(timeout), allow_redirects=False,
            **extra,
        ) as resp:
            if self._raw:
                rawhttp.log_response(url, resp.status, _items(resp.raw_headers), None, streamed=True)
                yield _LoggedStreamResponse(resp, url)
            else:
                yield StreamResponse(resp)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
