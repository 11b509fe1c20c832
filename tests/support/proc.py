"""Subprocesses with line-by-line output capture and bounded, event-driven waits."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

WAIT = 15.0  # cap on any single wait in the tests

TUNNEL_CLIENT = str(Path(sys.prefix) / "bin" / "tunnel-client")

# Variables the client reads; the tests set what they need explicitly.
_CLIENT_ENV_PREFIXES = ("CONTROL_PLANE_", "MCP_", "HEALTH_", "LOG_", "TUNNEL_CLIENT_", "OPENAI_", "PID_FILE")


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """The inherited environment minus every tunnel-client setting, with HOME/XDG in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLIENT_ENV_PREFIXES)}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class _Stream:
    def __init__(self, pipe: IO[str], cond: threading.Condition) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._cond = cond
        self._thread = threading.Thread(target=self._pump, args=(pipe,), daemon=True)
        self._thread.start()

    def _pump(self, pipe: IO[str]) -> None:
        for line in pipe:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class Proc:
    """A child process whose stdout/stderr are read into line lists as they arrive."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1, start_new_session=True,
        )
        self._cond = threading.Condition()
        assert self.popen.stdout is not None and self.popen.stderr is not None
        self.stdout = _Stream(self.popen.stdout, self._cond)
        self.stderr = _Stream(self.popen.stderr, self._cond)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.stdout.lines) + "\n" + "\n".join(self.stderr.lines)

    def _wait_line(self, stream: _Stream, match: Callable[[str], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in stream.lines[seen:]:
                    found = match(line)
                    if found:
                        return found
                seen = len(stream.lines)
                if stream.closed:
                    raise AssertionError(f"{what}: stream closed (exit {self.popen.poll()}); output:\n{self.tail()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{what}: not seen within {timeout:g}s; output:\n{self.tail()}")
                self._cond.wait(left)

    def wait_stdout(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        rx = re.compile(pattern)
        result: re.Match[str] = self._wait_line(self.stdout, rx.search, timeout, f"stdout /{pattern}/")
        return result

    def wait_stderr(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        rx = re.compile(pattern)
        result: re.Match[str] = self._wait_line(self.stderr, rx.search, timeout, f"stderr /{pattern}/")
        return result

    def wait_log(self, msg: str, timeout: float = WAIT) -> dict[str, Any]:
        """Wait for a JSON log record (``--log.format json`` on stderr) whose ``msg`` equals ``msg``."""

        def match(line: str) -> dict[str, Any] | None:
            try:
                rec = json.loads(line)
            except ValueError:
                return None
            return rec if isinstance(rec, dict) and rec.get("msg") == msg else None

        result: dict[str, Any] = self._wait_line(self.stderr, match, timeout, f"log {msg!r}")
        return result

    def log_records(self) -> list[dict[str, Any]]:
        out = []
        with self._cond:
            lines = list(self.stderr.lines)
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def tail(self, n: int = 40) -> str:
        with self._cond:
            lines = [*self.stdout.lines[-n:], "--- stderr ---", *self.stderr.lines[-n:]]
        return "\n".join(lines)

    def wait(self, timeout: float = WAIT) -> int:
        rc = self.popen.wait(timeout)
        self.stdout.join(timeout)
        self.stderr.join(timeout)
        return rc

    def terminate(self, timeout: float = WAIT) -> int:
        """SIGTERM and wait for exit; returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        """Finalizer: make sure the child is gone (SIGTERM, then SIGKILL of its process group)."""
        if self.popen.poll() is None:
            try:
                self.terminate(5.0)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5.0)
        self.stdout.join(5.0)
        self.stderr.join(5.0)


def run_cli(args: Sequence[str], env: dict[str, str], timeout: float = WAIT) -> subprocess.CompletedProcess[str]:
    """Run ``tunnel-client ARGS`` to completion."""
    return subprocess.run(
        [TUNNEL_CLIENT, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
    )


def wait_until(check: Callable[[], Any], what: str = "condition", timeout: float = WAIT) -> Any:
    """Re-evaluate ``check`` until it returns something truthy; the wait is capped at ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
