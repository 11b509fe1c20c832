"""The operator listener's small HTTP/1.1 server (asgiserver.py) on a real loopback socket.

Raw bytes go in and come out, so framing (Content-Length, chunked, HEAD), keep-alive and
pipelining, and every bound (head size, body size, slow requests) are checked on the wire.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from tunnel_core import asgiserver
from tunnel_core.netserve import bind, serve_lean

pytestmark = pytest.mark.anyio
WAIT = 5.0


async def app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
              send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    path = scope["path"]
    if path == "/boom":
        raise RuntimeError("app failure")
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/wait-disconnect":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting\n", "more_body": True})
        first = await receive()
        assert first["type"] == "http.request"
        DISCONNECTS.append((await receive())["type"])
        assert DISCONNECTED is not None
        DISCONNECTED.set()
        return
    msg = await receive()
    body = f"{scope['method']} {path} {scope['query_string'].decode()} {len(msg['body'])}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-client", str(scope["client"]).encode())]})
    await send({"type": "http.response.body", "body": body})


DISCONNECTS: list[str] = []
DISCONNECTED: anyio.Event | None = None  # created by the test that waits for it


@pytest.fixture
async def listener() -> AsyncIterator[tuple[str, int]]:
    sock = bind("127.0.0.1:0")
    async with anyio.create_task_group() as tg:
        served = serve_lean(app, sock, tg, graceful=1.0)
        yield served.host, served.port
        served.stop()


async def exchange(addr: tuple[str, int], data: bytes, *, until_close: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(data)
    await writer.drain()
    try:
        with anyio.fail_after(WAIT):
            return await reader.read() if until_close else await reader.read(65536)
    finally:
        writer.close()


async def test_pipelined_requests_are_answered_in_order_on_one_connection(listener: tuple[str, int]) -> None:
    data = (b"GET /a?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    out = await exchange(listener, data)
    assert out.count(b"HTTP/1.1 200 OK") == 3
    assert out.index(b"GET /a x=1 0") < out.index(b"POST /b  3") < out.index(b"GET /c  0")
    assert b"content-length: 12\r\n" in out and out.rstrip().endswith(b"GET /c  0")
    assert b"x-client: ('127.0.0.1'," in out


async def test_streamed_body_is_chunked_and_head_has_no_body(listener: tuple[str, int]) -> None:
    out = await exchange(listener, b"GET /stream HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert b"transfer-encoding: chunked\r\n" in out and out.endswith(b"4\r\none \r\n3\r\ntwo\r\n0\r\n\r\n")
    head = await exchange(listener, b"HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")  # no body bytes after the head


async def test_an_app_error_is_a_500_and_the_server_keeps_serving(listener: tuple[str, int]) -> None:
    out = await exchange(listener, b"GET /boom HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 500 Internal Server Error")
    assert b"GET /fine" in await exchange(listener, b"GET /fine HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")


@pytest.mark.parametrize(("data", "status"), [
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-Pad: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n", b"431"),
    (b"GET /" + b"u" * 70000 + b" HTTP/1.1\r\n\r\n", b"431"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000000\r\n\r\n", b"413"),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n" + b"x" * 1048577, b"413"),
    (b"NOT HTTP\r\n\r\n", b"400"),
])
async def test_bounds_refuse_and_close(listener: tuple[str, int], data: bytes, status: bytes) -> None:
    out = await exchange(listener, data)
    assert out.startswith(b"HTTP/1.1 " + status) and b"Connection: close" in out


async def test_a_request_that_never_completes_gets_a_408(listener: tuple[str, int],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgiserver, "REQUEST_TIMEOUT", 0.2)
    out = await exchange(listener, b"GET / HTTP/1.1\r\nHost: h\r\n")  # the head never ends
    assert out.startswith(b"HTTP/1.1 408")


async def test_the_app_hears_the_peer_go_away(listener: tuple[str, int]) -> None:
    global DISCONNECTED
    DISCONNECTS.clear()
    DISCONNECTED = anyio.Event()
    reader, writer = await asyncio.open_connection(*listener)
    writer.write(b"GET /wait-disconnect HTTP/1.1\r\nHost: h\r\n\r\n")
    with anyio.fail_after(WAIT):
        assert b"waiting" in await reader.readuntil(b"waiting\n")
    writer.close()
    with anyio.fail_after(WAIT):
        await DISCONNECTED.wait()
    assert DISCONNECTS == ["http.disconnect"]


async def test_connections_beyond_the_limit_are_closed(listener: tuple[str, int],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asgiserver, "MAX_CONNECTIONS", 1)
    _, first = await asyncio.open_connection(*listener)
    try:
        out = await exchange(listener, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        assert out == b""  # closed without an answer
    finally:
        first.close()


def test_usual_reason_phrases_are_the_http_modules() -> None:
    # The listener answers its usual statuses without building HTTPStatus; the phrases must be the same.
    from http import HTTPStatus

    from tunnel_core.asgiserver import _USUAL_PHRASES, _reason

    assert all(_reason(code) == HTTPStatus(code).phrase for code in [*_USUAL_PHRASES, 201, 429, 502])
