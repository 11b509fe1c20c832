"""``tunnel-client codex assistant``: streamed answers through the real ``codex app-server`` and the fake
model, the prompt pack in what the model receives, the offline knowledge-base answer when Codex is
missing or not logged in, and the turn rules (``willRetry``, failed turns, idle timeout, a dying
app-server) against a scripted app-server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.admin_helpers import TUNNEL_CLIENT, base_env, wait_until
from tests.support.codex_env import codex_path, codex_search_path
from tests.support.fake_model import API_KEY_ENV, FakeModel, Say, input_items, start_fake_model, user_text
from tests.support.servers import BackgroundLoop
from tunnel_core.codex.assistant import AssistantOptions, run_assistant
from tunnel_core.codex.prompts import ASSISTANT_MARKER

QUESTION = "How do I connect a stdio MCP server and keep it running?"
ANSWER = "Run tunnel-client runtimes connect --alias demo --mcp-command CMD, then runtimes status demo."
WAIT = 60.0


@pytest.fixture(scope="module")
def fake(bg: BackgroundLoop) -> Iterator[FakeModel]:
    model = start_fake_model(bg, lambda body: [Say(ANSWER)])
    yield model
    assert model.server is not None
    model.server.stop()


def assistant(env: dict[str, str], *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TUNNEL_CLIENT, "codex", "assistant", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def developer_texts(body: dict[str, Any]) -> list[str]:
    out = []
    for item in input_items(body):
        if item.get("role") == "developer":
            out += [c.get("text", "") for c in item.get("content") or [] if isinstance(c, dict)]
    return out


def test_answer_is_streamed_and_the_model_gets_the_prompt_pack(fake: FakeModel, tmp_path: Path) -> None:
    codex_path()
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(fake.provider_config(), encoding="utf-8")
    env = base_env(tmp_path, PATH=codex_search_path(), CODEX_HOME=str(home), **{API_KEY_ENV: "dummy"})
    pause = threading.Event()
    fake.requests.clear()
    fake.policy = lambda body: [Say(ANSWER, pause=pause)]

    proc = subprocess.Popen([TUNNEL_CLIENT, "codex", "assistant", QUESTION], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    seen = bytearray()

    def read() -> None:
        assert proc.stdout is not None
        while chunk := os.read(proc.stdout.fileno(), 4096):
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        first_half = ANSWER[: len(ANSWER) // 2].encode()
        wait_until(lambda: first_half in seen, timeout=WAIT, what="the first delta on stdout")
        assert proc.poll() is None and ANSWER.encode() not in seen  # streamed: the rest is still held back
        pause.set()
        assert proc.wait(WAIT) == 0, proc.stderr.read().decode() if proc.stderr else ""
        reader.join(WAIT)
    finally:
        pause.set()
        if proc.poll() is None:
            proc.kill()
    assert seen.decode().strip() == ANSWER

    body = fake.wait_requests(1)[-1]
    developer = "\n".join(developer_texts(body))
    assert ASSISTANT_MARKER in developer, "the thread's developer instructions did not reach the model"
    assert "knowledge.match.1.path: docs/" in developer, "the ranked sections did not reach the model"
    assert "runtimes connect" in developer  # the sections are about the question
    assert QUESTION in user_text(body)


def test_not_logged_in_answers_from_the_knowledge_base(tmp_path: Path) -> None:
    codex_path()
    home = tmp_path / "codex-home"
    home.mkdir()
    env = base_env(tmp_path, PATH=codex_search_path(), CODEX_HOME=str(home))
    done = assistant(env, "what does doctor check?")
    assert done.returncode == 0, done.stderr
    assert "Codex is not logged in" in done.stderr and "knowledge base" in done.stderr
    assert "$ tunnel-client doctor --profile" in done.stdout and "\nSources:\n  1. " in done.stdout


def test_without_codex_answers_from_the_knowledge_base(tmp_path: Path) -> None:
    env = base_env(tmp_path, PATH=str(Path(sys.executable).parent))
    done = assistant(env, "runtimes status healthy ready")
    assert done.returncode == 0, done.stderr
    assert "Codex CLI is not installed" in done.stderr
    assert "\nSources:\n  1. docs/" in done.stdout


# ---------------------------------------------------------------------------- a scripted app-server

SCRIPT = r'''
import json, os, sys
mode = os.environ["FAKE_APP_SERVER_MODE"]
log = open(os.environ["FAKE_APP_SERVER_LOG"], "a")
def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n"); sys.stdout.flush()
def note(method, **params):
    send({"method": method, "params": {"threadId": "th_1", **params}})
for line in sys.stdin:
    msg = json.loads(line)
    log.write(line); log.flush()
    method, rid = msg.get("method"), msg.get("id")
    if rid is None:
        continue
    if method == "initialize":
        send({"id": rid, "result": {"userAgent": "fake"}})
    elif method == "account/read":
        account = None if mode == "login" else {"type": "apiKey"}
        send({"id": rid, "result": {"account": account, "requiresOpenaiAuth": True}})
    elif method == "account/login/start":
        send({"id": rid, "result": {"type": "chatgptDeviceCode", "loginId": "lg_1",
                                    "verificationUrl": "https://auth.example/device", "userCode": "ABCD-1234"}})
        send({"method": "account/login/completed", "params": {"loginId": "lg_1", "success": True, "error": None}})
    elif method == "thread/start":
        send({"id": rid, "result": {"thread": {"id": "th_1"}}})
    elif method == "thread/inject_items":
        send({"id": rid, "error": {"code": -32601, "message": "method not found"}})
    elif method == "turn/start":
        send({"id": rid, "result": {"turn": {"id": "tu_1", "status": "inProgress"}}})
        send({"id": 900, "method": "item/tool/requestUserInput", "params": {}})
        if mode == "exit":
            sys.exit(3)
        if mode == "silent":
            continue
        note("error", error={"message": "Reconnecting... 1/5"}, willRetry=True, turnId="tu_1")
        if mode == "fail":
            note("error", error={"message": "quota exceeded"}, willRetry=False, turnId="tu_1")
            continue
        note("item/agentMessage/delta", delta="partial ", turnId="tu_1", itemId="m1")
        note("item/agentMessage/delta", delta="answer", turnId="tu_1", itemId="m1")
        status = "failed" if mode == "turn-failed" else "completed"
        note("turn/completed", turn={"id": "tu_1", "status": status, "error": {"message": "boom"}})
'''


@pytest.fixture
def scripted(tmp_path: Path) -> dict[str, str]:
    script = tmp_path / "fake_app_server.py"
    script.write_text(SCRIPT, encoding="utf-8")
    launcher = tmp_path / "codex"
    launcher.write_text(f"#!/bin/sh\nexec {sys.executable} {script}\n", encoding="utf-8")
    launcher.chmod(0o755)
    return base_env(tmp_path, PATH=f"{tmp_path}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
                    FAKE_APP_SERVER_LOG=str(tmp_path / "requests.jsonl"))


def requests(env: dict[str, str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(env["FAKE_APP_SERVER_LOG"]).read_text().splitlines()]


def test_retry_notices_are_not_fatal_and_context_falls_back_into_the_turn(scripted: dict[str, str]) -> None:
    done = assistant({**scripted, "FAKE_APP_SERVER_MODE": "answer"}, QUESTION)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "partial answer\n"
    assert "Reconnecting... 1/5 (retrying)" in done.stderr
    sent = requests(scripted)
    assert [m.get("method") for m in sent][:3] == ["initialize", "initialized", "account/read"]
    start = next(m for m in sent if m.get("method") == "thread/start")["params"]
    assert start["approvalPolicy"] == "never" and start["sandbox"] == "read-only"
    assert ASSISTANT_MARKER in start["developerInstructions"]
    turn = next(m for m in sent if m.get("method") == "turn/start")["params"]
    texts = [i["text"] for i in turn["input"]]
    assert texts[-1] == QUESTION and texts[0].startswith("knowledge.matches: ")  # inject_items was refused
    declined = next(m for m in sent if m.get("id") == 900)
    assert declined["error"]["code"] == -32601


@pytest.mark.parametrize(("mode", "args", "reason"), [
    ("fail", (), "quota exceeded"),
    ("silent", ("--idle-timeout", "1s"), "no answer from Codex for 1s"),
    ("exit", (), "codex app-server exited"),
])
def test_a_turn_that_gives_no_answer_falls_back_with_exit_1(scripted: dict[str, str], mode: str,
                                                            args: tuple[str, ...], reason: str) -> None:
    done = assistant({**scripted, "FAKE_APP_SERVER_MODE": mode}, *args, QUESTION)
    assert done.returncode == 1
    assert reason in done.stderr and "knowledge base" in done.stderr
    assert "\nSources:\n  1. " in done.stdout


def test_a_turn_that_fails_after_answering_keeps_the_partial_answer(scripted: dict[str, str]) -> None:
    done = assistant({**scripted, "FAKE_APP_SERVER_MODE": "turn-failed"}, QUESTION)
    assert done.returncode == 1
    assert done.stdout == "partial answer\n"
    assert "the Codex turn failed: boom" in done.stderr and "knowledge base" not in done.stderr


def test_offline_answers_from_the_docs_without_starting_codex(scripted: dict[str, str]) -> None:
    done = assistant({**scripted, "FAKE_APP_SERVER_MODE": "answer"}, "--offline",
                     "How do I make tunnel-client restart automatically when it crashes?")
    assert done.returncode == 0, done.stderr
    assert not Path(scripted["FAKE_APP_SERVER_LOG"]).exists(), "--offline started codex"
    assert "--restart on-failure" in done.stdout and "\nSources:\n  1. docs/" in done.stdout
    assert done.stderr == ""


class Terminal(io.StringIO):
    """A stream that says it is a terminal (REPL and device-code login are for terminals only)."""

    def isatty(self) -> bool:
        return True


def test_terminal_login_with_a_device_code_then_a_conversation(scripted: dict[str, str]) -> None:
    stdin, stdout, stderr = Terminal("first question\n/new\nsecond question\n/exit\n"), Terminal(), Terminal()
    code = run_assistant([], AssistantOptions(), env={**scripted, "FAKE_APP_SERVER_MODE": "login"}, stdin=stdin,
                         stdout=stdout, stderr=stderr)
    assert code == 0, stderr.getvalue()
    assert "https://auth.example/device" in stderr.getvalue() and "ABCD-1234" in stderr.getvalue()
    assert stdout.getvalue() == "partial answer\npartial answer\n"
    sent = requests(scripted)
    assert [m.get("method") for m in sent].count("thread/start") == 2  # /new started a second thread
    questions = [m["params"]["input"][-1]["text"] for m in sent if m.get("method") == "turn/start"]
    assert questions == ["first question", "second question"]


def test_offline_conversation_in_a_terminal(tmp_path: Path) -> None:
    stdin, stdout, stderr = Terminal("how do I stop a runtime?\n\n/exit\n"), Terminal(), Terminal()
    code = run_assistant([], AssistantOptions(offline=True), env=base_env(tmp_path), stdin=stdin, stdout=stdout,
                         stderr=stderr)
    assert code == 0, stderr.getvalue()
    assert "$ tunnel-client runtimes stop" in stdout.getvalue() and stdout.getvalue().count("Sources:") == 1
    assert "offline" in stderr.getvalue()
