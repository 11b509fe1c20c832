"""One outbound HTTP/1.1 keep-alive connection: an asyncio protocol around the llhttp parser (httptools).

The relay makes three HTTP exchanges per forwarded call, so this is its hottest code: a
request is one ``write`` (head and body together), the answer is parsed in C as it arrives,
and the caller waits on one future at a time. The pool, the proxies and the public request
API are in :mod:`tunnel_core.httpio`.

Exceptions (all raised by the pool's ``request``/``stream``; ``NetworkErrors`` there lists them):

    HTTPError                   base class
      ConnectError              no connection: refused, unreachable, proxy refused the tunnel
                                (``os_error`` holds the cause when there is one); nothing was sent
        DNSError                the host name did not resolve
        TLSError                TLS handshake or certificate verification failed
        ConnectTimeout          connecting took longer than the connect timeout (also a TimeoutError)
      ReadTimeout               no complete answer within the request's total timeout (also a TimeoutError)
      ServerDisconnected        the connection closed before a response head arrived
      PayloadError              the connection closed in the middle of a response body
      ProtocolError             the answer is not HTTP/1.1 we can read (or its head is over 64 KiB)
      InvalidURL                the URL or a header cannot be sent as given
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import httptools

MAX_HEAD = 64 * 1024  # response status line + headers
READ_HIGH_WATER = 1024 * 1024  # buffered body bytes before the socket is paused


class HTTPError(Exception):
    """Base of every error an outbound request raises (besides cancellation)."""


class ConnectError(HTTPError):
    def __init__(self, message: str, os_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.os_error = os_error


class DNSError(ConnectError):
    pass


class TLSError(ConnectError):
    pass


class ConnectTimeout(ConnectError, TimeoutError):
    pass


class ReadTimeout(HTTPError, TimeoutError):
    pass


class ServerDisconnected(HTTPError):
    pass


class PayloadError(HTTPError):
    pass


class ProtocolError(HTTPError):
    pass


class InvalidURL(HTTPError, ValueError):
    pass


class Connection(asyncio.Protocol):
    """One connection; used by one request at a time (the pool guarantees it)."""

    def __init__(self, key: Any, on_lost: Callable[[Connection], None]) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._on_lost = on_lost
        self._parser: Any = None
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._header_bytes = 0
        self._paused = False
        self._reading_all = False
        self._no_body = False
        self._interim = False
        self._then: Callable[[bool], None] | None = None  # set by drain_then: the body is read and dropped
        self.counted = True  # holds one of the pool's connection slots until it is lost
        self.status = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.complete = False
        self.keep_alive = False
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self._parser is None:  # nothing asked: an idle connection must not talk
            self._fail(ProtocolError("unsolicited data on an idle connection"))
            return
        if not self.head_done:
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ProtocolError(f"malformed HTTP response: {exc}"))
            return
        except httptools.HttpParserUpgrade:
            self._fail(ProtocolError("unexpected protocol upgrade"))
            return
        if self._head_bytes > MAX_HEAD and (not self.head_done or self._header_bytes > MAX_HEAD):
            self._fail(ProtocolError("response head over 64 KiB"))

    def eof_received(self) -> bool | None:
        self._ended(None)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._on_lost(self)

    def _ended(self, exc: BaseException | None) -> None:
        if self._parser is None or self.complete:
            self.closed = True
            return
        if self.head_done and self._close_delimited():
            self.on_message_complete()  # a body without length ends with the connection
            self.keep_alive = False
        elif self.head_done:
            self._fail(PayloadError("connection closed in the middle of the response body"), exc)
        else:
            self._fail(ServerDisconnected("connection closed before the response head"), exc)
        self.closed = True

    def _close_delimited(self) -> bool:
        names = {k.lower() for k, _ in self.raw_headers}
        return b"content-length" not in names and b"transfer-encoding" not in names

    # ---------------------------------------------------------------- parser callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.raw_headers.append((name, value))
        self._header_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (103 Early Hints, ...): the real one follows
            self._interim = True
            self.raw_headers = []
            return
        self.head_done = True
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        if self._no_body:  # a HEAD answer: the parser cannot know there is no body; never reuse
            self.keep_alive = False
            self.complete = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        if self.complete or self._then is not None:
            return
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > READ_HIGH_WATER and not self._reading_all and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.complete:
            return
        self.complete = True
        self.keep_alive = self.keep_alive and self._parser.should_keep_alive()
        self._wake()

    # ---------------------------------------------------------------- request side

    def start(self, data: list[bytes], *, head_only: bool, deadline: float | None) -> None:
        """Send one request (already encoded) and reset the response state."""
        assert self.transport is not None
        self._parser = httptools.HttpResponseParser(self)
        self.status, self.raw_headers, self.head_done, self.complete = 0, [], False, False
        self._head_bytes, self._header_bytes, self._no_body, self._error, self._interim = 0, 0, head_only, None, False
        self._reading_all = False
        self._then = None
        self.chunks.clear()
        self.buffered = 0
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._expired)
        if len(data) == 1:
            self.transport.write(data[0])
        else:
            self.transport.writelines(data)

    def _expired(self) -> None:
        self._timer = None
        self._fail(ReadTimeout("no complete answer within the timeout"))

    async def wait_head(self) -> None:
        while not self.head_done:
            await self._wait()

    async def next_chunk(self) -> bytes | None:
        """The next body bytes, or None at the end of the body."""
        while not self.chunks:
            if self.complete:
                return None
            await self._wait()
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self._paused and self.buffered < READ_HIGH_WATER // 4 and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def read_all(self) -> bytes:
        self._reading_all = True  # the whole body is wanted: never pause the socket for it
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        while not self.complete:
            await self._wait()
        data = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks.clear()
        self.buffered = 0
        return data

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        fut = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await fut
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        if self._then is not None:
            if self.complete or self._error is not None:
                then, self._then = self._then, None
                then(self.finish())
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: BaseException, cause: BaseException | None = None) -> None:
        if self._error is None:
            if cause is not None:
                error.__cause__ = cause
            self._error = error
        self.close()
        self._wake()

    def drain_then(self, done: Callable[[bool], None], budget: float) -> None:
        """Read the rest of the body with nobody waiting for it, dropping it; then ``done(reusable)``.

        For an answer whose caller has what it needs (an SSE stream's JSON-RPC response) while the
        server has not ended the body yet: the connection returns to the pool once the body ends,
        and is closed if it fails or has not ended within ``budget`` seconds.
        """
        self.chunks.clear()
        self.buffered = 0
        if self.complete or self._error is not None or self.closed:
            done(self.finish())
            return
        self._then = done
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(budget, self._expired)

    def reset(self) -> None:
        """Forget the exchange without judging the connection (after a proxy's CONNECT answer)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._parser = None

    def finish(self) -> bool:
        """End of one exchange; True when the connection may carry another request."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        reusable = self.complete and self.keep_alive and not self.closed and self._error is None and not self.chunks
        self._parser = None
        if not reusable:
            self.close()
        return reusable

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
