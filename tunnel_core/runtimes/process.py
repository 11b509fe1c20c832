"""Child processes of the runtime manager: detached launch, identity, bounded termination.

A process is *ours* only while its pid is alive, not a zombie, and has the start time we
recorded at launch; a bare pid (no recorded start time) is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from tunnel_core.errors import ConfigError

START_TIME_TOLERANCE = 0.05  # seconds; create_time is stable per boot, this only absorbs float formatting


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    pid: int
    start_time: str
    executable: str = ""


def identity_of(pid: int) -> ProcessIdentity | None:
    """The identity of a live, non-zombie process, or None."""
    if pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        start = f"{proc.create_time():.3f}"
        try:
            exe = proc.exe()
        except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
            exe = ""
        return ProcessIdentity(pid, start, exe)
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:
        return None


def is_ours(pid: int, start_time: str) -> bool:
    """True when ``pid`` is alive and started at ``start_time`` (our process, not a reused pid)."""
    if pid <= 0 or not start_time:
        return False
    ident = identity_of(pid)
    if ident is None:
        return False
    try:
        return abs(float(ident.start_time) - float(start_time)) <= START_TIME_TOLERANCE
    except ValueError:
        return False


def open_private_log(path: Path) -> int:
    """Open ``path`` for appending, 0600, refusing symlinks and non-regular files; returns the fd."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    except OSError as exc:
        raise ConfigError(f"log file {path}: cannot open it ({exc.strerror}); it must be a regular file") from None
    import stat

    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"log file {path} must be a regular file")
    os.fchmod(fd, 0o600)
    return fd


def launch_detached(argv: Sequence[str], env: Mapping[str, str], log_path: Path, cwd: str | None = None
                    ) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session with stdin from /dev/null and stdout+stderr appended to ``log_path``."""
    fd = open_private_log(log_path)
    try:
        return subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=dict(env), cwd=cwd,
            start_new_session=True, close_fds=True,
        )
    except OSError as exc:
        raise ConfigError(f"cannot start {argv[0]}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class StopOutcome:
    signaled: bool  # we sent at least SIGTERM
    exited: bool  # it is gone now
    killed: bool = False  # SIGKILL was needed
    error: str = ""


def _wait_gone(proc: psutil.Process, timeout: float) -> bool:
    try:
        gone, _alive = psutil.wait_procs([proc], timeout=timeout)
    except psutil.Error:
        return True
    if gone:
        return True
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def terminate(pid: int, start_time: str, *, grace: float, kill_wait: float = 5.0) -> StopOutcome:
    """SIGTERM our process, wait up to ``grace``, then SIGKILL and wait up to ``kill_wait``."""
    if not is_ours(pid, start_time):
        return StopOutcome(signaled=False, exited=True)
    try:
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        return StopOutcome(signaled=False, exited=True)
    except psutil.AccessDenied as exc:
        return StopOutcome(signaled=False, exited=False, error=f"cannot signal process {pid}: {exc}")
    if _wait_gone(proc, grace):
        return StopOutcome(signaled=True, exited=True)
    with contextlib.suppress(psutil.Error):
        proc.send_signal(signal.SIGKILL)
    if _wait_gone(proc, kill_wait):
        return StopOutcome(signaled=True, exited=True, killed=True)
    return StopOutcome(signaled=True, exited=False, killed=True,
                       error=f"process {pid} did not exit after SIGTERM and SIGKILL")


def wait_exit(popen: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The exit code if ``popen`` ends within ``timeout``, else None."""
    deadline = time.monotonic() + timeout
    while True:
        code = popen.poll()
        if code is not None or time.monotonic() >= deadline:
            return code
        time.sleep(0.01)
