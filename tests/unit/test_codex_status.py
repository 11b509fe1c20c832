"""Plugin detection from files (codex_plugin_state), status without Codex, package-manager commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tunnel_core.codex.diagnose import codex_diagnose
from tunnel_core.codex.install import install_plugin
from tunnel_core.codex.packages import package_commands
from tunnel_core.codex.status import codex_plugin_state, codex_status


def _fake_install(home: Path, name: str, marketplace: str, version_dir: str, command: list[str]) -> Path:
    root = home / "plugins/cache" / marketplace / name / version_dir
    (root / ".codex-plugin").mkdir(parents=True)
    (root / ".codex-plugin/plugin.json").write_text(json.dumps({"name": name, "version": "0.0.9"}))
    (root / ".mcp.json").write_text(json.dumps({"mcpServers": {name: {"command": command[0], "args": command[1:]}}}))
    return root


def test_nothing_installed(tmp_path: Path) -> None:
    state = codex_plugin_state({"CODEX_HOME": str(tmp_path)})
    assert (state.plugin_installed, state.plugin_enabled, state.plugin_points_here) == (False, False, False)
    assert state.reinstall_command == "tunnel-client codex plugin install"


def test_installed_here_enabled_and_pointing_here(tmp_path: Path) -> None:
    install_plugin({}, codex_home_flag=str(tmp_path))
    state = codex_plugin_state({"CODEX_HOME": str(tmp_path)})
    assert (state.plugin_installed, state.plugin_enabled, state.plugin_points_here) == (True, True, True)
    assert state.plugin_key == "tunnel-client@debug" and state.plugin_mcp_command == [sys.executable, "-m",
                                                                                       "agent_tools"]
    assert state.installations[0].binary_hint


def test_installed_by_another_installation(tmp_path: Path) -> None:
    _fake_install(tmp_path, "tunnel-client", "debug", "local", ["/other/python", "-m", "agent_tools"])
    (tmp_path / "config.toml").write_text('[plugins."tunnel-client@debug"]\n')  # enabled by default
    state = codex_plugin_state({"CODEX_HOME": str(tmp_path)})
    assert state.plugin_installed and state.plugin_enabled and not state.plugin_points_here
    diag = codex_diagnose({"CODEX_HOME": str(tmp_path), "PATH": ""})
    assert any("not this installation" in p for p in diag.problems)
    assert diag.next_steps == ["tunnel-client codex plugin install"]


def test_stale_entries_legacy_plugin_and_disabled(tmp_path: Path) -> None:
    _fake_install(tmp_path, "tunnel-mcp", "debug", "local", ["node", "./mcp/server.cjs"])
    _fake_install(tmp_path, "tunnel-client", "mine", "0.1.0", [sys.executable, "-m", "agent_tools"])
    (tmp_path / "config.toml").write_text(
        '[plugins."tunnel-client@gone"]\nenabled = true\n[plugins."tunnel-client@mine"]\nenabled = false\n'
        '[plugins."tunnel-mcp@debug"]\nenabled = true\n[plugins."unrelated@x"]\nenabled = true\n')
    state = codex_plugin_state({"CODEX_HOME": str(tmp_path)})
    assert [(s.key, s.reason) for s in state.stale_plugin_config_entries] == [("tunnel-client@gone",
                                                                                "plugin is not installed")]
    assert state.legacy_plugin_keys == ["tunnel-mcp@debug"]
    assert state.plugin_key == "tunnel-client@mine" and not state.plugin_enabled and state.plugin_points_here
    assert state.enabled_plugin_config_keys == ["tunnel-client@gone", "tunnel-mcp@debug"]
    assert state.reinstall_command == "tunnel-client codex plugin install --marketplace mine"


def test_local_version_wins(tmp_path: Path) -> None:
    _fake_install(tmp_path, "tunnel-client", "debug", "9.9.9", ["x"])
    _fake_install(tmp_path, "tunnel-client", "debug", "local", [sys.executable, "-m", "agent_tools"])
    state = codex_plugin_state({"CODEX_HOME": str(tmp_path)})
    assert state.plugin_dir.endswith("/local") and len(state.installations) == 1


def test_unreadable_config_is_reported(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("[plugins\n")
    state = codex_plugin_state({"CODEX_HOME": str(tmp_path)})
    assert "not valid TOML" in state.config_error


def test_status_without_codex(tmp_path: Path) -> None:
    status = codex_status({"CODEX_HOME": str(tmp_path), "PATH": str(tmp_path / "empty")})
    assert status.state == "missing" and not status.detected and status.assistant_state == "offline"
    assert status.recommended_commands[0] in ("npm install -g @openai/codex", "brew install codex")
    assert "tunnel-client codex plugin install" in status.recommended_commands


def test_status_with_a_codex_that_has_no_app_server(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "codex"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "codex-cli 0.1.2"; exit 0; fi\nexit 2\n')
    os.chmod(fake, 0o755)
    status = codex_status({"CODEX_HOME": str(tmp_path), "PATH": str(fake.parent)})
    assert (status.state, status.version, status.app_server_supported) == ("unsupported", "0.1.2", False)


@pytest.mark.parametrize(("platform", "tools", "method"), [
    ("darwin", ("brew", "npm"), "homebrew"),
    ("darwin", ("npm",), "npm"),
    ("darwin", (), "homebrew"),
    ("linux", ("brew", "npm"), "npm"),
    ("linux", (), "npm"),
])
def test_package_manager_preference(tmp_path: Path, platform: str, tools: tuple[str, ...], method: str) -> None:
    for tool in tools:
        p = tmp_path / tool
        p.write_text("#!/bin/sh\n")
        os.chmod(p, 0o755)
    result = package_commands("upgrade", {"PATH": str(tmp_path)}, platform)
    assert result.preferred_method == method
    assert result.command == ("brew upgrade codex" if method == "homebrew" else "npm install -g @openai/codex@latest")


def test_cli_prints_the_package_manager_command(tmp_path: Path) -> None:
    import io

    from tunnel_core.cli.main import main

    out = io.StringIO()
    assert main(["codex", "uninstall"], env={"PATH": str(tmp_path)}, stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue().splitlines()[0] == "npm uninstall -g @openai/codex"
    out = io.StringIO()
    assert main(["codex", "install", "--json"], env={"PATH": str(tmp_path)}, stdout=out, stderr=io.StringIO()) == 0
    data = json.loads(out.getvalue())
    assert data["action"] == "install" and {m["name"] for m in data["methods"]} == {"homebrew", "npm"}
