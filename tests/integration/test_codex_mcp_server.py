"""The agent tool server as Codex starts it: a stdio subprocess (``tunnel-client codex mcp-server`` and
``python -m agent_tools``) speaking the handshake-era protocol Codex uses, nothing but MCP on stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from tests.support.admin_helpers import TUNNEL_CLIENT, base_env

WAIT = 30.0


@pytest.mark.parametrize("argv", [[TUNNEL_CLIENT, "codex", "mcp-server"], [sys.executable, "-m", "agent_tools"]])
def test_stdio_server_lists_tools_and_answers_a_call(tmp_path: Path, argv: list[str]) -> None:
    env = base_env(tmp_path, TUNNEL_CLIENT_STATE_DIR=str(tmp_path / "state"))

    async def session() -> tuple[set[str], dict[str, object] | None, str]:
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(tmp_path))
        with anyio.fail_after(WAIT):
            async with Client(params, mode="legacy") as client:
                tools = await client.list_tools()
                result = await client.call_tool("list_runtimes", {})
        text = "".join(getattr(c, "text", "") for c in result.content)
        return {t.name for t in tools.tools}, result.structured_content, text

    names, data, text = anyio.run(session)
    assert {"connect_runtime", "runtime_status", "connect_stdio_mcp"} <= names
    assert data is not None and data["state_root"] == str(tmp_path / "state")
    assert text.startswith("Aliases in ")


def test_stdout_carries_only_jsonrpc(tmp_path: Path) -> None:
    """Codex's handshake (protocol 2025-06-18, ids from 0) and one call; every stdout line is a JSON-RPC message."""
    env = base_env(tmp_path, TUNNEL_CLIENT_STATE_DIR=str(tmp_path / "state"))
    messages = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {"elicitation": {"form": {}, "url": {}}},
            "clientInfo": {"name": "codex-mcp-client", "title": "Codex", "version": "0.169.0"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "help", "arguments": {}}},
    ]
    proc = subprocess.Popen([TUNNEL_CLIENT, "codex", "mcp-server"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None
    lines: list[dict[str, object]] = []
    try:
        for m in messages:
            proc.stdin.write(json.dumps(m) + "\n")
            proc.stdin.flush()
            if "id" in m:  # a request: its answer is the next line (pytest-timeout caps a hang)
                lines.append(json.loads(proc.stdout.readline()))
        proc.stdin.close()
        assert proc.wait(WAIT) == 0
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rest == ""
    assert [m.get("id") for m in lines] == [0, 1]
    init: Any = lines[0]["result"]
    assert init["protocolVersion"] == "2025-06-18" and init["serverInfo"]["name"] == "tunnel-client"
    assert "runtime_status" in init["instructions"]
    answer: Any = lines[1]["result"]
    assert "plugin" in [t["name"] for t in answer["structuredContent"]["topics"]]
