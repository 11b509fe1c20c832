"""A small HTTP/1.1 server for ASGI apps: the relay's operator listener.

Why not uvicorn here: the operator listener of a plain ``run`` answers probes and scrapes
(/healthz, /readyz, /metrics) and, now and then, a person's UI. uvicorn and its imports add
about 4 MB to every relay and a noticeable share of its start time (docs/performance.md);
the tunnel service, the dev proxy and the demo MCP server keep uvicorn (``netserve.serve``).

What it implements of ASGI 3 (HTTP only, spec 2.3): one request at a time per connection
(pipelined requests wait), the whole request body read before the app is called, responses
with Content-Length or chunked, HEAD without a body, ``http.disconnect`` when the peer goes.
Every size and wait is bounded: request line + headers 64 KiB, 100 headers, body 1 MiB, a
request must arrive within 10 s of its first byte, an idle kept-alive connection closes after
30 s, and at most 256 connections are open (further ones are closed at once).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import unquote

import anyio
import httptools
from anyio.abc import TaskGroup

from tunnel_core.listen import connection_addresses

log = logging.getLogger("tunnel_client.listener")

MAX_HEAD = 64 * 1024
MAX_HEADERS = 100
MAX_BODY = 1024 * 1024
REQUEST_TIMEOUT = 10.0
KEEP_ALIVE = 30.0
MAX_CONNECTIONS = 256

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]],
                   Awaitable[None]]

_REASONS = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large", 431: "Request Header Fields Too Large"}


class _Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(_REASONS[status])
        self.status = status


class _Connection(asyncio.Protocol):
    def __init__(self, server: LeanServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self.closed = False
        self.busy = False  # a request is being handled
        self.rejected = False  # over the connection limit: closed as soon as it is made
        self.pending = b""  # bytes that arrived while busy (parsed once the answer is out)
        self.disconnected = asyncio.Event()
        self.queued: collections.deque[_Request] = collections.deque()  # pipelined behind the busy one
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.started = False  # first byte of a request seen

    # ------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.rejected:
            transport.close()
            return
        self.client, self.local = connection_addresses(transport)  # None on a Unix socket
        self._arm(KEEP_ALIVE)

    def data_received(self, data: bytes) -> None:
        if self.busy:
            # Keep reading (a peer that goes away must be noticed) but parse later, in order.
            self.pending += data
            if len(self.pending) > MAX_HEAD and self.transport is not None:
                self.transport.pause_reading()
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        if not self.started:
            self.started = True
            self._arm(REQUEST_TIMEOUT)
        try:
            self.parser.feed_data(data)
        except _Refused as exc:
            self._refuse(exc.status)
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            self._refuse(cause.status if isinstance(cause, _Refused) else 400)
        except httptools.HttpParserUpgrade:
            self._refuse(400)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.busy = False
        self.queued.clear()
        self.disconnected.set()
        if self._timer is not None:
            self._timer.cancel()
        self.server.connections.discard(self)
        self.server.check_quiet()

    # ------------------------------------------------------------ parser callbacks

    def on_url(self, url: bytes) -> None:
        self.url += url
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))
        self._count(len(name) + len(value) + 4)
        if len(self.headers) > MAX_HEADERS:
            raise _Refused(431)

    def _count(self, n: int) -> None:
        self.head_bytes += n
        if self.head_bytes > MAX_HEAD:
            raise _Refused(431)

    def on_headers_complete(self) -> None:
        for name, value in self.headers:  # refuse a declared oversized body before it is sent
            if name == b"content-length" and value.strip().isdigit() and int(value) > MAX_BODY:
                raise _Refused(413)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.body_bytes > MAX_BODY:
            raise _Refused(413)
        self.body.append(body)

    def on_message_complete(self) -> None:
        request = _Request(self, self.parser.get_method().decode("ascii", "replace"), self.url, self.headers,
                           b"".join(self.body), self.parser.get_http_version(), self.parser.should_keep_alive())
        self._reset()
        if len(self.queued) >= 16:  # requests pipelined in one read, beyond reason
            raise _Refused(400)
        self.queued.append(request)
        if not self.busy:
            self._next()

    def _next(self) -> None:
        self.busy = True
        self._disarm()
        self.server.spawn(self.queued.popleft().run)

    # ------------------------------------------------------------ helpers

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.started and not self.busy:
            self._refuse(408)
        else:
            self.close()

    def _refuse(self, status: int) -> None:
        if self.transport is not None and not self.closed and not self.busy:
            body = f"{_REASONS[status]}\n".encode()
            self.transport.write(f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                                 f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        self.close()

    def done(self, keep_alive: bool) -> None:
        """The response is complete: wait for the next request, or close."""
        self.busy = False
        if not keep_alive or self.server.stopping or self.closed:
            self.close()
            self.server.check_quiet()
            return
        if self.queued:
            self._next()
            return
        self._arm(KEEP_ALIVE)
        assert self.transport is not None
        self.transport.resume_reading()
        if self.pending:
            data, self.pending = self.pending, b""
            self._feed(data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.close()


class _Request:
    """One request's ASGI exchange."""

    def __init__(self, conn: _Connection, method: str, url: bytes, headers: list[tuple[bytes, bytes]], body: bytes,
                 version: str, keep_alive: bool) -> None:
        self.conn = conn
        self.method = method
        self.body = body
        self.version = version
        self.keep_alive = keep_alive
        raw_path, _, query = url.partition(b"?")
        self.scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": version,
            "method": method, "scheme": "http", "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
            "query_string": query, "root_path": "", "headers": headers, "client": conn.client,
            "server": conn.local, "state": {},
        }
        self.body_sent = False
        self.started = False
        self.finished = False
        self.chunked = False
        self.status = 0

    async def receive(self) -> dict[str, Any]:
        if not self.body_sent:
            self.body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        await self.conn.disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        transport = self.conn.transport
        if self.conn.closed or transport is None or self.finished:
            return
        kind = message["type"]
        if kind == "http.response.start" and not self.started:
            self.started = True
            self.status = int(message["status"])
            self.head_lines = [f"HTTP/1.1 {self.status} {_reason(self.status)}\r\n".encode()]
            self.has_length = False
            for name, value in message.get("headers", []):
                lname = bytes(name).lower()
                if lname == b"content-length":
                    self.has_length = True
                elif lname in (b"transfer-encoding", b"connection"):
                    continue
                self.head_lines.append(bytes(name) + b": " + bytes(value) + b"\r\n")
            return
        if kind != "http.response.body" or not self.started:
            return
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        out: list[bytes] = []
        if self.head_lines:
            if not self.has_length and not more:
                self.head_lines.append(f"content-length: {len(body)}\r\n".encode())
            elif not self.has_length:
                if self.version == "1.1":
                    self.chunked = True
                    self.head_lines.append(b"transfer-encoding: chunked\r\n")
                else:
                    self.keep_alive = False  # an HTTP/1.0 peer reads the body until the connection closes
            if not self.keep_alive:
                self.head_lines.append(b"connection: close\r\n")
            out += [*self.head_lines, b"\r\n"]
            self.head_lines = []
        if self.method != "HEAD":
            if self.chunked:
                if body:
                    out += [f"{len(body):x}\r\n".encode(), body, b"\r\n"]
                if not more:
                    out.append(b"0\r\n\r\n")
            elif body:
                out.append(body)
        if out:
            transport.write(b"".join(out))
        if not more:
            self.finished = True

    async def run(self) -> None:
        try:
            await self.conn.server.app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("operator listener request failed", extra={"path": self.scope["path"]})
            if not self.started:
                await self.send({"type": "http.response.start", "status": 500,
                                 "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
                await self.send({"type": "http.response.body", "body": b"Internal Server Error\n"})
            else:
                self.keep_alive = False
        if not self.finished:  # the app ended without completing its answer
            self.keep_alive = False
        self.conn.done(self.keep_alive)


# The operator endpoints' usual answers: /readyz is asked every few milliseconds while a relay
# starts, and the http module's HTTPStatus enum costs most of a millisecond to build.
_USUAL_PHRASES = {200: "OK", 204: "No Content", 304: "Not Modified", 400: "Bad Request", 403: "Forbidden",
                  404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error",
                  503: "Service Unavailable"}


def _reason(status: int) -> str:
    known = _USUAL_PHRASES.get(status)
    if known is not None:
        return known
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class LeanServer:
    """Serves one ASGI app on a pre-bound listening socket until ``should_exit`` is set."""

    def __init__(self, app: ASGIApp, sock: socket.socket, *, graceful: float = 5.0) -> None:
        self.app = app
        self.sock = sock
        self.graceful = graceful
        self.connections: set[_Connection] = set()
        self.stopping = False
        self._stop = anyio.Event()
        self._quiet = anyio.Event()  # set once stopping and no request is in progress
        self._tg: TaskGroup | None = None

    @property
    def should_exit(self) -> bool:
        return self.stopping

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        if value and not self.stopping:
            self.stopping = True
            self._stop.set()

    def check_quiet(self) -> None:
        if self.stopping and not any(c.busy for c in self.connections):
            self._quiet.set()

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        assert self._tg is not None
        self._tg.start_soon(fn)

    def _accept(self) -> _Connection:
        conn = _Connection(self)
        if len(self.connections) >= MAX_CONNECTIONS or self.stopping:
            conn.rejected = True
        else:
            self.connections.add(conn)
        return conn

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            if self.sock.family == socket.AF_UNIX:
                server = await loop.create_unix_server(self._accept, sock=self.sock, backlog=2048)
            else:
                server = await loop.create_server(self._accept, sock=self.sock, backlog=2048)
            try:
                await self._stop.wait()
            finally:
                server.close()
                for conn in list(self.connections):
                    if not conn.busy:
                        conn.close()
                self.check_quiet()
                with anyio.move_on_after(self.graceful):
                    await self._quiet.wait()
                for conn in list(self.connections):
                    conn.close()
                tg.cancel_scope.cancel()
