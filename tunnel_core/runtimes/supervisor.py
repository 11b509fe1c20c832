"""``--restart on-failure``: a small process that keeps one runtime running.

Run as ``python -m tunnel_core.runtimes.supervisor --state-file F -- <runtime argv>``. It
starts the runtime (inheriting its stdout/stderr, i.e. the runtime log), and when the runtime
exits with a failure (non-zero status or a signal it did not ask for) starts it again after a
backoff of 0.5 s doubling to 30 s (reset after 60 s of healthy uptime). SIGTERM/SIGINT stop
the supervisor: the runtime gets SIGTERM, a grace period, then SIGKILL. Its state (child pid
and start time, restarts, last exit) is written atomically to the state file for ``status``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tunnel_core.fileutil import atomic_write

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
STABLE_AFTER = 60.0
CHILD_GRACE = 10.0


def _log(msg: str, **fields: Any) -> None:
    rec = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "level": "WARN" if "exit_code" in fields
           else "INFO", "msg": msg, "component": "supervisor", **fields}
    sys.stderr.write(json.dumps(rec) + "\n")
    sys.stderr.flush()


class Supervisor:
    def __init__(self, argv: Sequence[str], state_file: str) -> None:
        self.argv = list(argv)
        self.state_file = state_file
        self.stopping = threading.Event()
        self.child: subprocess.Popen[bytes] | None = None
        self._termed = 0  # pid already sent SIGTERM: a second one would make the runtime abandon its drain
        self.state: dict[str, Any] = {
            "supervisor_pid": os.getpid(), "restart_policy": "on-failure", "state": "starting", "restarts": 0,
            "child_pid": 0, "child_start_time": "", "last_exit_code": None, "last_exit_at": "",
        }

    def write(self, **changes: Any) -> None:
        self.state.update(changes, updated_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        try:
            atomic_write(Path(self.state_file), json.dumps(self.state, indent=2) + "\n")
        except OSError as exc:
            _log("cannot write supervisor state", error_type=type(exc).__name__)

    def _terminate_child(self) -> None:
        child = self.child
        if child is not None and child.poll() is None and self._termed != child.pid:
            self._termed = child.pid
            child.send_signal(signal.SIGTERM)

    def on_signal(self, signum: int, _frame: object) -> None:
        self.stopping.set()
        self._terminate_child()

    def _start(self) -> subprocess.Popen[bytes]:
        import psutil

        child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, close_fds=True)
        try:
            start = f"{psutil.Process(child.pid).create_time():.3f}"
        except psutil.Error:
            start = ""
        self.child = child
        self.write(state="running", child_pid=child.pid, child_start_time=start)
        if self.stopping.is_set():  # a stop request raced the start
            self._terminate_child()
        return child

    def run(self) -> int:
        backoff = BACKOFF_START
        while not self.stopping.is_set():
            started = time.monotonic()
            child = self._start()
            code = self._wait(child)
            self.write(state="exited", child_pid=0, child_start_time="", last_exit_code=code,
                       last_exit_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            if self.stopping.is_set():
                break
            if code == 0:
                _log("runtime exited cleanly; not restarting")
                self.write(state="stopped")
                return 0
            if time.monotonic() - started >= STABLE_AFTER:
                backoff = BACKOFF_START
            restarts = int(self.state["restarts"]) + 1
            _log("runtime exited; restarting", exit_code=code, restart_in_ms=int(backoff * 1000), restarts=restarts)
            self.write(state="backoff", restarts=restarts)
            if self.stopping.wait(backoff):
                break
            backoff = min(backoff * 2, BACKOFF_CAP)
        self.write(state="stopped")
        return 0

    def _wait(self, child: subprocess.Popen[bytes]) -> int:
        """Wait for the child; once stopping, SIGTERM it and SIGKILL it after the grace period."""
        stop_seen: float | None = None
        while True:
            try:
                return child.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                if not self.stopping.is_set():
                    continue
                if stop_seen is None:
                    stop_seen = time.monotonic()
                    self._terminate_child()
                elif time.monotonic() - stop_seen > CHILD_GRACE:
                    child.kill()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tunnel_core.runtimes.supervisor")
    parser.add_argument("--state-file", required=True)
    parser.add_argument("--restart", default="on-failure", choices=["on-failure"])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the runtime command after --")
    sup = Supervisor(command, args.state_file)
    signal.signal(signal.SIGTERM, sup.on_signal)
    signal.signal(signal.SIGINT, sup.on_signal)
    return sup.run()


if __name__ == "__main__":
    sys.exit(main())
