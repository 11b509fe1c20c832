"""`doctor` against real local servers: the local tunnel service and the demo MCP server as subprocesses."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli_helpers import clean_env, cli, cli_subprocess, free_port, running

TID = "tunnel_" + "e5" * 16
OTHER_TID = "tunnel_" + "f6" * 16
KEY = "rk_doctor_" + "k3y" * 8

HTTP_ORDER = [
    "config_source", "profile_load", "tunnel_id", "control_plane_api_key", "tunnels_management_url",
    "runtime_api_keys_url", "admin_api_keys_url", "chatgpt_connector_settings_url", "mcp_target",
    "mcp_server_reachable", "oauth_metadata", "health_listener", "ui", "codex_plugin",
]


@dataclass(frozen=True)
class Local:
    service_url: str
    mcp_url: str


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Local]:
    home = tmp_path_factory.mktemp("servers")
    service_port, stub_port = free_port(), free_port()
    with running(["dev", "tunnel-service", "--listen", f"127.0.0.1:{service_port}", "--tunnel-id", TID],
                 clean_env(home, CONTROL_PLANE_API_KEY=KEY)) as service, \
            running(["dev", "mcp-stub", "--listen-addr", f"127.0.0.1:{stub_port}"], clean_env(home)) as stub:
        service.wait_line(r"^Tunnel service: ")
        mcp = stub.wait_line(r"^MCP URL: (\S+)").group(1)
        yield Local(f"http://127.0.0.1:{service_port}", mcp)


def make_profile(home: Path, local: Local, name: str = "local", mcp_url: str | None = None,
                 tunnel_id: str = TID) -> dict[str, str]:
    env = clean_env(home, CONTROL_PLANE_API_KEY=KEY)
    r = cli(["init", "--profile", name, "--tunnel-id", tunnel_id, "--control-plane-base-url", local.service_url,
             "--mcp-server-url", mcp_url or local.mcp_url, "--health-listen-addr", "127.0.0.1:0"], env)
    assert r.code == 0, r
    return env


def check_lines(out: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^CHECK (\S+)\s+(PASS|FAIL|SKIP|WARN) ", out, re.M)]


def test_doctor_passes_against_local_service_and_demo_server(tmp_path: Path, local: Local) -> None:
    env = make_profile(tmp_path, local)
    r = cli(["doctor", "--profile", "local"], env)
    assert r.code == 0, r.out
    got = check_lines(r.out)
    assert [c for c, _ in got] == HTTP_ORDER
    assert all(s == "PASS" for c, s in got if c != "codex_plugin")
    assert "CHECK mcp_server_reachable     PASS HTTP " in r.out
    assert "/.well-known/oauth-protected-resource/mcp; authorization server " in r.out
    tail = r.out.splitlines()[-2:]
    assert tail == ["RESULT ok", "NEXT   tunnel-client run --profile local"]
    assert KEY not in r.out + r.err


def test_doctor_online_confirms_key_and_tunnel(tmp_path: Path, local: Local) -> None:
    env = make_profile(tmp_path, local)
    r = cli(["doctor", "--profile", "local", "--online", "--json"], env)
    report = json.loads(r.out)
    assert r.code == 0 and report["result"] == "ok", r.out
    online, initialize = report["checks"][-2:]
    assert online["id"] == "control_plane_online" and online["status"] == "PASS"
    assert initialize == {"id": "mcp_initialize", "status": "PASS",
                          "summary": f"MCP server {local.mcp_url} answered initialize", "why": "", "evidence": [],
                          "next": []}
    assert set(report) == {"result", "failed_checks", "next", "checks"}


@pytest.mark.parametrize(
    ("case", "tunnel_id", "env_key", "summary", "advice"),
    [
        ("wrong key", TID, "rk_wrong_key_value", "runtime key rejected (HTTP 401 invalid_api_key)", "api-keys"),
        ("unknown tunnel", OTHER_TID, KEY, f"tunnel {OTHER_TID} not found (HTTP 404 tunnel_not_found)",
         "copy the exact tunnel id"),
    ],
)
def test_doctor_online_reports_auth_and_tunnel_problems(
    tmp_path: Path, local: Local, case: str, tunnel_id: str, env_key: str, summary: str, advice: str
) -> None:
    env = make_profile(tmp_path, local, tunnel_id=tunnel_id)
    env["CONTROL_PLANE_API_KEY"] = env_key
    r = cli(["doctor", "--profile", "local", "--online", "--explain"], env)
    assert r.code == 2
    assert f"CHECK control_plane_online     FAIL {summary}" in r.out
    assert "FAILED_CHECKS control_plane_online" in r.out and "EXIT_CODE 2" in r.out
    explain = r.out.split("\nCHECK control_plane_online   FAIL\n", 1)[1]
    assert "Why this matters:" in explain and "Evidence:" in explain and "What to do next:" in explain
    assert advice in explain
    assert env_key not in r.out + r.err


def test_doctor_fails_for_a_down_mcp_server_with_explanations(tmp_path: Path, local: Local) -> None:
    dead = f"http://127.0.0.1:{free_port()}/mcp"
    env = make_profile(tmp_path, local, mcp_url=dead)
    r = cli(["doctor", "--profile", "local", "--explain"], env)
    assert r.code == 2
    assert ("mcp_server_reachable", "FAIL") in check_lines(r.out)
    assert ("oauth_metadata", "SKIP") in check_lines(r.out)
    assert "RESULT fail\nFAILED_CHECKS mcp_server_reachable\nEXIT_CODE 2\n" in r.out
    assert "\nCHECK mcp_server_reachable   FAIL\nWhy this matters:\n" in r.out
    assert "  1. start the MCP server" in r.out


@pytest.mark.parametrize(
    ("argv", "env", "failed"),
    [
        (["--profile", "local", "--config", "x.yaml"], {}, "config_source"),
        (["--profile", "absent"], {}, "profile_load"),
        (["--profile", "local"], {"CONTROL_PLANE_API_KEY": ""}, "control_plane_api_key"),
        (["--profile", "local", "--control-plane.tunnel-id", "tunnel_NOPE"], {}, "tunnel_id"),
        (["--profile", "local", "--health.listen-addr", "127.0.0.1:99999"], {}, "health_listener"),
        (["--profile", "local", "--control-plane.poll-timeout", "soon"], {}, "config_validation"),
    ],
)
def test_doctor_bad_inputs_exit_2_with_the_failed_check(
    tmp_path: Path, local: Local, argv: list[str], env: dict[str, str], failed: str
) -> None:
    base = make_profile(tmp_path, local)
    base.update(env)
    r = cli(["doctor", *argv], base)
    assert r.code == 2, r.out
    assert f"FAILED_CHECKS {failed}\n" in r.out
    report = json.loads(cli(["doctor", *argv, "--json"], base).out)
    assert report["result"] == "fail" and report["failed_checks"] == [failed] and report["next"] == ""


def test_doctor_as_subprocess_exit_codes(tmp_path: Path, local: Local) -> None:
    env = make_profile(tmp_path, local)
    ok = cli_subprocess(["doctor", "--profile", "local"], env)
    assert ok.code == 0 and "RESULT ok" in ok.out
    bad = cli_subprocess(["doctor", "--profile", "nope"], env)
    assert bad.code == 2 and "FAILED_CHECKS profile_load" in bad.out

