"""uvicorn's httptools protocol with two savings for servers that answer many small requests.

* **One write per response.** uvicorn writes a response's head as soon as the app sends
  ``http.response.start`` and its body separately: two ``send()`` system calls, and on a busy
  loopback relay each one costs as much as the Python that built the answer. When the head
  declares a ``Content-Length`` (the app has the whole body), the head is held and written
  together with the first body chunk. Streamed answers (no ``Content-Length``: SSE, chunked)
  keep their head going out at once, so a client waiting for the status line of a stream that
  has nothing to say yet is not kept waiting.
* **Disconnect callbacks.** Every request's scope carries
  ``scope["extensions"]["tunnel.disconnect"]``, a function ``watch(callback) -> unwatch``:
  ``callback()`` runs (on the loop) when the client's connection is lost before the response
  is complete, the same moment ``receive()`` would answer ``http.disconnect``. A handler that
  waits for something else (a queued command, an answer) can stop waiting without a task of
  its own parked on ``receive()``.

``FastHttpProtocol`` is the ``http`` class ``netserve.serve`` gives uvicorn (the demo MCP server, the
MCP stub); the tunnel service has a server of its own (``svcserver``) with the same two savings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from tunnel_core.svcserver import DISCONNECT_EXTENSION

# A body larger than this is written after its head rather than copied into one buffer with it.
COALESCE_MAX = 64 * 1024

Watch = Callable[[Callable[[], None]], Callable[[], None]]


def _nothing() -> None:
    return None


class _CorkedTransport:
    """The connection's transport: while ``corked``, the next write is held, and goes out joined to the one after."""

    __slots__ = ("_t", "corked", "held")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._t = transport
        self.corked = False  # hold the next write
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        if self.corked:
            self.corked = False
            self.held = bytes(data)
            return
        held = self.held
        if held is not None:
            self.held = None
            if len(data) <= COALESCE_MAX:
                data = held + data
            else:
                self._t.write(held)
        self._t.write(data)

    def flush(self) -> None:
        self.corked = False
        if self.held is not None:
            held, self.held = self.held, None
            self._t.write(held)

    def close(self) -> None:
        self.flush()
        self._t.close()

    def is_closing(self) -> bool:
        return self._t.is_closing()

    def pause_reading(self) -> None:
        self._t.pause_reading()

    def resume_reading(self) -> None:
        self._t.resume_reading()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._t.get_extra_info(name, default)

    def __getattr__(self, name: str) -> Any:  # the rest of the transport API, unchanged
        return getattr(self._t, name)


def _declares_length(message: Any) -> bool:
    for k, _ in message.get("headers") or ():
        if k == b"content-length" or k.lower() == b"content-length":
            return True
    return False


class _Cycle(RequestResponseCycle):
    """uvicorn's request/response cycle, holding a fixed-length head for the first body write."""

    watchers: list[Callable[[], None]]

    async def send(self, message: Any) -> None:
        transport: _CorkedTransport = self.transport  # type: ignore[assignment]
        if message["type"] == "http.response.start":
            hold = (not self.response_started and self.scope["method"] != "HEAD" and _declares_length(message))
            if not hold:
                await super().send(message)
                return
            transport.corked = True  # the head goes into the transport's hold instead of the socket
            try:
                await super().send(message)
            except BaseException:
                transport.flush()
                raise
            transport.corked = False  # nothing written (the client is gone): nothing held
            return
        try:
            await super().send(message)
        finally:
            transport.flush()  # no body was written (an empty one, or a refused send): the head alone

    def watch_disconnect(self, callback: Callable[[], None]) -> Callable[[], None]:
        if self.disconnected:
            asyncio.get_running_loop().call_soon(callback)
            return _nothing
        self.watchers.append(callback)

        def unwatch() -> None:
            try:
                self.watchers.remove(callback)
            except ValueError:
                pass

        return unwatch

    def fire_disconnect(self) -> None:
        watchers, self.watchers = self.watchers, []
        for callback in watchers:
            callback()


class FastHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with one write per fixed-length response and disconnect callbacks."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CorkedTransport(transport))  # type: ignore[arg-type]

    def on_headers_complete(self) -> None:
        before = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle is before:
            return  # no new request cycle (refused, or an upgrade)
        # Same object, our methods: the ASGI task created above has not run yet and looks send() up
        # when it starts.
        cycle.__class__ = _Cycle
        fast: _Cycle = cycle  # type: ignore[assignment]
        fast.watchers = []
        extensions: dict[str, Any] = cycle.scope.setdefault("extensions", {})  # type: ignore[assignment]
        extensions[DISCONNECT_EXTENSION] = fast.watch_disconnect

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        cycle = self.cycle
        if isinstance(cycle, _Cycle) and cycle.disconnected:
            cycle.fire_disconnect()
