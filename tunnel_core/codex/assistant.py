"""``codex assistant``: answer tunnel-client questions through ``codex app-server``, or offline.

One question (arguments or piped stdin) or a REPL (a terminal). Per thread: ``thread/start``
with the assistant instructions of the prompt pack; per question: the best knowledge-base
excerpts are injected as a developer message (``thread/inject_items``), then ``turn/start``;
``item/agentMessage/delta`` is streamed to stdout until ``turn/completed``. An ``error``
notification with ``willRetry: true`` is only reported; the turn fails on ``willRetry:
false``, a failed turn, or no progress for the idle timeout.

The excerpts are the sections the offline assistant ranks best (:mod:`knowledge`), cited as
``docs/PAGE.md#anchor`` or ``help/TOPIC``. With ``--offline``, or when Codex is missing or not
logged in (and no login is possible), the answer is composed from those sections instead
(:mod:`answer`: a direct answer, the steps with exact commands, then the sources), with the
reason on stderr (exit 0). When Codex fails before answering, the same fallback is printed
but the exit code is 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import anyio

from tunnel_core.codex.answer import offline_answer
from tunnel_core.codex.appserver import (
    AppServer,
    AppServerError,
    AppServerExited,
    app_server_argv,
    app_server_cwd,
)
from tunnel_core.codex.home import codex_child_env, codex_home, find_codex
from tunnel_core.codex.knowledge import CONTEXT_MATCHES, KnowledgeBase, context_block, default_knowledge
from tunnel_core.codex.prompts import ASSISTANT_INSTRUCTIONS
from tunnel_core.errors import TunnelClientError

IDLE_TIMEOUT = 120.0
LOGIN_TIMEOUT = 300.0
EXIT_COMMANDS = ("/exit", "/quit")


class AssistantError(TunnelClientError):
    """Codex was usable but the turn did not produce an answer."""


class CodexUnavailable(TunnelClientError):
    """Codex cannot answer here (missing, no app-server, not logged in); the offline answer applies."""


@dataclass(frozen=True, slots=True)
class AssistantOptions:
    cwd: str = ""
    model: str = ""
    model_provider: str = ""
    approval_policy: str = "never"
    sandbox: str = "read-only"
    developer_instructions: str = ""
    effort: str = ""
    summary: str = ""
    login_timeout: float = LOGIN_TIMEOUT
    idle_timeout: float = IDLE_TIMEOUT
    codex_home: str | None = None
    offline: bool = False  # answer from the local docs without starting Codex


@dataclass(slots=True)
class Streams:
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    interactive: bool

    def say(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()


def developer_instructions(opts: AssistantOptions, cwd: str) -> str:
    extra = f"\n\n{opts.developer_instructions.strip()}" if opts.developer_instructions.strip() else ""
    return f"{ASSISTANT_INSTRUCTIONS}\n\nWorkspace root: {cwd}{extra}"


def _message(params: Any) -> str:
    err = params.get("error") if isinstance(params, dict) else None
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err or params)


class Session:
    """One app-server connection and its current thread."""

    def __init__(self, server: AppServer, opts: AssistantOptions, io: Streams, kb: KnowledgeBase, cwd: str) -> None:
        self.server, self.opts, self.io, self.kb, self.cwd = server, opts, io, kb, cwd
        self.thread_id = ""
        self.wrote = False  # any answer text written in this session
        self.at_line_start = True

    async def ensure_login(self) -> None:
        account = await self.server.request("account/read", {"refreshToken": False})
        if not isinstance(account, dict) or account.get("account") or not account.get("requiresOpenaiAuth", True):
            return
        if not self.io.interactive:
            raise CodexUnavailable("Codex is not logged in; run `codex login` (or this command in a terminal to log "
                                   "in with a device code)")
        start = await self.server.request("account/login/start", {"type": "chatgptDeviceCode"})
        login_id = start.get("loginId") if isinstance(start, dict) else None
        self.io.say(f"Codex is not logged in. Open {start.get('verificationUrl')} and enter the code "
                    f"{start.get('userCode')} (waiting up to {self.opts.login_timeout:g}s).")
        with anyio.move_on_after(self.opts.login_timeout):
            async for note in self.server.notifications:
                if note.get("method") != "account/login/completed":
                    continue
                params = note.get("params") or {}
                if login_id and params.get("loginId") not in (None, login_id):
                    continue
                if params.get("success"):
                    self.io.say("Logged in.")
                    return
                raise CodexUnavailable(f"Codex login failed: {params.get('error') or 'unknown error'}")
        if login_id:
            try:
                await self.server.request("account/login/cancel", {"loginId": login_id}, timeout=10)
            except AppServerError:
                pass
        raise CodexUnavailable(f"Codex login did not complete within {self.opts.login_timeout:g}s")

    async def new_thread(self) -> None:
        params: dict[str, Any] = {
            "cwd": self.cwd, "approvalPolicy": self.opts.approval_policy, "sandbox": self.opts.sandbox,
            "developerInstructions": developer_instructions(self.opts, self.cwd), "ephemeral": True,
        }
        if self.opts.model:
            params["model"] = self.opts.model
        if self.opts.model_provider:
            params["modelProvider"] = self.opts.model_provider
        result = await self.server.request("thread/start", params)
        thread = result.get("thread") if isinstance(result, dict) else None
        if not isinstance(thread, dict) or not thread.get("id"):
            raise AssistantError("codex app-server started no thread")
        self.thread_id = str(thread["id"])

    async def _inject(self, question: str) -> list[dict[str, Any]]:
        """Put the knowledge excerpts in the thread; returns extra input items if injection is unsupported."""
        context = context_block(self.kb.search(question, CONTEXT_MATCHES))
        item = {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": context}]}
        try:
            await self.server.request("thread/inject_items", {"threadId": self.thread_id, "items": [item]})
            return []
        except AppServerError as exc:
            if exc.code is None:
                raise
            return [{"type": "text", "text": context}]

    async def ask(self, question: str) -> bool:
        """Run one turn, streaming the answer; True when any answer text was written."""
        extra = await self._inject(question)
        params: dict[str, Any] = {"threadId": self.thread_id, "input": [*extra, {"type": "text", "text": question}]}
        for key, value in (("model", self.opts.model), ("effort", self.opts.effort), ("summary", self.opts.summary)):
            if value:
                params[key] = value
        started = await self.server.request("turn/start", params)
        turn = started.get("turn") if isinstance(started, dict) else None
        turn_id = str(turn.get("id", "")) if isinstance(turn, dict) else ""
        wrote = False
        ended_with_newline = True
        while True:
            # Retry notices are not progress: the idle timeout counts from the last useful event.
            with anyio.move_on_after(self.opts.idle_timeout) as idle:
                while True:
                    note = await self._next()
                    method, p = note.get("method"), note.get("params") or {}
                    if p.get("threadId") not in (None, self.thread_id):
                        continue
                    if method == "error":
                        if p.get("willRetry"):
                            self.io.say(f"codex: {_message(p)} (retrying)")
                            continue
                        raise AssistantError(f"Codex reported an error: {_message(p)}")
                    break
            if idle.cancelled_caught:
                raise AssistantError(f"no answer from Codex for {self.opts.idle_timeout:g}s")
            if method == "item/agentMessage/delta":
                delta = str(p.get("delta", ""))
                if delta:
                    self.io.stdout.write(delta)
                    self.io.stdout.flush()
                    wrote, ended_with_newline = True, delta.endswith("\n")
                    self.wrote, self.at_line_start = True, ended_with_newline
            elif method == "item/completed":
                item = p.get("item") or {}
                if item.get("type") == "agentMessage" and not wrote and item.get("text"):
                    text = str(item["text"])
                    self.io.stdout.write(text)
                    wrote, ended_with_newline = True, text.endswith("\n")
                    self.wrote, self.at_line_start = True, ended_with_newline
            elif method == "turn/completed":
                done = p.get("turn") or {}
                if turn_id and done.get("id") not in (None, turn_id):
                    continue
                if not ended_with_newline:
                    self.io.stdout.write("\n")
                self.io.stdout.flush()
                self.at_line_start = True
                if done.get("status") == "failed":
                    raise AssistantError(f"the Codex turn failed: {_message(done)}")
                return wrote

    async def _next(self) -> dict[str, Any]:
        try:
            return await self.server.notifications.receive()
        except anyio.EndOfStream:
            raise AppServerExited("codex app-server exited during the turn: "
                                  + (self.server.stderr_text().splitlines()[-1:] or ["no output"])[0]) from None


def _offline(question: str, io: Streams, kb: KnowledgeBase) -> int:
    """``--offline``: one composed answer, or a conversation in a terminal."""
    if question:
        io.stdout.write(offline_answer(question, kb))
        io.stdout.flush()
        return 0
    io.say("tunnel-client assistant (offline: answers from the local docs and help topics). /exit quits.")
    while True:
        io.stderr.write("you> ")
        io.stderr.flush()
        line = io.stdin.readline()
        if not line or line.strip() in EXIT_COMMANDS:
            return 0
        if line.strip():
            io.stdout.write(offline_answer(line.strip(), kb) + "\n")
            io.stdout.flush()


def _fallback(io: Streams, reason: str, question: str, kb: KnowledgeBase) -> None:
    io.say(f"codex assistant: {reason}.")
    io.say("Answering from the local tunnel-client knowledge base (docs and help topics) instead:")
    io.stdout.write(offline_answer(question, kb))
    io.stdout.flush()


async def _repl(session: Session, io: Streams) -> None:
    io.say("tunnel-client assistant (Codex). Ask about tunnel-client; /new starts over, /exit quits.")
    while True:
        io.stderr.write("you> ")
        io.stderr.flush()
        line = await anyio.to_thread.run_sync(io.stdin.readline)
        if not line:
            return
        question = line.strip()
        if not question:
            continue
        if question in EXIT_COMMANDS:
            return
        if question == "/new":
            await session.new_thread()
            io.say("(new conversation)")
            continue
        try:
            await session.ask(question)
        except AssistantError as exc:
            io.say(f"codex assistant: {exc}")


async def _run(question: str, opts: AssistantOptions, env: Mapping[str, str], io: Streams, kb: KnowledgeBase,
               codex: str) -> int:
    home = codex_home(env, opts.codex_home) if (opts.codex_home or env.get("CODEX_HOME")) else None
    cwd = app_server_cwd(env, opts.cwd)
    session: Session | None = None
    try:
        async with AppServer(app_server_argv(codex, env), env=codex_child_env(env, home), cwd=cwd) as server:
            await server.initialize()
            session = Session(server, opts, io, kb, cwd)
            await session.ensure_login()
            await session.new_thread()
            if not question:
                await _repl(session, io)
                return 0
            if io.interactive:
                io.say("assistant> waiting for response...")
            if not await session.ask(question):
                _fallback(io, "Codex returned an empty answer", question, kb)
            return 0
    except CodexUnavailable as exc:
        if not question:
            io.say(f"codex assistant: {exc}. Ask with arguments, or add --offline, to get answers from the local "
                   "knowledge base.")
            return 1
        _fallback(io, str(exc), question, kb)
        return 0
    except (AppServerError, AssistantError) as exc:
        if not question or (session is not None and session.wrote):
            if session is not None and not session.at_line_start:
                io.stdout.write("\n")
                io.stdout.flush()
            io.say(f"codex assistant: {exc}")
            return 1
        _fallback(io, f"Codex could not answer ({exc})", question, kb)
        return 1


def run_assistant(prompt: Sequence[str], opts: AssistantOptions, *, env: Mapping[str, str], stdin: TextIO,
                  stdout: TextIO, stderr: TextIO, kb: KnowledgeBase | None = None) -> int:
    """The ``codex assistant`` command: returns the exit code."""
    tty = _isatty(stdin)
    question = " ".join(prompt).strip()
    if not question and not tty:
        question = stdin.read().strip()
    io = Streams(stdin, stdout, stderr, interactive=tty and _isatty(stderr))
    knowledge = kb or default_knowledge()
    if not question and not tty:
        io.say("codex assistant: no question given; pass it as arguments or on stdin")
        return 1
    if opts.offline:
        return _offline(question, io, knowledge)
    codex = find_codex(env)
    if codex is None:
        reason = "the Codex CLI is not installed (no codex on PATH; see tunnel-client codex install)"
        if not question:
            io.say(f"codex assistant: {reason}.")
            return 1
        _fallback(io, reason, question, knowledge)
        return 0
    return anyio.run(_run, question, opts, env, io, knowledge, codex)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
