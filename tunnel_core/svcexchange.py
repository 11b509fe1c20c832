"""One request's ASGI exchange on the tunnel service's own server (``svcserver``).

``Exchange`` is what the app's ``receive`` and ``send`` work on: the request body as it
arrives, and the answer written as one buffer per fixed-length response (the head is held
until the first body bytes), chunked or until-close otherwise, with header names and values
checked before anything is written. The connection (``svcserver._Connection``) parses
requests, keeps their order and owns the timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Protocol

log = logging.getLogger("tunnel_client.tunnelservice")

COALESCE_MAX = 64 * 1024  # a larger body is written after its head rather than copied into one buffer
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
_STATUS_LINES: dict[int, bytes] = {}
_DISCONNECT = {"type": "http.disconnect"}


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = _STATUS_LINES[status] = f"HTTP/1.1 {status} {phrase}\r\n".encode()
    return line


def nothing() -> None:
    return None


class Connection(Protocol):
    """What an exchange uses of its connection (``svcserver._Connection``), without importing it."""

    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    server: Any  # has date_line() -> bytes
    write_paused: bool

    def abort(self) -> None: ...
    def answered(self, request: Exchange) -> None: ...
    async def drain(self) -> None: ...
    def resume_reading(self) -> None: ...


class Exchange:
    """One request's ASGI exchange (``receive`` and ``send`` are what the app gets)."""

    __slots__ = ("body", "body_bytes", "chunked", "complete", "conn", "disconnected", "expect_100", "final_given",
                 "forwarded", "head_only", "held", "keep_alive", "more_body", "remaining", "scope", "started", "until_close",
                 "waiter", "watchers")

    def __init__(self, conn: Connection, scope: dict[str, Any], keep_alive: bool, expect_100: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_100 = expect_100
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.more_body = True  # the request body has more to come
        self.final_given = False  # the app got the last body message
        self.waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.watchers: list[Callable[[], None]] | None = None
        self.started = False
        self.complete = False
        self.chunked = False
        self.head_only = scope["method"] == "HEAD"
        self.remaining = -1  # body bytes still owed under Content-Length; -1: none declared
        self.until_close = False  # an HTTP/1.0 answer of unknown length: its end is the connection's
        self.held: bytes | None = None  # a head waiting to go out with the first body bytes
        self.forwarded = False  # carries X-Forwarded-For or X-Forwarded-Proto

    # -- the request side --------------------------------------------------------------------------

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        conn = self.conn
        if self.expect_100:
            self.expect_100 = False
            if self.more_body and not self.body and not conn.transport.is_closing():
                conn.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while not self.disconnected and not self.complete:
            if self.body or (not self.more_body and not self.final_given):
                chunks, self.body = self.body, []
                self.body_bytes = 0
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                if not self.more_body:
                    self.final_given = True
                conn.resume_reading()
                return {"type": "http.request", "body": data, "more_body": self.more_body}
            conn.resume_reading()
            self.waiter = conn.loop.create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return _DISCONNECT

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        if self.disconnected:
            self.conn.loop.call_soon(callback)
            return nothing
        if self.watchers is None:
            self.watchers = []
        self.watchers.append(callback)
        watchers = self.watchers

        def unwatch() -> None:
            try:
                watchers.remove(callback)
            except ValueError:
                pass

        return unwatch

    def lost(self) -> None:
        """The connection went before the answer was complete."""
        self.disconnected = True
        self.wake()
        watchers, self.watchers = self.watchers, None
        for callback in watchers or ():
            callback()

    # -- the answer side ---------------------------------------------------------------------------

    async def send(self, message: dict[str, Any]) -> None:
        conn = self.conn
        if conn.write_paused and not self.disconnected:
            await conn.drain()
        if self.disconnected:
            return
        if not self.started:
            if message["type"] != "http.response.start":
                raise RuntimeError(f"Expected ASGI message 'http.response.start', but got '{message['type']}'.")
            self._start(message)
            return
        if self.complete:
            raise RuntimeError(f"Unexpected ASGI message '{message['type']}' sent, after response already completed.")
        if message["type"] != "http.response.body":
            raise RuntimeError(f"Expected ASGI message 'http.response.body', but got '{message['type']}'.")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        out: bytes = b""
        if self.head_only:
            pass
        elif self.chunked:
            if body:
                out = b"%x\r\n" % len(body) + body + b"\r\n"
            if not more:
                out += b"0\r\n\r\n"
        elif self.until_close:
            out = body
        elif body:
            if len(body) > self.remaining:
                self._fail_length()
                raise RuntimeError("Response content longer than Content-Length")
            self.remaining -= len(body)
            out = body
        held = self.held
        if held is not None:
            self.held = None
            if len(out) <= COALESCE_MAX:
                out = held + out
            else:
                conn.transport.write(held)
        if out:
            conn.transport.write(out)
        if not more:
            if self.remaining > 0 and not self.head_only:
                self._fail_length()
                raise RuntimeError("Response content shorter than Content-Length")
            self.complete = True
            self.wake()
            conn.answered(self)

    def _start(self, message: dict[str, Any]) -> None:
        status: int = message["status"]
        parts = [_status_line(status), self.conn.server.date_line()]
        names: list[bytes] = []
        values: list[bytes] = []
        remaining, chunked, close_asked = -1, False, False
        for name, value in message.get("headers") or ():
            names.append(name)
            values.append(value)
            name = name.lower()
            if name == b"content-length":
                if remaining < 0 and not chunked:
                    remaining = int(value.decode())
            elif name == b"transfer-encoding":
                if value.lower() == b"chunked" and remaining < 0:
                    chunked = True
            elif name == b"connection":
                if b"close" in [t.strip() for t in value.lower().split(b",")]:
                    close_asked = True
            parts += (name, b": ", value, b"\r\n")
        # One search over all names and one over all values: the patterns forbid single bytes.
        if _BAD_NAME.search(b"".join(names)):
            raise RuntimeError("Invalid HTTP header name.")
        if _BAD_VALUE.search(b"".join(values)):
            raise RuntimeError("Invalid HTTP header value.")
        self.started = True
        self.expect_100 = False
        if close_asked:
            self.keep_alive = False
        elif not self.keep_alive:
            parts.append(b"connection: close\r\n")
        if remaining < 0 and not chunked:
            if self.head_only or status in (204, 304):
                remaining = 0
            elif self.scope["http_version"] == "1.0":  # no chunked encoding in HTTP/1.0 (never kept alive)
                self.until_close = True
            else:
                chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        self.remaining, self.chunked = remaining, chunked
        head = b"".join(parts)
        if remaining > 0 and not self.head_only and not self.until_close:
            self.held = head  # goes out with the first body bytes: one write for the whole answer
        else:
            self.conn.transport.write(head)

    def _fail_length(self) -> None:
        self.keep_alive = False
        self.held = None
        self.conn.transport.close()

    async def run(self, app: Any) -> None:
        try:
            await app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            self.conn.abort()
            raise
        except Exception:
            log.error("tunnel service request failed", exc_info=True,
                      extra={"http_method": self.scope["method"], "path": self.scope["path"][:200]})
            await self._failed()
            return
        if not self.complete and not self.disconnected:
            log.error("tunnel service request ended without a complete answer",
                      extra={"http_method": self.scope["method"], "path": self.scope["path"][:200]})
            await self._failed()

    async def _failed(self) -> None:
        """The app failed: 500 if nothing of its answer went out, else the connection closes."""
        if self.started or self.disconnected:
            self.conn.abort()
            return
        self.keep_alive = False
        await self.send({"type": "http.response.start", "status": 500, "headers": [
            (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"21"), (b"connection", b"close")]})
        await self.send({"type": "http.response.body", "body": b"Internal Server Error"})
