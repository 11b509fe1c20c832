"""A real ``dev tunnel-service --test-controls`` and a real ``run`` against it, as subprocesses.

The service records every request it receives (``/_test/requests``), so a test sees exactly
what the client sent; the client's JSON logs, operator listener and metrics are at hand.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc, base_env, wait_until


@dataclass(slots=True)
class Relay:
    service_url: str
    tunnel_id: str
    health_url: str
    service: Proc
    client: Proc
    started: dict[str, Any]

    @property
    def mcp_url(self) -> str:
        return f"{self.service_url}/v1/mcp/{self.tunnel_id}"

    def records(self, route: str | None = None) -> list[dict[str, Any]]:
        """What the service received from the client (and the front door), oldest first."""
        got = httpx2.get(f"{self.service_url}/_test/requests", timeout=WAIT, trust_env=False).json()["requests"]
        return [r for r in got if route is None or r["route"] == route]

    def wait_record(self, route: str) -> dict[str, Any]:
        found: dict[str, Any] = wait_until(lambda: next(iter(self.records(route)), None), f"a {route} request")
        return found

    def ops(self, path: str) -> httpx2.Response:
        return httpx2.get(self.health_url + path, timeout=WAIT, trust_env=False)

    def metrics(self) -> str:
        return self.ops("/metrics").text


def relay_env(home: Path, **extra: str) -> dict[str, str]:
    return base_env(home, CONTROL_PLANE_API_KEY="rk_" + secrets.token_urlsafe(24), **extra)


@contextmanager
def relay(home: Path, run_args: Sequence[str] = (), *, env: dict[str, str] | None = None) -> Iterator[Relay]:
    """Start the service, then ``run`` (demo MCP server as ``main`` unless ``run_args`` binds one)."""
    env = env if env is not None else relay_env(home)
    tunnel_id = "tunnel_" + secrets.token_hex(16)
    service = Proc([TUNNEL_CLIENT, "dev", "tunnel-service", "--listen", "127.0.0.1:0", "--test-controls",
                    "--tunnel-id", tunnel_id, "--response-timeout", "10s"], env)
    client: Proc | None = None
    try:
        url = service.wait_stdout(r"Tunnel service: (\S+)").group(1)
        target = [] if any(a.startswith(("--mcp.", "--mcp-")) for a in run_args) else ["--embedded-mcp-stub"]
        client = Proc([TUNNEL_CLIENT, "run", "--control-plane.base-url", url, "--control-plane.tunnel-id", tunnel_id,
                       "--health.listen-addr", "127.0.0.1:0", "--log.format", "json", *target, *run_args], env)
        started = client.wait_log("tunnel-client started")
        yield Relay(url, tunnel_id, str(started["health_url"]), service, client, started)
    finally:
        if client is not None:
            client.kill()
        service.kill()
