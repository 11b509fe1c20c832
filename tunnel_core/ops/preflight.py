"""Can a stdio MCP command start at all? Checked before a profile is written and by doctor.

Follows the command the way exec would: the program must resolve on PATH (or exist at
the given path), be a file and be executable; a script's ``#!`` interpreter must exist;
``env`` and ``sh -c "..."`` wrappers are followed; for interpreters such as python or
node the script argument must exist and be readable. Every failure is a
``PreflightError`` whose message ends with a ``fix:`` hint. Nothing is executed, except by
``module_problem``, which asks a python interpreter whether it can find a module.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

from tunnel_core.errors import ConfigError

MAX_DEPTH = 4
SHELLS = frozenset({"sh", "bash", "zsh", "dash", "ksh"})
INTERPRETERS = frozenset({"python", "python3", "node", "ruby", "perl", "php", "deno"})
_PY_VERSIONED = re.compile(r"^python3(\.\d+)?$")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

# Options after which the interpreter runs code given inline, not a script file.
_INLINE_CODE = {
    "python": {"-m", "-c"},
    "node": {"-e", "--eval", "-p", "--print"},
    "ruby": {"-e"},
    "perl": {"-e", "-E"},
    "php": {"-r"},
    "deno": {"eval"},
}
# Options that take a value as the next argument (so that value is not the script).
_VALUE_OPTIONS = {
    "python": {"-W", "-X"},
    "node": {"-r", "--require", "--loader", "--import"},
    "ruby": {"-I", "-r"},
    "perl": {"-I", "-M"},
    "php": {"-c", "-d"},
    "deno": {"--config", "--import-map", "--cert"},
}


class PreflightError(ConfigError):
    """The stdio command cannot start; the message says why and ends with a ``fix:`` hint."""


def _q(path: str) -> str:
    return shlex.quote(path)


def _base(program: str) -> str:
    name = os.path.basename(program).lower()
    if name.endswith(".exe"):
        name = name[:-4]
    return "python" if _PY_VERSIONED.match(name) else name


def _first_on_path(program: str, path_env: str | None) -> str | None:
    for directory in (path_env or "").split(os.pathsep):
        candidate = os.path.join(directory or ".", program)
        if os.path.lexists(candidate):
            return candidate
    return None


def _resolve(program: str, path_env: str | None) -> str:
    """Absolute path of ``program`` as exec would find it, after checking it is an executable file."""
    if os.sep in program:
        candidate = Path(os.path.expanduser(program))
        if not candidate.exists():
            raise PreflightError(
                f"stdio MCP executable {program!r} was not found; fix: correct the path or install the program"
            )
    else:
        # An executable match first, as exec would pick; else the first entry of that name, to say why it fails.
        found = shutil.which(program, path=path_env) or _first_on_path(program, path_env)
        if found is None:
            raise PreflightError(
                f"stdio MCP executable {program!r} was not found on PATH; "
                "fix: install it, give its absolute path, or add its directory to PATH"
            )
        candidate = Path(found)
    if candidate.is_dir():
        raise PreflightError(
            f"stdio MCP executable {program!r} is a directory; fix: point the command at a program file, not {_q(str(candidate))}"
        )
    if not os.access(candidate, os.X_OK):
        raise PreflightError(f"stdio MCP executable {program!r} is not executable; fix: chmod +x {_q(str(candidate))}")
    # Not resolved through symlinks: a virtual environment's bin/python is a symlink to a base
    # interpreter that lacks the environment's packages, so showing the target would mislead.
    return os.path.abspath(candidate)


def _shebang(path: str) -> list[str] | None:
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise PreflightError(
            f"stdio MCP executable {path!r} cannot be read ({exc.strerror}); fix: chmod +r {_q(path)}"
        ) from None
    if not head.startswith(b"#!"):
        return None
    line = head[2:].split(b"\n", 1)[0].decode("utf-8", "replace").strip()
    try:
        return shlex.split(line)
    except ValueError:
        return []


def _check_shebang(script: str, path_env: str | None) -> None:
    argv = _shebang(script)
    if argv is None:
        return
    if not argv:
        raise PreflightError(
            f"stdio MCP script {script!r} has an empty or unreadable #! line; fix: name an installed interpreter on line 1"
        )
    if _base(argv[0]) == "env":
        nested = _env_target(argv)
        try:
            _check(nested, path_env, MAX_DEPTH)
        except PreflightError as exc:
            raise PreflightError(
                f"stdio MCP script {script!r} runs {nested[0]!r} via env, which is unavailable: {exc}"
            ) from None
        return
    if not os.path.isabs(argv[0]):
        raise PreflightError(
            f"stdio MCP script {script!r} names interpreter {argv[0]!r} without a path; "
            "fix: use an absolute path or #!/usr/bin/env <interpreter>"
        )
    try:
        _resolve(argv[0], path_env)
    except PreflightError as exc:
        raise PreflightError(
            f"stdio MCP script {script!r} needs interpreter {argv[0]!r}, which is unavailable: {exc}"
        ) from None


def _env_target(argv: list[str]) -> list[str]:
    """The command an ``env [options] [NAME=value...] cmd args`` line runs."""
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-S", "--split-string"):
            rest = argv[i + 1:]
            if len(rest) == 1:
                return shlex.split(rest[0])
            if rest:
                return rest
            break
        if arg in ("-u", "--unset", "-C", "--chdir"):
            i += 2
            continue
        if arg.startswith("-") or _ASSIGNMENT.match(arg):
            i += 1
            continue
        break
    if i >= len(argv):
        raise PreflightError(f"stdio MCP command {' '.join(argv)!r} runs env without a program; fix: name the program after env")
    return argv[i:]


def _readable_script(script: str) -> None:
    p = Path(os.path.expanduser(script))
    if not p.exists():
        raise PreflightError(
            f"stdio MCP script {script!r} was not found; fix: correct the script path in the command or create the file"
        )
    if p.is_dir():
        raise PreflightError(f"stdio MCP script {script!r} is a directory; fix: point the command at a script file")
    if not os.access(p, os.R_OK):
        raise PreflightError(f"stdio MCP script {script!r} is not readable; fix: chmod +r {_q(script)}")


def _script_index(interpreter: str, argv: list[str]) -> int | None:
    inline = _INLINE_CODE.get(interpreter, set())
    takes_value = _VALUE_OPTIONS.get(interpreter, set())
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return i + 1 if i + 1 < len(argv) else None
        if arg in inline or (interpreter == "node" and arg.startswith("--eval=")):
            return None
        if interpreter == "deno" and arg == "run":
            i += 1
            continue
        if arg in takes_value:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return i
    return None


def _check_shell(argv: list[str], path_env: str | None, depth: int) -> None:
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            if i + 1 < len(argv):
                _readable_script(argv[i + 1])
            return
        if arg.startswith("-") and "c" in arg[1:] and not arg.startswith("--"):
            if i + 1 >= len(argv):
                raise PreflightError(f"stdio MCP command uses {argv[0]} {arg} without a command; fix: add the command string")
            try:
                nested = shlex.split(argv[i + 1])
            except ValueError as exc:
                raise PreflightError(f"stdio MCP shell command {argv[i + 1]!r} cannot be split ({exc}); fix: check its quotes") from None
            while nested and (nested[0] in ("exec", "command") or _ASSIGNMENT.match(nested[0])):
                nested = nested[1:]
            if nested:
                _check(nested, path_env, depth + 1)
            return
        if arg.startswith("-"):
            i += 1
            continue
        _readable_script(arg)
        return


def _check(argv: list[str], path_env: str | None, depth: int) -> str:
    if not argv:
        raise PreflightError("stdio MCP command is empty; fix: give the program to run, e.g. \"python server.py\"")
    resolved = _resolve(argv[0], path_env)
    if os.name != "nt":
        _check_shebang(resolved, path_env)
    if depth >= MAX_DEPTH:
        return resolved
    base = _base(argv[0])
    if base in SHELLS:
        _check_shell(argv, path_env, depth)
    elif base in INTERPRETERS:
        idx = _script_index(base, argv)
        if idx is not None:
            _readable_script(argv[idx])
    elif base == "env":
        _check(_env_target(argv), path_env, depth + 1)
    return resolved


_FIND_SPEC = "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec(sys.argv[1]) else 3)"
MODULE_CHECK_SECONDS = 15.0


def _python_module(argv: list[str]) -> tuple[str, str] | None:
    """(interpreter, module) when ``argv`` runs ``python ... -m MODULE`` (through ``env`` wrappers too)."""
    while argv and _base(argv[0]) == "env":
        argv = _env_target(argv)
    if not argv or _base(argv[0]) != "python":
        return None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-m" and i + 1 < len(argv):
            return argv[0], argv[i + 1]
        if arg.startswith("-m") and len(arg) > 2:
            return argv[0], arg[2:]
        if arg in _VALUE_OPTIONS["python"]:
            i += 2
            continue
        if not arg.startswith("-") or arg == "-c":
            return None  # a script or inline code comes first: no module to check
        i += 1
    return None


def module_problem(command: str, env: Mapping[str, str]) -> str:
    """For ``python -m X``: why that interpreter cannot find module X, or "" (also when it cannot tell).

    Runs the interpreter once with ``importlib.util.find_spec`` on the top-level package name,
    which locates the module without importing (executing) any of it.
    """
    import subprocess

    try:
        found = _python_module(shlex.split(command))
    except (ValueError, PreflightError):
        return ""
    if found is None:
        return ""
    interpreter, module = found
    top = module.split(".")[0]
    path_env = env.get("PATH", os.defpath)
    program = interpreter if os.sep in interpreter else (shutil.which(interpreter, path=path_env) or interpreter)
    try:
        done = subprocess.run([program, "-c", _FIND_SPEC, top], env=dict(env), stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=MODULE_CHECK_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    if done.returncode == 3:
        return (f"stdio MCP module {top!r} is not importable by {program} (`{interpreter} -m {module}` would exit "
                f"with \"No module named {top}\"); fix: install it into that interpreter's environment, or use the "
                "python of the environment that has it")
    return ""


def preflight_stdio_command(command: str, env: Mapping[str, str]) -> str:
    """Check ``command`` (split like ``mcp.command``) can start; returns the resolved program path."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise PreflightError(f"stdio MCP command {command!r} cannot be split ({exc}); fix: check its quotes") from None
    return _check(argv, env.get("PATH", os.defpath), 0)
