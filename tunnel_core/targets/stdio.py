"""stdio MCP target: one supervised child process per channel, concurrent requests multiplexed.

Unlike the reference (one request at a time, and the whole client exits when the child
does), requests run concurrently: each JSON-RPC id (and progress token) is rewritten to a
unique internal value on the way in and restored on the way out, so two connectors both
using ``id: 1`` never see each other's answers. When the child exits, every pending
request fails at once with ``transport_closed`` and the child is respawned with jittered
backoff; a crash loop keeps the channel not ready while retrying at the capped delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import os
import signal
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tunnel_core.relay.backoff import Backoff
from tunnel_core.targets.base import Emit, ProbeResult, Reply
from tunnel_core.targets.failures import TargetFailure
from tunnel_core.wire.messages import JsonRpcCommand, SessionTerminationCommand, header_value

log = logging.getLogger("tunnel_client.process")

STDERR_TAIL_LINES = 50
MAX_RETIRED_IDS = 1024
STABLE_AFTER_SECONDS = 5.0  # a child alive this long resets the crash streak
CRASH_LOOP_THRESHOLD = 3
WAIT_FOR_CHILD_SECONDS = 10.0
STOP_GRACE_SECONDS = 2.0
JSON_HEADERS = {"Content-Type": ["application/json"]}
# The runtime key is ours, not the MCP server's: keep it out of the child's environment.
SCRUBBED_ENV = ("CONTROL_PLANE_API_KEY",)


def _set_parent_death_signal() -> None:  # pragma: no cover - runs in the child before exec
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(slots=True)
class _Call:
    original_id: Any
    send: MemoryObjectSendStream[dict[str, Any]]
    receive: MemoryObjectReceiveStream[dict[str, Any]]
    progress: dict[str, Any] = field(default_factory=dict)  # internal token -> original token
    started: float = field(default_factory=time.monotonic)
    session: str = ""  # the caller's Mcp-Session-Id: JSON-RPC ids are unique only within a session


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
        self._write_lock = anyio.Lock()
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self.restarts = 0
        self.last_exit: int | None = None
        self._crash_streak = 0
        self._state = ProbeResult("pending")
        self._closing = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    def _set_state(self, result: ProbeResult) -> None:
        self._state = result
        if self.on_state:
            self.on_state(result)

    async def start(self, tg: TaskGroup) -> None:
        tg.start_soon(self._supervise)

    async def _supervise(self) -> None:
        backoff = Backoff(minimum=0.1, maximum=10.0)
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
                    self._set_state(ProbeResult("failed", f"cannot start {self.argv[0]}: {exc.strerror}"))
                    log.error("cannot start stdio MCP server",
                              extra={"channel": self.channel, "command": self.argv[0], "error": exc.strerror})
                    await anyio.sleep(backoff.next())
                    continue
                self._proc = proc
                started = time.monotonic()
                log.info("stdio MCP server started",
                         extra={"channel": self.channel, "pid": proc.pid, "restarts": self.restarts})
                if self._crash_streak >= CRASH_LOOP_THRESHOLD:
                    self._set_state(ProbeResult("failed", f"crash loop: exited {self._crash_streak} times "
                                                          f"in a row (last exit {self.last_exit})"))
                else:
                    self._set_state(ProbeResult("ok"))
                self._up.set()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pump_stderr, proc)
                    tg.start_soon(self._mark_stable, backoff)
                    await self._pump_stdout(proc)
                    tg.cancel_scope.cancel()
                code = await proc.wait()
                self._up = anyio.Event()
                self.last_exit = code
                lived = time.monotonic() - started
                self._fail_pending("child exited")
                if self._closing:
                    return
                self._crash_streak = self._crash_streak + 1 if lived < STABLE_AFTER_SECONDS else 1
                self.restarts += 1
                delay = backoff.next()
                reason = (f"crash loop: exited {self._crash_streak} times in a row (last exit {code})"
                          if self._crash_streak >= CRASH_LOOP_THRESHOLD else f"child exited with code {code}; restarting")
                self._set_state(ProbeResult("failed", reason))
                log.warning("stdio MCP server exited; restarting",
                            extra={"channel": self.channel, "exit_code": code, "retry_in_ms": int(delay * 1000),
                                   "restarts": self.restarts, "stderr_tail": " | ".join(list(self.stderr_tail)[-3:])})
                await anyio.sleep(delay)
        finally:
            with anyio.CancelScope(shield=True):
                await self._terminate()
                self._fail_pending("client stopping")

    async def _mark_stable(self, backoff: Backoff) -> None:
        await anyio.sleep(STABLE_AFTER_SECONDS)
        self._crash_streak = 0
        backoff.reset()
        if self._state.status != "ok":
            self._set_state(ProbeResult("ok"))

    async def _pump_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            line = await proc.stderr.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            self.stderr_tail.append(text)
            log.info("mcp server stderr", extra={"channel": self.channel, "line": text[:2000]})

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
        # token, anything else to the oldest call in flight.
        params = msg.get("params")
        token = params.get("progressToken") if isinstance(params, dict) else None
        target = None
        if token is not None:
            target = next((c for c in self._calls.values() if token in c.progress), None)
        if target is None and self._calls:
            target = min(self._calls.values(), key=lambda c: c.started)
        if target is None:
            log.debug("server message with no request in flight dropped", extra={"channel": self.channel})
            return
        self._deliver(target, msg)

    @staticmethod
    def _deliver(call: _Call, msg: dict[str, Any]) -> None:
        with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
            call.send.send_nowait(msg)

    def _fail_pending(self, why: str) -> None:
        for call in list(self._calls.values()):
            self._deliver(call, {"__tunnel_failure__": why})
        self._calls.clear()

    async def _write(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            raise TargetFailure("transport_closed", "closed_pipe")
        data = json.dumps(msg, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        async with self._write_lock:
            try:
                proc.stdin.write(data)
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                raise TargetFailure("transport_closed", "closed_pipe") from None

    async def _wait_up(self) -> None:
        if self._proc is not None and self._proc.returncode is None and self._up.is_set():
            return
        with anyio.move_on_after(WAIT_FOR_CHILD_SECONDS):
            await self._up.wait()
            return
        raise TargetFailure("connect", "dial")

    async def call(self, cmd: JsonRpcCommand, emit: Emit) -> Reply:
        msg = cmd.jsonrpc
        is_request = "method" in msg and "id" in msg
        try:
            await self._wait_up()
            session = header_value(cmd.headers, "mcp-session-id") or ""
            if not is_request:
                await self._write(self._cancel_to_internal(msg, session))
                return Reply("notify_ack", 202)
            return await self._request(msg, emit, session)
        except TargetFailure as failure:
            if not is_request:
                return Reply("notify_ack", failure.status)
            return Reply("jsonrpc_response", failure.status, failure.envelope(msg.get("id")), JSON_HEADERS)

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
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        call = _Call(msg.get("id"), send, receive, session=session)
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
                async for reply in receive:
                    if "__tunnel_failure__" in reply:
                        raise TargetFailure("transport_closed", "eof")
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
            send.close()
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
        with anyio.move_on_after(WAIT_FOR_CHILD_SECONDS):
            await self._up.wait()
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
