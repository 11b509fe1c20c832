"""``dev proxy`` (the README's first command), ``dev mcp-stub`` and ``run --embedded-mcp-stub``."""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client

from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc, base_env
from tests.support.tunnel import StartClient, TunnelService

INSPECTOR = Path(__file__).resolve().parents[2] / ".test-deps" / "npm" / "node_modules" / ".bin" / "mcp-inspector"
MCP_URL_RE = r"^MCP URL: (http://127\.0\.0\.1:\d+/v1/mcp/(tunnel_[a-z0-9]{32}))$"
DEMO_TOOLS = {"server_info", "echo", "uppercase"}


@dataclass(slots=True)
class DevProxy:
    proc: Proc
    mcp_url: str
    tunnel_id: str
    url_file: Path
    health_url_file: Path


@pytest.fixture(scope="module")
def dev_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProxy]:
    home = tmp_path_factory.mktemp("devproxy")
    url_file, health_url_file = home / "proxy.json", home / "health.url"
    proc = Proc([TUNNEL_CLIENT, "dev", "proxy", "--url-file", str(url_file),
                 "--health-url-file", str(health_url_file)], base_env(home))
    try:
        found = proc.wait_stdout(MCP_URL_RE)
        yield DevProxy(proc, found.group(1), found.group(2), url_file, health_url_file)
        assert proc.terminate() == 0
        assert not health_url_file.exists()
    finally:
        proc.kill()


@pytest.mark.anyio
async def test_dev_proxy_prints_an_mcp_url_that_the_sdk_client_can_use(dev_proxy: DevProxy) -> None:
    with anyio.fail_after(WAIT):
        async with Client(dev_proxy.mcp_url) as client:
            tools = await client.list_tools()
            result = await client.call_tool("echo", {"input": "hello from tunnel-client"})
    assert {t.name for t in tools.tools} == DEMO_TOOLS
    assert result.structured_content == {"echoed": "hello from tunnel-client"}
    assert result.content[0].text == "hello from tunnel-client"  # type: ignore[union-attr]


def test_dev_proxy_prints_the_next_steps(dev_proxy: DevProxy) -> None:
    out = "\n".join(dev_proxy.proc.stdout.lines)
    assert "Health URL: http://127.0.0.1:" in out
    assert "tools/list" in out


def test_dev_proxy_url_file_describes_the_endpoints(dev_proxy: DevProxy) -> None:
    desc = json.loads(dev_proxy.url_file.read_text(encoding="utf-8"))
    assert stat.S_IMODE(dev_proxy.url_file.stat().st_mode) == 0o600
    assert desc["tunnel_id"] == dev_proxy.tunnel_id
    assert desc["mcp_url"] == dev_proxy.mcp_url
    assert desc["mcp_url"] == f"{desc['control_plane_base_url']}/v1/mcp/{desc['tunnel_id']}"
    assert desc["health_url"] == dev_proxy.health_url_file.read_text(encoding="utf-8").strip()
    ready = httpx2.get(desc["health_url"] + "/readyz", timeout=5.0, trust_env=False)
    assert (ready.status_code, ready.text) == (200, "ready")


def test_mcp_inspector_cli_lists_and_calls_tools_through_dev_proxy(dev_proxy: DevProxy, tmp_path: Path) -> None:
    if not INSPECTOR.exists():
        pytest.skip(f"MCP Inspector not installed at {INSPECTOR} (scripts/bootstrap installs it when npm exists)")
    env = base_env(tmp_path)
    listed = subprocess.run([str(INSPECTOR), "--cli", dev_proxy.mcp_url, "--transport", "http", "--method",
                             "tools/list"], env=env, capture_output=True, text=True, timeout=WAIT)
    assert listed.returncode == 0, listed.stderr
    assert {t["name"] for t in json.loads(listed.stdout)["tools"]} == DEMO_TOOLS
    called = subprocess.run([str(INSPECTOR), "--cli", dev_proxy.mcp_url, "--transport", "http", "--method",
                             "tools/call", "--tool-name", "uppercase", "--tool-arg", "input=openai tunnel"],
                            env=env, capture_output=True, text=True, timeout=WAIT)
    assert called.returncode == 0, called.stderr
    assert json.loads(called.stdout)["structuredContent"] == {"uppercase": "OPENAI TUNNEL"}


def test_dev_proxy_print_json_describes_the_endpoints(tmp_path: Path) -> None:
    proc = Proc([TUNNEL_CLIENT, "dev", "proxy", "--print-json", "--tunnel-id", "tunnel_" + "9" * 32],
                base_env(tmp_path))
    try:
        line = proc.wait_stdout(r"^\{.*\}$").group(0)
        desc = json.loads(line)
        assert desc["tunnel_id"] == "tunnel_" + "9" * 32
        assert desc["mcp_url"].endswith("/v1/mcp/tunnel_" + "9" * 32)
        assert set(desc) >= {"tunnel_id", "mcp_url", "control_plane_base_url", "health_url"}
        assert proc.terminate() == 0
    finally:
        proc.kill()


@pytest.mark.anyio
async def test_dev_mcp_stub_serves_the_demo_tools(tmp_path: Path) -> None:
    proc = Proc([TUNNEL_CLIENT, "dev", "mcp-stub"], base_env(tmp_path))
    try:
        url = (await anyio.to_thread.run_sync(proc.wait_stdout, r"^MCP URL: (http://127\.0\.0\.1:\d+/mcp)$")).group(1)
        with anyio.fail_after(WAIT):
            async with Client(url) as client:
                info = await client.call_tool("server_info", {})
        assert info.structured_content is not None
        assert info.structured_content["available_tools"] == ["server_info", "echo", "uppercase"]
        assert await anyio.to_thread.run_sync(proc.terminate) == 0
    finally:
        proc.kill()


@pytest.mark.anyio
async def test_run_with_embedded_mcp_stub_relays_the_demo_tools(
    start_relay: StartClient, tunnel_service: TunnelService
) -> None:
    run = start_relay("--embedded-mcp-stub")
    await anyio.to_thread.run_sync(run.proc.wait_stdout, r"^Embedded MCP stub: http://127\.0\.0\.1:\d+/mcp$")
    await anyio.to_thread.run_sync(run.wait_readyz)
    with anyio.fail_after(WAIT):
        async with Client(tunnel_service.mcp_url(run.tunnel_id), mode="legacy") as client:
            tools = await client.list_tools()
            echoed = await client.call_tool("echo", {"input": "embedded"})
            upper = await client.call_tool("uppercase", {"input": "embedded"})
    assert {t.name for t in tools.tools} == DEMO_TOOLS
    assert echoed.structured_content == {"echoed": "embedded"}
    assert upper.structured_content == {"uppercase": "EMBEDDED"}
