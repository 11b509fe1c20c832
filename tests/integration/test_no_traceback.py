"""No traceback reaches a user. Every CLI command is run with bad flags, and the commands that touch
the world with a busy port, an unreadable file (a directory where a file is expected, which even
root cannot read as a file), an unwritable path and an unreachable URL. Each must answer with its
error on one line (naming the flag as it was typed) and its exit code, never a ``Traceback``.

Quick commands run in-process (an escaping exception fails the test by itself); the long-running
ones (``run``, ``dev ...``, ``serve``) run as real processes so a traceback printed by any thread
or logger would show too.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.cli_helpers import clean_env, cli
from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc
from tunnel_core.cli.main import build_parser

TID = "tunnel_" + "6e" * 16
KEY = "rk_no_traceback_" + "k" * 16


def leaf_commands() -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []

    def walk(p: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append(path)
        for s in subs:
            for name, child in s.choices.items():
                walk(child, (*path, name))

    walk(build_parser(), ())
    return out


@dataclass(frozen=True)
class World:
    home: Path
    busy: int  # a port something listens on
    dead: int  # a port nothing listens on
    adir: Path  # a directory, passed where a file is expected

    def fill(self, template: str) -> list[str]:
        return shlex.split(template.format(busy=self.busy, dead=self.dead, dir=self.adir, home=self.home, tid=TID,
                                           py=sys.executable))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    home = tmp_path_factory.mktemp("world")
    (home / "adir").mkdir()
    with socket.socket() as busy, socket.socket() as dead:
        busy.bind(("127.0.0.1", 0))
        busy.listen(8)
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        yield World(home, busy.getsockname()[1], dead.getsockname()[1], home / "adir")


def env_for(world: World) -> dict[str, str]:
    return clean_env(world.home, CONTROL_PLANE_API_KEY=KEY, CODEX_HOME=str(world.home / "codex"))


def assert_one_line_error(code: int, out: str, err: str, *, want_code: int = 1, names: str = "") -> str:
    assert "Traceback" not in out + err, out + err
    assert KEY not in out + err
    assert code == want_code, (code, out, err)
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert last.startswith(("tunnel-client", "configure tunnel-client")), err
    if names:
        assert names in last, last
    return last


@pytest.mark.parametrize("path", leaf_commands(), ids=lambda p: " ".join(p))
def test_every_command_rejects_an_unknown_flag_in_one_line(world: World, path: tuple[str, ...]) -> None:
    r = cli([*path, "--no-such-flag"], env_for(world))
    last = assert_one_line_error(r.code, r.out, r.err)
    assert "--no-such-flag" in last or "arguments are required" in last, last


# In-process cases: (template, exit code, text the last line must contain).
QUICK: list[tuple[str, int, str]] = [
    # unreadable files (a directory given as a file) and unwritable paths
    ("profiles add p --from-file {dir}", 1, "--from-file"),
    ("profiles list --profile-dir {home}/nope/x --json", 0, ""),
    ("init --profile p --tunnel-id {tid} --mcp-server-url http://127.0.0.1:{dead}/mcp --profile-dir /proc/no/such",
     1, ""),
    ("admin tunnels get {tid} --admin-key file:{dir} --control-plane.base-url http://127.0.0.1:{dead}", 1,
     "--admin-key"),
    ("admin --admin-key file:{dir} tunnels list --organization-id org --control-plane.base-url "
     "http://127.0.0.1:{dead}", 1, "--admin-key"),
    ("codex plugin export --dir /proc/no/such", 1, "--dir: cannot write the bundle to /proc/no/such"),
    ("plugin codex export --dir /proc/no/such", 1, "--dir: cannot write the bundle to /proc/no/such"),
    ("codex plugin install --codex-home /proc/no/such", 1, ""),
    ("health --url-file {dir}", 2, ""),
    ("health --port {dead} --pid-file {dir}", 2, ""),
    ("doctor --config {dir}", 2, ""),
    ("doctor --profile-file {dir}", 2, ""),
    ("doctor --control-plane.tunnel-id {tid} --mcp.command '{py} -c pass' --ca-bundle {dir}", 2, ""),
    # unreachable URLs
    ("admin tunnels get {tid} --admin-key env:CONTROL_PLANE_API_KEY --control-plane.base-url http://127.0.0.1:{dead}",
     1, "cannot connect to http://127.0.0.1:{dead}/v1/tunnels/{tid}: connection refused"),
    ("admin tunnels list --organization-id org --admin-key env:CONTROL_PLANE_API_KEY --control-plane.base-url "
     "http://127.0.0.1:{dead}", 1, ""),
    ("admin tunnels create --name a --description b --organization-id o --admin-key env:CONTROL_PLANE_API_KEY "
     "--control-plane.base-url http://127.0.0.1:{dead}", 1, ""),
    ("admin runtime-keys list --tunnel-id {tid} --admin-key env:CONTROL_PLANE_API_KEY --control-plane.base-url "
     "http://127.0.0.1:{dead}", 1, ""),
    ("admin caller-tokens list --tunnel-id {tid} --admin-key env:CONTROL_PLANE_API_KEY --control-plane.base-url "
     "http://127.0.0.1:{dead}", 1, ""),
    ("runtimes list --admin-key env:CONTROL_PLANE_API_KEY --control-plane-base-url http://127.0.0.1:{dead} "
     "--organization-id o", 1, ""),
    ("runtimes create --alias a --admin-key env:CONTROL_PLANE_API_KEY --control-plane-base-url "
     "http://127.0.0.1:{dead} --organization-id o", 1, ""),
    ("health --url http://127.0.0.1:{dead}", 2, ""),
    ("health --port {dead} --require-control-plane-poll", 2, ""),
    ("doctor --control-plane.tunnel-id {tid} --mcp.server-url http://127.0.0.1:{dead}/mcp "
     "--control-plane.base-url http://127.0.0.1:{dead} --health.listen-addr 127.0.0.1:{busy} --online", 2, ""),
    ("codex diagnose --health-url http://127.0.0.1:{dead} --codex-home {home}/codex", 0, ""),
    # bad values
    ("health --port notaport", 1, "--port"),
    ("dev proxy --duration soon", 1, "--duration"),
    ("admin-profiles set p --control-plane-base-url notaurl", 1, "--control-plane-base-url"),
    ("profiles samples show nope", 1, ""),
    ("help nope", 1, ""),
    ("runtimes status nope", 1, ""),
]


@pytest.mark.parametrize(("template", "code", "names"), QUICK, ids=[q[0][:60] for q in QUICK])
def test_quick_commands_fail_in_one_line(world: World, template: str, code: int, names: str) -> None:
    r = cli(world.fill(template), env_for(world))
    assert "Traceback" not in r.out + r.err and KEY not in r.out + r.err
    assert r.code == code, (r.code, r.out, r.err)
    if code == 1:
        assert_one_line_error(r.code, r.out, r.err, names=" ".join(world.fill(names)))


# Real processes: (template, text the last line must contain). All must exit 1 on their own.
LONG: list[tuple[str, str]] = [
    ("run --control-plane.tunnel-id {tid} --mcp.server-url http://127.0.0.1:{dead}/mcp "
     "--health.listen-addr 127.0.0.1:{busy}", "--health.listen-addr / HEALTH_LISTEN_ADDR: cannot listen on"),
    ("run --control-plane.tunnel-id {tid} --mcp.server-url http://127.0.0.1:{dead}/mcp "
     "--health-listen-addr 127.0.0.1:{busy}", "--health-listen-addr / HEALTH_LISTEN_ADDR: cannot listen on"),
    ("run --control-plane-tunnel-id bad --mcp.server-url http://127.0.0.1:{dead}/mcp", "(--control-plane-tunnel-id "),
    ("run --embedded-mcp-stub --control-plane.tunnel-id {tid} --embedded-mcp-listen-addr 127.0.0.1:{busy} "
     "--health.listen-addr 127.0.0.1:0", "--embedded-mcp-listen-addr: cannot listen on"),
    ("run --config {dir}", "config file"),
    ("run --control-plane.tunnel-id {tid} --mcp.server-url http://127.0.0.1:{dead}/mcp "
     "--health.listen-addr 127.0.0.1:0 --health.url-file {dir}", "--health.url-file / HEALTH_URL_FILE: cannot write"),
    ("run --control-plane.tunnel-id {tid} --mcp.server-url http://127.0.0.1:{dead}/mcp "
     "--health.listen-addr 127.0.0.1:0 --pid.file {dir}", "--pid.file / PID_FILE: cannot write"),
    ("run --control-plane.tunnel-id {tid} --mcp.server-url http://127.0.0.1:{dead}/mcp "
     "--health.listen-addr 127.0.0.1:0 --log.file {dir}", "--log.file / LOG_FILE / log.file: cannot open"),
    ("dev proxy --health-listen-addr 127.0.0.1:{busy}", "--health-listen-addr / HEALTH_LISTEN_ADDR: cannot listen on"),
    ("dev proxy --listen 127.0.0.1:{busy}", "--listen: cannot listen on"),
    ("dev proxy --url-file {dir}", "--url-file: cannot write"),
    ("dev proxy --health-url-file {dir}", "--health-url-file / HEALTH_URL_FILE: cannot write"),
    ("dev proxy --mcp-server-url http://127.0.0.1:{dead}/mcp --readiness-timeout 3s", "the tunnel is not ready"),
    ("dev tunnel-service --listen 127.0.0.1:{busy}", "--listen: cannot listen on"),
    ("dev tunnel-service --listen 127.0.0.1:0 --url-file {dir}", "--url-file: cannot write"),
    ("dev tunnel-service --runtime-api-key file:{dir}", "--runtime-api-key: cannot read"),
    ("dev mcp-stub --listen-addr 127.0.0.1:{busy}", "--listen-addr: cannot listen on"),
    ("serve --listen 127.0.0.1:{busy} --tunnel-id {tid} --runtime-api-key env:CONTROL_PLANE_API_KEY",
     "cannot listen on"),
]


@pytest.mark.parametrize(("template", "names"), LONG, ids=[t[0][:60] for t in LONG])
def test_long_running_commands_fail_in_one_line(world: World, template: str, names: str) -> None:
    proc = Proc([TUNNEL_CLIENT, *world.fill(template)], env_for(world))
    try:
        code = proc.wait(WAIT)
        out, err = "\n".join(proc.stdout.lines), "\n".join(proc.stderr.lines)
        assert_one_line_error(code, out, err, names=names)
        assert "--health.listen-addr" not in err if "--health-listen-addr" in template else True
    finally:
        proc.kill()


def test_run_against_an_unreachable_control_plane_stops_cleanly(world: World) -> None:
    proc = Proc([TUNNEL_CLIENT, *world.fill(
        "run --control-plane.tunnel-id {tid} --control-plane.base-url http://127.0.0.1:{dead} --embedded-mcp-stub "
        "--health.listen-addr 127.0.0.1:0 --log.format json")], env_for(world))
    try:
        proc.wait_log("poll failed; backing off")
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0
        assert "Traceback" not in proc.output() and KEY not in proc.output()
    finally:
        proc.kill()


def test_an_unexpected_error_is_one_line_unless_the_traceback_is_asked_for(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunnel_core.ops import samples

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated defect")

    monkeypatch.setattr(samples, "list_samples", broken)  # a bug, not a user error
    env = env_for(world)
    r = cli(["profiles", "samples", "list"], env)
    assert r.code == 1 and "Traceback" not in r.err
    assert r.err.strip() == ("tunnel-client: unexpected error (RuntimeError: simulated defect); this is a bug, please "
                             "report it with the output of the same command run with TUNNEL_CLIENT_TRACEBACK=1")
    with pytest.raises(RuntimeError):
        cli(["profiles", "samples", "list"], {**env, "TUNNEL_CLIENT_TRACEBACK": "1"})


def test_every_leaf_command_is_exercised() -> None:
    """A new command must join these cases: the unknown-flag test covers it; list it here if it touches the world."""
    covered = {tuple(t.split()[:n]) for t, *_ in [*QUICK, *LONG] for n in (1, 2, 3)}
    touching = {p for p in leaf_commands() if p[0] in ("run", "dev", "serve", "health", "doctor", "admin")}
    missing = sorted(" ".join(p) for p in touching if p not in covered and not _exempt(p))
    assert not missing, f"commands without a busy-port/unreadable-file/unreachable-URL case: {missing}"


def _exempt(path: tuple[str, ...]) -> bool:
    # Same code path as a covered sibling (one client, one error mapping for the whole group).
    return path[:2] in {("admin", "tunnels"), ("admin", "runtime-keys"), ("admin", "caller-tokens")}


assert os.sep == "/"  # the unreadable/unwritable paths above are POSIX paths
