"""`health` against a live `tunnel-client dev proxy` subprocess (its embedded client's operator listener)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.support.cli_helpers import Proc, clean_env, cli, cli_subprocess, running, wait_until


@dataclass(frozen=True)
class Proxy:
    proc: Proc
    url_file: Path
    base_url: str
    mcp_url: str


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    home = tmp_path_factory.mktemp("proxy")
    url_file = home / "health.url"
    with running(["dev", "proxy", "--health-url-file", str(url_file)], clean_env(home)) as proc:
        mcp_url = proc.wait_line(r"^MCP URL: (\S+)").group(1)
        base = proc.wait_line(r"^Health URL: (\S+)").group(1)
        yield Proxy(proc, url_file, base, mcp_url)


def test_url_file_locator_text_output(tmp_path: Path, proxy: Proxy) -> None:
    r = cli(["health", "--url-file", str(proxy.url_file)], clean_env(tmp_path))
    assert r.code == 0, r.out
    assert r.out.splitlines() == [
        f"Locator: url_file={proxy.url_file}",
        f"Base URL: {proxy.base_url}",
        f"UI URL: {proxy.base_url}/ui",
        f"Healthz: PASS | {proxy.base_url}/healthz | HTTP 200 | live",
        f"Readyz: PASS | {proxy.base_url}/readyz | HTTP 200 | ready",
        "Result: OK",
    ]


def test_json_fields(tmp_path: Path, proxy: Proxy) -> None:
    port = int(proxy.base_url.rsplit(":", 1)[1])
    r = cli(["health", "--port", str(port), "--json"], clean_env(tmp_path))
    data = json.loads(r.out)
    assert r.code == 0 and data["result"] == "ok"
    reference = {"locator", "process", "base_url", "ui_url", "healthz", "readyz", "control_plane_poll", "result"}
    assert set(data) == reference | {"hint"} and data["hint"] == ""  # hint: ours, set only on failure
    assert data["locator"] == {"kind": "port", "url": "", "url_file": "", "port": port,
                               "resolved_base_url": f"http://127.0.0.1:{port}", "error": ""}
    assert data["healthz"] == {"url": f"{proxy.base_url}/healthz", "ok": True, "status": 200, "body": "live",
                               "error": ""}
    assert data["process"] is None and data["control_plane_poll"] is None


def test_url_locator_accepts_an_endpoint_url_and_checks_the_pid(tmp_path: Path, proxy: Proxy) -> None:
    r = cli(["health", "--url", f"{proxy.base_url}/healthz", "--pid", str(proxy.proc.popen.pid)], clean_env(tmp_path))
    assert r.code == 0, r.out
    assert f"Process: PASS | pid={proxy.proc.popen.pid}" in r.out


def test_dead_pid_fails_the_result(tmp_path: Path, proxy: Proxy) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    pid_file = tmp_path / "pid"
    pid_file.write_text(f"{child.pid}\n")
    r = cli(["health", "--url", proxy.base_url, "--pid-file", str(pid_file), "--json"], clean_env(tmp_path))
    data = json.loads(r.out)
    assert r.code == 2 and data["result"] == "fail"
    assert data["process"] == {"pid": child.pid, "pid_file": str(pid_file), "running": False, "error": ""}


def test_control_plane_poll_requirement(tmp_path: Path, proxy: Proxy) -> None:
    # A front-door call makes the pending long poll return, which counts as a successful poll.
    initialize = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                  "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    resp = httpx2.post(proxy.mcp_url, json=initialize, headers={"Accept": "application/json, text/event-stream"},
                       timeout=10.0, trust_env=False)
    assert resp.status_code == 200

    def polled() -> str | None:
        r = cli(["health", "--url-file", str(proxy.url_file), "--require-control-plane-poll"], clean_env(tmp_path))
        return r.out if r.code == 0 else None

    out = wait_until(polled, what="a successful control-plane poll")
    assert f"Control-plane poll: PASS | {proxy.base_url}/metrics | last_success_unix_seconds=" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give exactly one of --url, --url-file or --port"),
        (["--port", "80", "--url", "http://x"], "give exactly one of"),
        (["--port", "eighty"], "--port: 'eighty' is not a number"),
        (["--port", "1", "--pid", "-3"], "--pid: '-3' is not a number"),
        (["--port", "1", "--pid", "3", "--pid-file", "f"], "at most one of --pid or --pid-file"),
    ],
)
def test_bad_input_exits_1(tmp_path: Path, argv: list[str], message: str) -> None:
    r = cli(["health", *argv], clean_env(tmp_path))
    assert r.code == 1 and r.out == "" and message in r.err and len(r.err.splitlines()) == 1


def test_subprocess_exit_codes(tmp_path: Path, proxy: Proxy) -> None:
    env = clean_env(tmp_path)
    assert cli_subprocess(["health", "--url-file", str(proxy.url_file)], env).code == 0
    assert cli_subprocess(["health"], env).code == 1
    missing = cli_subprocess(["health", "--url-file", str(tmp_path / "none.url")], env)
    assert missing.code == 2 and "Locator error: cannot read" in missing.out and "Result: FAIL" in missing.out


def test_stopped_daemon_is_not_ok(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    url_file = home / "health.url"
    with running(["dev", "proxy", "--health-url-file", str(url_file)], clean_env(home)) as proc:
        proc.wait_line(r"^MCP URL: ")
        base = url_file.read_text().strip()
        assert cli(["health", "--url-file", str(url_file)], clean_env(tmp_path)).code == 0
        proc.stop()
    assert not url_file.exists()  # the daemon removes its URL file on a clean stop
    r = cli(["health", "--url", base], clean_env(tmp_path))
    assert r.code == 2 and "Healthz: FAIL" in r.out and "Result: FAIL" in r.out
