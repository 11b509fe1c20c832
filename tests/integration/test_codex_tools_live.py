"""Every runtime and admin tool against the real local tunnel service, in-process through mcp.Client:
admin tunnels create/get/list/update, connect an HTTP MCP server to an existing tunnel id, status, a
call through the front door, stop, remove, delete."""

from __future__ import annotations

from collections.abc import Iterator
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
    base_env,
    kill_runtimes,
)
from tests.support.targets import MCPTarget

pytestmark = pytest.mark.slow
WAIT = 60.0


@pytest.fixture
def env(tmp_path: Path, service: Service, keys: Keys) -> Iterator[dict[str, str]]:
    values = base_env(tmp_path, TUNNEL_CLIENT_STATE_DIR=str(tmp_path / "state"),
                      TUNNEL_CLIENT_PROFILE_DIR=str(tmp_path / "profiles"), CONTROL_PLANE_BASE_URL=service.base_url,
                      OPENAI_ADMIN_KEY=keys.admin, CONTROL_PLANE_API_KEY=keys.runtime)
    try:
        yield values
    finally:
        kill_runtimes(str(tmp_path))


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
            made, text = await call(c, "admin_tunnels_create", {"name": "live", "description": "tools test",
                                                                "organization_ids": ["org_live"]})
            texts.append(text)
            tunnel_id = made["id"]
            got, _ = await call(c, "admin_tunnels_get", {"tunnel_id": tunnel_id})
            assert got["name"] == "live" and got["organization_ids"] == ["org_live"]
            listed, _ = await call(c, "admin_tunnels_list", {"organization_id": "org_live"})
            assert tunnel_id in [t["id"] for t in listed["tunnels"]]
            updated, _ = await call(c, "admin_tunnels_update", {"tunnel_id": tunnel_id, "description": "changed"})
            assert updated["description"] == "changed"

            connected, text = await call(c, "connect_runtime", {"alias": "Live_HTTP", "tunnel_id": tunnel_id,
                                                                "mcp_server_url": mcp_target.url})
            texts.append(text)
            assert connected["alias"] == "live-http" and connected["healthy"] is True
            assert "Next: call runtime_status" in text
            status, text = await call(c, "runtime_status", {"alias": "live-http"})
            texts.append(text)
            assert status["process_running"] and status["healthy"] and status["tunnel_id"] == tunnel_id

            async with Client(f"{service.base_url}/v1/mcp/{tunnel_id}", mode="legacy") as door:
                answer = await door.call_tool("echo", {"text": "through the tunnel"})
            assert "through the tunnel" in "".join(getattr(x, "text", "") for x in answer.content)

            listed_rt, _ = await call(c, "list_runtime_aliases", {"organization_id": "org_live"})
            assert [a["alias"] for a in listed_rt["aliases"]] == ["live-http"]
            assert listed_rt["remote_tunnels"][0]["local_alias"] == "live-http"

            refused = await c.call_tool("remove_runtime", {"alias": "live-http"})
            assert refused.is_error and "Next step: call stop_runtime" in refused.content[0].text  # type: ignore[union-attr]
            stopped, _ = await call(c, "stop_runtime", {"alias": "live-http"})
            assert stopped["stopped"] is True and stopped["process_running"] is False
            again, text = await call(c, "stop_runtime", {"alias": "live-http"})
            assert again["already_stopped"] is True and "already stopped" in text
            removed, _ = await call(c, "remove_runtime", {"alias": "live-http"})
            assert removed["removed"] is True and removed["tunnel_id"] == tunnel_id
            deleted, _ = await call(c, "admin_tunnels_delete", {"tunnel_id": tunnel_id, "confirm": True})
            assert deleted["id"] == tunnel_id

    anyio.run(scenario)
    assert_no_secrets(keys, texts=texts, roots=[tmp_path / "state", tmp_path / "profiles"])
