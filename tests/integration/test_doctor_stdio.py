"""doctor and init on stdio commands, with real interpreters and children: a module the interpreter cannot
import, ``doctor --online`` sending the same initialize ``run`` sends, and a virtual environment's
interpreter shown as given rather than as the base interpreter its symlink points to."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.support.cli_helpers import clean_env, cli
from tests.support.faulty import STDIO_COMMAND

TID = "tunnel_" + "d4" * 16
KEY = "rk_doctor_stdio_" + "q" * 16


def doctor(tmp_path: Path, command: str, *extra: str) -> dict[str, dict[str, object]]:
    r = cli(["doctor", "--json", "--control-plane.tunnel-id", TID, "--control-plane.base-url", "http://127.0.0.1:9",
             "--mcp.command", command, "--health.listen-addr", "127.0.0.1:0", *extra],
            clean_env(tmp_path, CONTROL_PLANE_API_KEY=KEY))
    assert KEY not in r.out + r.err
    return {c["id"]: c for c in json.loads(r.out)["checks"]}


def test_offline_doctor_fails_a_module_the_interpreter_cannot_import(tmp_path: Path) -> None:
    rows = doctor(tmp_path, f"{sys.executable} -m no_such_module_for_doctor")
    row = rows["mcp_command_executable"]
    assert row["status"] == "FAIL"
    assert f"'no_such_module_for_doctor' is not importable by {sys.executable}" in str(row["summary"])


def test_online_doctor_sends_initialize_to_the_stdio_server(tmp_path: Path) -> None:
    rows = doctor(tmp_path, STDIO_COMMAND, "--online")
    assert rows["mcp_initialize"]["status"] == "PASS"
    assert rows["mcp_initialize"]["summary"] == f"stdio server {STDIO_COMMAND} answered initialize"
    assert rows["control_plane_online"]["status"] == "FAIL"  # nothing listens at :9; the MCP side is independent


def test_online_doctor_reports_why_a_stdio_server_dies(tmp_path: Path) -> None:
    script = tmp_path / "server.py"
    script.write_text("import sys\nsys.stderr.write('config.toml missing\\n')\nsys.exit(4)\n")
    rows = doctor(tmp_path, f"{sys.executable} {script}", "--online")
    row = rows["mcp_initialize"]
    assert row["status"] == "FAIL"
    assert "exited with code 4 before answering initialize: config.toml missing" in str(row["summary"])


def test_init_shows_a_venv_interpreter_as_given(tmp_path: Path) -> None:
    venv_python = tmp_path / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    os.symlink(sys.executable, venv_python)  # what python -m venv makes
    r = cli(["init", "--profile", "venv", "--tunnel-id", TID, "--mcp-command", f"{venv_python} -m json.tool",
             "--health-listen-addr", "127.0.0.1:0"], clean_env(tmp_path))
    assert r.code == 0, r.err
    assert f"[{venv_python}]" in r.out
    assert os.path.realpath(venv_python) not in r.out.replace(str(venv_python), "")
