"""The tunnel service's own HTTP/1.1 server (``svcserver``): bounds against hostile clients, the
HTTP rules it must keep (framing, pipelining, 100-continue, HEAD, HTTP/1.0), answers it refuses to
write (split headers, wrong lengths), write back-pressure, proxy headers, one write per answer.

Real servers on 127.0.0.1:0 on the session's background loop, raw sockets as clients; every wait is
capped, and waits are on what the server does (an answer, a close), never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.net_helpers import SERVER_CERT, SERVER_KEY
from tests.support.proc import wait_until
from tests.support.servers import BackgroundLoop, RunningServer
from tunnel_core.svcserver import DISCONNECT_EXTENSION, Limits, ServiceServer, _Connection

CAP = 10.0
BODY = b'{"ok":true}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers by path: /fixed, /echo (the request body), /stream (chunks), /split (a header with CR/LF),
    /long and /short (a body that does not match its Content-Length), /who (scope facts), /big?n= (n MiB,
    streamed), /healthz."""
    path = scope["path"]
    if path in ("/fixed", "/healthz"):
        await _answer(send, 200, BODY)
    elif path == "/echo":
        chunks = []
        while True:
            message = await receive()
            assert message["type"] == "http.request"
            chunks.append(message["body"])
            if not message.get("more_body"):
                break
        await _answer(send, 200, b"".join(chunks))
    elif path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for part in (b"one ", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/split":
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", b"0"), (b"x-relayed", b"a\r\nset-cookie: stolen=1")]})
        await send({"type": "http.response.body", "body": b""})
    elif path in ("/long", "/short"):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"123456" if path == "/long" else b"1234"})
    elif path == "/who":
        await _answer(send, 200, json.dumps({"client": scope["client"][0], "scheme": scope["scheme"],
                                             "version": scope["http_version"]}).encode())
    elif path == "/big":
        n = int(scope["query_string"].decode().split("=")[1])
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-length", str(n << 20).encode())]})
        for _ in range(n):
            await send({"type": "http.response.body", "body": b"x" * (1 << 20), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    elif path == "/wait":
        gone = asyncio.Event()
        scope["extensions"][DISCONNECT_EXTENSION](gone.set)
        await asyncio.wait_for(gone.wait(), CAP)
        STATE["left"] = True
    else:
        await _answer(send, 404, b"")


STATE: dict[str, Any] = {}


async def _answer(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _serve(bg: BackgroundLoop, **kwargs: Any) -> RunningServer:
    return bg.serve_service(app, **kwargs)


@pytest.fixture
def server(bg: BackgroundLoop) -> Iterator[RunningServer]:
    s = _serve(bg, limits=Limits(head_timeout=CAP, body_timeout=CAP, idle_timeout=CAP))
    yield s
    s.stop()


def connect(server: RunningServer) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=CAP)
    s.settimeout(CAP)
    return s


_LEFT: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()  # read past an answer


def read_answer(s: socket.socket) -> tuple[int, dict[bytes, bytes], bytes]:
    """(status, headers, body) of the next answer on ``s`` (Content-Length or chunked); bytes read past it
    (the next pipelined answer) are kept for the next call."""
    status, fields, body, _LEFT[s] = _read_answer(s, _LEFT.pop(s, b""))
    return status, fields, body


def _read_answer(s: socket.socket, data: bytes) -> tuple[int, dict[bytes, bytes], bytes, bytes]:
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"closed before a full head: {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    status = int(lines[0].split(b" ", 2)[1])
    if b"content-length" in fields:
        n = int(fields[b"content-length"])
        buf = bytearray(rest)
        while len(buf) < n:
            buf += s.recv(1 << 20)
        return status, fields, bytes(buf[:n]), bytes(buf[n:])
    if fields.get(b"transfer-encoding") == b"chunked":
        out = b""
        while True:
            while b"\r\n" not in rest:
                rest += s.recv(65536)
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line, 16)
            while len(rest) < size + 2:
                rest += s.recv(65536)
            if size == 0:
                return status, fields, out, rest[2:]
            out, rest = out + rest[:size], rest[size + 2:]
    return status, fields, b"", rest


def closed_within(s: socket.socket, cap: float) -> bytes | None:
    """Everything read until the server closes ``s`` (None if it stays open for ``cap`` seconds)."""
    s.settimeout(cap)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


def test_answers_keep_alive_and_pipelined_requests_come_back_in_order(server: RunningServer) -> None:
    with connect(server) as s:
        s.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
        status, fields, body = read_answer(s)
        assert (status, body) == (200, BODY) and b"date" in fields and b"server" not in fields
        # three requests in one write, the middle one with a body: answered one after another, in order
        s.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\nPOST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
                  b"hello" b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(read_answer(s)[2])["version"] == "1.1"
        assert read_answer(s)[2] == b"hello"
        status, fields, body = read_answer(s)
        assert fields[b"transfer-encoding"] == b"chunked" and body == b"one two"


def test_a_body_sent_after_100_continue_and_head_and_http10_framing(server: RunningServer) -> None:
    with connect(server) as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += s.recv(4096)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"abc")
        assert read_answer(s)[2] == b"abc"
        s.sendall(b"HEAD /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        assert head.endswith(b"\r\n\r\n") and f"content-length: {len(BODY)}".encode() in head  # and no body:
        s.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(s)[2] == BODY
    with connect(server) as s:  # HTTP/1.0 knows no chunked encoding: the body ends with the connection
        s.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
        data = closed_within(s, CAP)
        assert data is not None and data.endswith(b"\r\n\r\none two") and b"chunked" not in data


def test_answers_that_would_split_or_misframe_the_response_are_not_written(server: RunningServer) -> None:
    with connect(server) as s:
        s.sendall(b"GET /split HTTP/1.1\r\nHost: x\r\n\r\n")
        data = closed_within(s, CAP)
        assert data is not None and data.startswith(b"HTTP/1.1 500 ") and b"stolen" not in data
    for path in ("/long", "/short"):
        with connect(server) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = closed_within(s, CAP)
            assert data is not None and b"123456" not in data, data  # closed, never more than declared


def test_bad_requests_get_400_and_upgrades_end_the_connection(server: RunningServer) -> None:
    with connect(server) as s:
        s.sendall(b"GARBAGE\r\n\r\n")
        data = closed_within(s, CAP)
        assert data is not None and data.startswith(b"HTTP/1.1 400 ")
    with connect(server) as s:
        s.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n")
        data = closed_within(s, CAP)
        assert data is not None and data.startswith(b"HTTP/1.1 200 ") and data.endswith(BODY)


def test_heads_are_bounded_in_size_count_and_time(bg: BackgroundLoop) -> None:
    events: list[str] = []
    server = _serve(bg, limits=Limits(max_head_bytes=2048, max_headers=10, head_timeout=0.5, body_timeout=0.5,
                                      idle_timeout=0.5, on_event=events.append))
    try:
        with connect(server) as s:  # a head larger than the cap: 431 as soon as the cap is crossed
            s.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4096)
            data = closed_within(s, CAP)
            assert data is not None and data.startswith(b"HTTP/1.1 431 ")
        with connect(server) as s:
            s.sendall(b"GET /fixed HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(11)) + b"\r\n")
            data = closed_within(s, CAP)
            assert data is not None and data.startswith(b"HTTP/1.1 431 ")
        started = time.monotonic()
        with connect(server) as s:  # a partial head: 408, then closed
            s.sendall(b"GET /fixed HTTP/1.1\r\nHost")
            data = closed_within(s, CAP)
            assert data is not None and data.startswith(b"HTTP/1.1 408 ")
        with connect(server) as s:  # silent: closed without a word
            assert closed_within(s, CAP) == b""
        with connect(server) as s:  # a body that never comes: closed
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
            assert closed_within(s, CAP) == b""
        with connect(server) as s:  # idle after an answer: closed
            s.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(s)[2] == BODY
            assert closed_within(s, CAP) == b""
        assert time.monotonic() - started < CAP
        wait_until(lambda: len(events) >= 5, "the server to report its refusals", CAP)
        assert events[:5] == ["head_too_large", "too_many_headers", "head_timeout", "head_timeout", "body_timeout"]
    finally:
        server.stop()


def test_the_connection_limit_spares_health_paths_and_closes_beyond_the_reserve(bg: BackgroundLoop) -> None:
    server = _serve(bg, limits=Limits(max_connections=2, health_reserve=1, head_timeout=CAP))
    held = [connect(server) for _ in range(2)]
    try:
        for s in held:  # within the limit: served (and counted once accepted)
            s.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(s)[0] == 200
        with connect(server) as third:  # within the reserve: health only
            third.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_answer(third)[0] == 200
            with connect(server) as fourth:  # beyond the reserve: closed at once
                assert closed_within(fourth, CAP) == b""
            third.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
            status, fields, body = read_answer(third)
            assert status == 503 and json.loads(body)["error"]["code"] == "too_many_connections"
            assert fields[b"connection"] == b"close"
    finally:
        for s in held:
            s.close()
        server.stop()


def test_a_reader_that_does_not_read_holds_the_writer_back(bg: BackgroundLoop, server: RunningServer) -> None:
    conns: list[_Connection] = []
    server.server.protocol = type("Tracked", (_Connection,), {
        "connection_made": lambda self, t: (conns.append(self), _Connection.connection_made(self, t))[1]})
    s = connect(server)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        s.sendall(b"GET /big?n=32 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_until(lambda: conns and conns[0].write_paused, "the server to stop writing to a client that reads "
                   "nothing", CAP)
        buffered = conns[0].transport.get_write_buffer_size()
        assert buffered < 8 << 20, f"{buffered} bytes buffered for a client that reads nothing"
        _, _, body = read_answer(s)  # reading lets it go on to the end
        assert len(body) == 32 << 20
    finally:
        s.close()


def test_a_client_that_leaves_fires_the_disconnect_callback(server: RunningServer) -> None:
    STATE.pop("left", None)
    s = connect(server)
    s.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    s.close()
    wait_until(lambda: STATE.get("left"), "the app to hear that its client left", CAP)


def test_forwarded_headers_count_only_from_trusted_peers(bg: BackgroundLoop) -> None:
    forwarded = b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n"
    for trusted, expected in (("127.0.0.1", {"client": "203.0.113.9", "scheme": "https"}),
                              ("10.0.0.1", {"client": "127.0.0.1", "scheme": "http"}), (None,
                              {"client": "127.0.0.1", "scheme": "http"})):
        server = _serve(bg, forwarded_allow_ips=trusted)
        try:
            with connect(server) as s:
                s.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\n" + forwarded + b"\r\n")
                who = json.loads(read_answer(s)[2])
                assert {k: who[k] for k in expected} == expected, trusted
        finally:
            server.stop()


def test_tls_and_one_write_per_fixed_length_answer(bg: BackgroundLoop) -> None:
    writes: list[bytes] = []

    class Recording(_Connection):
        def connection_made(self, transport: Any) -> None:
            real_write: Callable[[bytes], None] = transport.write

            def write(data: bytes) -> None:
                writes.append(bytes(data))
                real_write(data)

            transport.write = write
            super().connection_made(transport)

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(SERVER_CERT), str(SERVER_KEY))
    server = _serve(bg, ssl_context=ctx)
    server.server.protocol = Recording
    client_ctx = ssl.create_default_context(cafile=str(Path(SERVER_CERT)))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=CAP) as raw, \
                client_ctx.wrap_socket(raw, server_hostname="localhost") as s:
            for _ in range(2):
                s.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
                assert json.loads(read_answer(s)[2])["scheme"] == "https"
    finally:
        server.stop()
    assert len(writes) == 2 and all(w.startswith(b"HTTP/1.1 200 OK\r\n") for w in writes), writes


def test_stopping_closes_idle_connections_and_lets_answers_finish(bg: BackgroundLoop) -> None:
    server = _serve(bg)
    with connect(server) as idle:
        idle.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_answer(idle)[0] == 200
        started = time.monotonic()
        server.stop()
        assert closed_within(idle, CAP) == b""
        assert time.monotonic() - started < CAP
    assert isinstance(server.server, ServiceServer)
