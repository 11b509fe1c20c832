"""``runtimes`` with real detached processes against a real local tunnel service.

connect -> status (healthy, ready) -> an MCP call through the front door -> kill -9 / stop / rm,
supervision with ``--restart on-failure``, concurrent connects, a runtime that cannot start, and
a scan proving no key value reaches argv, profiles, state files, logs or output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import psutil
import pytest

from tests.support.admin_helpers import (
    STDIO_SERVER,
    TUNNEL_CLIENT,
    Keys,
    Result,
    Service,
    assert_no_secrets,
    base_env,
    cli,
    kill_runtimes,
    runtime_processes,
    wait_until,
)

TUNNEL_ID = re.compile(r"^tunnel_[a-z0-9]{32}$")
MCP_COMMAND = f"{sys.executable} {STDIO_SERVER}"
Run = Callable[..., Result]


@pytest.fixture
def env(service: Service, keys: Keys, tmp_path: Path) -> dict[str, str]:
    return base_env(tmp_path, TUNNEL_CLIENT_STATE_DIR=str(tmp_path / "state"), CONTROL_PLANE_BASE_URL=service.base_url,
                    OPENAI_ADMIN_KEY=keys.admin, CONTROL_PLANE_API_KEY=keys.runtime)


@pytest.fixture
def run(env: dict[str, str], keys: Keys, tmp_path: Path) -> Iterator[Run]:
    """In-process ``tunnel-client``; afterwards every runtime of this test is killed and everything is scanned."""
    outputs: list[str] = []

    def call(*argv: str, extra_env: dict[str, str] | None = None) -> Result:
        r = cli(argv, {**env, **(extra_env or {})})
        outputs.extend([r.out, r.err])
        return r

    try:
        yield call
    finally:
        kill_runtimes(str(tmp_path))
    assert_no_secrets(keys, texts=outputs, roots=[tmp_path / "state", tmp_path / "profiles"])


def connect(run: Run, tmp_path: Path, alias: str, *extra: str, code: int = 0) -> dict[str, Any]:
    r = run("runtimes", "--json", "connect", "--alias", alias, "--profile-dir", str(tmp_path / "profiles"),
            "--mcp-command", MCP_COMMAND, *extra)
    assert r.code == code, r.out + r.err
    data: dict[str, Any] = r.json()
    return data


def status(run: Run, alias: str) -> dict[str, Any]:
    r = run("runtimes", "status", alias, "--json")
    assert r.code == 0, r.out + r.err
    data: dict[str, Any] = r.json()
    return data


def assert_argv_clean(keys: Keys, marker: str) -> None:
    procs = runtime_processes(marker)
    assert procs, "no runtime process found"
    for proc in procs:
        for p in [proc, *proc.children(recursive=True)]:
            cmdline = " ".join(p.cmdline())
            for secret in keys.all():
                assert secret not in cmdline


def mcp_echo(service: Service, tunnel_id: str, text: str) -> Any:
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}}
    resp = httpx2.post(f"{service.base_url}/v1/mcp/{tunnel_id}", json=body, trust_env=False, timeout=20,
                       headers={"Accept": "application/json, text/event-stream"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_connect_status_relay_stop_twice_and_rm(run: Run, service: Service, keys: Keys, tmp_path: Path,
                                                env: dict[str, str]) -> None:
    made = connect(run, tmp_path, "My_Runtime", "--organization-id", "org_rt")
    assert made["alias"] == "my-runtime" and TUNNEL_ID.match(made["tunnel"]["id"])
    assert (made["launched"], made["mode"], made["healthy"], made["process_running"]) == (True, "process", True, True)
    assert made["tunnel"]["organization_ids"] == ["org_rt"] and made["tunnel"]["name"] == "my-runtime"
    assert "tunnel_core run --profile-dir" in made["command"] and made["pid"] > 0
    tid = made["tunnel"]["id"]
    assert_argv_clean(keys, str(tmp_path))

    ready = wait_until(lambda: (s := status(run, "my-runtime"))["ready"] and s, what="status ready")
    assert (ready["process_running"], ready["healthy"], ready["runtime_state"]) == (True, True, "ready")
    assert ready["ui_url"].endswith("/ui") and ready["ui_url"].startswith("http://127.0.0.1:")
    assert ready["health_url"].endswith("/healthz") and ready["pid"] == made["pid"]
    assert ready["control_plane_poll_health"]["state"] == "healthy"
    assert ready["remote"]["id"] == tid and ready["remote_lookup_auth_kind"] == "runtime"
    assert ready["remote_lookup_auth_ref"] == "env:CONTROL_PLANE_API_KEY" and ready["local"]["issues"] == []
    assert run("runtimes", "status", "my-runtime").out == f"my-runtime\tready\t{tid}\n"

    assert mcp_echo(service, tid, "through the tunnel")["result"]["content"][0]["text"] == "through the tunnel"

    profile = tmp_path / "profiles" / "my-runtime.yaml"
    content = json.loads(profile.read_text())
    assert content["control_plane"] == {"base_url": service.base_url, "tunnel_id": tid,
                                        "api_key": "env:CONTROL_PLANE_API_KEY"}
    assert content["mcp"] == {"commands": [{"channel": "main", "command": MCP_COMMAND}]}
    state = tmp_path / "state"
    for f in (profile, state / "aliases.yaml", state / "processes.yaml", state / "admin_profiles.yaml",
              state / "history.md", state / "logs" / "my-runtime.log", state / "health" / "my-runtime.url"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert json.loads((state / "processes.yaml").read_text())["my-runtime"]["pid_start_time"]

    listed = run("runtimes", "--json", "list", "--organization-id", "org_rt").json()
    assert [a["alias"] for a in listed["aliases"]] == ["my-runtime"]
    assert [(t["id"], t["local_alias"]) for t in listed["remote_tunnels"]] == [(tid, "my-runtime")]

    stopped = run("runtimes", "stop", "my-runtime", "--json")
    assert stopped.code == 0
    data = stopped.json()
    assert (data["stopped"], data["already_stopped"], data["process_running"], data["runtime_state"]) == (
        True, False, False, "stopped")
    assert not psutil.pid_exists(made["pid"]) or psutil.Process(made["pid"]).status() == psutil.STATUS_ZOMBIE
    assert not (state / "health" / "my-runtime.url").exists()
    assert json.loads((state / "processes.yaml").read_text())["my-runtime"]["mode"] == "stopped"
    again = run("runtimes", "disconnect", "my-runtime", "--json")
    assert again.code == 0 and again.json()["already_stopped"] is True
    assert run("runtimes", "stop", "my-runtime").out == "Stopped my-runtime\n"

    removed = run("runtimes", "rm", "my-runtime", "--json")
    assert removed.code == 0
    rm = removed.json()
    assert rm["removed"] is True and rm["tunnel_id"] == tid and str(profile) in rm["removed_paths"]
    assert not profile.exists() and json.loads((state / "aliases.yaml").read_text()) == {}
    assert run("runtimes", "status", "my-runtime").code == 1
    # the remote tunnel is never deleted by rm
    assert run("admin", "--json", "tunnels", "get", tid).code == 0
    history = (state / "history.md").read_text()
    assert [re.search(r"action=(\S+)", line).group(1) for line in history.splitlines()] == [  # type: ignore[union-attr]
        "connect", "stop", "stop", "stop", "rm"]


def test_kill_9_is_seen_rm_refuses_while_running_and_a_reused_pid_is_not_ours(
    run: Run, service: Service, keys: Keys, tmp_path: Path
) -> None:
    tid = run("admin", "--json", "tunnels", "create", "--name", "attach", "--description", "attached",
              "--workspace-id", "ws_rt").json()["id"]
    keyfile = tmp_path / "runtime.key"
    keyfile.write_text(keys.runtime + "\n")
    no_env_keys = {"CONTROL_PLANE_API_KEY": "", "OPENAI_ADMIN_KEY": ""}
    r = run("runtimes", "--json", "connect", "--alias", "attached", "--tunnel-id", tid, "--profile-dir",
            str(tmp_path / "profiles"), "--mcp-command", MCP_COMMAND, "--runtime-api-key", f"file:{keyfile}",
            extra_env=no_env_keys)
    assert r.code == 0, r.err
    made = r.json()
    assert made["tunnel"]["id"] == tid and made["tunnel"]["name"] == "attach" and made["remote_error"] == ""

    refused = run("runtimes", "rm", "attached")
    assert refused.code == 1 and "still has a managed runtime" in refused.err

    os.kill(made["pid"], signal.SIGKILL)
    gone = wait_until(lambda: (s := status(run, "attached"))["process_running"] is False and s, what="dead runtime")
    assert (gone["runtime_state"], gone["healthy"], gone["pid"]) == ("stopped", False, None)
    assert "recorded process pid is not running" in gone["local"]["issues"]
    assert [a["id"] for a in gone["repair_actions"]] == ["start_runtime"]
    assert f"--tunnel-id {tid}" in gone["repair_command"]

    # A live pid with another start time is someone else's process: never reported or signalled as ours.
    processes = tmp_path / "state" / "processes.yaml"
    data = json.loads(processes.read_text())
    data["attached"].update(pid=os.getpid(), pid_start_time="1000.000")
    processes.write_text(json.dumps(data))
    assert status(run, "attached")["process_running"] is False
    stopped = run("runtimes", "stop", "attached", "--json").json()
    assert stopped["already_stopped"] is True and stopped["stopped"] is True  # and this test process still lives

    assert run("runtimes", "stop", "attached").code == 0
    assert run("runtimes", "rm", "attached").out == "Removed local runtime metadata for attached\n"


def test_restart_on_failure_brings_a_killed_runtime_back(run: Run, service: Service, tmp_path: Path) -> None:
    made = connect(run, tmp_path, "supervised", "--organization-id", "org_rt", "--restart", "on-failure")
    assert made["restart_policy"] == "on-failure" and made["healthy"] is True
    assert "tunnel_core.runtimes.supervisor" in made["command"]
    first_pid = made["pid"]
    assert made["process"]["pid"] != first_pid  # the record holds the supervisor; pid is the runtime itself

    os.kill(first_pid, signal.SIGKILL)
    back = wait_until(lambda: (s := status(run, "supervised"))["pid"] not in (None, first_pid) and s["ready"] and s,
                      what="the restarted runtime")
    assert back["process_running"] is True and back["restarts"] == 1
    assert back["local"]["supervisor"]["last_exit_code"] == -signal.SIGKILL
    assert mcp_echo(service, made["tunnel"]["id"], "after restart")["result"]["content"][0]["text"] == "after restart"

    stopped = run("runtimes", "stop", "supervised", "--json").json()
    assert stopped["stopped"] is True and stopped["already_stopped"] is False
    for pid in (made["process"]["pid"], back["pid"]):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert status(run, "supervised")["runtime_state"] == "stopped"


def test_concurrent_connects_of_one_alias_start_one_daemon(service: Service, keys: Keys, tmp_path: Path,
                                                           env: dict[str, str], run: Run) -> None:
    argv = [TUNNEL_CLIENT, "runtimes", "--json", "connect", "--alias", "shared", "--organization-id", "org_rt",
            "--profile-dir", str(tmp_path / "profiles"), "--mcp-command", MCP_COMMAND]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
             for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=90)
        assert p.returncode == 0, err.decode()
        assert_no_secrets(keys, texts=[out.decode(), err.decode()])
        results.append(json.loads(out))
    assert sorted(r["launched"] for r in results) == [False, True]
    assert sorted(r["already_running"] for r in results) == [False, True]
    assert results[0]["pid"] == results[1]["pid"]
    assert results[0]["tunnel"]["id"] == results[1]["tunnel"]["id"]
    assert len(runtime_processes(str(tmp_path))) == 1
    listed = run("admin", "--json", "tunnels", "list", "--organization-id", "org_rt").json()["tunnels"]
    assert [t["name"] for t in listed].count("shared") == 1  # one remote tunnel too
    assert run("runtimes", "stop", "shared").code == 0


def test_a_runtime_that_cannot_start_exits_2_with_diagnostics(run: Run, tmp_path: Path, keys: Keys) -> None:
    badkey = tmp_path / "bad.key"
    badkey.write_text("not a valid key\n")
    r = run("runtimes", "--json", "connect", "--alias", "broken", "--organization-id", "org_rt",
            "--profile-dir", str(tmp_path / "profiles"), "--mcp-command", MCP_COMMAND,
            "--runtime-api-key", f"file:{badkey}")
    assert r.code == 2
    data = r.json()
    assert data["healthy"] is False and data["launched"] is True
    diag = data["launch_diagnostics"]
    assert diag["exit_code"] == 1 and "characters outside" in diag["log_tail"]
    assert "not a valid key" not in r.out
    text = run("runtimes", "connect", "--alias", "broken", "--organization-id", "org_rt", "--profile-dir",
               str(tmp_path / "profiles"), "--mcp-command", MCP_COMMAND, "--runtime-api-key", f"file:{badkey}")
    assert text.code == 2 and "did not answer /healthz" in text.err and "last log lines" in text.err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--mcp-command", "server --api-key literalsecret1"], "inline secret material"),
        (["--mcp-server-url", "https://user:pw@mcp.example.com/mcp"], "inline secret material"),
        (["--mcp-server-url", "ftp://mcp.example.com"], "must be an http or https URL"),
        ([], "connect requires --mcp-server-url or --mcp-command"),
        (["--mcp-command", "x", "--runtime-api-key", "literal_runtime_key"], "--runtime-api-key must be an env:NAME"),
        (["--mcp-command", "x", "--tunnel-id", "tunnel_BAD"], "--tunnel-id"),
        (["--mcp-command", "x", "--organization-id", "a", "--workspace-id", "b"], "not both"),
    ],
)
def test_connect_refuses_bad_input_before_touching_anything(run: Run, tmp_path: Path, flags: list[str],
                                                            message: str) -> None:
    r = run("runtimes", "connect", "--alias", "nope", "--profile-dir", str(tmp_path / "profiles"), *flags)
    assert r.code == 1 and message in r.err
    assert "literalsecret1" not in r.err and "literal_runtime_key" not in r.err and ":pw@" not in r.err
    assert not (tmp_path / "profiles").exists()


def test_cleanup_classifies_aliases_and_applies_only_to_stale_ones(run: Run, tmp_path: Path) -> None:
    assert run("runtimes", "create", "--alias", "only-alias", "--organization-id", "org_rt").code == 0
    connect(run, tmp_path, "kept-profile", "--organization-id", "org_rt")
    assert run("runtimes", "stop", "kept-profile").code == 0
    connect(run, tmp_path, "lost-profile", "--organization-id", "org_rt")
    assert run("runtimes", "stop", "lost-profile").code == 0
    (tmp_path / "profiles" / "lost-profile.yaml").unlink()
    connect(run, tmp_path, "live", "--organization-id", "org_rt")

    dry = run("runtimes", "cleanup", "--json").json()
    assert {e["alias"]: e["classification"] for e in dry["entries"]} == {
        "kept-profile": "valid_profile", "live": "live_runtime", "lost-profile": "missing_profile",
        "only-alias": "stale_alias"}
    assert dry["removed"] == [] and dry["apply"] is False
    assert run("runtimes", "cleanup").out.endswith(
        "Dry run only. Re-run with --apply to remove entries classified as stale_alias.\n")
    applied = run("runtimes", "cleanup", "--apply", "--json").json()
    assert applied["removed"] == ["only-alias"]
    assert [a["alias"] for a in run("runtimes", "list", "--json").json()["aliases"]] == [
        "kept-profile", "live", "lost-profile"]
    assert run("runtimes", "stop", "live").code == 0


def test_admin_profile_used_by_a_runtime_cannot_be_deleted(run: Run, tmp_path: Path) -> None:
    assert run("runtimes", "create", "--alias", "team-svc", "--organization-id", "org_rt",
               "--admin-profile", "team").code == 0
    listed = run("admin-profiles", "list", "--json").json()
    assert [p["name"] for p in listed["profiles"]] == ["team"] and listed["active_profile"] == "team"
    assert listed["profiles"][0]["admin_key"] == "env:OPENAI_ADMIN_KEY"
    refused = run("admin-profiles", "delete", "team")
    assert refused.code == 1 and "still referenced by alias team-svc" in refused.err
    assert run("runtimes", "rm", "team-svc").code == 0
    assert run("admin-profiles", "delete", "team", "--json").json()["deleted_profile"] == "team"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_a_tmux_runtime_recorded_by_the_reference_is_observed_and_stopped(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sockets = Path(tempfile.mkdtemp(prefix="tmx"))
    monkeypatch.setenv("TMUX_TMPDIR", str(sockets))  # a private tmux server for this test
    name = "tunnel-mcp__legacy__0a1b2c3d"
    tmux = shutil.which("tmux") or "tmux"
    subprocess.run([tmux, "new-session", "-d", "-s", name, "sleep 600"], check=True, timeout=10)
    try:
        state = tmp_path / "state"
        state.mkdir(parents=True, exist_ok=True)
        tid = "tunnel_" + "7" * 32
        (state / "aliases.yaml").write_text(json.dumps({"legacy": {"alias": "legacy", "tunnel_id": tid}}))
        (state / "processes.yaml").write_text(json.dumps({"legacy": {
            "alias": "legacy", "tunnel_id": tid, "mode": "tmux", "session_name": name}}))
        seen = status(run, "legacy")
        assert seen["tmux"] == {"session_name": name, "running": True} and seen["process_running"] is True
        stopped = run("runtimes", "stop", "legacy", "--json").json()
        assert (stopped["stopped"], stopped["already_stopped"]) == (True, False)
        assert subprocess.run([tmux, "has-session", "-t", "=" + name], capture_output=True, timeout=10).returncode != 0
        assert status(run, "legacy")["tmux"]["running"] is False
        assert run("runtimes", "rm", "legacy").code == 0
    finally:
        subprocess.run([tmux, "kill-server"], capture_output=True, timeout=10)
        shutil.rmtree(sockets, ignore_errors=True)
