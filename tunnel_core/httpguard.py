"""An HTTP/1.1 protocol for listeners exposed to hostile clients: bounded request heads, read timeouts,
and a connection limit that never starves the health endpoints.

uvicorn's httptools protocol buffers a request head of any size and waits for it, and for a
request body, forever; its ``limit_concurrency`` answers 503 to *every* request, ``/healthz``
included, while idle connections fill the limit. ``GuardedHttpProtocol`` adds, per connection:

* **head size**: at most ``max_head_bytes`` (request line + headers) are fed to the parser;
  beyond that the answer is 431 and the connection closes. At most ``max_headers`` header
  fields: 431 as well. Nothing of an oversized head is buffered beyond the cap.
* **head timeout**: a request head must arrive within ``head_timeout`` of its first byte, and
  a new connection must send its first head within ``head_timeout`` too (408, closed).
* **body timeout**: a request body must arrive within ``body_timeout`` of the end of its head
  (the connection is closed; the app sees ``http.disconnect``).
* **connection limit**: with ``max_connections`` set, a connection accepted beyond the limit is
  served one answer, 503 ``too_many_connections`` with ``Connection: close``, except for the
  ``health_paths``, which are answered normally; beyond ``max_connections + health_reserve``
  a new connection is closed at once. Connections within the limit are never refused, so
  idle connections (closed by the timeouts above) cannot make everyone else's requests fail.

Idle keep-alive connections are closed by uvicorn's ``timeout_keep_alive``. A TLS handshake
is bounded by asyncio's own handshake timeout (60 s) and does not count as a connection
until it completes.

``guarded_protocol(limits)`` returns the class to pass as uvicorn's ``http`` option.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tunnel_core.httpproto import FastHttpProtocol

HEALTH_PATHS = frozenset({b"/healthz", b"/readyz", b"/metrics"})
# After a 431 the connection keeps reading (and discarding) for this long before it closes, so the
# client, still sending its oversized head, reads the answer instead of a connection reset.
LINGER = 2.0


@dataclass(frozen=True, slots=True)
class Limits:
    max_head_bytes: int = 64 * 1024
    max_headers: int = 100
    head_timeout: float = 10.0
    body_timeout: float = 15.0
    max_connections: int = 0  # 0 = no limit
    health_reserve: int = 16  # connections beyond max_connections still accepted for health_paths
    health_paths: frozenset[bytes] = HEALTH_PATHS
    # Called with the reason each time the guard refuses or closes something (for metrics).
    on_event: Callable[[str], None] | None = None


def _raw_answer(status: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n" + extra + b"\r\n")


async def _too_many_connections(scope: Any, receive: Any, send: Any) -> None:
    body = (b'{"error":{"message":"Too many connections to this service; retry shortly.",'
            b'"type":"server_error","param":null,"code":"too_many_connections"}}')
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", b"1"), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class GuardedHttpProtocol(FastHttpProtocol):
    """uvicorn's httptools protocol (``httpproto``) with the bounds of the module docstring (``limits`` set by a subclass)."""

    limits = Limits()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.limit_concurrency = None  # the limit is enforced per connection below, not per request
        self._timer: asyncio.TimerHandle | None = None
        self._phase = "head"  # head -> body -> idle -> head ...
        self._head_bytes = 0
        self._header_count = 0
        self._refused = False
        lim = self.limits
        n = len(self.connections)
        self._over = bool(lim.max_connections) and n > lim.max_connections
        if self._over and n > lim.max_connections + lim.health_reserve:
            self._event("connection_limit")
            self._refused = True
            transport.close()
            return
        self._arm(lim.head_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    # -- timers -----------------------------------------------------------------------------------

    def _arm(self, delay: float, callback: Callable[[], None]) -> None:
        self._disarm()
        if delay > 0:
            self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _event(self, reason: str) -> None:
        if self.limits.on_event is not None:
            self.limits.on_event(reason)

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        self._event("head_timeout")
        answering = self.cycle is not None and not self.cycle.response_complete  # a pipelined head
        if self._head_bytes and not answering:
            self.transport.write(_raw_answer(b"408 Request Timeout"))
        self.transport.close()

    def _body_timed_out(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self._event("body_timeout")
            self.transport.close()  # the app's receive() answers http.disconnect

    def _refuse_head(self, reason: str) -> None:
        self._refused = True
        self._event(reason)
        self.transport.write(_raw_answer(b"431 Request Header Fields Too Large"))
        self._arm(LINGER, self.transport.close)

    # -- bytes in ---------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # discarded while the refused connection lingers
        if self._phase == "idle":  # the first bytes of the next request on a kept-alive connection
            self._phase = "head"
            self._head_bytes = 0
            self._header_count = 0
            self._arm(self.limits.head_timeout, self._head_timed_out)
        if self._phase != "head":
            super().data_received(data)
            return
        room = self.limits.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Feed only what the cap allows: if the head ends within it, the rest is body (or the next
        # request); if not, the head is too large and nothing more is read.
        self._head_bytes += room
        super().data_received(data[:room])
        if self._refused or self.transport.is_closing():
            return
        if self._phase == "head":
            self._refuse_head("head_too_large")
            return
        super().data_received(data[room:])

    # -- parser callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._phase == "idle":  # pipelined: a head that began inside the previous chunk
            self._phase = "head"
            self._header_count = 0
            self._arm(self.limits.head_timeout, self._head_timed_out)
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            if not self._refused:
                self._refuse_head("too_many_headers")
            return
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._phase = "body"
        self._arm(self.limits.body_timeout, self._body_timed_out)
        if self._over and self.url.split(b"?", 1)[0] not in self.limits.health_paths:
            self._event("connection_limit")
            app, self.app = self.app, _too_many_connections
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._phase = "idle"
        self._disarm()
        super().on_message_complete()


def guarded_protocol(limits: Limits) -> type[GuardedHttpProtocol]:
    """A protocol class bound to ``limits`` (uvicorn instantiates it per connection)."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,), {"limits": limits})
