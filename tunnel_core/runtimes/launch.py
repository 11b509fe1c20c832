"""Start a runtime (or find the one already running) and wait, bounded, for its /healthz."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tunnel_core.config.specs import SPECS
from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.fileutil import remove_quietly
from tunnel_core.runtimes.probe import control_plane_rejection, probe_health, probe_healthz, read_health_url
from tunnel_core.runtimes.process import identity_of, is_ours, launch_detached, terminate, wait_exit
from tunnel_core.runtimes.tmux import kill_session, session_running
from tunnel_core.state.records import ProcessRecord
from tunnel_core.state.refs import reference_available, reference_env_name

HEALTH_TIMEOUT = 20.0  # Python start-up plus profile load; returns as soon as /healthz answers
READY_SETTLE = 3.0  # after /healthz, how long to give /readyz before reporting
POLL_INTERVAL = 0.05
STOP_GRACE = 10.0  # the runtime drains held commands for up to 5 s on SIGTERM

# Launched children stay referenced so a long-lived caller (the agent tool server) reaps them.
_children: list[subprocess.Popen[bytes]] = []

# The child must take its settings from the generated profile: any of these in the
# caller's environment would override it (env > YAML), so they are not passed on.
_PROFILE_OWNED_ENV = frozenset(
    {s.env for s in SPECS if s.env}
    | {"TUNNEL_CLIENT_CONFIG", "TUNNEL_CLIENT_PROFILE", "TUNNEL_CLIENT_PROFILE_FILE", "TUNNEL_CLIENT_PROFILE_DIR",
       "CONTROL_PLANE_API_KEY", "OPENAI_API_KEY", "OPENAI_ADMIN_KEY"}
)


@dataclass(slots=True)
class LaunchResult:
    mode: str = "process"
    command: str = ""
    launched: bool = False
    started: bool = False
    running: bool = False
    healthy: bool = False
    ready: bool = False
    already_running: bool = False
    session_name: str = ""
    health_url: str = ""
    pid: int = 0
    pid_start_time: str = ""
    pid_executable: str = ""
    log_path: str = ""
    exit_code: int | None = None
    log_tail: str = ""


def runtime_argv(profile_dir: str, profile_name: str, tunnel_client_bin: str = "") -> list[str]:
    """``tunnel-client run --profile-dir D --profile P`` for this installation."""
    tail = ["run", "--profile-dir", profile_dir, "--profile", profile_name]
    if not tunnel_client_bin:
        return [sys.executable, "-m", "tunnel_core", *tail]
    path = os.path.realpath(tunnel_client_bin)
    script = os.path.realpath(Path(sys.prefix) / "bin" / "tunnel-client")
    if path == os.path.realpath(sys.executable):
        return [tunnel_client_bin, "-m", "tunnel_core", *tail]
    if path == script and os.access(path, os.X_OK):
        return [tunnel_client_bin, *tail]
    raise UsageError(f"--tunnel-client-bin must be the current tunnel-client ({script}) or its interpreter "
                     f"({sys.executable}); got {tunnel_client_bin}")


def supervised_argv(state_file: Path, argv: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "tunnel_core.runtimes.supervisor", "--state-file", str(state_file),
            "--restart", "on-failure", "--", *argv]


def shell_join(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


def child_env(env: Mapping[str, str], runtime_key_ref: str, admin_key_ref: str) -> dict[str, str]:
    """The caller's environment minus settings the profile owns and the admin key, plus the runtime key variable."""
    runtime_var = reference_env_name(runtime_key_ref)
    drop = set(_PROFILE_OWNED_ENV)
    if reference_env_name(admin_key_ref):
        drop.add(reference_env_name(admin_key_ref))
    out = {k: v for k, v in env.items() if k not in drop}
    if runtime_var and env.get(runtime_var):
        out[runtime_var] = env[runtime_var]
    return out


def log_tail(path: str | Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.rstrip("\n").splitlines()[-lines:])


def _observe(result: LaunchResult, health_url_file: Path, alive: Callable[[], bool], deadline: float) -> None:
    """Fill running/healthy/ready: poll until /healthz answers, the process is gone, or the deadline."""
    while True:
        result.running = bool(alive())
        raw = read_health_url(health_url_file)
        if raw and probe_healthz(raw):
            result.healthy = True
            break
        if not result.running or time.monotonic() >= deadline:
            break
        time.sleep(POLL_INTERVAL)
    if result.healthy:
        settle = min(deadline, time.monotonic() + READY_SETTLE)
        while True:
            probe = probe_health(read_health_url(health_url_file))
            result.health_url = probe.healthz.url
            result.ready = probe.readyz.ok
            if result.ready or time.monotonic() >= settle or not alive():
                break
            if control_plane_rejection(probe.base_url):  # no need to wait: it will not become ready
                break
            time.sleep(POLL_INTERVAL)
    result.started = result.healthy


def start_or_reuse(
    *, argv: Sequence[str], env: Mapping[str, str], runtime_key_ref: str, log_path: Path, health_url_file: Path,
    existing: ProcessRecord | None, replace: bool, health_timeout: float = HEALTH_TIMEOUT,
) -> LaunchResult:
    """Reuse our live runtime (unless ``replace``), else launch ``argv`` detached and wait for /healthz."""
    result = LaunchResult(command=shell_join(argv), log_path=str(log_path))
    deadline = time.monotonic() + health_timeout
    if existing is not None and existing.mode == "tmux" and session_running(existing.alias, existing.session_name):
        if not replace:  # a runtime the reference started in tmux: observe it, as the reference would
            result.mode, result.already_running, result.command = "tmux", True, existing.command
            result.session_name = existing.session_name
            _observe(result, health_url_file, lambda: session_running(existing.alias, existing.session_name),
                     deadline)
            result.log_tail = log_tail(log_path)
            return result
        _was_running, error = kill_session(existing.alias, existing.session_name)
        if error:
            raise ConfigError(f"cannot replace the running tmux runtime: {error}")
    if existing is not None and existing.mode == "process" and is_ours(existing.pid, existing.pid_start_time):
        if not replace:
            result.already_running = True
            result.pid, result.pid_start_time = existing.pid, existing.pid_start_time
            result.pid_executable = existing.pid_executable
            _observe(result, health_url_file, lambda: is_ours(existing.pid, existing.pid_start_time), deadline)
            result.log_tail = log_tail(log_path)
            return result
        outcome = terminate(existing.pid, existing.pid_start_time, grace=STOP_GRACE)
        if outcome.error:
            raise ConfigError(f"cannot replace the running runtime: {outcome.error}")
    available, reason = reference_available(runtime_key_ref, env)
    if not available:
        raise ConfigError(f"--runtime-api-key {runtime_key_ref}: {reason}; the runtime needs it to authenticate")
    remove_quietly(health_url_file)
    _children[:] = [c for c in _children if c.poll() is None]
    popen = launch_detached(argv, env, log_path, cwd=os.getcwd())
    _children.append(popen)
    ident = identity_of(popen.pid)
    result.launched = True
    result.pid = popen.pid
    result.pid_start_time = ident.start_time if ident else ""
    result.pid_executable = ident.executable if ident else ""
    result.exit_code = wait_exit(popen, 0.05)
    if result.exit_code is None:
        _observe(result, health_url_file, lambda: popen.poll() is None, deadline)
        result.exit_code = popen.poll()
    result.running = result.exit_code is None
    result.log_tail = log_tail(log_path)
    return result
