"""A local tunnel service with test controls (fault knobs + request record), and front-door helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from tests.support.proc import WAIT, wait_until  # noqa: F401 - re-exported for the tests
from tests.support.servers import BackgroundLoop
from tests.support.tunnel import RecordingApp, TunnelService
from tunnel_core.devservice.app import ServiceConfig, build_service_app
from tunnel_core.devservice.broker import Broker
from tunnel_core.devservice.testcontrols import Fault, TestControls

STDIO_SERVER = [sys.executable, str(Path(__file__).with_name("stdio_server.py"))]
STDIO_COMMAND = " ".join(STDIO_SERVER)
ACCEPT_BOTH = "application/json, text/event-stream"


@dataclass(slots=True)
class FaultyService(TunnelService):
    """The local tunnel service with its test controls on: fault knobs and a request record."""

    controls: TestControls

    def mcp_url(self, tunnel_id: str, channel: str | None = None, **query: str) -> str:
        if channel:
            query = {"channel": channel, **query}
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.base_url}/v1/mcp/{tunnel_id}" + (f"?{q}" if q else "")

    def fault(self, route: str, count: int = 1, status: int = 503, retry_after: str | None = None,
              drop: bool = False) -> None:
        self.loop.call(self.controls.faults.append, Fault(route, count, status, retry_after, drop))

    def clear_faults(self) -> None:
        """Drop fault knobs not yet consumed (a backlog would keep a backing-off client unready)."""
        self.loop.call(self.controls.faults.clear)

    def records(self, tunnel_id: str, route: str | None = None) -> list[dict[str, Any]]:
        def pick() -> list[dict[str, Any]]:
            return [r for r in self.controls.records
                    if tunnel_id in r["path"] and (route is None or r["route"] == route)]

        return self.loop.call(pick)

    def enqueue_raw(self, tunnel_id: str, command: dict[str, Any]) -> None:
        self.loop.call(self.broker.enqueue, tunnel_id, command)


def start_faulty_service(loop: BackgroundLoop, runtime_key: str, response_timeout: float = 10.0) -> FaultyService:
    broker: Broker = loop.call(Broker)
    controls = TestControls()
    app = RecordingApp(build_service_app(broker, ServiceConfig(
        runtime_keys={runtime_key}, response_timeout=response_timeout, test_controls=controls)))
    return FaultyService(loop, broker, app, loop.serve_service(app), controls)


class Session:
    """A handshake-era MCP session through the front door, with raw control over each message."""

    def __init__(self, url: str, *, sse: bool = True) -> None:
        self.url = url
        self.client = httpx2.Client(timeout=WAIT, trust_env=False)
        self.headers = {"Accept": ACCEPT_BOTH if sse else "application/json", "Content-Type": "application/json"}
        self.next_id = 1

    def post(self, message: dict[str, Any], url: str | None = None, **headers: str) -> httpx2.Response:
        return self.client.post(url or self.url, content=json.dumps(message), headers={**self.headers, **headers})

    def initialize(self) -> httpx2.Response:
        r = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                       "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                  "clientInfo": {"name": "tests", "version": "1"}}})
        assert r.status_code == 200, r.text
        if sid := r.headers.get("mcp-session-id"):
            self.headers["Mcp-Session-Id"] = sid
        self.headers["Mcp-Protocol-Version"] = "2025-06-18"
        ack = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert ack.status_code in (200, 202), ack.text
        return r

    def call(self, name: str, arguments: dict[str, Any], *, rpc_id: Any = None, url: str | None = None,
             meta: dict[str, Any] | None = None) -> httpx2.Response:
        if rpc_id is None:
            rpc_id = self.next_id
            self.next_id += 1
        params: dict[str, Any] = {"name": name, "arguments": arguments}
        if meta:
            params["_meta"] = meta
        return self.post({"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call", "params": params}, url=url)

    def close(self) -> None:
        self.client.close()


def result_text(resp: httpx2.Response) -> str:
    body = sse_messages(resp)[-1] if resp.headers.get("content-type", "").startswith("text/event-stream") \
        else resp.json()
    return str(body["result"]["content"][0]["text"])


def sse_messages(resp: httpx2.Response) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:")]
