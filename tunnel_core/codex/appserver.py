"""A small client for ``codex app-server``: JSON-RPC over the child's stdin/stdout, one object per line.

The protocol is JSON-RPC 2.0 without the ``"jsonrpc"`` member. Requests get integer ids and
a future each; notifications go to a bounded stream the caller reads; requests *from* the
server (approvals, user input) are declined with a JSON-RPC error, since an assistant that
runs with ``approvalPolicy: never`` should not get any. stderr is kept in a ring buffer for
error messages. Closing: stdin is closed, then terminate, then kill, each step bounded.

AppServerError (TunnelClientError, exit 1)
├── AppServerExited   the child exited (or closed stdout) before answering
└── AppServerTimeout  no answer within the request timeout
A JSON-RPC error answer raises AppServerError with ``code`` set.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import subprocess
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import Process, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tunnel_core.codex.home import CODEX_ARGS_ENV, CODEX_CWD_ENV
from tunnel_core.errors import TunnelClientError

log = logging.getLogger("tunnel_core.codex.appserver")

REQUEST_TIMEOUT = 120.0
CLOSE_TIMEOUT = 5.0
MAX_LINE = 16 * 1024 * 1024
NOTIFICATION_BUFFER = 4096
CLIENT_INFO = {"name": "tunnel-client-assistant", "title": "tunnel-client assistant", "version": "0.1.0"}


class AppServerError(TunnelClientError):
    """The app-server could not be used; ``code`` is the JSON-RPC error code when it answered with one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class AppServerExited(AppServerError):
    """The app-server process ended before the answer arrived."""


class AppServerTimeout(AppServerError):
    """No answer within the request timeout."""


@dataclass(slots=True)
class _Pending:
    event: anyio.Event
    result: Any = None
    error: AppServerError | None = None


def app_server_argv(codex: str, env: Mapping[str, str]) -> list[str]:
    """``codex app-server`` plus ``$TUNNEL_CLIENT_CODEX_APP_SERVER_ARGS`` (shell-split) when set."""
    extra = env.get(CODEX_ARGS_ENV, "").strip()
    return [codex, *(shlex.split(extra) if extra else ["app-server"])]


def app_server_cwd(env: Mapping[str, str], cwd: str = "") -> str:
    return cwd or env.get(CODEX_CWD_ENV, "").strip() or os.getcwd()


class AppServer:
    """``async with AppServer(argv, env=..., cwd=...) as server:`` then ``request`` / ``notify`` / ``notifications``."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: str,
                 request_timeout: float = REQUEST_TIMEOUT) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.request_timeout = request_timeout
        self.stderr_tail: deque[str] = deque(maxlen=40)
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self._proc: Process | None = None
        self._tg: TaskGroup | None = None
        self._closed = False
        self._send: MemoryObjectSendStream[dict[str, Any]]
        self.notifications: MemoryObjectReceiveStream[dict[str, Any]]
        self._send, self.notifications = anyio.create_memory_object_stream[dict[str, Any]](NOTIFICATION_BUFFER)
        self._write_lock = anyio.Lock()

    async def __aenter__(self) -> AppServer:
        try:
            self._proc = await anyio.open_process(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE, env=self.env, cwd=self.cwd,
                                                  start_new_session=True)
        except OSError as exc:
            raise AppServerError(f"cannot start {shlex.join(self.argv)}: {exc.strerror or exc}") from None
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._read_stdout)
        self._tg.start_soon(self._read_stderr)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        with anyio.CancelScope(shield=True):
            await self._shutdown()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        # The body's own exception (if any) propagates after this returns; handing it to the
        # task group would wrap it in an ExceptionGroup.
        await self._tg.__aexit__(None, None, None)

    async def _shutdown(self) -> None:
        proc = self._proc
        if proc is None or self._closed:
            return
        self._closed = True
        if proc.stdin is not None:
            with anyio.move_on_after(1):
                await proc.stdin.aclose()
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await proc.wait()
            return
        proc.terminate()
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await proc.wait()
            return
        proc.kill()
        with anyio.move_on_after(CLOSE_TIMEOUT):
            await proc.wait()

    def stderr_text(self) -> str:
        return "\n".join(self.stderr_tail)

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        buf = b""
        async for chunk in self._proc.stderr:
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    self.stderr_tail.append(text)
                    log.debug("codex app-server: %s", text)
            buf = buf[-MAX_LINE:]

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        buf = b""
        try:
            async for chunk in self._proc.stdout:
                buf += chunk
                if len(buf) > MAX_LINE and b"\n" not in buf:
                    log.warning("codex app-server sent a line longer than 16 MiB; dropping it")
                    buf = b""
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        await self._dispatch(line)
        except anyio.ClosedResourceError:
            pass
        finally:
            tail = self.stderr_text().splitlines()[-1:] or ["no output on stderr"]
            gone = AppServerExited(f"codex app-server exited ({tail[0]})")
            for pending in self._pending.values():
                if not pending.event.is_set():
                    pending.error = gone
                    pending.event.set()
            self._send.close()

    async def _dispatch(self, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            log.warning("codex app-server: ignoring a line that is not JSON")
            return
        if not isinstance(msg, dict):
            return
        if "id" in msg and ("result" in msg or "error" in msg) and "method" not in msg:
            pending = self._pending.get(msg["id"]) if isinstance(msg["id"], int) else None
            if pending is None:
                return
            err = msg.get("error")
            if err is not None:
                message = err.get("message", "error") if isinstance(err, dict) else str(err)
                code = err.get("code") if isinstance(err, dict) else None
                pending.error = AppServerError(str(message), code if isinstance(code, int) else None)
            else:
                pending.result = msg.get("result")
            pending.event.set()
        elif "method" in msg and "id" in msg:
            # Declining a server request must not fail the reader: if the child is already gone,
            # the reader sees end-of-stream next and reports the exit properly.
            with contextlib.suppress(AppServerExited):
                await self._write({"id": msg["id"], "error": {
                    "code": -32601, "message": f"tunnel-client does not handle {msg['method']}"}})
        elif "method" in msg:
            await self._send.send(msg)

    async def _write(self, msg: dict[str, Any]) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or self._closed:
            raise AppServerExited("codex app-server is not running")
        data = (json.dumps(msg, separators=(",", ":")) + "\n").encode()
        async with self._write_lock:
            try:
                await proc.stdin.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                raise AppServerExited("codex app-server closed its input") from None

    async def request(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:
        """Send a request and wait (bounded) for its result; raise AppServerError on an error answer."""
        self._next_id += 1
        rid = self._next_id
        pending = _Pending(anyio.Event())
        self._pending[rid] = pending
        try:
            await self._write({"id": rid, "method": method, "params": params})
            with anyio.move_on_after(timeout or self.request_timeout):
                await pending.event.wait()
            if not pending.event.is_set():
                raise AppServerTimeout(f"codex app-server did not answer {method} within "
                                       f"{timeout or self.request_timeout:g}s")
            if pending.error is not None:
                raise pending.error
            return pending.result
        finally:
            self._pending.pop(rid, None)

    async def notify(self, method: str, params: Any = None) -> None:
        await self._write({"method": method, "params": params if params is not None else {}})

    async def initialize(self) -> dict[str, Any]:
        """``initialize`` then the ``initialized`` notification; returns the server's answer."""
        result = await self.request("initialize", {"clientInfo": CLIENT_INFO, "capabilities": None})
        await self.notify("initialized", {})
        return result if isinstance(result, dict) else {}
