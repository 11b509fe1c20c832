"""Read-and-stop support for runtimes that the reference implementation launched in tmux.

This project launches runtimes as detached processes only, but a shared state root may hold
``mode: tmux`` records written by the reference. Those sessions are observed and stopped,
and only when the recorded name is one the reference would have created for that alias.
"""

from __future__ import annotations

import shutil
import subprocess

TMUX_TIMEOUT = 5.0


def owned_session(alias: str, name: str) -> bool:
    return name.startswith(f"tunnel-mcp__{alias}__")


def _tmux(*args: str) -> subprocess.CompletedProcess[str] | None:
    exe = shutil.which("tmux")
    if exe is None:
        return None
    try:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=TMUX_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None


def session_running(alias: str, name: str) -> bool:
    if not owned_session(alias, name):
        return False
    done = _tmux("has-session", "-t", "=" + name)
    return done is not None and done.returncode == 0


def kill_session(alias: str, name: str) -> tuple[bool, str]:
    """(was running, error) after ``tmux kill-session`` of an owned session."""
    if not session_running(alias, name):
        return False, ""
    done = _tmux("kill-session", "-t", "=" + name)
    if done is None or done.returncode != 0:
        return True, (done.stderr.strip() if done else "tmux is unavailable") or "tmux kill-session failed"
    return True, ""
