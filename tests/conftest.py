"""Shared fixtures: one background loop serving the tunnel service and the test MCP servers,
and the session's relay (a real ``tunnel-client run`` subprocess) in front of them."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faulty import FaultyService, start_faulty_service
from tests.support.mcp_app import Gates, build_mcp_app
from tests.support.odd_app import OddState, build_odd_app
from tests.support.servers import BackgroundLoop, background_loop, refused_port
from tests.support.targets import MCPTarget, OddTarget
from tests.support.tunnel import ClientRun, StartClient, TunnelService, start_client, start_tunnel_service


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def runtime_key() -> str:
    """A random runtime API key for this session; it must never appear in any client output."""
    return "rk_test_" + secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def bg() -> Iterator[BackgroundLoop]:
    with background_loop() as loop:
        yield loop


@pytest.fixture(scope="session")
def tunnel_service(bg: BackgroundLoop, runtime_key: str) -> Iterator[TunnelService]:
    service = start_tunnel_service(bg, runtime_key)
    yield service
    service.server.stop()


@pytest.fixture(scope="session")
def mcp_target(bg: BackgroundLoop) -> Iterator[MCPTarget]:
    gates = Gates()
    server = bg.serve(build_mcp_app(gates))
    yield MCPTarget(server, gates, bg)
    server.stop()


@pytest.fixture(scope="session")
def odd_target(bg: BackgroundLoop) -> Iterator[OddTarget]:
    state = OddState()
    server = bg.serve(build_odd_app(state))
    yield OddTarget(server, state)
    server.stop()


@pytest.fixture(scope="session")
def dead_port() -> Iterator[int]:
    with refused_port() as port:
        yield port


def assert_no_secret(run: ClientRun, secret: str) -> None:
    assert secret not in run.proc.output(), "the runtime API key appeared in the client's output"



@pytest.fixture
def start_relay(
    tunnel_service: TunnelService, runtime_key: str, tmp_path: Path
) -> Iterator[StartClient]:
    """Factory: start ``tunnel-client run`` on a fresh tunnel; every process is stopped afterwards."""
    runs: list[ClientRun] = []

    def start(*args: str, service_url: str | None = None, tunnel_id: str | None = None,
              log_level: str = "info") -> ClientRun:
        run = start_client(service_url=service_url or tunnel_service.base_url,
                           tunnel_id=tunnel_id or tunnel_service.add_tunnel(), runtime_key=runtime_key,
                           home=tmp_path, args=list(args), log_level=log_level)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.proc.kill()
    for run in runs:
        assert_no_secret(run, runtime_key)


@pytest.fixture(scope="session")
def relay(
    tunnel_service: TunnelService, mcp_target: MCPTarget, odd_target: OddTarget, runtime_key: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ClientRun]:
    """The session's ready relay: channel main -> test MCP server, channel odd -> odd server (debug logs)."""
    run = start_client(
        service_url=tunnel_service.base_url, tunnel_id=tunnel_service.add_tunnel(), runtime_key=runtime_key,
        home=tmp_path_factory.mktemp("relay"), log_level="debug",
        args=["--mcp.server-url", mcp_target.url, "--mcp.server-url", f"channel=odd,url={odd_target.url}"],
    )
    try:
        run.wait_readyz()
        yield run
    finally:
        run.proc.kill()
    assert_no_secret(run, runtime_key)


@pytest.fixture(scope="session")
def dead_relay(
    tunnel_service: TunnelService, dead_port: int, runtime_key: str, tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ClientRun]:
    """A relay whose only MCP target is a refused loopback port (it keeps polling, but is never ready)."""
    run = start_client(
        service_url=tunnel_service.base_url, tunnel_id=tunnel_service.add_tunnel(), runtime_key=runtime_key,
        home=tmp_path_factory.mktemp("dead"),
        args=["--mcp.server-url", f"http://127.0.0.1:{dead_port}/mcp"],
    )
    try:
        yield run
    finally:
        run.proc.kill()
    assert_no_secret(run, runtime_key)


@pytest.fixture(scope="module")
def faulty(bg: BackgroundLoop, runtime_key: str) -> Iterator[FaultyService]:
    """A tunnel service with test controls (fault knobs, request record), one per test module."""
    service = start_faulty_service(bg, runtime_key, response_timeout=5.0)
    yield service
    service.server.stop()


@pytest.fixture
def relay_on(faulty: FaultyService, runtime_key: str, tmp_path: Path) -> Iterator[StartClient]:
    """Factory: ``tunnel-client run`` (debug logs) on a fresh tunnel of ``faulty``; stopped afterwards."""
    runs: list[ClientRun] = []

    def start(*args: str, tunnel_id: str | None = None, env: dict[str, str] | None = None) -> ClientRun:
        run = start_client(service_url=faulty.base_url, tunnel_id=tunnel_id or faulty.add_tunnel(),
                           runtime_key=runtime_key, home=tmp_path, args=list(args), log_level="debug",
                           extra_env=env)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.proc.kill()
    for run in runs:
        assert_no_secret(run, runtime_key)
