"""The agent tool server as Codex starts it: a stdio subprocess (``tunnel-client codex mcp-server`` and
``python -m agent_tools``) speaking the handshake-era protocol Codex uses, nothing but MCP on stdout.

The stdio front answers the handshake and the listings itself and relays everything else to the
SDK server, its child: the catalogue it serves is what the SDK server lists (drift), both answer
every listing alike, and a child that dies fails its pending call and is replaced for the next.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters

from agent_tools import catalogue
from agent_tools.front import CATALOGUE_PATH, INIT_ID, Front, load_catalogue
from tests.support.admin_helpers import TUNNEL_CLIENT, base_env

WAIT = 30.0
FRONT = [sys.executable, "-m", "agent_tools"]
SDK_ONLY = [sys.executable, "-m", "agent_tools.server"]
FAKE_CHILD = str(Path(__file__).resolve().parents[1] / "support" / "fake_mcp_child.py")
LISTINGS = ["tools/list", "prompts/list", "resources/list", "resources/templates/list", "ping"]


@pytest.mark.parametrize("argv", [[TUNNEL_CLIENT, "codex", "mcp-server"], FRONT])
def test_stdio_server_lists_tools_and_answers_a_call(tmp_path: Path, argv: list[str]) -> None:
    env = base_env(tmp_path, TUNNEL_CLIENT_STATE_DIR=str(tmp_path / "state"))

    async def session() -> tuple[set[str], dict[str, object] | None, str]:
        params = StdioServerParameters(command=argv[0], args=argv[1:], env=env, cwd=str(tmp_path))
        with anyio.fail_after(WAIT):
            async with Client(params, mode="legacy") as client:
                tools = await client.list_tools()
                result = await client.call_tool("list_runtime_aliases", {})
        text = "".join(getattr(c, "text", "") for c in result.content)
        return {t.name for t in tools.tools}, result.structured_content, text

    names, data, text = anyio.run(session)
    assert {"connect_stdio_mcp", "runtime_status", "list_runtime_aliases"} <= names
    assert data is not None and data["state_root"] == str(tmp_path / "state")
    assert text


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
    assert "connect_stdio_mcp" in init["instructions"]
    answer: Any = lines[1]["result"]
    assert "plugin" in [t["name"] for t in answer["structuredContent"]["topics"]]


def test_committed_catalogue_is_what_the_sdk_server_lists() -> None:
    expected = catalogue.render(catalogue.build())
    assert Path(CATALOGUE_PATH).read_text(encoding="utf-8") == expected, \
        "agent_tools/catalogue.json is stale: run python -m agent_tools.catalogue"


@pytest.mark.parametrize("version", ["2025-06-18", "2024-11-05", "2099-01-01"])
def test_front_answers_the_handshake_and_listings_as_the_sdk_server_does(version: str) -> None:
    front = catalogue.ask_sdk_server(LISTINGS, protocol_version=version, argv=FRONT)
    sdk = catalogue.ask_sdk_server(LISTINGS, protocol_version=version, argv=SDK_ONLY)
    assert front == sdk
    assert front["initialize"]["protocolVersion"] == (version if version != "2099-01-01" else "2025-11-25")


class Pipes:
    """A Front served in a thread over OS pipes, with bounded reads of what it writes."""

    def __init__(self, front_args: dict[str, Any]) -> None:
        in_r, self._in_w = os.pipe()
        out_r, out_w = os.pipe()
        self.front = Front(os.fdopen(in_r, "rb"), os.fdopen(out_w, "wb"), **front_args)
        self._writer = os.fdopen(self._in_w, "wb")
        self._lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.code: list[int] = []
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()
        reader = os.fdopen(out_r, "rb")
        threading.Thread(target=lambda: [self._lines.put(json.loads(x)) for x in reader], daemon=True).start()

    def _serve(self) -> None:
        self.code.append(self.front.serve())
        self.done.set()

    def send(self, message: dict[str, Any]) -> None:
        self._writer.write(json.dumps({"jsonrpc": "2.0", **message}).encode() + b"\n")
        self._writer.flush()

    def answer(self) -> dict[str, Any]:
        return self._lines.get(timeout=WAIT)

    def close(self) -> None:
        self._writer.close()


def _init(n: int) -> dict[str, Any]:
    return {"id": n, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                                          "clientInfo": {"name": "t", "version": "1"}}}


def test_a_child_that_exits_fails_its_call_and_is_replaced_with_the_handshake_replayed(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    p = Pipes({"catalogue": load_catalogue(), "child_argv": [sys.executable, FAKE_CHILD, str(log)]})
    p.send(_init(0))
    init = p.answer()
    assert init["id"] == 0 and init["result"]["serverInfo"]["name"] == "tunnel-client"  # the front's own answer
    p.send({"method": "notifications/initialized"})
    p.send({"id": 1, "method": "tools/list"})
    listed = p.answer()
    assert listed["id"] == 1 and listed["result"]["tools"] == load_catalogue()["tools"]  # type: ignore[index]
    p.send({"id": 2, "method": "tools/call", "params": {"name": "echo"}})
    first = p.answer()
    assert first["id"] == 2 and first["result"]["echo"] == "tools/call"
    p.send({"id": 3, "method": "tools/call", "params": {"name": "exit"}})
    failed = p.answer()
    assert failed["id"] == 3 and failed["error"]["code"] == -32603 and "exited (code 3)" in failed["error"]["message"]
    p.send({"id": 4, "method": "tools/call", "params": {"name": "echo"}})
    second = p.answer()
    assert second["id"] == 4 and second["result"]["pid"] != first["result"]["pid"]
    p.close()
    assert p.done.wait(WAIT) and p.code == [0]

    seen = [json.loads(x) for x in log.read_text().splitlines()]
    methods = [(m.get("id"), m["method"]) for m in seen]
    # each child got the handshake first (the front's private id), and listings never reached a child
    assert methods == [(INIT_ID, "initialize"), (None, "notifications/initialized"), (2, "tools/call"),
                       (3, "tools/call"), (INIT_ID, "initialize"), (None, "notifications/initialized"),
                       (4, "tools/call")]


def test_without_a_catalogue_the_front_relays_everything(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    p = Pipes({"catalogue": None, "child_argv": [sys.executable, FAKE_CHILD, str(log)]})
    p.send(_init(7))
    assert p.answer() == {"jsonrpc": "2.0", "id": 7, "result": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "serverInfo": {"name": "fake", "version": "0"}}}
    p.send({"id": 8, "method": "tools/list"})
    assert p.answer()["result"]["echo"] == "tools/list"
    p.close()
    assert p.done.wait(WAIT) and p.code == [0]


def test_what_codex_starts_loads_no_sdk_before_answering() -> None:
    """The front and the console-script path to it import only the standard library (and tiny tunnel_core bits)."""
    heavy = ("pydantic", "mcp", "anyio", "httpx2", "yaml", "jsonschema", "argparse", "tunnel_core.cli.main")
    probe = ("import sys; import agent_tools.front, tunnel_core.cli.entry, agent_tools.listing; "
             "agent_tools.listing.prompts_list(); "
             f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
