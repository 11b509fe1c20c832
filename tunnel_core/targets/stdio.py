"""stdio MCP target: one supervised child process per channel, concurrent requests multiplexed.

Unlike the reference (one request at a time, and the whole client exits when the child
does), requests run concurrently: each JSON-RPC id (and progress token) is rewritten to a
unique internal value on the way in and restored on the way out, so two connectors both
using ``id: 1`` never see each other's answers. When the child exits, every pending
request fails at once with ``transport_closed`` and the child is respawned with jittered
backoff; a crash loop keeps the channel not ready while retrying at the capped delay.

Readiness is earned, not assumed: each new child gets an MCP ``initialize`` (raw JSON-RPC,
under an internal id no caller sees) and the channel is ``ok`` only once it answers. A child
that cannot be spawned, or exits before answering, leaves the channel ``failed`` with the
cause in words (``executable not found: X``, or the exit code and the last lines of its
stderr); the same cause is logged once per backoff step and travels to callers as
``tunnel_failure.detail`` of the 502 they get.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import field
from typing import Any

import anyio
from anyio.abc import TaskGroup

from tunnel_core import __version__
from tunnel_core.inbox import Inbox
from tunnel_core.logs import redact
from tunnel_core.records import record
from tunnel_core.relay.backoff import Backoff
from tunnel_core.targets.base import Emit, ProbeResult, Reply
from tunnel_core.targets.failures import TargetFailure
from tunnel_core.wire.messages import JsonRpcCommand, SessionTerminationCommand, header_value

log = logging.getLogger("tunnel_client.process")

STDERR_TAIL_LINES = 50
MAX_RETIRED_IDS = 1024
MAX_ASKED_PER_CALL = 16
STABLE_AFTER_SECONDS = 5.0  # a child alive this long resets the crash streak
CRASH_LOOP_THRESHOLD = 3
WAIT_FOR_CHILD_SECONDS = 10.0
STOP_GRACE_SECONDS = 2.0
HANDSHAKE_SECONDS = 10.0  # initialize unanswered this long: "timeout" (ready with a note) until it answers
PROBE_PROTOCOL_VERSION = "2025-06-18"
CAUSE_STDERR_LINES = 3
MAX_CAUSE_CHARS = 400
JSON_HEADERS = {"Content-Type": ["application/json"]}
# The runtime key is ours, not the MCP server's: keep it out of the child's environment.
SCRUBBED_ENV = ("CONTROL_PLANE_API_KEY",)


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn_failure(argv0: str, exc: OSError, path_env: str | None) -> str:
    """Why exec refused to start ``argv0``, in words."""
    if exc.errno == errno.ENOENT:
        exists = os.path.exists(argv0) if os.sep in argv0 else shutil.which(argv0, path=path_env) is not None
        if not exists:
            return f"executable not found: {argv0}"
        return f"cannot start {argv0}: the interpreter named on its #! line was not found"
    if exc.errno == errno.EACCES:
        return f"permission denied: {argv0} is not executable by this user"
    if exc.errno == errno.ENOEXEC:
        return f"cannot start {argv0}: not a program this system can run"
    return f"cannot start {argv0}: {exc.strerror or exc}"


def exit_cause(code: int, stderr_lines: list[str], *, answered: bool) -> str:
    """``exited with code 1 before answering initialize: <last stderr lines>``, bounded and redacted."""
    how = f"killed by signal {_signal_name(-code)}" if code < 0 else f"exited with code {code}"
    if not answered:
        how += " before answering initialize"
    tail = " | ".join(line.strip() for line in stderr_lines[-CAUSE_STDERR_LINES:] if line.strip())
    text = f"{how}: {tail}" if tail else how
    return redact(text if len(text) <= MAX_CAUSE_CHARS else text[:MAX_CAUSE_CHARS - 1] + "\u2026")


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return str(num)


@record(slots=True)
class _Call:
    original_id: Any
    inbox: Inbox  # the child's messages for this call (its answer last)
    progress: dict[str, Any] = field(default_factory=dict)  # internal token -> original token
    started: float = field(default_factory=time.monotonic)
    session: str = ""  # the caller's Mcp-Session-Id: JSON-RPC ids are unique only within a session
    asked: set[Any] = field(default_factory=set)  # ids of server-to-client requests relayed on it, unanswered


class StdioTarget:
    """A supervised stdio MCP server."""

    kind = "stdio"
    proc_affinity = True

    def __init__(
        self,
        channel: str,
        argv: tuple[str, ...],
        *,
        connection_ttl: float,
        env: dict[str, str] | None = None,
        on_state: Callable[[ProbeResult], None] | None = None,
        secret_values: tuple[str, ...] = (),
    ) -> None:
        self.channel = channel
        self.argv = argv
        self._ttl = connection_ttl
        # The runtime key is ours: drop it by name and by value, whichever variable it came from.
        hidden = {v for v in secret_values if v}
        self._env = {k: v for k, v in (env if env is not None else os.environ).items()
                     if k not in SCRUBBED_ENV and v not in hidden}
        self.on_state = on_state
        self._proc: asyncio.subprocess.Process | None = None
        self._up = anyio.Event()
        self._calls: dict[str, _Call] = {}
        self._retired: OrderedDict[str, None] = OrderedDict()
        self._ids = itertools.count(1)
        self._write_lock = anyio.Lock(fast_acquire=True)  # a free lock is taken without a loop turn
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._child_stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)  # this child's lines only
        self.restarts = 0
        self.last_exit: int | None = None
        self._crash_streak = 0
        self._state = ProbeResult("pending")
        self._settled = anyio.Event()  # set once the first child answered initialize or failed
        self._closing = False
        self._answered = False  # the current child answered initialize
        self._failures = 0  # consecutive failed starts, for log throttling
        self._logged_cause = ""
        self._cause = ""  # why the channel is down, for callers' 502 details
        self._hopeless = False  # spawning fails or the child crash-loops: callers fail at once

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    def _set_state(self, result: ProbeResult) -> None:
        self._state = result
        if result.status != "pending":
            self._settled.set()
        if self.on_state:
            self.on_state(result)

    async def start(self, tg: TaskGroup) -> None:
        tg.start_soon(self._supervise)

    def _failed(self, cause: str, delay: float, *, spawn: bool = False) -> None:
        """Record a failed start or an exit: state, callers' detail, and a log line once per backoff step."""
        self._failures += 1
        self._cause = cause
        streak = self._crash_streak
        looping = streak >= CRASH_LOOP_THRESHOLD and self.last_exit is not None and not spawn
        text = f"{cause} (crash loop: {streak} exits in a row)" if looping else cause
        self._set_state(ProbeResult("failed", text, lasting=self._hopeless))
        # The first failure, a new cause, and then attempts 2, 4, 8, ...: a failure that repeats at the
        # capped delay does not flood the log, and every line says how often it happened so far.
        if cause != self._logged_cause or self._failures & (self._failures - 1) == 0:
            self._logged_cause = cause
            log.error("stdio MCP server not running; retrying",
                      extra={"channel": self.channel, "command": self.argv[0], "cause": cause,
                             "attempts": self._failures, "retry_in_ms": int(delay * 1000),
                             "restarts": self.restarts})

    async def _supervise(self) -> None:
        backoff = Backoff(minimum=0.1, maximum=10.0)
        path_env = self._env.get("PATH", os.defpath)
        try:
            while True:
                try:
                    proc = await asyncio.create_subprocess_exec(
                        *self.argv,
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.PIPE,
                        env=self._env,
                        start_new_session=True,
                        preexec_fn=_set_parent_death_signal,
                        limit=16 * 1024 * 1024,
                    )
                except OSError as exc:
                    self._crash_streak += 1
                    self._hopeless = True
                    delay = backoff.next()
                    self._failed(spawn_failure(self.argv[0], exc, path_env), delay, spawn=True)
                    await anyio.sleep(delay)
                    continue
                self._proc = proc
                self._answered = False
                self._child_stderr.clear()
                started = time.monotonic()
                log.log(logging.INFO if not self._failures else logging.DEBUG, "stdio MCP server started",
                        extra={"channel": self.channel, "pid": proc.pid, "restarts": self.restarts})
                self._up.set()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pump_stderr, proc)
                    tg.start_soon(self._mark_stable, backoff)
                    tg.start_soon(self._handshake)
                    await self._pump_stdout(proc)
                    tg.cancel_scope.cancel()
                code = await proc.wait()
                self._up = anyio.Event()
                self.last_exit = code
                lived = time.monotonic() - started
                cause = exit_cause(code, list(self._child_stderr), answered=self._answered)
                self._cause = cause
                self._fail_pending(cause)
                if self._closing:
                    return
                self._crash_streak = self._crash_streak + 1 if lived < STABLE_AFTER_SECONDS else 1
                self._hopeless = self._crash_streak >= CRASH_LOOP_THRESHOLD
                self.restarts += 1
                delay = backoff.next()
                self._failed(cause, delay)
                await anyio.sleep(delay)
        finally:
            with anyio.CancelScope(shield=True):
                await self._terminate()
                self._fail_pending("client stopping")

    async def _handshake(self) -> None:
        """Send ``initialize`` to the new child; the channel is ready only once it answers."""
        internal = f"tc-probe-{next(self._ids)}"
        inbox = Inbox()
        self._calls[internal] = _Call(internal, inbox)
        try:
            await self._write({"jsonrpc": "2.0", "id": internal, "method": "initialize", "params": {
                "protocolVersion": PROBE_PROTOCOL_VERSION, "capabilities": {},
                "clientInfo": {"name": "tunnel-client", "version": __version__}}})
            with anyio.move_on_after(HANDSHAKE_SECONDS) as waited:
                answer = await self._answer(inbox)
            if waited.cancelled_caught:
                self._set_state(ProbeResult("timeout", f"no answer to initialize within {HANDSHAKE_SECONDS:g}s"))
                answer = await self._answer(inbox)
        except TargetFailure:
            return  # the child is gone; the supervisor reports why
        finally:
            self._calls.pop(internal, None)
            inbox.close()
        if answer is None:
            return
        error = answer.get("error")
        if isinstance(error, dict):
            message = redact(str(error.get("message", ""))[:200])
            self._set_state(ProbeResult("failed", f"initialize answered with error {error.get('code')}: {message}"))
            return
        self._answered = True
        self._failures = 0
        self._logged_cause = self._cause = ""
        self._hopeless = False
        self._set_state(ProbeResult("ok"))

    @staticmethod
    async def _answer(inbox: Inbox) -> dict[str, Any] | None:
        """The reply to the handshake (server notifications in between are ignored); None if the child went."""
        async for msg in inbox:
            if "__tunnel_failure__" in msg:
                return None
            if "method" not in msg:
                return msg
        return None

    async def _mark_stable(self, backoff: Backoff) -> None:
        await anyio.sleep(STABLE_AFTER_SECONDS)
        self._crash_streak = 0
        backoff.reset()

    async def _pump_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            line = await proc.stderr.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            self.stderr_tail.append(text)
            self._child_stderr.append(text[:2000])
            # While the server keeps failing to start, its stderr travels in the throttled failure line.
            log.log(logging.INFO if not self._failures else logging.DEBUG, "mcp server stderr",
                    extra={"channel": self.channel, "line": text[:2000]})

    async def _pump_stdout(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                log.error("stdio MCP server wrote an oversized line; restarting it", extra={"channel": self.channel})
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                return
            if not line:
                return
            if not line.strip():
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                log.warning("non-JSON line on MCP stdout ignored", extra={"channel": self.channel})
                continue
            if isinstance(msg, dict):
                self._route(msg)

    def _route(self, msg: dict[str, Any]) -> None:
        if "method" not in msg and "id" in msg:
            key = msg.get("id")
            call = self._calls.get(key) if isinstance(key, str) else None
            if call is None:
                if isinstance(key, str) and key in self._retired:
                    self._retired.pop(key, None)
                    log.info("late answer for a retired request discarded", extra={"channel": self.channel})
                else:
                    log.warning("answer with an unknown id discarded", extra={"channel": self.channel})
                return
            self._deliver(call, msg)
            return
        # A notification or a server-to-client request: route progress by its (rewritten)
        # token, a request to the oldest call not already waiting for its caller's answer (a call
        # asks one thing at a time, so that is most likely the asker), anything else to the oldest.
        params = msg.get("params")
        token = params.get("progressToken") if isinstance(params, dict) else None
        target = None
        if token is not None:
            target = next((c for c in self._calls.values() if token in c.progress), None)
        asking = "id" in msg
        if target is None and asking:
            target = min((c for c in self._calls.values() if not c.asked), key=lambda c: c.started, default=None)
        if target is None and self._calls:
            target = min(self._calls.values(), key=lambda c: c.started)
        if target is None:
            log.debug("server message with no request in flight dropped", extra={"channel": self.channel})
            return
        if asking and len(target.asked) < MAX_ASKED_PER_CALL:
            with contextlib.suppress(TypeError):  # an unhashable id is the server's bug; the call waits as usual
                target.asked.add(msg["id"])
        self._deliver(target, msg)

    @staticmethod
    def _deliver(call: _Call, msg: dict[str, Any]) -> None:
        with contextlib.suppress(anyio.ClosedResourceError):
            call.inbox.send_nowait(msg)

    def _fail_pending(self, why: str) -> None:
        for call in list(self._calls.values()):
            self._deliver(call, {"__tunnel_failure__": why})
        self._calls.clear()

    def _down(self, source: Any, kind: str) -> TargetFailure:
        return TargetFailure(source, kind, detail=self._cause or None)

    async def _write(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            raise self._down("transport_closed", "closed_pipe")
        data = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        async with self._write_lock:
            try:
                proc.stdin.write(data)
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                raise self._down("transport_closed", "closed_pipe") from None

    async def _wait_up(self) -> None:
        if self._proc is not None and self._proc.returncode is None and self._up.is_set():
            return
        if self._hopeless:
            raise self._down("connect", "dial")  # known broken: say why now rather than after a wait
        with anyio.move_on_after(WAIT_FOR_CHILD_SECONDS):
            await self._up.wait()
            return
        raise self._down("connect", "dial")

    async def call(self, cmd: JsonRpcCommand, emit: Emit) -> Reply:
        msg = cmd.jsonrpc
        is_request = "method" in msg and "id" in msg
        try:
            await self._wait_up()
            session = header_value(cmd.headers, "mcp-session-id") or ""
            if not is_request:
                await self._write(self._cancel_to_internal(msg, session))
                if "id" in msg:  # the caller's answer to a server-to-client request
                    self._caller_answered(msg["id"])
                return Reply("notify_ack", 202)
            return await self._request(msg, emit, session)
        except TargetFailure as failure:
            if not is_request:
                return Reply("notify_ack", failure.status)
            return Reply("jsonrpc_response", failure.status, failure.envelope(msg.get("id")), JSON_HEADERS)

    def _caller_answered(self, rpc_id: Any) -> None:
        for call in self._calls.values():
            with contextlib.suppress(TypeError):
                call.asked.discard(rpc_id)

    def _cancel_to_internal(self, msg: dict[str, Any], session: str) -> dict[str, Any]:
        """Point a caller's ``notifications/cancelled`` at the id the child knows its request by."""
        params = msg.get("params")
        if msg.get("method") != "notifications/cancelled" or not isinstance(params, dict):
            return msg
        rid = params.get("requestId")
        found = [k for k, c in self._calls.items() if c.original_id == rid and c.session == session]
        if len(found) != 1:
            return msg  # not in flight (or ambiguous without a session): the child ignores an unknown id
        return {**msg, "params": {**params, "requestId": found[0]}}

    async def _request(self, msg: dict[str, Any], emit: Emit, session: str = "") -> Reply:
        internal = f"tc-{next(self._ids)}"
        inbox = Inbox()
        call = _Call(msg.get("id"), inbox, session=session)
        out = dict(msg)
        out["id"] = internal
        params = msg.get("params")
        if isinstance(params, dict) and isinstance(params.get("_meta"), dict) and "progressToken" in params["_meta"]:
            token = f"{internal}-p"
            call.progress[token] = params["_meta"]["progressToken"]
            out["params"] = {**params, "_meta": {**params["_meta"], "progressToken": token}}
        self._calls[internal] = call
        answered = False
        try:
            with anyio.fail_after(self._ttl):
                await self._write(out)
                notify_ok = True
                async for reply in inbox:
                    if "__tunnel_failure__" in reply:
                        raise TargetFailure("transport_closed", "eof", detail=reply["__tunnel_failure__"] or None)
                    if "method" not in reply:
                        answered = True
                        restored = dict(reply)
                        restored["id"] = call.original_id
                        return Reply("jsonrpc_response", 200, restored, JSON_HEADERS)
                    if notify_ok:
                        notify_ok = await emit(Reply("jsonrpc_notify", 200, self._restore_progress(call, reply),
                                                     JSON_HEADERS))
            raise TargetFailure("transport_closed", "eof")
        finally:
            self._calls.pop(internal, None)
            inbox.close()
            if not answered:
                if msg.get("method") == "initialize":
                    # An unanswered initialize cannot be cancelled or replayed safely: fail closed
                    # by restarting the child so the next session starts clean.
                    self._kill_child()
                else:
                    await self._retire(internal)

    @staticmethod
    def _restore_progress(call: _Call, msg: dict[str, Any]) -> dict[str, Any]:
        params = msg.get("params")
        if isinstance(params, dict) and params.get("progressToken") in call.progress:
            return {**msg, "params": {**params, "progressToken": call.progress[params["progressToken"]]}}
        return msg

    def _kill_child(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    async def _retire(self, internal: str) -> None:
        """Remember an abandoned id so its late answer is discarded, and tell the server to stop."""
        self._retired[internal] = None
        while len(self._retired) > MAX_RETIRED_IDS:
            self._retired.popitem(last=False)
        with anyio.CancelScope(shield=True), contextlib.suppress(TargetFailure, OSError):
            await self._write({"jsonrpc": "2.0", "method": "notifications/cancelled",
                               "params": {"requestId": internal, "reason": "response deadline expired"}})

    async def terminate_session(self, cmd: SessionTerminationCommand) -> Reply:
        return Reply("session_termination_response", 405)

    async def probe(self) -> ProbeResult:
        """The state once the first child answered initialize, failed, or stayed silent past the handshake wait."""
        with anyio.move_on_after(WAIT_FOR_CHILD_SECONDS + HANDSHAKE_SECONDS):
            await self._settled.wait()
        return self._state if self._state.status != "pending" else ProbeResult("failed", "child did not start")

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin:
                proc.stdin.close()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with anyio.move_on_after(STOP_GRACE_SECONDS):
            await proc.wait()
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with anyio.move_on_after(STOP_GRACE_SECONDS):
            await proc.wait()

    async def aclose(self) -> None:
        self._closing = True
        with anyio.CancelScope(shield=True):
            await self._terminate()
