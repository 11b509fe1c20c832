"""The commands of `tunnel-client help quickstart`, taken from the topic text itself, actually work.

Steps 1 and 3 need no account, so their "$ " lines are executed as written. The only
changes: fixed ports are swapped for free ones (tests run in parallel with other
servers), the operator listener of `run` is moved to a free port through
HEALTH_LISTEN_ADDR / HEALTH_URL_FILE (environment beats the profile), and HOME is a
temporary directory. If the text changes, this test runs the new text.
"""

from __future__ import annotations

import re
import shlex
from contextlib import ExitStack
from pathlib import Path

import httpx2

from tests.support.cli_helpers import TUNNEL_CLIENT, Proc, clean_env, cli, free_port, wait_until
from tunnel_core.ops.help_topics import get_topic

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
              "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "qs", "version": "1"}}}
ACCEPT = {"Accept": "application/json, text/event-stream"}


def section(text: str, start: str, end: str) -> str:
    return text.split(start, 1)[1].split(end, 1)[0]


def commands(block: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s*\$ (.+)$", block, re.M)]


def split(line: str, env: dict[str, str]) -> list[str]:
    """Apply leading NAME=value assignments to ``env``; return argv with tunnel-client resolved."""
    words = shlex.split(line)
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    assert words[0] == "tunnel-client", line
    return [TUNNEL_CLIENT, *words[1:]]


def mcp_initialize(url: str) -> httpx2.Response:
    return httpx2.post(url, json=INITIALIZE, headers=ACCEPT, timeout=10.0, trust_env=False)


def test_step1_demo_reaches_a_working_ui(tmp_path: Path) -> None:
    text = get_topic("quickstart").text
    (line,) = commands(section(text, "STEP 1", "STEP 2"))
    env = clean_env(tmp_path)
    proc = Proc(split(line, env), env)
    try:
        mcp_url = proc.wait_line(r"MCP URL: (\S+)").group(1)
        ui_url = proc.wait_line(r"UI URL: (\S+)").group(1)
        ui = httpx2.get(ui_url, timeout=10.0, trust_env=False)
        assert ui.status_code == 200 and "tunnel-client" in ui.text
        answer = mcp_initialize(mcp_url)
        assert answer.status_code == 200 and '"serverInfo"' in answer.text
    finally:
        proc.stop()


def test_step3_local_rehearsal_of_init_doctor_run(tmp_path: Path) -> None:
    text = get_topic("quickstart").text
    block = section(text, "STEP 3", "Starter prompts")
    lines = commands(block)
    assert len(lines) == 6, lines  # service, MCP server, export, init, doctor, run
    ports = {"8765": str(free_port()), "3001": str(free_port())}
    health_file = tmp_path / "health.url"
    env = clean_env(tmp_path)
    with ExitStack() as stack:
        for raw in lines:
            line = raw
            for fixed, free in ports.items():
                line = line.replace(f"127.0.0.1:{fixed}", f"127.0.0.1:{free}")
            if line.startswith("export "):
                name, _, value = line[len("export "):].partition("=")
                env[name] = value
                continue
            step_env = dict(env)
            argv = split(line, step_env)
            verb = argv[1:3]
            if verb in (["dev", "tunnel-service"], ["dev", "mcp-stub"]):
                proc = Proc(argv, step_env)
                stack.callback(proc.stop)
                proc.wait_line(r"MCP URL: ")
            elif argv[1] == "run":
                step_env.update(HEALTH_LISTEN_ADDR="127.0.0.1:0", HEALTH_URL_FILE=str(health_file))
                proc = Proc(argv, step_env)
                stack.callback(proc.stop)
                wait_until(lambda: cli(["health", "--url-file", str(health_file)], env).code == 0,
                           what="the rehearsal daemon to be healthy and ready")
            else:
                r = cli(argv[1:], step_env)
                assert r.code == 0, (line, r)
                if argv[1] == "doctor":
                    assert "RESULT ok" in r.out and "CHECK control_plane_online     PASS" in r.out

        front_door = re.search(r"(http://127\.0\.0\.1:8765/v1/mcp/tunnel_\w+)", block)
        assert front_door is not None
        url = front_door.group(1).replace("8765", ports["8765"])
        answer = mcp_initialize(url)
        assert answer.status_code == 200 and "mcp-stub" in answer.text
        ui = httpx2.get(health_file.read_text().strip() + "/ui", timeout=10.0, trust_env=False)
        assert ui.status_code == 200
