"""doctor: check ids and order, config-error mapping, stdio and listener checks, OAuth metadata rules."""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import httpx2
import pytest

from tunnel_core.ops import doctor_checks
from tunnel_core.ops.doctor import DoctorReport, run_doctor
from tunnel_core.ops.profiles import write_profile_file
from tunnel_core.ops.samples import SampleRequest, render_sample

TID = "tunnel_" + "c3" * 16
KEY = "rk_unit_" + "s3cr3t" * 4
PAGES = ["tunnels_management_url", "runtime_api_keys_url", "admin_api_keys_url", "chatgpt_connector_settings_url"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "server.py").write_text("import sys\nsys.stdin.read()\n")
    return tmp_path


def base_env(home: Path, **extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), **extra}


def stdio_flags(home: Path, **extra: object) -> dict[str, object]:
    return {
        "cfg__control_plane__tunnel_id": TID,
        "cfg__mcp__commands": [f"{sys.executable} {home / 'server.py'}"],
        "cfg__health__listen_addr": "127.0.0.1:0",
        **extra,
    }


def ids(report: DoctorReport) -> list[tuple[str, str]]:
    return [(c.id, c.status) for c in report.checks]


def test_stdio_configuration_passes_in_reference_order(home: Path) -> None:
    report = run_doctor(stdio_flags(home), base_env(home, CONTROL_PLANE_API_KEY=KEY))
    assert ids(report) == [
        ("config_source", "PASS"), ("profile_load", "PASS"), ("tunnel_id", "PASS"),
        ("control_plane_api_key", "PASS"), *[(p, "PASS") for p in PAGES], ("mcp_target", "PASS"),
        ("mcp_command_executable", "PASS"), ("mcp_server_reachable", "SKIP"), ("oauth_metadata", "SKIP"),
        ("health_listener", "PASS"), ("ui", "PASS"), ("codex_plugin", "SKIP"),
    ]
    assert report.result == "ok" and report.failed_checks == [] and report.next == "tunnel-client run"
    assert report.checks[3].summary == "env:CONTROL_PLANE_API_KEY"
    assert report.checks[9].summary == os.path.abspath(sys.executable)  # as given, not through symlinks
    assert KEY not in report.model_dump_json()


def test_profile_selection_drives_summary_and_next_command(home: Path) -> None:
    d = home / "profiles"
    text = render_sample("sample_mcp_stdio_local", SampleRequest(
        tunnel_id=TID, mcp_command=f"{sys.executable} {home / 'server.py'}", health_listen_addr="127.0.0.1:0"))
    write_profile_file(d / "local.yaml", text, force=False)
    report = run_doctor({"profile": "local", "profile_dir": str(d)}, base_env(home, CONTROL_PLANE_API_KEY=KEY))
    assert report.result == "ok", ids(report)
    assert report.checks[0].summary == "profile: local"
    assert report.checks[1].summary == str(d / "local.yaml")
    assert report.next == f"tunnel-client run --profile local --profile-dir {d}"


def _profile(home: Path, text: str) -> dict[str, object]:
    d = home / "profiles"
    write_profile_file(d / "p.yaml", text, force=True)
    return {"profile": "p", "profile_dir": str(d)}


GOOD_PROFILE = render_sample("sample_mcp_remote_no_auth", SampleRequest(tunnel_id=TID, mcp_server_url="http://127.0.0.1:9/mcp"))

CASES: list[tuple[str, Callable[[Path], dict[str, object]], dict[str, str], str]] = [
    ("flags exclusive", lambda h: {"profile": "a", "config": "b.yaml"}, {}, "config_source"),
    ("env exclusive", lambda h: {}, {"TUNNEL_CLIENT_PROFILE": "a", "TUNNEL_CLIENT_CONFIG": "b"}, "config_source"),
    ("bad profile name", lambda h: {"profile": "../x"}, {}, "config_source"),
    ("missing profile", lambda h: {"profile": "absent"}, {}, "profile_load"),
    ("missing config", lambda h: {"config": str(h / "none.yaml")}, {}, "profile_load"),
    ("unknown key", lambda h: _profile(h, GOOD_PROFILE + "colour: blue\n"), {}, "profile_load"),
    ("unknown mcp key", lambda h: _profile(h, GOOD_PROFILE.replace("  server_urls:", "  server_url:")), {},
     "profile_load"),
    ("unknown key key", lambda h: _profile(h, GOOD_PROFILE.replace("  api_key:", "  api_keys:")), {}, "profile_load"),
    ("no tunnel id", lambda h: stdio_flags(h, cfg__control_plane__tunnel_id=None), {}, "tunnel_id"),
    ("malformed tunnel id", lambda h: stdio_flags(h, cfg__control_plane__tunnel_id="tunnel_1"), {}, "tunnel_id"),
    ("no key", lambda h: stdio_flags(h), {"CONTROL_PLANE_API_KEY": ""}, "control_plane_api_key"),
    ("key ref unset", lambda h: stdio_flags(h, cfg__control_plane__api_key="env:NOT_SET_ANYWHERE"), {},
     "control_plane_api_key"),
    ("raw key flag", lambda h: stdio_flags(h, cfg__control_plane__api_key=KEY), {}, "control_plane_api_key"),
    ("bad base url", lambda h: stdio_flags(h, cfg__control_plane__base_url="ftp://x"), {}, "control_plane_base_url"),
    ("no target", lambda h: stdio_flags(h, cfg__mcp__commands=None), {}, "mcp_target"),
    ("stdio missing", lambda h: stdio_flags(h, cfg__mcp__commands=["no-such-mcp-server-xyz --stdio"]), {},
     "mcp_command_executable"),
    ("bad duration", lambda h: stdio_flags(h, cfg__control_plane__poll_timeout="soon"), {}, "config_validation"),
]


@pytest.mark.parametrize(("case", "flags", "env", "failed"), CASES, ids=[c[0] for c in CASES])
def test_each_broken_input_fails_one_named_check(
    home: Path, case: str, flags: Callable[[Path], dict[str, object]], env: dict[str, str], failed: str
) -> None:
    environment = base_env(home, CONTROL_PLANE_API_KEY=KEY)
    environment.update(env)
    report = run_doctor(flags(home), environment)
    assert report.result == "fail"
    assert report.failed_checks == [failed]
    assert report.next == ""
    bad = next(c for c in report.checks if c.status == "FAIL")
    assert bad.why and bad.next and bad.evidence
    assert KEY not in report.model_dump_json()
    # the setup pages are always reported, right after the failing configuration check
    assert [c.id for c in report.checks if c.id in PAGES] == PAGES


def test_busy_health_port_fails_listener_and_skips_ui(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        report = run_doctor(stdio_flags(home, cfg__health__listen_addr=f"127.0.0.1:{port}"),
                            base_env(home, CONTROL_PLANE_API_KEY=KEY))
    assert ("health_listener", "FAIL") in ids(report) and ("ui", "SKIP") in ids(report)
    assert report.failed_checks == ["health_listener"]


def test_fixed_port_reports_ui_url(home: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    report = run_doctor(stdio_flags(home, cfg__health__listen_addr=f"127.0.0.1:{port}"),
                        base_env(home, CONTROL_PLANE_API_KEY=KEY))
    ui = next(c for c in report.checks if c.id == "ui")
    assert ui.summary == f"http://127.0.0.1:{port}/ui"


def test_literal_key_in_profile_is_a_warning_not_a_failure(home: Path) -> None:
    text = render_sample("sample_mcp_stdio_local", SampleRequest(
        tunnel_id=TID, mcp_command=f"{sys.executable} {home / 'server.py'}", health_listen_addr="127.0.0.1:0"))
    flags = _profile(home, text.replace('"env:CONTROL_PLANE_API_KEY"', f'"{KEY}"'))
    report = run_doctor(flags, base_env(home))
    key = next(c for c in report.checks if c.id == "control_plane_api_key")
    assert key.status == "WARN" and report.result == "ok"
    assert KEY not in report.model_dump_json()


@pytest.mark.parametrize("installed", [False, True])
def test_codex_plugin_detection(home: Path, installed: bool) -> None:
    codex = home / "codex-home"
    codex.mkdir()
    if installed:
        manifest = codex / "plugins/cache/debug/tunnel-mcp/local/.codex-plugin/plugin.json"
        manifest.parent.mkdir(parents=True)
        manifest.write_text("{}")
    check = doctor_checks.codex_plugin({"CODEX_HOME": str(codex), "PATH": "/nonexistent"})
    assert check.status == ("PASS" if installed else "SKIP")
    if not installed:
        assert "tunnel-client codex plugin install" in check.summary


def test_codex_absent_is_skip() -> None:
    check = doctor_checks.codex_plugin({"CODEX_HOME": "/nonexistent/codex", "PATH": "/nonexistent"})
    assert (check.status, check.summary) == ("SKIP", "Codex not detected locally")


def test_report_json_shape(home: Path) -> None:
    data = json.loads(run_doctor({"profile": "absent"}, base_env(home)).model_dump_json())
    assert set(data) == {"result", "failed_checks", "next", "checks"}
    assert all(set(c) == {"id", "status", "summary", "why", "evidence", "next"} for c in data["checks"])


# ---------------------------------------------------------------------------- OAuth metadata (mock transport)

MCP = "http://mcp.internal:3001/mcp"
PRMD_PATH = "http://mcp.internal:3001/.well-known/oauth-protected-resource/mcp"
PRMD_ROOT = "http://mcp.internal:3001/.well-known/oauth-protected-resource"
ASM_ROOT = "http://mcp.internal:3001/.well-known/oauth-authorization-server"
PRMD_DOC = {"resource": MCP, "authorization_servers": ["http://mcp.internal:3001"]}
ASM_DOC = {"issuer": "http://mcp.internal:3001", "token_endpoint": "http://mcp.internal:3001/token"}


def mock(routes: dict[str, tuple[int, object]], challenge: str | None = None) -> httpx2.Client:
    def handle(request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        if url == MCP:
            if challenge is not None:
                return httpx2.Response(401, headers={"WWW-Authenticate": challenge})
            return httpx2.Response(405)
        status, body = routes.get(url, (404, None))
        if isinstance(body, (dict, list)):
            return httpx2.Response(status, json=body)
        return httpx2.Response(status, content=(body or "").encode() if isinstance(body, str) else b"")

    return httpx2.Client(transport=httpx2.MockTransport(handle))


OAUTH_CASES = [
    ("nothing published", {}, None, "PASS", "no OAuth metadata published"),
    ("path + asm", {PRMD_PATH: (200, PRMD_DOC), ASM_ROOT: (200, ASM_DOC)}, None, "PASS", f"protected resource {PRMD_PATH}"),
    ("root + asm", {PRMD_ROOT: (200, PRMD_DOC), ASM_ROOT: (200, ASM_DOC)}, None, "PASS", f"protected resource {PRMD_ROOT}"),
    ("openid fallback", {PRMD_PATH: (200, PRMD_DOC),
                         "http://mcp.internal:3001/.well-known/openid-configuration": (200, ASM_DOC)}, None, "PASS",
     "openid-configuration"),
    ("prmd 500", {PRMD_PATH: (500, "boom")}, None, "FAIL", "HTTP 500"),
    ("prmd not json", {PRMD_PATH: (200, "<html>")}, None, "FAIL", "not JSON"),
    ("prmd no resource", {PRMD_PATH: (200, {"authorization_servers": ["x"]})}, None, "FAIL", "without a resource"),
    ("prmd no servers", {PRMD_PATH: (200, {"resource": MCP})}, None, "FAIL", "names no authorization_servers"),
    ("asm missing", {PRMD_PATH: (200, PRMD_DOC)}, None, "FAIL", "authorization server metadata"),
    ("challenge url", {"http://auth.internal/prm": (200, PRMD_DOC), ASM_ROOT: (200, ASM_DOC)},
     'Bearer realm="x", resource_metadata="http://auth.internal/prm"', "PASS", "http://auth.internal/prm"),
    ("challenge but 404", {}, 'Bearer resource_metadata="http://auth.internal/prm"', "FAIL", "HTTP 404"),
]


@pytest.mark.parametrize(("case", "routes", "challenge", "status", "text"), OAUTH_CASES, ids=[c[0] for c in OAUTH_CASES])
def test_oauth_metadata_rules(case: str, routes: dict[str, tuple[int, object]], challenge: str | None,
                              status: str, text: str) -> None:
    with mock(routes, challenge) as client:
        check = doctor_checks.oauth_metadata(MCP, client)
    assert check.status == status, check
    assert text in check.summary
    if status == "FAIL":
        assert check.why and check.evidence and check.next


@pytest.mark.parametrize(
    ("url", "probe", "expected"),
    [
        ("https://h/mcp", None, ["https://h/.well-known/oauth-protected-resource/mcp",
                                 "https://h/.well-known/oauth-protected-resource"]),
        ("https://h/", None, ["https://h/.well-known/oauth-protected-resource"]),
        ("https://h/a/b/", "https://x/p", ["https://x/p", "https://h/.well-known/oauth-protected-resource/a/b",
                                           "https://h/.well-known/oauth-protected-resource"]),
        ("https://h/.well-known/oauth-protected-resource/mcp", None,
         ["https://h/.well-known/oauth-protected-resource/mcp", "https://h/.well-known/oauth-protected-resource"]),
    ],
)
def test_prmd_candidates(url: str, probe: str | None, expected: list[str]) -> None:
    assert doctor_checks.prmd_candidates(url, probe) == expected


def test_asm_candidates_for_issuer_with_path() -> None:
    assert doctor_checks.asm_candidates("https://idp/tenant1") == [
        "https://idp/tenant1/.well-known/oauth-authorization-server",
        "https://idp/.well-known/oauth-authorization-server/tenant1",
        "https://idp/tenant1/.well-known/openid-configuration",
        "https://idp/.well-known/openid-configuration/tenant1",
    ]


def test_reachable_means_any_http_status() -> None:
    with mock({}) as client:
        check = doctor_checks.mcp_server_reachable(MCP, client)
    assert (check.status, check.summary) == ("PASS", f"HTTP 405 from {MCP}")


def test_unreachable_server_fails_with_evidence() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connections are refused
        with doctor_checks.http_client() as client:
            check = doctor_checks.mcp_server_reachable(f"http://127.0.0.1:{port}/mcp", client)
    assert check.status == "FAIL" and "refused" in check.summary.lower()


@pytest.mark.parametrize("how", ["env profile", "env profile file", "flag profile file", "env config"])
def test_file_selection_equivalents(home: Path, how: str) -> None:
    d = home / ".config" / "tunnel-client"
    text = render_sample("sample_mcp_stdio_local", SampleRequest(
        tunnel_id=TID, mcp_command=f"{sys.executable} {home / 'server.py'}", health_listen_addr="127.0.0.1:0"))
    write_profile_file(d / "sel.yaml", text, force=False)
    path = str(d / "sel.yaml")
    flags: dict[str, object] = {}
    env = base_env(home, CONTROL_PLANE_API_KEY=KEY)
    expected = {
        "env profile": ("profile: sel", "tunnel-client run --profile sel"),
        "env profile file": (f"profile file: {path}", f"tunnel-client run --profile-file {path}"),
        "flag profile file": (f"profile file: {path}", f"tunnel-client run --profile-file {path}"),
        "env config": (path, f"tunnel-client run --config {path}"),
    }[how]
    if how == "env profile":
        env["TUNNEL_CLIENT_PROFILE"] = "sel"
    elif how == "env profile file":
        env["TUNNEL_CLIENT_PROFILE_FILE"] = path
    elif how == "flag profile file":
        flags["profile_file"] = path
        env["TUNNEL_CLIENT_CONFIG"] = "/ignored/because/flags/win.yaml"
    else:
        env["TUNNEL_CLIENT_CONFIG"] = path
    report = run_doctor(flags, env)
    assert report.result == "ok", ids(report)
    assert (report.checks[0].summary, report.next) == expected


def test_every_mistake_is_reported_in_one_run(home: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        report = run_doctor({"cfg__control_plane__tunnel_id": "tunnel_bad", "cfg__control_plane__base_url": "not-a-url",
                             "cfg__mcp__server_urls": ["ftp://x"], "cfg__health__listen_addr": f"127.0.0.1:{port}",
                             "cfg__control_plane__poll_timeout": "soon"}, base_env(home))
    assert ids(report) == [
        ("config_source", "PASS"), ("profile_load", "PASS"), ("tunnel_id", "FAIL"), ("control_plane_api_key", "FAIL"),
        ("control_plane_base_url", "FAIL"), *[(p, "PASS") for p in PAGES], ("mcp_target", "FAIL"),
        ("mcp_server_reachable", "SKIP"), ("oauth_metadata", "SKIP"), ("health_listener", "FAIL"), ("ui", "SKIP"),
        ("codex_plugin", "SKIP"), ("config_validation", "FAIL"),
    ]
    assert report.failed_checks == ["tunnel_id", "control_plane_api_key", "control_plane_base_url", "mcp_target",
                                    "health_listener", "config_validation"]
    rows = {c.id: c for c in report.checks}
    assert "'ftp://x' is not an absolute http(s) URL" in rows["mcp_target"].summary
    assert "invalid duration 'soon'" in rows["config_validation"].summary
    assert "Address already in use" in rows["health_listener"].summary


def test_a_file_that_does_not_load_gives_one_profile_load_row_and_skips_the_rest(home: Path) -> None:
    report = run_doctor(_profile(home, GOOD_PROFILE + "colour: blue\n"), base_env(home, CONTROL_PLANE_API_KEY=KEY))
    assert [c.id for c in report.checks].count("profile_load") == 1
    assert report.failed_checks == ["profile_load"]
    skipped = [c.id for c in report.checks if c.status == "SKIP" and c.summary == "blocked by the profile_load check"]
    assert skipped == ["tunnel_id", "control_plane_api_key", "mcp_target", "mcp_server_reachable", "oauth_metadata",
                       "health_listener", "ui"]


def test_rerun_hints_keep_the_profile(home: Path) -> None:
    text = render_sample("sample_mcp_stdio_local", SampleRequest(
        tunnel_id=TID, mcp_command="no-such-mcp-server-xyz --stdio", health_listen_addr="127.0.0.1:0"))
    flags = _profile(home, text.replace(TID, "tunnel_1"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        flags["cfg__health__listen_addr"] = f"127.0.0.1:{busy.getsockname()[1]}"
        report = run_doctor(flags, base_env(home, CONTROL_PLANE_API_KEY=KEY))
    want = f"tunnel-client doctor --profile p --profile-dir {home / 'profiles'}"
    hints = {c.id: [n for n in c.next if n.startswith("rerun:")] for c in report.checks if c.status == "FAIL"}
    assert set(hints) == {"tunnel_id", "mcp_command_executable", "health_listener"}
    assert all(h and h[0].startswith(f"rerun: {want}") for h in hints.values()), hints


def test_raw_key_in_the_profile_warns_even_when_the_environment_has_one(home: Path) -> None:
    text = render_sample("sample_mcp_stdio_local", SampleRequest(
        tunnel_id=TID, mcp_command=f"{sys.executable} {home / 'server.py'}", health_listen_addr="127.0.0.1:0"))
    flags = _profile(home, text.replace('"env:CONTROL_PLANE_API_KEY"', '"fake-rawkeyinfile-not-a-secret"'))
    report = run_doctor(flags, base_env(home, CONTROL_PLANE_API_KEY=KEY))
    key = next(c for c in report.checks if c.id == "control_plane_api_key")
    assert key.status == "WARN" and "env:CONTROL_PLANE_API_KEY is used, but the file still holds a key" in key.summary
    assert "rawkeyinfile" not in report.model_dump_json() and KEY not in report.model_dump_json()


def test_python_module_that_the_interpreter_cannot_import_fails(home: Path) -> None:
    missing = run_doctor(stdio_flags(home, cfg__mcp__commands=[f"{sys.executable} -m no_such_module_xyz"]),
                         base_env(home, CONTROL_PLANE_API_KEY=KEY))
    row = next(c for c in missing.checks if c.id == "mcp_command_executable")
    assert row.status == "FAIL" and "'no_such_module_xyz' is not importable by" in row.summary
    assert sys.executable in row.summary
    present = run_doctor(stdio_flags(home, cfg__mcp__commands=[f"{sys.executable} -m json.tool"]),
                         base_env(home, CONTROL_PLANE_API_KEY=KEY))
    assert next(c for c in present.checks if c.id == "mcp_command_executable").status == "PASS"
