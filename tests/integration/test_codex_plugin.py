"""The Codex plugin driven by the real Codex CLI, offline: a throwaway CODEX_HOME, a loopback fake of
the Responses API as the model provider, and the local tunnel service (``dev tunnel-service``).

install -> ``codex mcp list`` and an app-server ``mcpServer/tool/call``; a fake-model turn that
calls connect_stdio_mcp then runtime_status starts a real runtime whose front door answers;
uninstall restores config.toml byte for byte; the marketplace route; ``codex status``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.admin_helpers import (
    STDIO_SERVER,
    Keys,
    Service,
    assert_no_secrets,
    base_env,
    cli,
    kill_runtimes,
    tunnel_service,
)
from tests.support.codex_env import (
    app_server_request,
    call_tool,
    codex_path,
    codex_search_path,
    mcp_list,
    run_codex,
    run_turn,
)
from tests.support.fake_model import API_KEY_ENV, Call, FakeModel, Say, running_fake_model, tool_outputs
from tests.support.servers import BackgroundLoop
from tunnel_core.codex.bundle import FORWARDED_ENV

pytestmark = pytest.mark.slow
TUNNEL_ID = re.compile(r"^tunnel_[a-z0-9]{32}$")
USER_CONFIG = '# my settings\nmodel_reasoning_effort = "low"   # keep this comment\n\n[mcp_servers.other]\ncommand = "other-server"\nargs = ["--flag"]'


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Service]:
    codex_path()
    with tunnel_service(tmp_path_factory.mktemp("codex-svc"), keys) as svc:
        yield svc
    assert_no_secrets(keys, texts=[svc.output()])


@pytest.fixture(scope="module")
def fake(bg: BackgroundLoop) -> Iterator[FakeModel]:
    with running_fake_model(bg, lambda body: [Say("nothing scripted")]) as model:
        yield model


@pytest.fixture
def home(tmp_path: Path, fake: FakeModel) -> Path:
    """A CODEX_HOME whose config uses the fake model and holds some user settings."""
    path = tmp_path / "codex-home"
    path.mkdir()
    (path / "config.toml").write_text(fake.provider_config() + "\n" + USER_CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def env(tmp_path: Path, home: Path, service: Service, keys: Keys) -> dict[str, str]:
    return base_env(tmp_path, PATH=codex_search_path(), CODEX_HOME=str(home), **{API_KEY_ENV: "dummy"},
                    TUNNEL_CLIENT_STATE_DIR=str(tmp_path / "state"), TUNNEL_CLIENT_PROFILE_DIR=str(tmp_path / "profiles"),
                    CONTROL_PLANE_BASE_URL=service.base_url, OPENAI_ADMIN_KEY=keys.admin,
                    CONTROL_PLANE_API_KEY=keys.runtime)


@pytest.fixture
def runtimes(tmp_path: Path, env: dict[str, str]) -> Iterator[None]:
    """Every runtime started under tmp_path is stopped afterwards (the finalizer the Codex-driven test needs)."""
    try:
        yield
    finally:
        cli(["runtimes", "stop", "codex-demo"], env)
        kill_runtimes(str(tmp_path))


def install(env: dict[str, str], home: Path, *extra: str) -> dict[str, Any]:
    r = cli(["codex", "plugin", "install", "--codex-home", str(home), "--json", *extra], env)
    assert r.code == 0, r.err
    data: dict[str, Any] = r.json()
    return data


def test_installed_plugin_is_listed_and_its_status_tool_returns_structured_content(
        env: dict[str, str], home: Path, tmp_path: Path) -> None:
    result = install(env, home)
    assert result["config_changed"] is True and result["mcp_command"] == [sys.executable, "-m", "agent_tools"]

    servers = {s["name"]: s for s in mcp_list(env)}
    assert "tunnel-client" in servers and "other" in servers
    transport = servers["tunnel-client"]["transport"]
    assert (transport["command"], transport["args"]) == (sys.executable, ["-m", "agent_tools"])
    assert transport["env_vars"] == list(FORWARDED_ENV)

    skills = json.dumps(app_server_request(env, tmp_path, "skills/list", {"cwds": [str(tmp_path)]}))
    assert '"tunnel-client:tunnel-client"' in skills and "tunnel-client@debug" in skills

    made = cli(["runtimes", "--json", "create", "--alias", "demo", "--organization-id", "org_codex"], env)
    assert made.code == 0, made.err
    tunnel_id = made.json()["tunnel"]["id"]

    answer = call_tool(env, tmp_path, "runtime_status", {"alias": "demo", "details": True})
    assert answer.get("isError") in (None, False), answer
    status = answer["structuredContent"]
    assert (status["state"], status["alias"], status["tunnel_id"]) == ("stopped", "demo", tunnel_id)
    assert status["process_running"] is False and status["healthy"] is False
    assert status["details"]["remote"]["id"] == tunnel_id  # the read-only lookup used the forwarded key reference
    assert status["mcp_url"] == f"{env['CONTROL_PLANE_BASE_URL']}/v1/mcp/{tunnel_id}"
    assert "demo: stopped" in answer["content"][0]["text"]

    refused = call_tool(env, tmp_path, "connect_stdio_mcp", {"alias": "x", "mcp_command": "srv",
                                                            "runtime_api_key": "sk-" + "a" * 30})
    assert refused["isError"] is True
    assert "Fix: pass keys only" in refused["content"][0]["text"] and "a" * 30 not in refused["content"][0]["text"]


def connect_then_status(alias: str, command: str) -> Any:
    """The fake model's plan: connect_stdio_mcp, then runtime_status, then a summary of what status said."""

    def policy(body: dict[str, Any]) -> list[Say | Call]:
        outputs = tool_outputs(body)
        if "call_connect" not in outputs:
            return [Call("connect_stdio_mcp", {"alias": alias, "organization_id": "org_codex",
                                               "mcp_command": command}, call_id="call_connect")]
        if "call_status" not in outputs:
            return [Call("runtime_status", {"alias": alias}, call_id="call_status")]
        status = json.loads(outputs["call_status"].split("Output:\n", 1)[1])
        return [Say(f"Runtime {alias} is {status['state']}: process_running={status['process_running']}, "
                    f"healthy={status['healthy']}, ready={status['ready']}, tunnel {status['tunnel_id']}.")]

    return policy


def test_fake_model_turn_connects_a_runtime_and_its_front_door_answers(
        env: dict[str, str], home: Path, tmp_path: Path, fake: FakeModel, service: Service, keys: Keys,
        runtimes: None) -> None:
    install(env, home, "--approve-tools", "all")
    fake.requests.clear()
    fake.policy = connect_then_status("codex-demo", f"{sys.executable} {STDIO_SERVER}")

    turn, transcript = run_turn(env, tmp_path, "Connect my stdio MCP server through a tunnel and check it.")
    (tmp_path / "transcript.json").write_text(json.dumps(transcript.notifications, indent=1))
    assert turn["status"] == "completed", turn

    calls = transcript.tool_calls()
    assert [c["tool"] for c in calls] == ["connect_stdio_mcp", "runtime_status"], calls
    connected = calls[0]["result"]["structuredContent"]
    assert connected["launched"] is True and connected["healthy"] is True
    status = calls[1]["result"]["structuredContent"]
    assert status["process_running"] is True and status["healthy"] is True
    tunnel_id = status["tunnel_id"]
    assert TUNNEL_ID.match(tunnel_id) and connected["tunnel_id"] == tunnel_id
    assert "process_running=True, healthy=True" in transcript.text()

    # the model saw the tool results (status JSON first in the function_call_output)
    last = tool_outputs(fake.requests[-1])
    assert '"process_running":true' in last["call_status"]
    assert len(last["call_connect"]) < 12_000 and len(last["call_status"]) < 12_000  # Codex truncates beyond ~12 KB

    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo",
                                                                          "arguments": {"text": "via codex"}}}
    resp = httpx2.post(f"{service.base_url}/v1/mcp/{tunnel_id}", json=body, trust_env=False, timeout=30,
                       headers={"Accept": "application/json, text/event-stream"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"]["content"][0]["text"] == "via codex"
    assert_no_secrets(keys, texts=[json.dumps(transcript.notifications), json.dumps(fake.requests)],
                      roots=[tmp_path / "state", tmp_path / "profiles"])


def test_read_only_approvals_let_codex_call_only_read_only_tools(
        env: dict[str, str], home: Path, tmp_path: Path, fake: FakeModel) -> None:
    install(env, home, "--approve-tools", "read-only")

    def policy(body: dict[str, Any]) -> list[Say | Call]:
        outputs = tool_outputs(body)
        if "call_list" not in outputs:
            return [Call("list_runtime_aliases", {}, call_id="call_list")]
        if "call_remove" not in outputs:
            return [Call("remove_runtime", {"alias": "anything"}, call_id="call_remove")]
        return [Say("done")]

    fake.policy = policy
    turn, transcript = run_turn(env, tmp_path, "List my runtimes, then remove one.")
    assert turn["status"] == "completed"
    calls = {c["tool"]: c for c in transcript.tool_calls()}
    assert calls["list_runtime_aliases"]["status"] == "completed"
    assert calls["remove_runtime"]["status"] == "failed" and "approval" in json.dumps(calls["remove_runtime"])


def test_uninstall_leaves_config_toml_byte_identical(env: dict[str, str], home: Path) -> None:
    config = home / "config.toml"
    before = config.read_bytes()
    install(env, home, "--approve-tools", "read-only")
    after_install = config.read_bytes()
    assert after_install != before and after_install.startswith(before)
    assert install(env, home, "--approve-tools", "read-only")["config_changed"] is False  # idempotent
    assert config.read_bytes() == after_install
    assert any(s["name"] == "tunnel-client" for s in mcp_list(env))

    r = cli(["codex", "plugin", "uninstall", "--codex-home", str(home), "--json"], env)
    assert r.code == 0, r.err
    assert r.json()["config_restored_exactly"] is True
    assert config.read_bytes() == before
    assert not (home / "plugins" / "cache" / "debug").exists()
    assert [s["name"] for s in mcp_list(env)] == ["other"]


def test_hidden_alias_and_marketplace_route(env: dict[str, str], home: Path, tmp_path: Path) -> None:
    r = cli(["plugin", "codex", "export", "--dir", str(tmp_path / "bundle")], env)
    assert r.code == 0, r.err
    assert (tmp_path / "bundle" / ".codex-plugin" / "plugin.json").is_file()

    before = (home / "config.toml").read_bytes()
    r = cli(["codex", "plugin", "install", "--codex-home", str(home), "--via-marketplace", "--json"], env)
    assert r.code == 0, r.err
    listed = run_codex(["plugin", "list", "--json"], env)
    assert listed.returncode == 0 and "tunnel-client@tunnel-client-local" in listed.stdout
    assert any(s["name"] == "tunnel-client" for s in mcp_list(env))

    r = cli(["codex", "plugin", "uninstall", "--codex-home", str(home), "--via-marketplace", "--json"], env)
    assert r.code == 0, r.err
    assert "tunnel-client" not in run_codex(["plugin", "list", "--json"], env).stdout
    assert not (home / "tunnel-client-marketplace").exists()
    assert tomllib_loads(before) == tomllib_loads((home / "config.toml").read_bytes())


def tomllib_loads(data: bytes) -> dict[str, Any]:
    import tomllib

    parsed: dict[str, Any] = tomllib.loads(data.decode())
    parsed.pop("marketplaces", None)
    return parsed


def test_codex_status_reports_the_wiring(env: dict[str, str], home: Path) -> None:
    r = cli(["codex", "status", "--json"], env)
    assert r.code == 0, r.err
    status = r.json()
    assert (status["detected"], status["app_server_supported"], status["plugin_installed"]) == (True, True, False)
    assert status["state"] == "bridge_ready" and status["bridge_ready"] is True  # the fake provider needs no login
    assert "tunnel-client codex plugin install" in status["recommended_commands"]

    install(env, home)
    status = cli(["codex", "status", "--json"], env).json()
    assert status["state"] == "ready" and status["plugin_matches_current_binary"] is True
    assert status["plugin_key"] == "tunnel-client@debug" and status["version"].startswith("0.")

    text = cli(["codex", "status"], env).out
    assert "State: ready" in text and "this installation: yes" in text
    diag = cli(["codex", "diagnose", "--json"], env).json()
    assert diag["plugin_points_here"] is True and diag["problems"] == []
