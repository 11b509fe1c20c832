"""The real Codex CLI for the tests: where it is, a throwaway CODEX_HOME, and app-server sessions.

Codex comes from npm (``scripts/bootstrap`` installs ``@openai/codex`` into
``.test-deps/npm``). Without it the Codex tests are skipped, unless ``CI`` is set, which
makes them fail: CI must not go green by skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest

from tunnel_core.codex.appserver import AppServer

ROOT = Path(__file__).resolve().parents[2]
CODEX_BIN_DIR = ROOT / ".test-deps" / "npm" / "node_modules" / ".bin"
CODEX = CODEX_BIN_DIR / "codex"
WAIT = 60.0


def codex_path() -> Path:
    """The test Codex CLI (skips, or fails under CI, when it is not installed)."""
    if not CODEX.exists() or shutil.which("node") is None:
        message = f"Codex CLI not installed at {CODEX} (scripts/bootstrap installs it when npm exists)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CODEX


def codex_search_path() -> str:
    """PATH with the test Codex first (node must stay reachable: the npm launcher is a node script)."""
    return f"{CODEX_BIN_DIR}{os.pathsep}{os.environ.get('PATH', os.defpath)}"


def run_codex(args: list[str], env: Mapping[str, str], timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(codex_path()), *args], env=dict(env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def mcp_list(env: Mapping[str, str]) -> list[dict[str, Any]]:
    done = run_codex(["mcp", "list", "--json"], env)
    assert done.returncode == 0, done.stderr
    data: list[dict[str, Any]] = json.loads(done.stdout)
    return data


@dataclass(slots=True)
class Transcript:
    """Every notification of an app-server session, and the tool calls Codex made."""

    notifications: list[dict[str, Any]] = field(default_factory=list)

    def methods(self) -> list[str]:
        return [n.get("method", "") for n in self.notifications]

    def tool_calls(self) -> list[dict[str, Any]]:
        out = []
        for n in self.notifications:
            item = (n.get("params") or {}).get("item") or {}
            if n.get("method") == "item/completed" and item.get("type") == "mcpToolCall":
                out.append(item)
        return out

    def text(self) -> str:
        return "".join(str((n.get("params") or {}).get("delta", "")) for n in self.notifications
                       if n.get("method") == "item/agentMessage/delta")


async def _wait_for_server(server: AppServer, transcript: Transcript, name: str) -> None:
    """Until Codex reports the MCP server ``name`` ready (a failure is an assertion error)."""
    with anyio.fail_after(WAIT):
        async for note in server.notifications:
            transcript.notifications.append(note)
            params = note.get("params") or {}
            if note.get("method") == "mcpServer/startupStatus/updated" and params.get("name") == name:
                if params.get("status") == "failed":
                    raise AssertionError(f"Codex could not start the {name} MCP server: {params.get('error')}")
                if params.get("status") == "ready":
                    return


async def _session(env: Mapping[str, str], cwd: Path, *, tool: tuple[str, dict[str, Any]] | None = None,
                   prompt: str = "") -> tuple[Any, Transcript]:
    transcript = Transcript()
    async with AppServer([str(codex_path()), "app-server"], env=env, cwd=str(cwd), request_timeout=WAIT) as server:
        await server.initialize()
        started = await server.request("thread/start", {"cwd": str(cwd), "approvalPolicy": "never",
                                                         "sandbox": "read-only", "ephemeral": True})
        thread_id = started["thread"]["id"]
        await _wait_for_server(server, transcript, "tunnel-client")
        if tool is not None:
            result = await server.request("mcpServer/tool/call", {"threadId": thread_id, "server": "tunnel-client",
                                                                  "tool": tool[0], "arguments": tool[1]})
            return result, transcript
        turn = await server.request("turn/start", {"threadId": thread_id,
                                                   "input": [{"type": "text", "text": prompt}]})
        with anyio.fail_after(WAIT * 2):
            async for note in server.notifications:
                transcript.notifications.append(note)
                if note.get("method") == "turn/completed":
                    return note["params"]["turn"], transcript
        raise AssertionError(f"app-server ended before the turn {turn} completed")


def call_tool(env: Mapping[str, str], cwd: Path, tool: str, arguments: dict[str, Any]) -> Any:
    """``mcpServer/tool/call`` of the installed plugin's server, with no model involved."""
    result, _ = anyio.run(lambda: _session(env, cwd, tool=(tool, arguments)))
    return result


def run_turn(env: Mapping[str, str], cwd: Path, prompt: str) -> tuple[dict[str, Any], Transcript]:
    """One model turn (the fake model decides what Codex does); returns the completed turn and the transcript."""
    turn, transcript = anyio.run(lambda: _session(env, cwd, prompt=prompt))
    assert isinstance(turn, dict)
    return turn, transcript


def app_server_request(env: Mapping[str, str], cwd: Path, method: str, params: dict[str, Any]) -> Any:
    """One request to a fresh ``codex app-server`` (after initialize)."""

    async def go() -> Any:
        async with AppServer([str(codex_path()), "app-server"], env=env, cwd=str(cwd), request_timeout=WAIT) as s:
            await s.initialize()
            return await s.request(method, params)

    return anyio.run(go)


@dataclass(slots=True)
class ExecRun:
    """One ``codex exec --json`` run: its exit code, events, final message and MCP tool calls."""

    returncode: int
    events: list[dict[str, Any]]
    stderr: str
    seconds: float

    def items(self, kind: str) -> list[dict[str, Any]]:
        return [e["item"] for e in self.events if e.get("type") == "item.completed"
                and isinstance(e.get("item"), dict) and e["item"].get("type") == kind]

    def answer(self) -> str:
        messages = self.items("agent_message")
        return str(messages[-1].get("text", "")) if messages else ""

    def tool_calls(self) -> list[dict[str, Any]]:
        return self.items("mcp_tool_call")


def run_exec(env: Mapping[str, str], cwd: Path, prompt: str, timeout: float = WAIT * 3) -> ExecRun:
    """``codex exec`` as a user runs it non-interactively (stdin closed, JSON events on stdout)."""
    import time

    start = time.monotonic()
    done = subprocess.run([str(codex_path()), "exec", "--json", "--skip-git-repo-check", "--ephemeral", "-s",
                           "read-only", "-C", str(cwd), prompt], env=dict(env), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    events = []
    for line in done.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return ExecRun(done.returncode, events, done.stderr, time.monotonic() - start)
