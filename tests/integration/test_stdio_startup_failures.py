"""A stdio MCP server that cannot start fails loudly and early: /readyz, the log and the caller's 502 all
carry the cause in words. Real ``tunnel-client run`` and ``dev proxy`` processes with real children."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.support.faulty import STDIO_COMMAND, FaultyService, Session, result_text, wait_until
from tests.support.proc import TUNNEL_CLIENT, Proc, base_env
from tests.support.tunnel import ClientRun

MODULE = "no_such_module_for_tunnel_tests"
# Exits 10 ms after start, having said why on stderr, without ever reading stdin.
DIES_EARLY = f'{sys.executable} -c "import sys,time; time.sleep(0.01); sys.stderr.write(\'boom: config missing\\n\'); sys.exit(3)"'


def readyz_failure(run: ClientRun, needle: str) -> str:
    def failing() -> str | None:
        r = run.get("/readyz")
        return r.text if r.status_code == 503 and needle in r.text else None

    text: str = wait_until(failing, f"/readyz to report {needle!r}")
    return text


def front_door_failure(faulty: FaultyService, run: ClientRun) -> dict[str, Any]:
    resp = Session(faulty.mcp_url(run.tunnel_id)).post(
        {"jsonrpc": "2.0", "id": 5, "method": "tools/list"})
    assert resp.status_code == 502, resp.text
    failure: dict[str, Any] = resp.json()["error"]["data"]["tunnel_failure"]
    return failure


def failure_lines(run: ClientRun) -> list[dict[str, Any]]:
    return [r for r in run.proc.log_records() if r.get("msg") == "stdio MCP server not running; retrying"]


def test_missing_executable_is_named_in_readyz_log_and_502(relay_on: Any, faulty: FaultyService) -> None:
    run = relay_on("--mcp.command", "no-such-server --stdio")
    assert readyz_failure(run, "executable") == "mcp probe failed: executable not found: no-such-server"
    failure = front_door_failure(faulty, run)
    assert failure["detail"] == "executable not found: no-such-server"
    assert failure["source"] == "connect"
    # Several attempts have failed by now, but the log says it once per backoff step, not per attempt.
    wait_until(lambda: failure_lines(run) and failure_lines(run)[-1]["attempts"] >= 4, "four failed attempts")
    attempts = [r["attempts"] for r in failure_lines(run)]
    assert attempts[:3] == [1, 2, 4] and all(n & (n - 1) == 0 for n in attempts)  # 1, 2, 4, 8, ...
    lines = failure_lines(run)
    assert all(r["cause"] == "executable not found: no-such-server" and "retry_in_ms" in r for r in lines)
    assert not any(r.get("msg") == "mcp startup probe" and r.get("probe_status") == "ok" for r in run.proc.log_records())


def test_missing_module_shows_the_interpreters_words(relay_on: Any, faulty: FaultyService) -> None:
    run = relay_on("--mcp.command", f"{sys.executable} -m {MODULE}")
    text = readyz_failure(run, MODULE)
    assert text.startswith("mcp probe failed: exited with code 1 before answering initialize: ")
    assert f"No module named {MODULE}" in text
    failure = front_door_failure(faulty, run)
    assert f"No module named {MODULE}" in failure["detail"]
    assert failure["detail"].startswith("exited with code 1 before answering initialize")


def test_child_dying_10ms_after_start_is_never_reported_ready(relay_on: Any, faulty: FaultyService) -> None:
    run = relay_on("--mcp.command", DIES_EARLY)
    text = readyz_failure(run, "boom")
    assert "exited with code 3 before answering initialize: boom: config missing" in text
    probes = [r for r in run.proc.log_records() if r.get("msg") == "mcp startup probe"]
    assert probes and all(r["probe_status"] == "failed" for r in probes)
    assert "boom: config missing" in front_door_failure(faulty, run)["detail"]


def test_probe_answers_before_ready_and_callers_sessions_are_untouched(
    relay_on: Any, faulty: FaultyService, tmp_path: Path
) -> None:
    log = tmp_path / "child.log"
    run = relay_on("--mcp.command", STDIO_COMMAND, env={"STDIO_TEST_LOG": str(log)})
    run.wait_readyz()
    probe = run.proc.wait_log("mcp startup probe")
    assert probe["probe_status"] == "ok"
    # The child saw the relay's own initialize (an internal id), before any caller.
    first = log.read_text().splitlines()[0]
    assert '"method": "initialize"' in first and '"tc-probe-' in first
    s = Session(faulty.mcp_url(run.tunnel_id))
    assert s.initialize().json()["id"] == 0
    assert result_text(s.call("echo", {"text": "after the probe"})) == "after the probe"


def test_dev_proxy_with_a_missing_program_exits_1_with_the_cause_and_no_url(tmp_path: Path) -> None:
    proc = Proc([TUNNEL_CLIENT, "dev", "proxy", "--mcp-command", "no-such-server --stdio"], base_env(tmp_path))
    try:
        assert proc.wait() == 1
        out = proc.output()
        assert "MCP URL" not in out
        assert proc.stderr.lines[-1] == (
            "tunnel-client: the tunnel is not ready: mcp probe failed: executable not found: no-such-server; "
            "fix the MCP target (or give a slow server more time with --readiness-timeout)")
        assert "Traceback" not in out
    finally:
        proc.kill()
