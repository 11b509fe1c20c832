"""A real ``redis-server`` on a free 127.0.0.1 port for the tests, and tunnel-service subprocesses that share it.

``redis-server`` comes from the Debian package (``.ci/run`` installs it). Without it the
Redis tests are skipped, unless ``TUNNEL_TEST_REQUIRE_REDIS=1`` (set by ``.ci/run``), which
makes them fail instead, so CI cannot go green by skipping them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc, base_env
from tests.support.proc import wait_until as wait_for  # noqa: F401 - re-exported for the tests

# Seals the commands queued in Redis (--engine-encryption-key); every instance on one Redis needs the same.
QUEUE_KEY = "qk_test_" + "q" * 40


def redis_server_binary() -> str:
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed (apt-get install -y redis-server)"
        if os.environ.get("TUNNEL_TEST_REQUIRE_REDIS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RedisServer:
    """One redis-server process; ``restart()`` keeps its port and data directory."""

    binary: str
    workdir: Path
    appendonly: bool
    port: int = 0
    proc: Proc | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        for _ in range(5):
            port = self.port or free_port()
            argv = [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "always",
                    "--dir", str(self.workdir), "--protected-mode", "no", "--daemonize", "no"]
            proc = Proc(argv, dict(os.environ))
            try:
                proc.wait_stdout("Ready to accept connections", timeout=WAIT)
            except AssertionError:
                proc.kill()
                if self.port:  # a fixed port (restart) must come back on that port
                    raise
                continue
            self.port, self.proc = port, proc
            return
        raise AssertionError("redis-server did not start on a free port in 5 attempts")

    def kill(self) -> None:
        """SIGKILL: no shutdown save; with appendonly every write was already fsynced."""
        if self.proc is not None:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True)


@contextlib.contextmanager
def running_redis(workdir: Path, *, appendonly: bool = False) -> Iterator[RedisServer]:
    """A redis-server on a free loopback port for the duration of the block."""
    server = RedisServer(redis_server_binary(), workdir, appendonly)
    workdir.mkdir(parents=True, exist_ok=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class ServiceProc:
    """A ``tunnel-client dev tunnel-service`` subprocess on the Redis queue (test controls on)."""

    proc: Proc
    base_url: str
    tunnels: list[str] = field(default_factory=list)

    def mcp_url(self, tunnel_id: str, **query: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"{self.base_url}/v1/mcp/{tunnel_id}" + (f"?{q}" if q else "")

    def records(self, route: str | None = None) -> list[dict[str, Any]]:
        """What the service's test controls recorded (every request it received)."""
        got = httpx2.get(self.base_url + "/_test/requests", timeout=WAIT, trust_env=False).json()["requests"]
        return [r for r in got if route is None or r["route"] == route]


def start_service(
    *, redis_url: str, tunnels: list[str], runtime_key: str, home: Path, response_timeout: str = "10s",
    extra: tuple[str, ...] = (), backend: str = "redis",
) -> ServiceProc:
    """Start one service instance and return once it accepts connections."""
    argv = [TUNNEL_CLIENT, "dev", "tunnel-service", "--listen", "127.0.0.1:0", "--test-controls",
            "--response-timeout", response_timeout, "--log.level", "info",
            "--engine-queue-backend", backend, *(["--engine-redis-url", redis_url] if redis_url else []),
            *[a for t in tunnels for a in ("--tunnel-id", t)], *extra]
    proc = Proc(argv, base_env(home, CONTROL_PLANE_API_KEY=runtime_key, TUNNEL_ENGINE_ENCRYPTION_KEY=QUEUE_KEY))
    try:
        url = proc.wait_stdout(r"Tunnel service: (\S+)").group(1)
    except BaseException:
        proc.kill()
        raise
    return ServiceProc(proc, url, list(tunnels))


def metric(text: str, name: str) -> float:
    """The value of one un-labelled Prometheus sample (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return 0.0


def jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
