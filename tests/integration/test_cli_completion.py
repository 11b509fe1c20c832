"""``completion bash|zsh|fish`` and ``-v``: real scripts, run by the real shells.

bash runs the completion function the way readline does (COMP_LINE/COMP_POINT set, the
function called, COMPREPLY read); fish answers ``complete -C`` itself. zsh's completion
widgets need a terminal, so there the script's ``_tunnel_client`` runs with the completion
system's three entry points (``_describe``, ``compadd``, ``_files``) recording what they are
given, and registration with ``compinit`` is checked for real.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.cli_helpers import clean_env, cli, cli_subprocess
from tunnel_core import __version__

WAIT = 20.0


def _script(tmp_path: Path, shell: str, *extra: str) -> Path:
    r = cli_subprocess(["completion", shell, *extra], clean_env(tmp_path))
    assert (r.code, r.err) == (0, ""), r.err
    path = tmp_path / f"tc.{shell}"
    path.write_text(r.out)
    return path


def _shell(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed (.ci/run installs it)"
    return path


def _run(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=WAIT, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def bash_complete(tmp_path: Path, script: Path, line: str) -> list[str]:
    driver = (f"source {script}\n"
              f"COMP_LINE={_sq(line)}; COMP_POINT=${{#COMP_LINE}}; _tunnel_client\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    return [w for w in _run([_shell("bash"), "--norc", "-c", driver], clean_env(tmp_path)).splitlines() if w]


def fish_complete(tmp_path: Path, script: Path, line: str) -> list[str]:
    out = _run([_shell("fish"), "--no-config", "-c", f"source {script}; complete -C{_sq(line)}"],
               clean_env(tmp_path))
    return [w for w in out.splitlines() if w]


def zsh_complete(tmp_path: Path, script: Path, line: str) -> list[str]:
    driver = f"""source {script}
_describe() {{ shift 3; print -rl -- "${{(@P)1}}"; }}
compadd() {{ [[ $1 == -a ]] && print -rl -- "${{(@P)2}}"; }}
_files() {{ print -r -- '<files>'; }}
words=("${{(@z)1}}"); [[ $1 == *' ' ]] && words+=('')
CURRENT=${{#words}}; PREFIX=${{words[-1]}}
_tunnel_client
"""
    return _run([_shell("zsh"), "-f", "-c", driver, "zsh", line], clean_env(tmp_path)).splitlines()


def _sq(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def test_version_flag_short_and_long_print_the_version_alone(tmp_path: Path) -> None:
    for flag in ("-v", "--version"):
        r = cli_subprocess([flag], clean_env(tmp_path))
        assert (r.code, r.out, r.err) == (0, f"{__version__}\n", ""), flag


def test_completion_without_a_shell_shows_its_help(tmp_path: Path) -> None:
    r = cli(["completion"], clean_env(tmp_path))
    assert r.code == 0 and "bash" in r.out and "zsh" in r.out and "fish" in r.out
    bad = cli(["completion", "powershell"], clean_env(tmp_path))
    assert bad.code == 1 and "invalid choice: 'powershell'" in bad.err


def test_bash_completes_commands_flags_choices_and_files(tmp_path: Path) -> None:
    script = _script(tmp_path, "bash")
    assert "complete -o default -F _tunnel_client tunnel-client" in script.read_text()
    assert {"run", "dev", "doctor", "completion", "runtimes"} <= set(bash_complete(tmp_path, script, "tunnel-client "))
    assert bash_complete(tmp_path, script, "tunnel-client d") == ["dev", "doctor"]
    assert bash_complete(tmp_path, script, "tunnel-client dev ") == ["proxy", "tunnel-service", "mcp-stub"]
    assert bash_complete(tmp_path, script, "tunnel-client dev proxy --li") == ["--listen", "--listen-unix-socket"]
    assert bash_complete(tmp_path, script, "tunnel-client serve --engine-queue-backend ") == ["inmem", "redis"]
    # a flag's value is skipped while walking: "debug" is not taken for a command
    assert bash_complete(tmp_path, script, "tunnel-client run --log.level debug --mcp.ser") == ["--mcp.server-url"]
    assert bash_complete(tmp_path, script, "tunnel-client runtimes disconnect --admin-p") == ["--admin-profile"]
    (tmp_path / "profile-one.yaml").write_text("")
    assert bash_complete(tmp_path, script, f"tunnel-client run --profile-file {tmp_path}/profile-o") == [
        f"{tmp_path}/profile-one.yaml"]
    assert bash_complete(tmp_path, script, "tunnel-client completion ") == ["bash", "zsh", "fish"]


def test_fish_completes_with_descriptions_unless_told_not_to(tmp_path: Path) -> None:
    script = _script(tmp_path, "fish")
    dev = fish_complete(tmp_path, script, "tunnel-client dev ")
    assert "proxy\tlocal tunnel service + MCP target + tunnel client in one process; prints an MCP URL" in dev
    assert {line.split("\t")[0] for line in dev} == {"proxy", "tunnel-service", "mcp-stub"}
    assert fish_complete(tmp_path, script, "tunnel-client serve --engine-queue-backend ") == ["inmem", "redis"]
    flags = fish_complete(tmp_path, script, "tunnel-client run --control-plane.tu")
    assert [f.split("\t")[0] for f in flags] == ["--control-plane.tunnel-id"]
    (tmp_path / "prof.yaml").write_text("")
    assert f"{tmp_path}/prof.yaml" in fish_complete(tmp_path, script, f"tunnel-client doctor --config {tmp_path}/pr")
    bare = _script(tmp_path, "fish", "--no-descriptions")
    assert fish_complete(tmp_path, bare, "tunnel-client dev ") == ["mcp-stub", "proxy", "tunnel-service"]


def test_zsh_script_registers_with_compinit_and_completes(tmp_path: Path) -> None:
    script = _script(tmp_path, "zsh")
    assert script.read_text().startswith("#compdef tunnel-client\n")
    registered = _run([_shell("zsh"), "-f", "-c",
                       f"autoload -U compinit; compinit -u -d {tmp_path}/zcompdump; source {script}; "
                       "print -r -- $_comps[tunnel-client]"], clean_env(tmp_path))
    assert registered.strip() == "_tunnel_client"
    dev = zsh_complete(tmp_path, script, "tunnel-client dev ")
    assert "proxy:local tunnel service + MCP target + tunnel client in one process; prints an MCP URL" in dev
    assert zsh_complete(tmp_path, script, "tunnel-client serve --engine-queue-backend ") == ["inmem", "redis"]
    assert zsh_complete(tmp_path, script, "tunnel-client run --health.url-file ") == ["<files>"]
    flags = zsh_complete(tmp_path, script, "tunnel-client dev proxy --")
    assert "--listen:tunnel service address (default 127.0.0.1:0)" in flags and "--readiness-timeout" in " ".join(flags)
    bare = _script(tmp_path, "zsh", "--no-descriptions")
    assert zsh_complete(tmp_path, bare, "tunnel-client completion ") == ["bash", "zsh", "fish"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_every_script_parses_in_its_shell(tmp_path: Path, shell: str) -> None:
    script = _script(tmp_path, shell)
    _run([_shell(shell), "-n", str(script)], clean_env(tmp_path))
