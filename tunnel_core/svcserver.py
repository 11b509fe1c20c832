"""The tunnel service's HTTP/1.1 server: lean per request, bounded for hostile clients.

Every relayed MCP call crosses the tunnel service three times (the caller's front-door request,
the tunnel client's poll answer, its response POST), so the server's own work per request sits on
every call's critical path twice. This server does for the service's ASGI app what uvicorn's
httptools protocol did, with less per request: no per-request cycle object chain, no middleware
layer for proxy headers unless a request carries them from a trusted peer, one ``write()`` per
fixed-length answer (the head is held for the body), and header checks done once per answer.

What it implements of ASGI 3 (HTTP, spec 2.3): streamed request bodies (reading pauses past
64 KiB not yet taken by the app), ``Expect: 100-continue``, responses with ``Content-Length``
or chunked (HEAD and 204/304 without a body), keep-alive and pipelining (one request at a time,
in order), write back-pressure (``send`` waits while the peer does not read), ``http.disconnect``
and the ``tunnel.disconnect`` extension (``DISCONNECT_EXTENSION``): ``watch(callback) -> unwatch``,
``callback()`` runs when the client leaves before its answer is complete. No lifespan, no
WebSocket (an upgrade request is answered as plain HTTP and the connection closes after it).

Bounds (``Limits``), per connection:

* **head size**: at most ``max_head_bytes`` (request line + headers) are fed to the parser;
  beyond that the answer is 431 and the connection closes after a short linger (the client,
  still sending, reads the answer instead of a reset). At most ``max_headers`` header fields
  (431 as well). Nothing of an oversized head is buffered beyond the cap.
* **head timeout**: a new connection must send its first head within ``head_timeout``, and each
  later head must complete within ``head_timeout`` of its first byte (408, closed).
* **body timeout**: a request body must arrive within ``body_timeout`` of the end of its head
  (the connection is closed; the app sees ``http.disconnect``).
* **idle timeout**: a kept-alive connection with no request is closed after ``idle_timeout``.
* **connection limit**: with ``max_connections`` set, a connection accepted beyond it is served
  one answer, 503 ``too_many_connections`` with ``Connection: close``, except for the
  ``health_paths``, which are answered normally; beyond ``max_connections + health_reserve`` a
  new connection is closed at once. Connections within the limit are never refused.
* **TLS handshake**: bounded by ``head_timeout`` too; it does not count as a connection until
  it completes.

Answers are checked before they are written: a header name or value the app produced with
characters HTTP forbids (a relayed header carrying CR/LF, say) fails the request (500) instead
of splitting the response, and a body longer or shorter than its ``Content-Length`` closes the
connection. ``X-Forwarded-For``/``X-Forwarded-Proto`` are honoured only from the peers named
in ``forwarded_allow_ips`` (uvicorn's ``ProxyHeadersMiddleware`` applies them, only to the
requests that carry them).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

import anyio
import httptools

from tunnel_core.listen import connection_addresses
from tunnel_core.svcexchange import Exchange, nothing

log = logging.getLogger("tunnel_client.tunnelservice")

DISCONNECT_EXTENSION = "tunnel.disconnect"
HEALTH_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics"})
# After a 431 the connection keeps reading (and discarding) for this long before it closes, so the
# client, still sending its oversized head, reads the answer instead of a connection reset.
LINGER = 2.0
HIGH_WATER = 64 * 1024  # request body bytes buffered before reading pauses (until the app takes them)
MAX_DISCARD = 4 * 1024 * 1024  # request body bytes read and dropped after an early answer before closing
MAX_PIPELINED = 16  # requests queued behind the one being answered (reading pauses at the first)



@dataclass(frozen=True, slots=True)
class Limits:
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    head_timeout: float = 10.0
    body_timeout: float = 15.0
    idle_timeout: float = 30.0
    max_connections: int = 0  # 0 = no limit
    health_reserve: int = 16  # connections beyond max_connections still accepted for health_paths
    health_paths: frozenset[bytes] = HEALTH_PATHS
    # Called with the reason each time the server refuses or closes something (for metrics).
    on_event: Callable[[str], None] | None = None


def _raw_answer(status: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n" + extra + b"\r\n"


_INVALID = b"Invalid HTTP request received."
_BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: "
                + str(len(_INVALID)).encode() + b"\r\nconnection: close\r\n\r\n" + _INVALID)


async def _too_many_connections(scope: Any, receive: Any, send: Any) -> None:
    body = (b'{"error":{"message":"Too many connections to this service; retry shortly.",'
            b'"type":"server_error","param":null,"code":"too_many_connections"}}')
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the app for each, one at a time."""

    def __init__(self, server: ServiceServer) -> None:
        self.server = server
        self.limits = server.limits
        self.loop = server.loop
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.parser = httptools.HttpRequestParser(self)
        self.scheme = "http"
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.deadline = 0.0  # loop time at which ``expire`` is called (0: none); see ServiceServer._sweep
        self.expire: Callable[[], None] = nothing
        self.phase = "head"  # head -> body -> served -> (idle -> head ...)
        self.head_bytes = 0
        self.header_count = 0
        self.refused = False
        self.over = False
        self.closed = False
        self.read_paused = False
        self.write_paused = False
        self.discarded = 0
        self.drained: asyncio.Future[None] | None = None
        self.parsing: Exchange | None = None  # the request the parser is filling
        self.serving: Exchange | None = None  # the request the app is answering
        self.queued: collections.deque[Exchange] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        # per head being parsed
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_100 = False
        self.forwarded = False

    # -- asyncio callbacks -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        lim = self.limits
        server.connections.add(self)
        n = len(server.connections)
        if lim.max_connections and n > lim.max_connections:
            self.over = True
            if n > lim.max_connections + lim.health_reserve:
                self._event("connection_limit")
                self.refused = True
                self.close()
                return
        if server.stopping:
            self.close()
            return
        self.client, self.local = connection_addresses(transport)  # None on a Unix socket
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        self._arm(lim.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        self.server.connections.discard(self)
        self.queued.clear()
        for request in (self.serving, self.parsing):
            if request is not None and not request.complete:
                request.lost()
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)
        self.server.check_quiet()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drained = self.drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    async def drain(self) -> None:
        if self.drained is None or self.drained.done():
            self.drained = self.loop.create_future()
        await self.drained

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return  # discarded while a refused connection lingers
        if self.phase == "idle":  # the first bytes of the next request on a kept-alive connection
            self.phase = "head"
            self.head_bytes = 0
            self.header_count = 0
            self._arm(self.limits.head_timeout, self._head_timed_out)
        if self.phase != "head":
            self._feed(data)
            return
        room = self.limits.max_head_bytes - self.head_bytes
        if len(data) <= room:
            self.head_bytes += len(data)
            self._feed(data)
            return
        # Feed only what the cap allows: if the head ends within it, the rest is body (or the next
        # request); if not, the head is too large and nothing more is read.
        self.head_bytes += room
        self._feed(data[:room])
        if self.refused or self.closed:
            return
        if self.phase == "head":
            self._refuse_head("head_too_large")
            return
        self._feed(data[room:])

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request asking for it is answered as plain HTTP; nothing after it is read.
            self.refused = True
            last = self.queued[-1] if self.queued else self.serving
            if last is not None:
                last.keep_alive = False
            else:
                self.close()
        except httptools.HttpParserError:
            if self.refused:
                return
            self._event("bad_request")
            if not self._answering():
                self.transport.write(_BAD_REQUEST)
            self.close()

    # -- parser callbacks --------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self.phase in ("idle", "served"):  # pipelined: a head that began inside an earlier chunk
            self.phase = "head"
            self.head_bytes = 0
            self.header_count = 0
            self._arm(self.limits.head_timeout, self._head_timed_out)
        self.url = b""
        self.headers = []
        self.expect_100 = False
        self.forwarded = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_count += 1
        if self.header_count > self.limits.max_headers:
            if not self.refused:
                self._refuse_head("too_many_headers")
            return
        name = name.lower()
        value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace, which is not part of a value
        if name[:2] == b"x-":
            if name == b"x-forwarded-for" or name == b"x-forwarded-proto":
                self.forwarded = True
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_100 = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.refused:
            return
        parser = self.parser
        version = parser.get_http_version()
        url = httptools.parse_url(self.url)
        raw_path: bytes = url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = unquote(path)
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": version,
            "server": self.local, "client": self.client, "scheme": self.scheme, "root_path": "",
            "method": parser.get_method().decode("ascii"), "path": path, "raw_path": raw_path,
            "query_string": url.query or b"", "headers": self.headers, "state": {},
        }
        request = Exchange(self, scope, version != "1.0" and parser.should_keep_alive(), self.expect_100)
        scope["extensions"] = {DISCONNECT_EXTENSION: request.watch}
        request.forwarded = self.forwarded
        self.parsing = request
        self.phase = "body"
        self._arm(self.limits.body_timeout, self._body_timed_out)
        if self.serving is None:
            self._start(request)
        else:
            if len(self.queued) >= MAX_PIPELINED:
                raise ValueError("too many pipelined requests")  # the parser answers 400
            self.queued.append(request)
            self.pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        if request is None or self.refused:
            return
        if request.complete:  # answered already: dropped
            self.discarded += len(body)
            if self.discarded > MAX_DISCARD:
                self.close()
            return
        request.body.append(body)
        request.body_bytes += len(body)
        if request.body_bytes > HIGH_WATER:
            self.pause_reading()
        request.wake()

    def on_message_complete(self) -> None:
        request = self.parsing
        if request is None or self.refused:
            return
        self.parsing = None
        request.more_body = False
        request.wake()
        if self.phase == "body":
            self.phase = "served"
            self._disarm()
        if request.complete and self.serving is None and not self.closed:
            self._next()  # the rest of an early-answered request's body is in: go on

    # -- running requests --------------------------------------------------------------------------

    def _start(self, request: Exchange) -> None:
        self.serving = request
        server = self.server
        app = server.app
        if self.over and request.scope["raw_path"] not in self.limits.health_paths:
            self._event("connection_limit")
            app = _too_many_connections
        elif request.forwarded and server.forwarded_allow_ips:
            app = server.proxy
        self.task = task = self.loop.create_task(request.run(app))
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    def answered(self, request: Exchange) -> None:
        """``request``'s answer is complete: go on with the next request, or close."""
        if request is not self.serving:
            return
        self.serving = None
        if not request.keep_alive or self.server.stopping or self.closed:
            self.close()
            self.server.check_quiet()
            return
        if request.more_body:
            # Answered before its body arrived (a refusal, say): the rest of the body is read and
            # dropped (at most MAX_DISCARD bytes, within the body timeout), then the next request.
            request.body = []
            self.discarded = request.body_bytes = 0
            self.resume_reading()
            return
        self._next()

    def _next(self) -> None:
        if self.queued:
            self._start(self.queued.popleft())
            return
        self.resume_reading()
        if self.parsing is None and self.phase != "head":
            self.phase = "idle"
            self._arm(self.limits.idle_timeout, self._idle_timed_out)

    def _answering(self) -> bool:
        return self.serving is not None and self.serving.started

    def shutdown(self) -> None:
        """The server stops: an idle connection closes now, a busy one after its answer."""
        if self.serving is None:
            self.close()
        else:
            self.serving.keep_alive = False

    # -- flow, timers, refusals --------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self.read_paused and not self.closed:
            self.read_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.read_paused and not self.closed and not self.queued:
            self.read_paused = False
            self.transport.resume_reading()

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        # No timer per connection: the server's sweep calls ``expire`` once ``deadline`` has passed.
        if delay > 0:
            self.deadline = self.loop.time() + delay
            self.expire = callback
        else:
            self.deadline = 0.0

    def _disarm(self) -> None:
        self.deadline = 0.0

    def _event(self, reason: str) -> None:
        if self.limits.on_event is not None:
            self.limits.on_event(reason)

    def _head_timed_out(self) -> None:
        if self.closed:
            return
        self._event("head_timeout")
        if self.head_bytes and not self._answering():
            self.transport.write(_raw_answer(b"408 Request Timeout"))
        self.close()

    def _body_timed_out(self) -> None:
        if not self.closed:
            self._event("body_timeout")
            self.close()  # the app's receive() answers http.disconnect

    def _idle_timed_out(self) -> None:
        if not self.closed and self.serving is None:
            self.close()

    def _refuse_head(self, reason: str) -> None:
        self.refused = True
        self._event(reason)
        if not self._answering():
            self.transport.write(_raw_answer(b"431 Request Header Fields Too Large"))
        self._arm(LINGER, self.close)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._disarm()
            self.transport.close()

    def abort(self) -> None:
        """Close without finishing an answer (the app failed after starting it, or was cancelled)."""
        if self.serving is not None:
            self.serving.keep_alive = False
        self.close()


class ServiceServer:
    """Serves one ASGI app on a pre-bound listening socket until ``should_exit`` is set."""

    protocol: type[_Connection] = _Connection  # one per connection (a test may record what it writes)

    def __init__(self, app: Any, sock: socket.socket, *, limits: Limits | None = None,
                 ssl_context: ssl.SSLContext | None = None, forwarded_allow_ips: str | None = None,
                 graceful: float = 5.0) -> None:
        self.app = app
        self.sock = sock
        self.limits = limits or Limits()
        self.ssl = ssl_context
        self.graceful = graceful
        self.forwarded_allow_ips = forwarded_allow_ips or ""
        self._proxy: Any = None
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]
        self._stop: asyncio.Event | None = None
        self._quiet: asyncio.Event | None = None
        self._date_at = 0
        self._date = b""
        # How often deadlines are checked: a timeout fires at most a quarter of itself (or 1 s) late.
        lim = self.limits
        self.tick = min([1.0, LINGER / 4, *(t / 4 for t in (lim.head_timeout, lim.body_timeout, lim.idle_timeout)
                                           if t > 0)])
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def proxy(self) -> Any:
        """The app behind uvicorn's ``ProxyHeadersMiddleware`` (built for the first request that needs it); None
        when no proxy is trusted."""
        if self._proxy is None and self.forwarded_allow_ips:
            from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

            self._proxy = ProxyHeadersMiddleware(self.app, [h.strip() for h in self.forwarded_allow_ips.split(",")])
        return self._proxy

    @property
    def scheme(self) -> str:
        return "https" if self.ssl is not None else "http"

    @property
    def should_exit(self) -> bool:
        return self.stopping

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value and not self.stopping:
            self.stopping = True
            if self._stop is not None:
                try:
                    on_loop = asyncio.get_running_loop() is self.loop
                except RuntimeError:
                    on_loop = False
                if on_loop:
                    self._stop.set()
                else:  # set from another thread (a test's, say): wake the loop
                    self.loop.call_soon_threadsafe(self._stop.set)

    def date_line(self) -> bytes:
        now = int(time.time())
        if now != self._date_at:
            self._date_at = now
            self._date = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._date

    def _sweep(self) -> None:
        """Call ``expire`` on every connection whose deadline has passed; again in ``tick`` seconds."""
        self._sweeper = self.loop.call_later(self.tick, self._sweep)
        now = self.loop.time()
        for conn in list(self.connections):
            deadline = conn.deadline
            if deadline and deadline <= now and not conn.closed:
                conn.deadline = 0.0
                try:
                    conn.expire()
                except Exception:  # one connection's trouble must not stop the others' timeouts
                    log.exception("closing an expired connection failed")
                    conn.transport.abort()

    def check_quiet(self) -> None:
        if self.stopping and self._quiet is not None and not any(c.serving for c in self.connections):
            self._quiet.set()

    async def serve(self) -> None:
        self.loop = loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._quiet = asyncio.Event()
        if self.stopping:
            self._stop.set()
        kwargs: dict[str, Any] = {}
        if self.ssl is not None:
            kwargs.update(ssl=self.ssl, ssl_handshake_timeout=self.limits.head_timeout or None)
        if self.sock.family == socket.AF_UNIX:
            server = await loop.create_unix_server(lambda: self.protocol(self), sock=self.sock, backlog=2048, **kwargs)
        else:
            server = await loop.create_server(lambda: self.protocol(self), sock=self.sock, backlog=2048, **kwargs)
        self._sweeper = loop.call_later(self.tick, self._sweep)
        try:
            await self._stop.wait()
            server.close()
            for conn in list(self.connections):
                conn.shutdown()
            self.check_quiet()
            with anyio.move_on_after(self.graceful):
                await self._quiet.wait()
        finally:
            server.close()
            if self._sweeper is not None:
                self._sweeper.cancel()
            for conn in list(self.connections):
                conn.close()
            tasks = list(self.tasks)
            for task in tasks:
                task.cancel()
            if tasks:
                with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                    await asyncio.wait(tasks)
