"""The local tunnel service (in-process) and ``tunnel-client run`` (subprocess) for integration tests."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx2

from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc, base_env
from tests.support.servers import BackgroundLoop, RunningServer
from tunnel_core.devservice.app import ServiceConfig, build_service_app
from tunnel_core.devservice.broker import Broker

SERVICE_RESPONSE_TIMEOUT = 10.0


def new_tunnel_id() -> str:
    return "tunnel_" + secrets.token_hex(16)


@dataclass(slots=True)
class Recorded:
    """One HTTP request the tunnel service received, as sent on the wire."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: list[tuple[str, str]]
    body: bytearray = field(default_factory=bytearray)
    status: int = 0
    response_body: bytearray = field(default_factory=bytearray)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name.lower():
                return v
        return None

    def json(self) -> Any:
        return json.loads(bytes(self.body))

    def response_json(self) -> Any:
        return json.loads(bytes(self.response_body))


class RecordingApp:
    """ASGI wrapper that records each request as it arrived (method, path, headers, body) and its answer."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.records: list[Recorded] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rec = Recorded(
            scope["method"], scope["path"], parse_qs(scope.get("query_string", b"").decode()),
            [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"]],
        )
        self.records.append(rec)

        async def recording_receive() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                rec.body += message.get("body", b"")
            return message

        async def recording_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                rec.status = message["status"]
            elif message["type"] == "http.response.body":
                rec.response_body += message.get("body", b"")
            await send(message)

        await self.app(scope, recording_receive, recording_send)


@dataclass(slots=True)
class TunnelService:
    loop: BackgroundLoop
    broker: Broker
    recorder: RecordingApp
    server: RunningServer

    @property
    def base_url(self) -> str:
        return self.server.url

    def add_tunnel(self) -> str:
        tunnel_id = new_tunnel_id()
        self.loop.call(self.broker.add_tunnel, tunnel_id)
        return tunnel_id

    def mcp_url(self, tunnel_id: str, channel: str | None = None) -> str:
        return f"{self.base_url}/v1/mcp/{tunnel_id}" + (f"?channel={channel}" if channel else "")

    def runtime_requests(self, tunnel_id: str) -> list[Recorded]:
        prefix = f"/v1/tunnels/{tunnel_id}"
        return [r for r in list(self.recorder.records) if r.path == prefix or r.path.startswith(prefix + "/")]

    def posted_responses(self, tunnel_id: str) -> list[Recorded]:
        return [r for r in self.runtime_requests(tunnel_id) if r.method == "POST" and r.path.endswith("/response")]


def start_tunnel_service(
    loop: BackgroundLoop, runtime_key: str, sock: socket.socket | None = None, tunnel_ids: tuple[str, ...] = ()
) -> TunnelService:
    """Serve the local tunnel service (wrapped in a RecordingApp); ``tunnel_ids`` exist before it accepts."""
    broker: Broker = loop.call(Broker)
    for tunnel_id in tunnel_ids:
        loop.call(broker.add_tunnel, tunnel_id)
    app = build_service_app(broker, ServiceConfig(runtime_keys={runtime_key},
                                                  response_timeout=SERVICE_RESPONSE_TIMEOUT))
    recorder = RecordingApp(app)
    return TunnelService(loop, broker, recorder, loop.serve_service(recorder, sock))


@dataclass
class ClientRun:
    """A running ``tunnel-client run`` subprocess."""

    proc: Proc
    tunnel_id: str
    url_file: Path
    health_url: str = ""

    def get(self, path: str) -> httpx2.Response:
        return httpx2.get(self.health_url + path, timeout=5.0, trust_env=False)

    def wait_readyz(self, *, status: int = 200, text: str | None = None, timeout: float = WAIT) -> httpx2.Response:
        """Poll /readyz until it answers ``status`` (and ``text`` when given); the wait is capped."""
        deadline = time.monotonic() + timeout
        last: httpx2.Response | None = None
        while True:
            last = self.get("/readyz")
            if last.status_code == status and (text is None or last.text == text):
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"/readyz stayed {last.status_code} {last.text!r}; output:\n{self.proc.tail()}")
            time.sleep(0.05)


def start_client(
    *,
    service_url: str,
    tunnel_id: str,
    runtime_key: str,
    home: Path,
    args: list[str],
    log_level: str = "info",
    extra_env: dict[str, str] | None = None,
) -> ClientRun:
    """Start ``tunnel-client run`` and return once its operator listener is bound (not yet ready)."""
    url_file = home / f"health-{tunnel_id[-6:]}.url"
    argv = [
        TUNNEL_CLIENT, "run",
        "--control-plane.base-url", service_url,
        "--control-plane.tunnel-id", tunnel_id,
        "--health.listen-addr", "127.0.0.1:0",
        "--health.url-file", str(url_file),
        "--control-plane.poll-timeout", "5s",
        "--log.format", "json",
        "--log.level", log_level,
        *args,
    ]
    proc = Proc(argv, base_env(home, CONTROL_PLANE_API_KEY=runtime_key, **(extra_env or {})))
    run = ClientRun(proc, tunnel_id, url_file)
    try:
        started = proc.wait_log("tunnel-client started")
        run.health_url = started["health_url"]
    except BaseException:
        proc.kill()
        raise
    return run


# The ``start_relay`` fixture: start another ``tunnel-client run`` (stopped at teardown).
StartClient = Callable[..., ClientRun]
