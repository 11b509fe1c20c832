"""The agent tools never report a success that is not true, and keep the promises of their annotations,
against the real local tunnel service (``dev tunnel-service``) as the control plane.

- a tunnel id the control plane answers 404 for: connect refuses before writing anything;
- a tunnel deleted under a running runtime, and a runtime key the control plane answers 401 for:
  status and connect say ``failed`` with that cause, never healthy or ready;
- two aliases on one running tunnel, and a running alias given another target: refused unless the
  caller passes ``allow_shared_tunnel`` / ``replace``;
- every read-only tool, with every kind of argument, changes no file under the state, profile and
  config directories (and creates none on a fresh machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agent_tools.front import load_catalogue
from agent_tools.server import build_server
from tests.support.admin_helpers import (
    STDIO_SERVER,
    Keys,
    Service,
    assert_no_secrets,
)

pytestmark = pytest.mark.slow
WAIT = 90.0
MCP_COMMAND = f"{sys.executable} {STDIO_SERVER}"
UNKNOWN_TUNNEL = "tunnel_" + "0" * 32


@pytest.fixture
def env(tools_env: dict[str, str]) -> dict[str, str]:
    return tools_env


class Tools:
    """Tool calls on an in-process server; every text is kept for the secret scan."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.texts: list[str] = []

    async def __call__(self, tool: str, args: dict[str, Any], *, error: bool = False) -> dict[str, Any]:
        result = await self.client.call_tool(tool, args)
        text = "".join(getattr(c, "text", "") for c in result.content)
        self.texts += [text, json.dumps(result.structured_content)]
        assert bool(result.is_error) == error, f"{tool} {args}: {text}"
        data: dict[str, Any] = result.structured_content or {}
        return data


def run(env: dict[str, str], keys: Keys, tmp_path: Path, scenario: Any) -> None:
    texts: list[str] = []

    async def main() -> None:
        with anyio.fail_after(WAIT):
            async with Client(build_server(lambda: env)) as c:
                tools = Tools(c)
                try:
                    await scenario(tools)
                finally:
                    texts.extend(tools.texts)

    anyio.run(main)
    assert_no_secrets(keys, texts=texts, roots=[tmp_path / "state", tmp_path / "profiles"])


def test_a_tunnel_the_control_plane_does_not_know_is_refused_before_anything_is_written(
        env: dict[str, str], keys: Keys, tmp_path: Path) -> None:
    async def scenario(call: Tools) -> None:
        refused = await call("connect_stdio_mcp", {"alias": "ghost", "tunnel_id": UNKNOWN_TUNNEL,
                                                   "mcp_command": MCP_COMMAND}, error=True)
        assert (refused["state"], refused["cause"], refused["launched"]) == ("failed", "tunnel_not_found", False)
        assert refused["field"] == "tunnel_id" and "HTTP 404" in refused["error"]
        assert refused["next"][0]["tool"] == "list_runtime_aliases"
        status = await call("runtime_status", {"tunnel_id": UNKNOWN_TUNNEL})
        assert (status["state"], status["cause"]) == ("failed", "tunnel_not_found")
        listed = await call("list_runtime_aliases", {})
        assert listed["aliases"] == []

    run(env, keys, tmp_path, scenario)
    assert not (tmp_path / "profiles").exists()
    assert not (tmp_path / "state" / "aliases.yaml").exists() and not (tmp_path / "state" / "processes.yaml").exists()


def test_a_running_runtime_whose_tunnel_is_deleted_is_failed_not_healthy(
        env: dict[str, str], keys: Keys, tmp_path: Path) -> None:
    async def scenario(call: Tools) -> None:
        made = await call("connect_stdio_mcp", {"alias": "doomed", "organization_id": "org_truth",
                                                "mcp_command": MCP_COMMAND})
        assert made["state"] in ("ready", "healthy") and made["tunnel_created"] is True
        await call("delete_tunnel", {"tunnel_id": made["tunnel_id"], "confirm": True})
        status = await call("runtime_status", {"alias": "doomed"})
        assert (status["state"], status["cause"]) == ("failed", "tunnel_not_found"), status
        assert status["process_running"] is True  # /healthz still answers: the verdict must not follow it
        assert "no tunnel" in status["reason"] or "404" in status["reason"]
        assert [n["tool"] for n in status["next"]] == ["stop_runtime", "list_runtime_aliases"]
        stopped = await call("stop_runtime", {"alias": "doomed"})
        assert stopped["state"] == "stopped"

    run(env, keys, tmp_path, scenario)


def test_a_runtime_key_the_control_plane_refuses_makes_connect_failed_unauthorized(
        env: dict[str, str], keys: Keys, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.key"
    wrong.write_text("rt_" + "w" * 30 + "\n")
    wrong.chmod(0o600)

    async def scenario(call: Tools) -> None:
        made = await call("create_tunnel_runtime", {"alias": "locked", "organization_id": "org_truth"})
        connected = await call("connect_stdio_mcp", {"alias": "locked", "mcp_command": MCP_COMMAND,
                                                     "runtime_api_key": f"file:{wrong}"})
        assert connected["launched"] is True and connected["tunnel_id"] == made["tunnel_id"]
        assert (connected["state"], connected.get("cause")) in (("failed", None), ("failed", "unauthorized")), connected
        status = await call("runtime_status", {"alias": "locked"})
        assert status["state"] == "failed" and "401" in status["reason"], status
        assert status["next"][0] == {"tool": "connect_stdio_mcp", "arguments": {"alias": "locked", "replace": True},
                                     "why": "relaunch with the corrected key"}
        assert "runtime_api_key" in status["fix"]

    run(env, keys, tmp_path, scenario)


def test_a_second_alias_on_a_running_tunnel_and_a_changed_target_need_the_caller_s_consent(
        env: dict[str, str], keys: Keys, tmp_path: Path) -> None:
    other = tmp_path / "other_server.py"
    other.write_text(Path(STDIO_SERVER).read_text())

    async def scenario(call: Tools) -> None:
        first = await call("connect_stdio_mcp", {"alias": "one", "organization_id": "org_truth",
                                                 "mcp_command": MCP_COMMAND})
        tunnel_id = first["tunnel_id"]
        shared = await call("connect_stdio_mcp", {"alias": "two", "tunnel_id": tunnel_id,
                                                  "mcp_command": MCP_COMMAND}, error=True)
        assert "already served by the running alias one" in shared["error"] and shared["field"] == "tunnel_id"
        assert shared["next"][1]["arguments"] == {"alias": "two", "tunnel_id": tunnel_id,
                                                  "mcp_command": MCP_COMMAND, "allow_shared_tunnel": True}
        assert not (tmp_path / "profiles" / "two.yaml").exists()

        same = await call("connect_stdio_mcp", {"alias": "one"})  # nothing changes: reused as it is
        assert same["launched"] is False and same["already_running"] is True

        changed = {"alias": "one", "mcp_command": f"{sys.executable} {other}"}
        refused = await call("connect_stdio_mcp", changed, error=True)
        assert "alias one already runs (MCP target command changed)" in refused["error"]
        assert refused["next"][0]["arguments"] == {**changed, "replace": True}
        replaced = await call("connect_stdio_mcp", {**changed, "replace": True})
        assert replaced["launched"] is True and replaced["state"] in ("ready", "healthy")
        status = await call("runtime_status", {"alias": "one", "details": True})
        assert status["details"]["pid"] != first.get("pid") and status["process_running"] is True
        assert str(other) in (tmp_path / "profiles" / "one.yaml").read_text()
        await call("stop_runtime", {"alias": "one"})

    run(env, keys, tmp_path, scenario)


# ---------------------------------------------------------------------------- read-only means read-only


def _snapshot(roots: list[Path]) -> dict[str, Any]:
    """Every file and directory under ``roots``: content hash, size, mode and mtime."""
    out: dict[str, Any] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for d in dirnames:
                out[os.path.join(dirpath, d)] = "dir"
            for f in filenames:
                path = os.path.join(dirpath, f)
                if os.path.dirname(path) == str(roots[0] / "logs"):
                    continue  # written by the running runtime itself, not by a tool
                st = os.stat(path)
                out[path] = (hashlib.sha256(Path(path).read_bytes()).hexdigest(), st.st_size, st.st_mode,
                             st.st_mtime_ns)
    return out


READ_ONLY_CALLS: list[tuple[str, dict[str, Any]]] = [
    ("help", {}), ("help", {"topic": "plugin"}),
    ("install_or_select_tunnel_client", {}), ("install_or_select_tunnel_client", {"persist_hint": True}),
    ("doctor", {"profile": "p1"}), ("doctor", {"profile": "p1", "online": True}), ("doctor", {"profile": "live"}),
    ("runtime_status", {"alias": "live"}), ("runtime_status", {"alias": "idle", "details": True}),
    ("runtime_status", {"tunnel_id": "{live}"}), ("runtime_status", {"tunnel_id": UNKNOWN_TUNNEL}),
    ("list_runtime_aliases", {}), ("list_runtime_aliases", {"organization_id": "org_truth"}),
    ("list_runtime_aliases", {"organization_id": "org_truth", "admin_profile": "team"}),
]


def test_read_only_tools_change_no_file(env: dict[str, str], keys: Keys, tmp_path: Path, service: Service) -> None:
    read_only = {t["name"] for t in load_catalogue()["tools"] if t["annotations"]["readOnlyHint"]}  # type: ignore[index]
    assert {name for name, _ in READ_ONLY_CALLS} == read_only, "every read-only tool must be exercised here"
    roots = [tmp_path / "state", tmp_path / "profiles", tmp_path / ".config"]

    async def fresh(call: Tools) -> None:  # a machine with nothing on it: nothing may appear
        for name, args in READ_ONLY_CALLS:
            if "{live}" not in json.dumps(args) and args.get("admin_profile") is None:
                await call(name, args, error=name == "runtime_status" and "alias" in args)

    run(env, keys, tmp_path, fresh)
    assert _snapshot(roots) == {}

    async def setup(call: Tools) -> str:
        await call("set_admin_profile", {"name": "team", "admin_key": "env:OPENAI_ADMIN_KEY",
                                         "control_plane_base_url": service.base_url})
        live = await call("connect_stdio_mcp", {"alias": "live", "organization_id": "org_truth",
                                                "mcp_command": MCP_COMMAND, "admin_profile": "team"})
        await call("connect_stdio_mcp", {"alias": "idle", "organization_id": "org_truth",
                                         "mcp_command": MCP_COMMAND})
        await call("stop_runtime", {"alias": "idle"})
        await call("init_profile", {"tunnel_id": live["tunnel_id"], "profile": "p1", "mcp_command": MCP_COMMAND})
        return str(live["tunnel_id"])

    tunnel: list[str] = []
    run(env, keys, tmp_path, lambda call: _keep(setup(call), tunnel))
    before = _snapshot(roots)
    assert any(p.endswith("admin_profiles.yaml") for p in before) and any(p.endswith("p1.yaml") for p in before)
    # variables that would make a writing lookup save or switch an admin profile
    env |= {"TUNNEL_MCP_ADMIN_PROFILE": "never-saved", "CONTROL_PLANE_URL_PATH": "/other"}

    async def read_everything(call: Tools) -> None:
        for name, args in READ_ONLY_CALLS:
            args = json.loads(json.dumps(args).replace("{live}", tunnel[0]))
            result = await call.client.call_tool(name, args)
            call.texts.append(json.dumps(result.structured_content))

    run(env, keys, tmp_path, read_everything)
    assert _snapshot(roots) == before


async def _keep(awaitable: Any, into: list[str]) -> None:
    into.append(await awaitable)
