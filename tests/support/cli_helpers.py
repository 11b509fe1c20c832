"""Helpers for the operator-CLI tests: in-process ``main`` calls, real subprocesses, bounded waits."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tests.support.proc import wait_until  # noqa: F401 - re-exported for the tests
from tunnel_core.cli.main import main

WAIT = 15.0  # cap on every wait in these tests
TUNNEL_CLIENT = str(Path(sys.prefix) / "bin" / "tunnel-client")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    out: str
    err: str


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: PATH, HOME and XDG in ``home``, and nothing tunnel-client reads."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PYTHONUNBUFFERED": "1",
        "LANG": "C.UTF-8",
    }
    env.update(extra)
    return env


def cli(argv: Sequence[str], env: dict[str, str]) -> Result:
    """Run ``tunnel-client argv`` in-process with injected environment and streams."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env=env, stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


def cli_subprocess(argv: Sequence[str], env: dict[str, str], timeout: float = WAIT) -> Result:
    done = subprocess.run([TUNNEL_CLIENT, *argv], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Result(done.returncode, done.stdout, done.stderr)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Proc:
    """A child process whose output lines are collected as they arrive (stdout and stderr merged)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True,
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._closed = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        """The first output line matching ``pattern``; fails if the process exits or the wait times out."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                if self._closed:
                    raise AssertionError(f"{self.argv} exited before printing {pattern!r}:\n{self.output_locked()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {pattern!r} from {self.argv} within {timeout:g}s:\n{self.output_locked()}")
                self._cond.wait(left)

    def output_locked(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within the cap."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=WAIT)


@contextmanager
def running(argv: Sequence[str], env: dict[str, str]) -> Iterator[Proc]:
    """Start a tunnel-client subprocess; it is always stopped when the block ends."""
    proc = Proc([TUNNEL_CLIENT, *argv], env)
    try:
        yield proc
    finally:
        proc.stop()
