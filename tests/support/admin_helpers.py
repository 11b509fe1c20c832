"""Helpers for the admin and runtimes tests: a real local tunnel service subprocess, in-process and
subprocess CLI calls, bounded waits, and a finalizer that kills every runtime a test started."""

from __future__ import annotations

import io
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from tests.support.proc import wait_until
from tunnel_core.cli.main import main

WAIT = 20.0  # cap on any single wait
TUNNEL_CLIENT = str(Path(sys.prefix) / "bin" / "tunnel-client")
STDIO_SERVER = str(Path(__file__).with_name("stdio_server.py"))
T = TypeVar("T")


def new_key(prefix: str) -> str:
    return f"{prefix}_" + secrets.token_urlsafe(24).replace("-", "x")


@dataclass(frozen=True, slots=True)
class Keys:
    admin: str = field(default_factory=lambda: new_key("adm"))
    scoped_admin: str = field(default_factory=lambda: new_key("admscoped"))
    runtime: str = field(default_factory=lambda: new_key("rt"))

    def all(self) -> tuple[str, str, str]:
        return self.admin, self.scoped_admin, self.runtime


@dataclass(frozen=True, slots=True)
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def base_env(home: Path, **extra: str) -> dict[str, str]:
    """A minimal environment: nothing tunnel-client reads except what the test adds."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(home), "LANG": "C.UTF-8",
           "XDG_CONFIG_HOME": str(home / ".config"), "PYTHONUNBUFFERED": "1"}
    env.update(extra)
    return env


def cli(argv: Sequence[str], env: dict[str, str]) -> Result:
    """``tunnel-client argv`` in-process with injected environment and streams."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), env=env, stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


def cli_subprocess(argv: Sequence[str], env: dict[str, str], timeout: float = 60.0) -> Result:
    done = subprocess.run([TUNNEL_CLIENT, *argv], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Result(done.returncode, done.stdout, done.stderr)


@dataclass(slots=True)
class Service:
    """A running ``tunnel-client dev tunnel-service`` subprocess."""

    popen: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    url_file: Path

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(WAIT)


def service_env(home: Path, keys: Keys) -> dict[str, str]:
    return base_env(home, ADMIN_KEY=keys.admin, SCOPED_ADMIN_KEY=keys.scoped_admin, RUNTIME_KEY=keys.runtime)


@contextmanager
def tunnel_service(workdir: Path, keys: Keys, *, data_dir: Path | None = None,
                   scoped_org: str = "org_scoped") -> Iterator[Service]:
    """Start the local tunnel service with admin and runtime keys (by reference); always stopped afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    n = len(list(workdir.glob("service-*.log")))
    url_file = workdir / f"service-{n}.json"
    log_path = workdir / f"service-{n}.log"
    argv = [TUNNEL_CLIENT, "dev", "tunnel-service", "--listen", "127.0.0.1:0", "--url-file", str(url_file),
            "--admin-api-key", "env:ADMIN_KEY", "--admin-api-key", f"{scoped_org}=env:SCOPED_ADMIN_KEY",
            "--runtime-api-key", "env:RUNTIME_KEY", "--log.level", "info"]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(argv, env=service_env(workdir, keys), stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def described() -> dict[str, Any] | None:
            if popen.poll() is not None:
                raise AssertionError(f"tunnel service exited {popen.returncode}:\n{log_path.read_text()}")
            try:
                data: dict[str, Any] = json.loads(url_file.read_text())
                return data
            except (OSError, ValueError):
                return None

        desc = wait_until(described, what="the tunnel service URL file")
        yield Service(popen, desc["control_plane_base_url"], log_path, url_file)
    finally:
        Service(popen, "", log_path, url_file).stop()


def kill_runtimes(marker: str) -> list[int]:
    """Finalizer: SIGKILL every process (and its children) whose command line mentions ``marker``."""
    victims: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except (psutil.Error, TypeError):
            continue
        if marker in cmdline and proc.pid != os.getpid():
            try:
                for child in proc.children(recursive=True):
                    victims[child.pid] = child
            except psutil.Error:
                pass
            victims[proc.pid] = proc
    for proc in victims.values():
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(list(victims.values()), timeout=5)
    return sorted(victims)


def runtime_processes(marker: str) -> list[psutil.Process]:
    """Live ``tunnel_core run`` processes whose command line mentions ``marker``."""
    out = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmd = proc.info["cmdline"] or []
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except psutil.Error:
            continue
        if "run" in cmd and "tunnel_core" in cmd and any(marker in c for c in cmd):
            out.append(proc)
    return out


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in root.rglob("*") if p.is_file())


def assert_no_secrets(keys: Keys, *, texts: Sequence[str] = (), roots: Sequence[Path] = ()) -> None:
    """No key value appears in any given text or in any file under ``roots`` (state, profiles, logs, databases)."""
    for secret in keys.all():
        for i, text in enumerate(texts):
            assert secret not in text, f"a key value appeared in output #{i}"
        for path in files_under(*roots):
            assert secret.encode() not in path.read_bytes(), f"a key value appeared in {path}"
