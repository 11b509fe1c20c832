"""The relay's HTTP client: keep-alive connection pools over a lean HTTP/1.1 connection.

Why not a library: the relay makes three HTTP exchanges per forwarded MCP call (poll, target,
response), so the client's per-request cost is the product's overhead. Measured on this
project's 2-core machine against a trivial loopback server: httpx2 ~560 us CPU per request,
aiohttp ~170 us, this client (an asyncio protocol around the llhttp parser of httptools, which
uvicorn already brings) ~50 us; and aiohttp alone adds ~10 MB to the resident memory of
every relay. See docs/performance.md. httpx2 stays the client of one-shot CLI commands.

Enterprise networking lives here too, per pool: an explicit proxy or the standard
``HTTP(S)_PROXY``/``NO_PROXY`` variables (:class:`ProxyRoute`; plain forwarding for http URLs,
CONNECT for https), extra CA certificates added to the system trust, a client certificate
presented only to one origin, and dialling a Unix socket instead of TCP. With none of them
configured a request takes the plain path.

Errors: the classes listed in ``NetworkErrors`` (the tree is in :mod:`tunnel_core.httpconn`);
``tunnel_core.targets.failures.classify_exception`` maps them to failure sources.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import field
from typing import Any
from urllib.parse import unquote, urlsplit

from tunnel_core.httpconn import (
    ConnectError,
    Connection,
    ConnectTimeout,
    DNSError,
    HTTPError,
    InvalidURL,
    PayloadError,
    ProtocolError,
    ReadTimeout,
    ServerDisconnected,
    TLSError,
)
from tunnel_core.networds import describe_cause, display_url, os_words
from tunnel_core.records import record

NetworkErrors: tuple[type[BaseException], ...] = (HTTPError, asyncio.TimeoutError, OSError)
# Network failures or an answer that is not the JSON it should be.
NetworkOrDecodeErrors: tuple[type[BaseException], ...] = (*NetworkErrors, ValueError)
# Failures where the request can not have been written yet (safe to retry anything).
PreSendErrors: tuple[type[BaseException], ...] = (ConnectError,)


def describe_network_error(exc: BaseException, url: str, *, timeout: float | None = None) -> str:
    """What was tried and what happened, in words: ``cannot connect to URL: connection refused``.

    For readiness texts and log lines; never carries credentials (no userinfo, no query).
    """
    where = display_url(url)
    cause = getattr(exc, "os_error", None) or exc.__cause__
    if isinstance(exc, DNSError):
        return f"cannot resolve the host of {where}: {os_words(cause)}"
    if isinstance(exc, TLSError):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate of {where} not accepted: {cause.verify_message or cause.reason}"
        reason = getattr(cause, "reason", None) or os_words(cause)
        return f"TLS handshake with {where} failed: {str(reason).replace('_', ' ').lower()}"
    if isinstance(exc, ConnectTimeout):
        return f"cannot connect to {where}: timed out"
    if isinstance(exc, ConnectError):
        if cause is None:  # refused by a proxy, or the pool is closed: the message says which
            return f"cannot connect to {where}: {exc}"
        return f"cannot connect to {where}: {os_words(cause)}"
    if isinstance(exc, (ReadTimeout, asyncio.TimeoutError)):
        return f"no answer from {where}" + (f" within {timeout:g}s" if timeout else " in time")
    if isinstance(exc, ServerDisconnected):
        return f"{where} closed the connection before answering"
    if isinstance(exc, PayloadError):
        return f"the answer from {where} was cut off"
    if isinstance(exc, ProtocolError):
        return f"{where} answered with something that is not HTTP/1.1: {exc}"
    if isinstance(exc, InvalidURL):
        return f"cannot request {where}: {exc}"
    if isinstance(exc, ValueError) and not isinstance(exc, OSError):
        return f"{where} answered with a body that is not the expected JSON"
    return describe_cause(exc, url, timeout=timeout)


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


@record(frozen=True, slots=True)
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
        if "no" in self.environment:
            from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # untyped

            if proxy_bypass_environment(parts.netloc, dict(self.environment)):
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


def _proxy_authorization(proxy: str) -> str:
    """A Proxy-Authorization value from credentials in the proxy URL ("" when there are none)."""
    parts = urlsplit(proxy)
    if "@" not in parts.netloc:
        return ""
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _items(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


def _find(headers: list[tuple[str, str]], name: str) -> str | None:
    lname = name.lower()
    return next((v for k, v in headers if k.lower() == lname), None)


@record(slots=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return _find(self.headers, name)

    def header_items(self) -> list[tuple[str, str]]:
        return self.headers


class StreamResponse:
    """A response whose body is read incrementally."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.status = conn.status
        self.headers = _items(conn.raw_headers)
        self.drain_budget: float | None = None

    def drain_later(self, budget: float) -> bool:
        """Leave the rest of the body to be read and dropped after the stream is closed.

        The ``stream`` block can end at once (its caller has what it needs) and the connection
        still goes back to the pool once the server ends the body within ``budget`` seconds.
        False where the rest must be read here (the raw HTTP log records every body byte).
        """
        self.drain_budget = budget
        return True

    def header(self, name: str) -> str | None:
        return _find(self.headers, name)

    def header_items(self) -> list[tuple[str, str]]:
        return self.headers

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        while (chunk := await self._conn.next_chunk()) is not None:
            yield chunk

    async def aread(self) -> bytes:
        return await self._conn.read_all()


class _LoggedStreamResponse(StreamResponse):
    """A streamed response whose body is also written to the raw HTTP log as it is read."""

    def __init__(self, conn: Connection, url: str) -> None:
        super().__init__(conn)
        self._url = url

    async def aiter_bytes(self) -> AsyncGenerator[bytes, None]:
        from tunnel_core import rawhttp

        async for chunk in StreamResponse.aiter_bytes(self):
            rawhttp.log_body(self._url, chunk)
            yield chunk

    def drain_later(self, budget: float) -> bool:
        return False

    async def aread(self) -> bytes:
        from tunnel_core import rawhttp

        data = await StreamResponse.aread(self)
        rawhttp.log_body(self._url, data)
        return data


# Header names and values that would let a caller's header smuggle another line into the request.
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Checked header lines by (name, value): most of a request's headers repeat from one request to
# the next (the control plane's, a session's), so each is checked and formatted once. Bounded:
# short values only, no credentials kept beyond their request, and emptied when full. Headers
# that differ on every request (ids, shard tokens, trace context) are not kept either.
_LINES: dict[tuple[str, str], str] = {}
_UNCACHED = frozenset({"authorization", "proxy-authorization", "cookie", "x-tunnel-caller-token",
                       "x-tunnel-shard-token", "x-client-request-id", "x-request-id", "traceparent", "tracestate"})
_LINES_MAX = 1024


def _header_line(name: str, value: str) -> str:
    """``Name: value`` and CRLF; "" for a header the client writes itself; InvalidURL for one that cannot be sent."""
    if _BAD_NAME.search(name) or _BAD_VALUE.search(value) or not name:
        raise InvalidURL(f"header {name!r} cannot be sent: invalid name or line break in the value")
    if name.lower() in _OWN_HEADERS:
        return ""
    return f"{name}: {value}\r\n"


@record(frozen=True, slots=True)
class _Target:
    """How to reach one URL: the connection to open (pool key) and the request line to send."""

    key: tuple[Any, ...]
    host: str  # the URL's host (TLS server name)
    connect: tuple[str, int]  # where the TCP connection goes (the proxy when there is one)
    unix: str
    tls: ssl.SSLContext | None  # TLS to the URL's origin (end to end, through a CONNECT tunnel if any)
    proxy_tls: ssl.SSLContext | None  # TLS to an https:// proxy
    tunnel: str  # "host:port" to CONNECT to, or ""
    request_line_end: str  # " /path?query HTTP/1.1\r\nHost: ...\r\n" (absolute URL when forwarded by a proxy)
    proxy_auth: str  # Proxy-Authorization value ("" for none)


class HTTPPool:
    """Keep-alive connection pool with a small request API (headers are (name, value) str pairs).

    ``proxy`` routes requests through a proxy (plain forwarding for http URLs, CONNECT for
    https); ``client_cert_context`` is used instead of ``ssl_context`` only for requests to
    ``client_cert_origin`` (so a client certificate never reaches another server);
    ``unix_socket`` dials that socket for every request (the URL still names the Host).
    At most ``max_connections`` connections are open at once; waiting for a free one counts
    against the connect timeout. Responses are never decompressed (no Accept-Encoding is sent).
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        keepalive_expiry: float = 30.0,
        ssl_context: ssl.SSLContext | Callable[[], ssl.SSLContext] | None = None,
        connect_timeout: float = 10.0,
        proxy: ProxyRoute | None = None,
        client_cert_context: ssl.SSLContext | None = None,
        client_cert_origin: str = "",
        unix_socket: str = "",
        raw_log: bool = False,
    ) -> None:
        self._max = max_connections
        self._keepalive = keepalive_expiry
        # A callable is asked on the first https request (see netconfig.TLSContexts.base_or_later).
        self._ssl_factory = ssl_context if callable(ssl_context) else None
        self._ssl = None if callable(ssl_context) else ssl_context
        self._connect_timeout = connect_timeout
        self._proxy = proxy if proxy is not None and proxy.active else None
        self._cert_ctx = client_cert_context
        self._cert_origin = origin_of(client_cert_origin) if client_cert_origin else ""
        self._unix = unix_socket
        self._targets: dict[str, _Target] = {}
        self._idle: dict[tuple[Any, ...], list[Connection]] = {}
        self._conns: set[Connection] = set()
        self._open = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self._raw = raw_log  # --log.http-raw-unsafe (tunnel_core.rawhttp); off: one boolean test per request

    @property
    def proxy(self) -> ProxyRoute | None:
        return self._proxy

    # ---------------------------------------------------------------- requests

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: list[tuple[str, str]],
        content: bytes | None = None,
        timeout: float | None = 30.0,
    ) -> Response:
        conn = await self._send(method, url, headers, content, timeout)
        try:
            await conn.wait_head()
            body = await conn.read_all()
        except BaseException:
            conn.finish()
            self._release(conn, False)
            raise
        resp = Response(conn.status, _items(conn.raw_headers), body)
        self._release(conn, conn.finish())
        if self._raw:
            from tunnel_core import rawhttp

            rawhttp.log_response(url, resp.status, resp.headers, body)
        return resp

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
        conn = await self._send(method, url, headers, content, timeout)
        ok = False
        resp: StreamResponse | None = None
        try:
            await conn.wait_head()
            if self._raw:
                from tunnel_core import rawhttp

                rawhttp.log_response(url, conn.status, _items(conn.raw_headers), None, streamed=True)
                resp = _LoggedStreamResponse(conn, url)
            else:
                resp = StreamResponse(conn)
            yield resp
            ok = True
        finally:
            if ok and resp is not None and resp.drain_budget is not None:
                conn.drain_then(lambda reusable: self._release(conn, reusable), resp.drain_budget)
            else:
                # A body left unread (or an error) closes the connection; a finished one goes back to the pool.
                reusable = conn.finish() and ok
                self._release(conn, reusable)

    async def _send(self, method: str, url: str, headers: list[tuple[str, str]], content: bytes | None,
                    timeout: float | None) -> Connection:
        target = self._target(url)
        head = self._head(method, target, headers, content)
        if self._raw:
            from tunnel_core import rawhttp

            rawhttp.log_request(method, url, headers, content)
        data = [head + content] if content and len(content) < 65536 else [head, content] if content else [head]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        conn = await self._acquire(target, deadline)
        conn.start(data, head_only=method == "HEAD", deadline=deadline)
        return conn

    @staticmethod
    def _head(method: str, target: _Target, headers: list[tuple[str, str]], content: bytes | None) -> bytes:
        parts = [method, target.request_line_end]
        for pair in headers:
            line = _LINES.get(pair)
            if line is None:
                line = _header_line(*pair)
                if len(pair[1]) <= 256 and pair[0].lower() not in _UNCACHED:
                    if len(_LINES) >= _LINES_MAX:
                        _LINES.clear()  # start again from what requests send now
                    _LINES[pair] = line
            if line:
                parts.append(line)
        if target.proxy_auth and not target.tunnel:
            parts.append(f"Proxy-Authorization: {target.proxy_auth}\r\n")
        if content is not None or method in ("POST", "PUT", "PATCH"):
            parts.append(f"Content-Length: {len(content or b'')}\r\n")
        parts.append("\r\n")
        return "".join(parts).encode("utf-8")

    # ---------------------------------------------------------------- routing

    def _target(self, url: str) -> _Target:
        cached = self._targets.get(url)
        if cached is not None:
            return cached
        target = self._resolve(url)
        if len(self._targets) < 256:
            self._targets[url] = target
        return target

    def _resolve(self, url: str) -> _Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            port = parts.port
        except ValueError:
            raise InvalidURL(f"invalid port in {url!r}") from None
        host = (parts.hostname or "").rstrip(".")
        if scheme not in ("http", "https") or not host:
            raise InvalidURL(f"cannot request {url!r}: an http(s) URL with a host is required")
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        port = port or (443 if scheme == "https" else 80)
        authority = f"[{host}]" if ":" in host else host
        default_port = port == (443 if scheme == "https" else 80)
        host_header = authority if default_port else f"{authority}:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        tls = None
        if scheme == "https":
            if self._cert_ctx is not None and origin_of(url) == self._cert_origin:
                tls = self._cert_ctx
            else:
                tls = self._default_ssl()
        proxy = self._proxy.proxy_for(url) if self._proxy is not None and not self._unix else None
        if proxy:
            pparts = urlsplit(proxy)
            pscheme = pparts.scheme.lower()
            phost = (pparts.hostname or "").rstrip(".")
            pport = pparts.port or (443 if pscheme == "https" else 80)
            proxy_tls = self._default_ssl() if pscheme == "https" else None
            auth = _proxy_authorization(proxy)
            if scheme == "https":  # CONNECT: TLS end to end, the proxy sees only host:port
                return _Target(("tunnel", phost, pport, pscheme, auth, host, port, id(tls)), host, (phost, pport),
                               "", tls, proxy_tls, f"{authority}:{port}",
                               f" {path} HTTP/1.1\r\nHost: {host_header}\r\n", auth)
            absolute = f"http://{host_header}{path}"
            return _Target(("proxy", phost, pport, pscheme, auth), host, (phost, pport), "", None, proxy_tls, "",
                           f" {absolute} HTTP/1.1\r\nHost: {host_header}\r\n", auth)
        return _Target(("direct", scheme, host, port, self._unix, id(tls)), host, (host, port), self._unix, tls,
                       None, "", f" {path} HTTP/1.1\r\nHost: {host_header}\r\n", "")

    def _default_ssl(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = self._ssl_factory() if self._ssl_factory is not None else default_ssl_context()
        return self._ssl

    # ---------------------------------------------------------------- connections

    async def _acquire(self, target: _Target, deadline: float | None) -> Connection:
        loop = asyncio.get_running_loop()
        if self._closed:
            raise ConnectError("the connection pool is closed")
        connect_deadline = loop.time() + self._connect_timeout
        if deadline is not None:
            connect_deadline = min(connect_deadline, deadline)
        while True:
            idle = self._idle.get(target.key)
            while idle:
                conn = idle.pop()
                if conn.closed:
                    continue
                if loop.time() - conn.idle_since > self._keepalive:
                    self._discard(conn)
                    continue
                return conn
            if self._open < self._max:
                break
            if not self._close_one_idle():  # else wait for a connection of this pool to be freed
                await self._wait_for_slot(connect_deadline)
        self._open += 1
        conn = Connection(target.key, self._lost)
        self._conns.add(conn)
        try:
            await self._connect(conn, target, connect_deadline)
        except BaseException:
            conn.close()
            self._discount(conn)
            raise
        return conn

    async def _wait_for_slot(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)

        def expire() -> None:
            if not fut.done():
                fut.set_exception(ConnectTimeout("no free connection in the pool within the connect timeout"))

        timer = loop.call_at(deadline, expire)
        try:
            await fut
        finally:
            timer.cancel()
            if fut in self._waiters:
                self._waiters.remove(fut)

    async def _connect(self, conn: Connection, t: _Target, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(deadline):
                if t.unix:
                    await loop.create_unix_connection(lambda: conn, t.unix, ssl=t.tls,
                                                      server_hostname=t.host if t.tls else None)
                    return
                host, port = t.connect
                tls = t.proxy_tls if t.tunnel or t.proxy_tls else t.tls
                await loop.create_connection(lambda: conn, host, port, ssl=tls,
                                             server_hostname=host if tls else None)
                if t.tunnel:
                    await self._open_tunnel(conn, t)
        except HTTPError:
            raise
        except TimeoutError as exc:
            raise ConnectTimeout(f"connecting to {t.connect[0]}:{t.connect[1]} timed out") from exc
        except socket.gaierror as exc:
            raise DNSError(f"cannot resolve {t.connect[0]}", exc) from exc
        except ssl.SSLError as exc:
            raise TLSError(f"TLS with {t.host} failed", exc) from exc
        except OSError as exc:
            raise ConnectError(f"cannot connect to {t.connect[0]}:{t.connect[1]}", exc) from exc

    async def _open_tunnel(self, conn: Connection, t: _Target) -> None:
        """CONNECT through the proxy, then TLS with the origin inside the tunnel."""
        auth = f"Proxy-Authorization: {t.proxy_auth}\r\n" if t.proxy_auth else ""
        conn.start([f"CONNECT {t.tunnel} HTTP/1.1\r\nHost: {t.tunnel}\r\n{auth}\r\n".encode()],
                   head_only=True, deadline=None)
        await conn.wait_head()
        conn.reset()
        if conn.status != 200:
            raise ConnectError(f"the proxy refused CONNECT {t.tunnel}: HTTP {conn.status}")
        assert conn.transport is not None and t.tls is not None
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(conn.transport, conn, t.tls, server_hostname=t.host)
        if transport is None:
            raise ConnectError(f"TLS through the proxy to {t.tunnel} did not start")
        conn.transport = transport  # type: ignore[assignment]

    def _release(self, conn: Connection, reusable: bool) -> None:
        if reusable and not self._closed:
            conn.idle_since = asyncio.get_running_loop().time()
            self._idle.setdefault(conn.key, []).append(conn)
            self._wake_one()
        else:
            self._discard(conn)

    def _discard(self, conn: Connection) -> None:
        conn.close()
        self._discount(conn)

    def _close_one_idle(self) -> bool:
        """Make room for a new connection by closing the oldest idle one (of any origin)."""
        oldest: Connection | None = None
        for idle in self._idle.values():
            for conn in idle:
                if not conn.closed and (oldest is None or conn.idle_since < oldest.idle_since):
                    oldest = conn
        if oldest is None:
            return False
        self._idle[oldest.key].remove(oldest)
        self._discard(oldest)
        return True

    def _lost(self, conn: Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)
        self._discount(conn)

    def _discount(self, conn: Connection) -> None:
        if conn.counted:
            conn.counted = False
            self._open -= 1
            self._conns.discard(conn)
            self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    async def aclose(self) -> None:
        self._closed = True
        for conn in list(self._conns):
            self._discard(conn)
        self._idle.clear()
