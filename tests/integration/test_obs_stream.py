"""/api/logs/stream on a real uvicorn socket: keep-alive pings, events logged from another thread,
and a prompt end when the relay shuts the buffer (so the listener can stop without waiting)."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.support.servers import BackgroundLoop, RunningServer
from tunnel_core import logs
from tunnel_core.opsserver.app import build_ops_app
from tunnel_core.opsserver.context import OpsContext
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.state import RuntimeState

WAIT = 15.0


@pytest.fixture
def served(bg: BackgroundLoop) -> Iterator[tuple[RunningServer, logs.LogBuffer]]:
    buf = logs.LogBuffer(capacity=50)
    ctx = OpsContext(state=RuntimeState(tunnel_id="tunnel_" + "e" * 32, instance_id="x" * 32),
                     metrics=RelayMetrics(), status=lambda: {}, logs=buf, sse_ping_seconds=0.05)
    server = bg.serve(build_ops_app(ctx))
    yield server, buf
    buf.close()
    server.stop()


def _record(msg: str) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "tunnel_client.test", "levelno": logging.INFO, "levelname": "INFO",
                                  "msg": msg})


def test_stream_pings_delivers_events_and_ends_when_the_buffer_closes(
    served: tuple[RunningServer, logs.LogBuffer],
) -> None:
    server, buf = served
    buf.handle(_record("before connect"))
    with httpx2.Client(timeout=WAIT, trust_env=False) as client, \
            client.stream("GET", server.url + "/api/logs/stream") as stream:
        lines = stream.iter_lines()
        assert next(lines) == ": stream open"
        assert [next(lines), next(lines)] == ["", ": ping"]  # idle: a keep-alive comment each interval
        buf.handle(_record("from the test thread"))  # the server loop is woken across threads
        for line in lines:
            if line.startswith("data: "):
                assert '"message": "from the test thread"' in line  # only events after connecting
                break
        closed_at = time.monotonic()
        buf.close()
        rest = list(lines)  # the response ends instead of pinging forever
    assert time.monotonic() - closed_at < 2.0
    assert all(line in ("", ": ping") or not line.startswith("data: ") for line in rest)


def test_last_event_id_resumes_from_the_buffer(served: tuple[RunningServer, logs.LogBuffer]) -> None:
    server, buf = served
    for i in range(3):
        buf.handle(_record(f"event {i}"))
    with httpx2.Client(timeout=WAIT, trust_env=False) as client, \
            client.stream("GET", server.url + "/api/logs/stream", headers={"Last-Event-ID": "1"}) as stream:
        ids = []
        for line in stream.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            if len(ids) == 2:
                break
    assert ids == [2, 3]


def test_unix_socket_peers_count_as_loopback(bg: BackgroundLoop, tmp_path: Path) -> None:
    """On --health.unix-socket the socket file's permissions decide who connects: the UI answers."""
    path = tmp_path / "ops.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    sock.listen(16)
    sock.setblocking(False)
    ctx = OpsContext(state=RuntimeState(tunnel_id="tunnel_" + "9" * 32, instance_id="z" * 32),
                     metrics=RelayMetrics(), status=lambda: {"control_plane_tunnel_id": "tunnel_" + "9" * 32})
    server = bg.serve(build_ops_app(ctx), sock)
    try:
        with httpx2.Client(transport=httpx2.HTTPTransport(uds=str(path)), base_url="http://localhost",
                           timeout=WAIT, trust_env=False) as client:
            assert client.get("/api/status").json()["control_plane_tunnel_id"] == "tunnel_" + "9" * 32
            assert "tunnel_" + "9" * 32 in client.get("/ui").text
    finally:
        server.stop()
