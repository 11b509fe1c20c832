"""Control-plane and MCP traffic through a forwarding proxy (plain forwarding and CONNECT).

The relay is given addresses that only the proxy can reach: a bound-but-not-listening
loopback port (the direct route is refused) or an ``.invalid`` host name (never resolvable).
The proxy maps them to the real servers and logs every request, which proves the route.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.support import frontdoor as fd
from tests.support.mcp_app import Gates, build_mcp_app
from tests.support.net_helpers import CA_BUNDLE, ForwardingProxy, serve_tls, start_proxy
from tests.support.proc import WAIT
from tests.support.servers import BackgroundLoop, refused_port
from tests.support.targets import MCPTarget
from tests.support.tunnel import ClientRun, TunnelService, start_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def blocked_ports() -> Iterator[tuple[int, int]]:
    with refused_port() as cp_port, refused_port() as mcp_port:
        yield cp_port, mcp_port


@pytest.fixture
def proxy(bg: BackgroundLoop, tunnel_service: TunnelService, mcp_target: MCPTarget,
          blocked_ports: tuple[int, int]) -> Iterator[ForwardingProxy]:
    cp_port, mcp_port = blocked_ports
    p = start_proxy(bg, only_routes=True, routes={
        f"127.0.0.1:{cp_port}": ("127.0.0.1", tunnel_service.server.port),
        f"127.0.0.1:{mcp_port}": ("127.0.0.1", mcp_target.server.port),
    })
    yield p
    bg.call(p.stop)


@pytest.fixture
def runs() -> Iterator[list[ClientRun]]:
    started: list[ClientRun] = []
    yield started
    for run in started:
        run.proc.kill()


def _start(runs: list[ClientRun], tunnel_service: TunnelService, runtime_key: str, home: Path, cp_url: str,
           *args: str, env: dict[str, str] | None = None) -> ClientRun:
    tid = tunnel_service.add_tunnel()
    run = start_client(service_url=cp_url, tunnel_id=tid, runtime_key=runtime_key, home=home, args=list(args),
                       extra_env=env)
    runs.append(run)
    return run


async def _call_echo(url: str, text: str) -> str:
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            session = await fd.open_session(client, url)
            _, msgs = await fd.post(client, url, fd.request("tools/call", {"name": "echo", "arguments": {"text": text}}),
                                    session)
    return str(msgs[-1]["result"]["content"][0]["text"])


async def test_control_plane_and_mcp_traffic_go_through_the_proxy(
    proxy: ForwardingProxy, blocked_ports: tuple[int, int], tunnel_service: TunnelService, runtime_key: str,
    tmp_path: Path, runs: list[ClientRun],
) -> None:
    cp_port, mcp_port = blocked_ports
    run = _start(runs, tunnel_service, runtime_key, tmp_path, f"http://127.0.0.1:{cp_port}",
                 "--mcp.server-url", f"http://127.0.0.1:{mcp_port}/mcp", "--http-proxy", proxy.url)
    run.wait_readyz(status=200, text="ready")
    assert await _call_echo(tunnel_service.mcp_url(run.tunnel_id), "proxied") == "proxied"

    polls = proxy.seen(f"http://127.0.0.1:{cp_port}/v1/tunnels/{run.tunnel_id}/poll")
    responses = proxy.seen(f"http://127.0.0.1:{cp_port}/v1/tunnels/{run.tunnel_id}/response")
    mcp = proxy.seen(f"http://127.0.0.1:{mcp_port}/mcp")
    assert polls and responses and mcp
    assert all(e.routed_to == f"127.0.0.1:{tunnel_service.server.port}" for e in polls + responses)
    # The relay's own credentials go to the control plane through the proxy, never to the proxy itself.
    assert all("proxy-authorization" not in e.headers for e in proxy.entries())
    status = run.get("/api/status").json()
    assert status["control_plane_route"]["proxy_source"] == "global"
    assert status["mcp_routes"][0]["proxy"] == proxy.url


async def test_without_the_proxy_the_blocked_routes_fail(
    blocked_ports: tuple[int, int], tunnel_service: TunnelService, runtime_key: str, tmp_path: Path,
    runs: list[ClientRun],
) -> None:
    cp_port, mcp_port = blocked_ports
    run = _start(runs, tunnel_service, runtime_key, tmp_path, f"http://127.0.0.1:{cp_port}",
                 "--mcp.server-url", f"http://127.0.0.1:{mcp_port}/mcp")
    failed = run.proc.wait_log("mcp startup probe")
    assert failed["probe_status"] == "failed"
    assert failed["probe_error"] == f"cannot connect to http://127.0.0.1:{mcp_port}/mcp: connection refused"
    ready = run.get("/readyz")
    assert ready.status_code == 503
    assert not [r for r in tunnel_service.runtime_requests(run.tunnel_id) if r.path.endswith("/poll")]


async def test_route_specific_proxies_take_precedence(
    bg: BackgroundLoop, proxy: ForwardingProxy, blocked_ports: tuple[int, int], tunnel_service: TunnelService,
    mcp_target: MCPTarget, runtime_key: str, tmp_path: Path, runs: list[ClientRun],
) -> None:
    # A broken global proxy is overridden by --control-plane.http-proxy and by the channel's http-proxy.
    cp_port, mcp_port = blocked_ports
    with refused_port() as dead:
        run = _start(runs, tunnel_service, runtime_key, tmp_path, f"http://127.0.0.1:{cp_port}",
                     "--mcp.server-url", f"channel=main,url=http://127.0.0.1:{mcp_port}/mcp,http-proxy={proxy.url}",
                     "--http-proxy", f"http://127.0.0.1:{dead}", "--control-plane.http-proxy", proxy.url)
        run.wait_readyz(status=200, text="ready")
    assert await _call_echo(tunnel_service.mcp_url(run.tunnel_id), "precedence") == "precedence"
    routes = run.get("/api/status").json()
    assert routes["control_plane_route"]["proxy_source"] == "control_plane"
    assert routes["mcp_routes"][0]["proxy_source"] == "channel"


async def test_standard_proxy_variables_are_the_fallback(
    bg: BackgroundLoop, tunnel_service: TunnelService, mcp_target: MCPTarget, runtime_key: str, tmp_path: Path,
    runs: list[ClientRun],
) -> None:
    # Host names under .invalid never resolve: only the proxy (HTTP_PROXY) can route them.
    internal = start_proxy(bg, only_routes=True, rewrite_host=True, routes={
        "tunnel.internal.invalid:80": ("127.0.0.1", tunnel_service.server.port),
        "mcp.internal.invalid:80": ("127.0.0.1", mcp_target.server.port),
    })
    try:
        run = _start(runs, tunnel_service, runtime_key, tmp_path, "http://tunnel.internal.invalid",
                     "--mcp.server-url", "http://mcp.internal.invalid/mcp",
                     env={"HTTP_PROXY": internal.url, "NO_PROXY": "example.com"})
        run.wait_readyz(status=200, text="ready")
        assert await _call_echo(tunnel_service.mcp_url(run.tunnel_id), "env proxy") == "env proxy"
        assert internal.seen("http://tunnel.internal.invalid/v1/tunnels/")
        assert internal.seen("http://mcp.internal.invalid/mcp")
        assert run.get("/api/status").json()["control_plane_route"]["proxy_source"] == "env"
    finally:
        bg.call(internal.stop)


async def test_https_target_through_a_connect_tunnel(
    bg: BackgroundLoop, tunnel_service: TunnelService, runtime_key: str, tmp_path: Path, runs: list[ClientRun],
) -> None:
    tls = serve_tls(bg, build_mcp_app(Gates()))
    with refused_port() as blocked:
        tunnel = start_proxy(bg, only_routes=True, routes={f"localhost:{blocked}": ("127.0.0.1", tls.port)})
        try:
            run = _start(runs, tunnel_service, runtime_key, tmp_path, tunnel_service.base_url,
                         "--mcp.server-url", f"https://localhost:{blocked}/mcp", "--mcp.http-proxy", tunnel.url,
                         "--ca-bundle", str(CA_BUNDLE))
            run.wait_readyz(status=200, text="ready")
            assert await _call_echo(tunnel_service.mcp_url(run.tunnel_id), "tunnelled") == "tunnelled"
            connects = [e for e in tunnel.entries() if e.method == "CONNECT"]
            assert connects and all(e.target == f"localhost:{blocked}" for e in connects)
            assert all(e.method == "CONNECT" for e in tunnel.entries())  # TLS end to end: the proxy sees no paths
        finally:
            bg.call(tunnel.stop)
            tls.stop()
