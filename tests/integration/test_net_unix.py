"""Unix sockets: an MCP target reached through ``unix-socket=`` and the operator listener on ``--health.unix-socket``."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest

from tests.support import frontdoor as fd
from tests.support.mcp_app import Gates, build_mcp_app
from tests.support.proc import WAIT
from tests.support.servers import BackgroundLoop
from tests.support.tunnel import TunnelService, start_client

pytestmark = pytest.mark.anyio


@pytest.fixture
def socket_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Short path: AF_UNIX paths are limited to ~100 bytes.
    return Path(tmp_path_factory.mktemp("uds"))


@pytest.fixture
def unix_target(bg: BackgroundLoop, socket_dir: Path) -> Iterator[str]:
    path = str(socket_dir / "mcp.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.listen(64)
    sock.setblocking(False)
    server = bg.serve(build_mcp_app(Gates()), sock)
    yield path
    server.stop()


async def test_mcp_target_and_health_listener_on_unix_sockets(
    unix_target: str, socket_dir: Path, tunnel_service: TunnelService, runtime_key: str, tmp_path: Path
) -> None:
    health = str(socket_dir / "health.sock")
    # The URL names Host (the MCP server checks it); the socket is what gets dialled.
    run = start_client(service_url=tunnel_service.base_url, tunnel_id=tunnel_service.add_tunnel(),
                       runtime_key=runtime_key, home=tmp_path,
                       args=["--mcp.server-url", f"channel=main,url=http://127.0.0.1:1/mcp,unix-socket={unix_target}",
                             "--health.unix-socket", health])
    try:
        encoded = base64.urlsafe_b64encode(health.encode()).decode().rstrip("=")
        assert run.health_url == f"http+unix://{encoded}"
        assert run.url_file.read_text().strip() == run.health_url
        transport = httpx2.AsyncHTTPTransport(uds=health)
        async with httpx2.AsyncClient(transport=transport, base_url="http://localhost", timeout=5.0) as ops:
            with anyio.fail_after(WAIT):  # readiness has no push channel: poll it, with a cap
                while (ready := await ops.get("/readyz")).status_code != 200:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
        assert ready.text == "ready"
        url = tunnel_service.mcp_url(run.tunnel_id)
        async with fd.http_client() as client:
            with anyio.fail_after(WAIT):
                session = await fd.open_session(client, url)
                _, msgs = await fd.post(client, url, fd.request("tools/call", {
                    "name": "echo", "arguments": {"text": "over a socket"}}), session)
        assert msgs[-1]["result"]["content"][0]["text"] == "over a socket"
        assert run.proc.terminate() == 0
        assert not await anyio.Path(health).exists()  # removed on stop
    finally:
        run.proc.kill()


async def test_unix_socket_and_proxy_cannot_be_combined(
    tunnel_service: TunnelService, runtime_key: str, tmp_path: Path
) -> None:
    from tests.support.proc import base_env, run_cli

    done = run_cli(["run", "--control-plane.tunnel-id", "tunnel_" + "a" * 32, "--mcp.server-url",
                    "channel=main,url=http://127.0.0.1:1/mcp,unix-socket=/tmp/x.sock,http-proxy=http://127.0.0.1:3128"],
                   base_env(tmp_path, CONTROL_PLANE_API_KEY=runtime_key))
    assert done.returncode == 1
    assert "unix-socket and http-proxy cannot be combined" in done.stderr
