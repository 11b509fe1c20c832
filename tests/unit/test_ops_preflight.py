"""stdio preflight: what exec would hit, reported with a fix: hint; nothing is executed."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from tunnel_core.ops.preflight import PreflightError, preflight_stdio_command


@pytest.fixture
def box(tmp_path: Path) -> Path:
    """A PATH directory with a working interpreter shim, a script and some broken programs."""
    bindir = tmp_path / "bin"
    bindir.mkdir()

    def exe(name: str, text: str, mode: int = 0o755) -> Path:
        p = bindir / name
        p.write_text(text)
        p.chmod(mode)
        return p

    exe("good", "#!/bin/sh\nexit 0\n")
    exe("noexec", "#!/bin/sh\nexit 0\n", 0o644)
    exe("badshebang", "#!/nonexistent/interp\n")
    exe("relshebang", "#!interp\n")
    exe("envmissing", "#!/usr/bin/env no-such-interpreter-xyz\n")
    exe("envgood", "#!/usr/bin/env good\n")
    exe("binary", "\x7fELF not really")
    (bindir / "adir").mkdir()
    (bindir / "adir").chmod(0o755)
    os.symlink(sys.executable, bindir / "python3")
    (tmp_path / "server.py").write_text("print('hi')\n")
    return tmp_path


def env_for(box: Path) -> dict[str, str]:
    return {"PATH": f"{box / 'bin'}:/usr/bin:/bin"}


OK_CASES = [
    "good",
    "good --flag value",
    "envgood",
    "binary",
    "python3 {box}/server.py",
    "python3 -u {box}/server.py --port 1",
    "python3 -m http.server",
    "python3 -c 'print(1)'",
    "python3 -W ignore {box}/server.py",
    "env FOO=1 good",
    "env -u HOME good",
    "sh -c 'exec good --x'",
    "sh -c 'FOO=1 good'",
    "sh {box}/server.py",
    "{box}/bin/good",
]


@pytest.mark.parametrize("command", OK_CASES)
def test_startable_commands_pass(box: Path, command: str) -> None:
    resolved = preflight_stdio_command(command.format(box=box), env_for(box))
    assert os.path.isabs(resolved)


FAIL_CASES = [
    ("no-such-program-xyz", "was not found on PATH", "fix: install it"),
    ("noexec", "is not executable", "fix: chmod +x"),
    ("adir", "is a directory", "fix:"),
    ("badshebang", "needs interpreter '/nonexistent/interp'", "fix:"),
    ("relshebang", "without a path", "fix: use an absolute path"),
    ("envmissing", "via env", "fix:"),
    ("python3 {box}/missing.py", "stdio MCP script", "fix: correct the script path"),
    ("python3 -u {box}", "is a directory", "fix:"),
    ("env FOO=1 no-such-program-xyz", "was not found on PATH", "fix:"),
    ("sh -c 'no-such-program-xyz --x'", "was not found on PATH", "fix:"),
    ("sh -c", "without a command", "fix:"),
    ("{box}/bin/missing", "was not found", "fix:"),
    ("'unterminated", "cannot be split", "fix: check its quotes"),
    ("", "is empty", "fix:"),
]


@pytest.mark.parametrize(("command", "reason", "hint"), FAIL_CASES)
def test_unstartable_commands_fail_with_a_fix_hint(box: Path, command: str, reason: str, hint: str) -> None:
    if command == "noexec" and os.geteuid() == 0:
        # root may execute a file with no x bit only if some x bit is set; this one has none.
        assert not (box / "bin" / "noexec").stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    with pytest.raises(PreflightError) as err:
        preflight_stdio_command(command.format(box=box), env_for(box))
    message = str(err.value)
    assert reason in message
    assert hint in message
    assert "\n" not in message


def test_path_comes_from_the_injected_environment(box: Path) -> None:
    with pytest.raises(PreflightError):
        preflight_stdio_command("good", {"PATH": "/nonexistent"})
    assert preflight_stdio_command("good", env_for(box)).endswith("/bin/good")
