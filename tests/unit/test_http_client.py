"""The relay's HTTP/1.1 client (httpio.HTTPPool over httpconn.Connection) against scripted loopback servers.

Each server is a real socket on 127.0.0.1:0 that answers with exact bytes, so framing, reuse,
truncation and the error classes are proved on the wire, not through a mock.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tunnel_core import httpio
from tunnel_core.httpconn import (
    ConnectError,
    ConnectTimeout,
    InvalidURL,
    PayloadError,
    ProtocolError,
    ReadTimeout,
    ServerDisconnected,
)
from tunnel_core.httpio import HTTPPool
from tunnel_core.targets.failures import classify_exception
from tunnel_core.targets.http import HTTPTarget
from tunnel_core.wire.messages import JsonRpcCommand

pytestmark = pytest.mark.anyio
WAIT = 5.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Server:
    """A loopback server that runs ``handler`` per connection and records what arrived."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        self.requests.append(head + body)
        return head


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[Server, str]]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> tuple[Server, str]:
        s = Server(handler)
        srv = await asyncio.start_server(s._serve, "127.0.0.1", 0)
        servers.append(srv)
        return s, f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"

    yield start
    for srv in servers:
        srv.close()


def keep_alive(*answers: bytes) -> Callable[[Server], Handler]:
    """A handler answering successive requests on one connection with ``answers`` in turn."""

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            for answer in answers:
                await server.read_request(reader)
                writer.write(answer)
                await writer.drain()
            await reader.read()  # hold the connection until the client closes it

        return handler

    return make


async def start_with(serve: Callable[[Handler], Awaitable[tuple[Server, str]]],
                     make: Callable[[Server], Handler]) -> tuple[Server, str]:
    box: list[Server] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await make(box[0])(reader, writer)

    server, url = await serve(handler)
    box.append(server)
    return server, url


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"


async def test_one_connection_carries_successive_requests(serve: object) -> None:
    server, url = await start_with(serve, keep_alive(OK, OK))  # type: ignore[arg-type]
    pool = HTTPPool()
    try:
        for _ in range(2):
            resp = await pool.request("POST", url + "/mcp?x=1", headers=[("X-Test", "v")], content=b"{}")
            assert (resp.status, resp.body, resp.header("x-a")) == (200, b"ok", "1")
    finally:
        await pool.aclose()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /mcp?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"X-Test: v\r\n" in first and b"Content-Length: 2\r\n" in first and first.endswith(b"\r\n\r\n{}")


async def test_chunked_body_streams_chunk_by_chunk_then_the_connection_is_reused(serve: object) -> None:
    sse = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    server, url = await start_with(serve, keep_alive(sse, OK))  # type: ignore[arg-type]
    pool = HTTPPool()
    try:
        async with pool.stream("GET", url + "/s", headers=[]) as resp:
            assert resp.header("Content-Type") == "text/event-stream"
            chunks = [c async for c in resp.aiter_bytes()]
        assert b"".join(chunks) == b"hello world"
        assert (await pool.request("GET", url + "/", headers=[])).body == b"ok"
    finally:
        await pool.aclose()
    assert server.connections == 1


async def test_a_body_left_unread_closes_the_connection(serve: object) -> None:
    _, url = await start_with(serve, keep_alive(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab"))  # type: ignore[arg-type]
    _, url2 = await start_with(serve, keep_alive(OK))  # type: ignore[arg-type]
    pool = HTTPPool()
    try:
        async with pool.stream("GET", url + "/", headers=[]) as resp:
            assert resp.status == 200  # the body (2 of 4 bytes so far) is never read
        assert pool._open == 0 and not any(pool._idle.values())
        assert (await pool.request("GET", url2 + "/", headers=[])).body == b"ok"
    finally:
        await pool.aclose()


async def test_body_until_close_and_head_answers(serve: object) -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()

    _, url = await serve(until_close)  # type: ignore[operator]
    pool = HTTPPool()
    try:
        assert (await pool.request("GET", url + "/", headers=[])).body == b"all of it"
        head = await pool.request("HEAD", url + "/", headers=[])
        assert head.status == 200 and head.body == b""
        assert not any(pool._idle.values())  # neither a closing nor a HEAD connection is kept
    finally:
        await pool.aclose()


async def test_interim_answers_are_skipped(serve: object) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK
    _, url = await start_with(serve, keep_alive(early))  # type: ignore[arg-type]
    pool = HTTPPool()
    try:
        resp = await pool.request("GET", url + "/", headers=[])
        assert (resp.status, resp.body, resp.header("link")) == (200, b"ok", None)
    finally:
        await pool.aclose()


@pytest.mark.parametrize(("answer", "error", "kind"), [
    (b"", ServerDisconnected, "unexpected_eof"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", PayloadError, "connection_closed"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", PayloadError, "connection_closed"),
    (b"NOT HTTP AT ALL\r\n\r\n", ProtocolError, "invalid_protocol_response"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70000 + b"\r\n\r\n", ProtocolError, "invalid_protocol_response"),
])
async def test_broken_answers_raise_their_class(serve: object, answer: bytes, error: type[Exception],
                                                kind: str) -> None:
    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()

    _, url = await serve(broken)  # type: ignore[operator]
    pool = HTTPPool()
    try:
        with pytest.raises(error) as info:
            await pool.request("GET", url + "/", headers=[])
        assert classify_exception(info.value).kind == kind
        assert pool._open == 0
    finally:
        await pool.aclose()


async def test_a_line_break_in_a_header_is_refused_before_anything_is_sent(serve: object) -> None:
    server, url = await start_with(serve, keep_alive(OK))  # type: ignore[arg-type]
    pool = HTTPPool()
    try:
        for bad in [("X-A", "v\r\nX-Injected: 1"), ("X A", "v"), ("X-A", "v\nGET / HTTP/1.1")]:
            with pytest.raises(InvalidURL):
                await pool.request("GET", url + "/", headers=[bad])
        assert server.connections == 0
    finally:
        await pool.aclose()


async def test_repeated_headers_are_sent_the_same_and_credentials_are_not_kept(serve: object) -> None:
    """Header lines are checked once and reused; a reused line is still the exact header, and the
    client's own headers are still dropped. Credentials and per-request values are not kept."""
    server, url = await start_with(serve, keep_alive(OK, OK))  # type: ignore[arg-type]
    pool = HTTPPool()
    headers = [("X-Session", "abc"), ("Host", "evil.example"), ("Authorization", "Bearer s3cret-for-test"),
               ("X-Tunnel-Shard-Token", "one-request-only")]
    try:
        for _ in range(2):
            await pool.request("POST", url + "/", headers=headers, content=b"{}")
        with pytest.raises(InvalidURL):  # the same name with a value that cannot be sent
            await pool.request("GET", url + "/", headers=[("X-Session", "abc\r\nX-Injected: 1")])
    finally:
        await pool.aclose()
    first, second = server.requests
    assert first == second
    assert b"X-Session: abc\r\n" in first and b"Authorization: Bearer s3cret-for-test\r\n" in first
    assert b"evil.example" not in first and first.count(b"Host:") == 1
    kept = {name.lower() for name, _ in httpio._LINES}
    assert "x-session" in kept and not kept & {"authorization", "x-tunnel-shard-token"}


async def test_no_answer_in_time_is_a_read_timeout(serve: object) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    _, url = await serve(silent)  # type: ignore[operator]
    pool = HTTPPool()
    try:
        with pytest.raises(ReadTimeout) as info:
            await pool.request("GET", url + "/", headers=[], timeout=0.2)
        assert isinstance(info.value, TimeoutError) and classify_exception(info.value).source == "timeout"
    finally:
        await pool.aclose()


async def test_a_full_pool_waits_for_a_free_connection_within_the_connect_timeout(serve: object) -> None:
    gate, arrived = asyncio.Event(), asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            arrived.set()
            await gate.wait()
            writer.write(OK)
            await writer.drain()

    server, url = await serve(slow)  # type: ignore[operator]
    pool = HTTPPool(max_connections=1, connect_timeout=0.2)
    try:
        first = asyncio.ensure_future(pool.request("GET", url + "/", headers=[]))
        await asyncio.wait_for(arrived.wait(), WAIT)
        with pytest.raises(ConnectTimeout):
            await pool.request("GET", url + "/", headers=[])  # the only connection is busy
        waiting = asyncio.ensure_future(pool.request("GET", url + "/", headers=[], timeout=WAIT))
        await asyncio.sleep(0)
        gate.set()
        assert (await asyncio.wait_for(first, WAIT)).body == b"ok"
        assert (await asyncio.wait_for(waiting, WAIT)).body == b"ok"
        assert server.connections == 1
    finally:
        await pool.aclose()


async def test_refused_connection_keeps_its_os_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()
    pool = HTTPPool()
    try:
        with pytest.raises(ConnectError) as info:
            await pool.request("GET", f"http://127.0.0.1:{port}/", headers=[])
        assert getattr(info.value.os_error, "errno", None) == errno.ECONNREFUSED
        assert classify_exception(info.value).kind == "connection_refused"
    finally:
        await pool.aclose()


async def test_an_idle_connection_the_server_closed_is_not_reused(serve: object) -> None:
    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()  # then close: the client sees EOF while the connection is idle

    server, url = await serve(once)  # type: ignore[operator]
    pool = HTTPPool()
    try:
        await pool.request("GET", url + "/", headers=[])
        for _ in range(200):  # until the pool has seen the EOF (bounded)
            if not any(pool._idle.values()):
                break
            await asyncio.sleep(0.005)
        assert (await pool.request("GET", url + "/", headers=[])).body == b"ok"
        assert server.connections == 2
    finally:
        await pool.aclose()


async def test_bodies_larger_than_the_read_buffer_arrive_whole(serve: object) -> None:
    big = bytes(range(256)) * (12 * 1024)  # 3 MiB, three times the pause threshold
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(big) + big
    server, url = await start_with(serve, keep_alive(answer, answer, answer))  # type: ignore[arg-type]
    pool = HTTPPool()
    try:
        assert (await pool.request("POST", url + "/", headers=[], content=big)).body == big
        async with pool.stream("GET", url + "/", headers=[]) as resp:
            assert await resp.aread() == big
        async with pool.stream("GET", url + "/", headers=[]) as resp:
            assert b"".join([c async for c in resp.aiter_bytes()]) == big
    finally:
        await pool.aclose()
    assert server.connections == 1 and server.requests[0].endswith(big)


async def _events(chunks: list[bytes]) -> list[tuple[str, bytes]]:
    from tunnel_core.targets.http import iter_sse

    async def gen() -> AsyncIterator[bytes]:
        for c in chunks:
            yield c

    return [e async for e in iter_sse(gen())]


async def test_sse_events_split_anywhere_across_chunks_decode_the_same() -> None:
    stream = b"event: message\r\ndata: {\"a\":1}\r\n\r\n: ping\r\n\r\ndata: line1\r\ndata: line2\r\n\r\n"
    expected = [("message", b'{"a":1}'), ("", b"line1\nline2")]
    assert await _events([stream]) == expected
    for cut in range(1, len(stream)):  # every split point, CRLF halves included
        assert await _events([stream[:cut], stream[cut:]]) == expected, cut
    assert await _events([bytes([b]) for b in stream]) == expected


async def test_a_multi_megabyte_sse_event_in_many_chunks_is_one_event() -> None:
    payload = b"x" * (4 * 1024 * 1024)
    chunks = [b"data: "] + [payload[i:i + 4096] for i in range(0, len(payload), 4096)] + [b"\n", b"\n"]
    assert await _events(chunks) == [("", payload)]


async def test_an_sse_event_larger_than_its_bound_is_refused_before_it_ends() -> None:
    from tunnel_core.targets.failures import TargetFailure
    from tunnel_core.targets.http import iter_sse

    async def endless() -> AsyncIterator[bytes]:
        yield b"data: "
        while True:
            yield b"x" * 4096

    with pytest.raises(TargetFailure) as caught:
        async for _ in iter_sse(endless(), max_event=64 * 1024):
            pass
    assert (caught.value.source, caught.value.kind) == ("protocol", "response_body_too_large")


@pytest.mark.parametrize(
    ("data", "splice"),
    [
        (b'{"a": 1}', True),
        (b'\xef\xbb\xbf{"a": 1}', True),  # a UTF-8 BOM is dropped, the rest kept as is
        ('{"a": "\u00e9"}'.encode("utf-16"), False),  # JSON in UTF-16: decoded as json.loads does, re-encoded
    ],
)
def test_parse_message_keeps_utf8_bytes_for_splicing(data: bytes, splice: bool) -> None:
    from tunnel_core.targets.http import parse_message

    value, raw = parse_message(data)
    assert value in ({"a": 1}, {"a": "\u00e9"})
    assert (raw is not None) == splice
    if raw is not None:
        assert json.loads(raw) == value and data.endswith(raw)


def test_an_sse_event_that_is_not_utf8_is_read_leniently_as_before() -> None:
    from tunnel_core.targets.http import parse_message

    assert parse_message(b'{"a": "\xff"}', lenient=True) == ({"a": "\ufffd"}, None)
    with pytest.raises(ValueError):
        parse_message(b'{"a": "\xff"}')


def _reference_sse(stream: bytes) -> list[tuple[str, bytes]]:
    """The events of a whole stream, read line by line as the SSE specification says (no chunks)."""
    out: list[tuple[str, bytes]] = []
    event, data = "", []
    text = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    for line in text.split(b"\n")[:-1]:  # the last piece has no line end yet
        if not line:
            if data or event:
                out.append((event, b"\n".join(data)))
            event, data = "", []
        elif line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
    return out


async def test_sse_events_match_a_line_by_line_reading_for_any_chunking() -> None:
    import random

    rnd = random.Random(17)
    lines = [b"data: {\"a\": 1}", b"data:{}", b"data: ", b"data:", b"event: message", b"event: ping", b": comment",
             b"data: " + b"x" * 3000, b"id: 4", b"retry: 10", b"", b"", b"data: two\ndata: lines"]
    ends = [b"\n", b"\r\n", b"\r"]
    for _ in range(200):
        stream = b"".join(rnd.choice(lines) + rnd.choice(ends) for _ in range(rnd.randint(1, 12)))
        stream += b"\n\n"
        cuts = sorted(rnd.sample(range(1, len(stream)), min(len(stream) - 1, rnd.randint(0, 8))))
        chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
        assert await _events(chunks) == _reference_sse(stream), (stream, cuts)


# ---------------------------------------------------------------- answers relayed before the stream ends

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def sse_chunk(text: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(text), text)


def sse_answer(first: bytes, end: asyncio.Event | None, rest: bytes = b"0\r\n\r\n",
               then: bytes | None = None) -> Callable[[Server], Handler]:
    """One request answered with an SSE head and ``first`` as a chunk; ``rest`` once ``end`` is set
    (never when it is None), then ``then`` to a second request on the same connection."""

    def make(server: Server) -> Handler:
        async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await server.read_request(reader)
            writer.write(SSE_HEAD + sse_chunk(first))
            if end is not None:
                await end.wait()
                writer.write(rest)
                if then is not None:
                    await server.read_request(reader)
                    writer.write(then)
            await reader.read()  # hold the connection until the client closes it

        return handler

    return make


def releases(pool: HTTPPool) -> asyncio.Queue[bool]:
    """Each connection the pool takes back, as it happens: True when kept for reuse."""
    seen: asyncio.Queue[bool] = asyncio.Queue()
    release = pool._release

    def spy(conn: object, reusable: bool) -> None:
        release(conn, reusable)  # type: ignore[arg-type]
        seen.put_nowait(reusable)

    pool._release = spy  # type: ignore[method-assign]
    return seen


async def test_a_stream_left_to_drain_returns_to_the_pool_when_the_server_ends_it(serve: object) -> None:
    end = asyncio.Event()
    make = sse_answer(b"data: 1\n\n", end, sse_chunk(b": more\n\n") + b"0\r\n\r\n", then=OK)
    server, url = await start_with(serve, make)  # type: ignore[arg-type]
    pool = HTTPPool()
    seen = releases(pool)
    try:
        async with pool.stream("POST", url + "/mcp", headers=[], content=b"{}") as resp:
            first = await anext(resp.aiter_bytes())
            assert resp.drain_later(WAIT)
        assert first == b"data: 1\n\n"
        assert seen.empty() and pool._open == 1  # still the server's: not reusable, not closed
        end.set()
        assert await asyncio.wait_for(seen.get(), WAIT) is True
        assert (await pool.request("GET", url + "/", headers=[])).body == b"ok"
    finally:
        await pool.aclose()
    assert server.connections == 1  # the drained connection carried the next request


async def test_a_stream_the_server_never_ends_is_closed_after_the_drain_budget(serve: object) -> None:
    _, url = await start_with(serve, sse_answer(b"data: 1\n\n", None))  # type: ignore[arg-type]  # never ends
    pool = HTTPPool()
    seen = releases(pool)
    try:
        async with pool.stream("POST", url + "/mcp", headers=[], content=b"{}") as resp:
            await anext(resp.aiter_bytes())
            resp.drain_later(0.05)
        assert await asyncio.wait_for(seen.get(), WAIT) is False
        assert pool._open == 0 and not any(pool._idle.values())
    finally:
        await pool.aclose()


async def test_an_sse_answer_is_relayed_before_the_server_ends_its_stream(serve: object) -> None:
    """HTTPTarget.call returns on the answer's event; the stream's end comes only after it returned."""
    end = asyncio.Event()
    answer = b'{"jsonrpc":"2.0","id":7,"result":{"ok":true}}'

    _, url = await start_with(serve, sse_answer(b"event: message\ndata: " + answer + b"\n\n", end))  # type: ignore[arg-type]
    pool = HTTPPool()
    seen = releases(pool)
    target = HTTPTarget("main", url + "/mcp", pool, connection_ttl=WAIT)
    cmd = JsonRpcCommand(request_id="r1", shard_token="s", jsonrpc={"jsonrpc": "2.0", "id": 7, "method": "ping"})

    async def no_notifications(reply: object) -> bool:
        raise AssertionError("nothing but the answer was sent")

    try:
        reply = await asyncio.wait_for(target.call(cmd, no_notifications), WAIT)
        assert (reply.resp_type, reply.body, reply.raw) == ("jsonrpc_response", json.loads(answer), answer)
        assert seen.empty()
        end.set()
        assert await asyncio.wait_for(seen.get(), WAIT) is True  # then kept for the next call
    finally:
        await pool.aclose()
