"""Every runtime and admin tool against the real local tunnel service, in-process through mcp.Client:
create a tunnel (idempotent by name), look it up, list its scope, update it, connect an HTTP MCP
server to it, status (compact, then with details, then by tunnel id), a call through the MCP URL
the result gave, stop twice, remove, delete, and the stale alias that leaves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agent_tools.server import build_server
from tests.support.admin_helpers import (
    Keys,
    Service,
    assert_no_secrets,
)
from tests.support.targets import MCPTarget

pytestmark = pytest.mark.slow
WAIT = 60.0


@pytest.fixture
def env(tools_env: dict[str, str]) -> dict[str, str]:
    return tools_env


async def call(client: Client, tool: str, args: dict[str, Any]) -> tuple[Any, str]:
    result = await client.call_tool(tool, args)
    text = "".join(getattr(c, "text", "") for c in result.content)
    assert not result.is_error, f"{tool}: {text}"
    return result.structured_content, text


def test_admin_and_runtime_tools_end_to_end(env: dict[str, str], service: Service, mcp_target: MCPTarget,
                                            keys: Keys, tmp_path: Path) -> None:
    texts: list[str] = []

    async def scenario() -> None:
        with anyio.fail_after(WAIT * 2):
            await steps()

    async def steps() -> None:
        async with Client(build_server(lambda: env)) as c:
            made, text = await call(c, "create_tunnel_runtime", {"alias": "live", "description": "tools test",
                                                                 "organization_id": "org_live"})
            texts.append(text)
            tunnel_id = made["tunnel_id"]
            assert made["created"] is True and made["mcp_url"] == f"{service.base_url}/v1/mcp/{tunnel_id}"
            assert made["next"][0]["tool"] == "connect_stdio_mcp"
            again, _ = await call(c, "create_tunnel_runtime", {"alias": "live", "organization_id": "org_live"})
            assert again["created"] is False and again["tunnel_id"] == tunnel_id  # found by name: idempotent
            got, _ = await call(c, "runtime_status", {"tunnel_id": tunnel_id})
            assert (got["state"], got["alias"], got["next"][0]["tool"]) == ("stopped", "live", "connect_stdio_mcp")
            listed, _ = await call(c, "list_runtime_aliases", {"organization_id": "org_live"})
            assert {"id": tunnel_id, "name": "live", "local_alias": "live"} in listed["remote_tunnels"]
            updated, _ = await call(c, "update_tunnel", {"tunnel_id": tunnel_id, "description": "changed"})
            assert updated["description"] == "changed" and updated["changed"] == ["description"]
            assert (await call(c, "update_tunnel", {"tunnel_id": tunnel_id, "description": "changed"}))[0] == updated

            connected, text = await call(c, "connect_stdio_mcp", {"alias": "Live_HTTP", "tunnel_id": tunnel_id,
                                                                  "mcp_server_url": mcp_target.url,
                                                                  "allow_shared_tunnel": True})
            texts.append(text)
            assert connected["alias"] == "live-http" and connected["launched"] is True
            assert connected["state"] in ("ready", "healthy") and connected["healthy"] is True
            assert list(connected)[:4] == ["state", "launched", "healthy", "ready"]
            assert connected["mcp_url"] == f"{service.base_url}/v1/mcp/{tunnel_id}"
            assert connected["next"] == [{"tool": "runtime_status", "arguments": {"alias": "live-http"},
                                          "why": "confirm before reporting success"}]
            assert len(json.dumps(connected)) < 2048
            status, text = await wait_state(c, "live-http", "ready")
            texts.append(text)
            assert status["process_running"] and status["healthy"] and status["tunnel_id"] == tunnel_id
            assert status["control_plane"] == "healthy" and "next" not in status and len(json.dumps(status)) < 2048
            detailed, _ = await call(c, "runtime_status", {"alias": "live-http", "details": True})
            assert detailed["details"]["readyz"]["ok"] is True and "log_tail" in detailed["details"]
            by_id, _ = await call(c, "runtime_status", {"tunnel_id": tunnel_id})
            assert by_id["alias"] == "live-http" and by_id["state"] == "ready"

            async with Client(connected["mcp_url"], mode="legacy") as door:
                answer = await door.call_tool("echo", {"text": "through the tunnel"})
            assert "through the tunnel" in "".join(getattr(x, "text", "") for x in answer.content)

            refused = await c.call_tool("remove_runtime", {"alias": "live-http"})
            assert refused.is_error and refused.structured_content is not None
            assert refused.structured_content["next"][0] == {"tool": "stop_runtime", "arguments": {
                "alias": "live-http"}, "why": "stop it first"}
            stopped, _ = await call(c, "stop_runtime", {"alias": "live-http"})
            assert (stopped["state"], stopped["stopped"], stopped["process_running"]) == ("stopped", True, False)
            assert len(json.dumps(stopped)) < 2048
            again_stopped, text = await call(c, "stop_runtime", {"alias": "live-http"})
            assert again_stopped["already_stopped"] is True and "already stopped" in text  # idempotent
            removed, _ = await call(c, "remove_runtime", {"alias": "live-http"})
            assert removed["removed"] == ["live-http"] and removed["tunnel_id"] == tunnel_id
            deleted, _ = await call(c, "delete_tunnel", {"tunnel_id": tunnel_id, "confirm": True})
            assert deleted["tunnel_id"] == tunnel_id and deleted["deleted"] is True
            stale, _ = await call(c, "list_runtime_aliases", {})
            assert stale["aliases"] == [{"alias": "live", "tunnel_id": tunnel_id, "runtime_state": "stopped",
                                         "classification": "stale_alias"}]
            assert {"tool": "remove_runtime", "arguments": {"stale": True},
                    "why": "forget the aliases classified stale_alias (local records only)"} in stale["next"]
            cleaned, _ = await call(c, "remove_runtime", {"stale": True})
            assert cleaned["removed"] == ["live"]

    anyio.run(scenario)
    assert_no_secrets(keys, texts=texts, roots=[tmp_path / "state", tmp_path / "profiles"])


async def wait_state(c: Client, alias: str, state: str) -> tuple[Any, str]:
    """runtime_status until ``state`` (bounded by the caller's fail_after); readiness lags /healthz."""
    while True:
        status, text = await call(c, "runtime_status", {"alias": alias})
        if status["state"] == state:
            return status, text
        await anyio.sleep(0.1)
