"""The tunnel service's HTTP fast path: one write per fixed-length answer, disconnects seen without a
watcher task (``httpproto``), and the raw front-door and poll handlers stopping for a caller that left,
under the project's protocol and under uvicorn's own (where a task watches ``receive()`` instead).

Real uvicorn servers on 127.0.0.1:0, raw sockets as clients; every wait is capped.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tests.support.proc import wait_until
from tests.support.servers import BackgroundLoop, RunningServer
from tunnel_core.devservice.app import ServiceConfig, build_service_app
from tunnel_core.devservice.broker import Broker
from tunnel_core.httpproto import DISCONNECT_EXTENSION, FastHttpProtocol

CAP = 10.0
TUNNEL = "tunnel_" + "f" * 32
BODY = b'{"ok":true}'


class _Spy:
    """A transport that records what is written to it."""

    def __init__(self, transport: asyncio.Transport, writes: list[bytes]) -> None:
        self._t = transport
        self.writes = writes

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self._t.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._t, name)


def recording_protocol(connections: list[list[bytes]]) -> type[FastHttpProtocol]:
    class Recording(FastHttpProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            connections.append([])
            super().connection_made(_Spy(transport, connections[-1]))  # type: ignore[arg-type]

    return Recording


def connect(server: RunningServer) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=CAP)
    s.settimeout(CAP)
    return s


def read_head(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, f"connection closed before a full head: {data!r}"
        data += chunk
    return data


@pytest.fixture
def served(bg: BackgroundLoop) -> Iterator[tuple[RunningServer, list[list[bytes]], dict[str, Any]]]:
    connections: list[list[bytes]] = []
    state: dict[str, Any] = {"release": None, "registered": threading.Event(), "fired": threading.Event(),
                             "late": threading.Event()}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/fixed":
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
            await send({"type": "http.response.body", "body": BODY})
        elif scope["path"] == "/stream":
            state["release"] = release = anyio.Event()
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream")]})
            with anyio.fail_after(CAP):
                await release.wait()
            await send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif scope["path"] == "/wait":
            watch = scope["extensions"][DISCONNECT_EXTENSION]
            gone = anyio.Event()
            watch(gone.set)
            watch(state["fired"].set)
            state["registered"].set()
            with anyio.fail_after(CAP):
                await gone.wait()
            watch(state["late"].set)  # registered after the disconnect: called at once

    server = bg.serve(app, http=recording_protocol(connections))
    try:
        yield server, connections, state
    finally:
        server.stop()


def test_a_fixed_length_answer_goes_out_in_one_write(served: tuple[RunningServer, list[list[bytes]], Any]) -> None:
    server, connections, _ = served
    with connect(server) as s:
        for _ in range(2):  # and again on the kept-alive connection
            s.sendall(b"GET /fixed HTTP/1.1\r\nHost: x\r\n\r\n")
            head = read_head(s)
            rest = head.split(b"\r\n\r\n", 1)[1]
            while len(rest) < len(BODY):
                rest += s.recv(4096)
            assert rest == BODY
    (writes,) = connections
    assert len(writes) == 2, writes
    for w in writes:
        assert w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b"\r\n\r\n" + BODY), w


def test_the_head_of_a_stream_is_not_held_back(bg: BackgroundLoop,
                                                served: tuple[RunningServer, list[list[bytes]], Any]) -> None:
    server, connections, state = served
    with connect(server) as s:
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        head = read_head(s)  # arrives while the app still waits for its first event
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        bg.call(state["release"].set)
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            data += s.recv(4096)
    assert b"data: 1" in data
    (writes,) = connections
    assert writes[0].endswith(b"\r\n\r\n") and b"data: 1" not in writes[0]


def test_disconnect_callbacks_run_when_the_client_leaves(served: tuple[RunningServer, list[list[bytes]], Any]
                                                         ) -> None:
    server, _, state = served
    s = connect(server)
    s.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    assert state["registered"].wait(CAP)
    assert not state["fired"].is_set()
    s.close()
    assert state["fired"].wait(CAP), "the callback did not run when the client left"
    assert state["late"].wait(CAP), "a callback registered after the disconnect did not run"


# ---- the service's raw handlers, under both protocols --------------------------------------------------


@pytest.fixture(params=["service", "fast", "uvicorn"])
def service(request: pytest.FixtureRequest, bg: BackgroundLoop, runtime_key: str
            ) -> Iterator[tuple[RunningServer, Broker]]:
    broker: Broker = bg.call(Broker)
    bg.call(broker.add_tunnel, TUNNEL)
    app = build_service_app(broker, ServiceConfig(runtime_keys={runtime_key}, response_timeout=30.0))
    if request.param == "service":
        server = bg.serve_service(app)
    else:
        server = bg.serve(app, **({"http": FastHttpProtocol} if request.param == "fast" else {"http": "httptools"}))
    try:
        yield server, broker
    finally:
        server.stop()


def test_a_poll_whose_client_left_stops_waiting(service: tuple[RunningServer, Broker], runtime_key: str) -> None:
    server, broker = service
    q = broker.tunnels[TUNNEL]
    s = connect(server)
    s.sendall(f"GET /v1/tunnels/{TUNNEL}/poll?timeout_ms=30000 HTTP/1.1\r\nHost: x\r\n"
              f"Authorization: Bearer {runtime_key}\r\n\r\n".encode())
    wait_until(lambda: q.polling == 1, "the poll to wait", CAP)
    s.close()
    wait_until(lambda: q.polling == 0, "the poll of a client that left to end", 5.0)


def test_a_caller_that_left_withdraws_its_queued_command(service: tuple[RunningServer, Broker]) -> None:
    server, broker = service
    q = broker.tunnels[TUNNEL]
    body = b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
    s = connect(server)
    s.sendall(f"POST /v1/mcp/{TUNNEL} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    wait_until(lambda: len(q.queued) == 1, "the call to be queued", CAP)
    s.close()
    wait_until(lambda: not q.queued and not q.pending, "the command to be withdrawn", 5.0)


def _exchange(s: socket.socket, method: str, path: str, body: bytes = b"", headers: str = "") -> tuple[int, bytes]:
    """One request on ``s``; (status, body)."""
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return _read_answer(s)


def call_and_poll(caller: socket.socket, client: socket.socket, call: bytes, accept: str, auth: str
                  ) -> tuple[dict[str, Any], str]:
    """``caller`` sends ``call`` to the front door, ``client`` polls it: (the command, its response headers)."""
    caller.sendall(f"POST /v1/mcp/{TUNNEL} HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nContent-Type: "
                   f"application/json\r\nContent-Length: {len(call)}\r\n\r\n".encode() + call)
    _, polled = _exchange(client, "GET", f"/v1/tunnels/{TUNNEL}/poll?timeout_ms=5000", headers=auth)
    (cmd,) = json.loads(polled)["commands"]
    return cmd, f"X-Tunnel-Shard-Token: {cmd['shard_token']}\r\nContent-Type: application/json\r\n"


def _read_answer(s: socket.socket) -> tuple[int, bytes]:
    """(status, body) of the next answer on ``s``; a chunked body joined."""
    data = read_head(s)
    head, rest = data.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])}
    if b"content-length" in fields:
        n = int(fields[b"content-length"])
        while len(rest) < n:
            rest += s.recv(65536)
        return status, rest[:n]
    if fields.get(b"transfer-encoding") == b"chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            rest += s.recv(65536)
        out = b""
        while True:
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line, 16)
            if size == 0:
                return status, out
            out, rest = out + rest[:size], rest[size + 2:]
    return status, b""


@pytest.mark.parametrize("sse", [False, True])
def test_the_caller_gets_the_answer_bytes_the_client_sent(service: tuple[RunningServer, Broker], runtime_key: str,
                                                          sse: bool) -> None:
    server, _ = service
    auth = f"Authorization: Bearer {runtime_key}\r\n"
    final = '{ "jsonrpc": "2.0", "id": 7, "result": {"text": "\u00e9t\u00e9 \\u00e9", "n": 1.50} }'
    note = '{"jsonrpc": "2.0",\n "method": "notifications/progress", "params": {"progress": 1}}'
    accept = "text/event-stream, application/json" if sse else "application/json"
    caller, client = connect(server), connect(server)
    try:
        call = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}'
        cmd, shard = call_and_poll(caller, client, call, accept, auth)
        for resp_type, text in ([("jsonrpc_notify", note)] if sse else []) + [("jsonrpc_response", final)]:
            body = (f'{{"request_id": "{cmd["request_id"]}", "resp_json": {text}, "resp_code": 200, '
                    f'"resp_type": "{resp_type}"}}').encode()
            assert _exchange(client, "POST", f"/v1/tunnels/{TUNNEL}/response", body, auth + shard)[0] == 200
        status, answer = _read_answer(caller)
    finally:
        caller.close()
        client.close()
    assert status == 200
    if not sse:
        assert answer == final.encode()  # the client's bytes, not a re-encoding
    else:
        compact_note = json.dumps(json.loads(note), separators=(",", ":")).encode()
        assert answer == b"event: message\ndata: " + compact_note + b"\n\nevent: message\ndata: " + \
            final.encode() + b"\n\n"  # a line break would end an SSE data line: that one is re-encoded
