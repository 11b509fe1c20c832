"""``codex plugin install|uninstall`` on real files: config.toml edits are byte-exact and reversible."""

from __future__ import annotations

import json
import stat
import sys
import tomllib
from pathlib import Path

import pytest

from tunnel_core.codex import tomledit
from tunnel_core.codex.install import (
    RECORD_FILE,
    export_bundle,
    install_plugin,
    plugin_dir,
    uninstall_plugin,
)
from tunnel_core.errors import ConfigError, UsageError

KEY = ("plugins", "tunnel-client@debug")

CONFIGS = {
    "absent": None,
    "empty": "",
    "no trailing newline": 'model = "o3"',
    "one trailing newline": 'model = "o3"\n',
    "blank line at end": 'model = "o3"\n\n',
    "crlf and comments": '# top\r\nmodel = "o3" # c\r\n\r\n[features]\r\nplugins = true\r\n',
    "other plugins": '[plugins."other@debug"]\nenabled = true\n\n[mcp_servers.x]\ncommand = "y"\nargs = [\n  ["a"],\n]\n',
    "brackets in strings": 's = """\n[plugins."tunnel-client@debug"]\n"""\nt = \'[not.a.table]\'\n',
    "unicode": '# caf\u00e9 \u2615\nname = "\u00fc"\n',
}


def _write(home: Path, text: str | None) -> Path:
    home.mkdir(exist_ok=True)
    config = home / "config.toml"
    if text is not None:
        config.write_bytes(text.encode())
    return config


@pytest.mark.parametrize("approve", ["none", "read-only", "all"])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_install_then_uninstall_is_byte_identical(tmp_path: Path, name: str, approve: str) -> None:
    home = tmp_path / "codex"
    config = _write(home, CONFIGS[name])
    before = config.read_bytes() if config.exists() else None

    first = install_plugin({}, codex_home_flag=str(home), approve_tools=approve)  # type: ignore[arg-type]
    installed = config.read_bytes()
    data = tomllib.loads(installed.decode())
    assert data["plugins"]["tunnel-client@debug"]["enabled"] is True
    server = data["plugins"]["tunnel-client@debug"].get("mcp_servers", {}).get("tunnel-client", {})
    if approve == "all":
        assert server["default_tools_approval_mode"] == "approve"
    elif approve == "read-only":
        assert server["tools"]["runtime_status"] == {"approval_mode": "approve"}
        assert "connect_stdio_mcp" not in server["tools"]
    if before is not None:
        assert installed.startswith(before)
    assert first.config_changed

    again = install_plugin({}, codex_home_flag=str(home), approve_tools=approve)  # type: ignore[arg-type]
    assert not again.config_changed and config.read_bytes() == installed

    result = uninstall_plugin({}, codex_home_flag=str(home))
    assert result.config_restored_exactly and result.removed_plugin_dir
    if before is None:
        assert not config.exists()
    else:
        assert config.read_bytes() == before
    assert not (home / "plugins").exists()


def test_installed_bundle_points_at_this_installation(tmp_path: Path) -> None:
    result = install_plugin({}, codex_home_flag=str(tmp_path / "codex"))
    target = plugin_dir(tmp_path / "codex", "debug")
    assert result.plugin_dir == str(target)
    mcp = json.loads((target / ".mcp.json").read_text())
    assert mcp["mcpServers"]["tunnel-client"]["command"] == sys.executable
    assert (target / ".codex-plugin" / "plugin.json").is_file()
    assert (target / "skills" / "tunnel-client" / "SKILL.md").is_file()
    assert (target / ".tunnel-client-bin").read_text().strip() == result.binary_hint
    assert stat.S_IMODE((target / ".mcp.json").stat().st_mode) == 0o644
    assert json.loads((target / RECORD_FILE).read_text())["plugin_key"] == "tunnel-client@debug"


def test_a_disabled_entry_is_enabled_in_place_and_restored(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    text = 'a = 1\n\n[plugins."tunnel-client@debug"]  # mine\nenabled = false   # off for now\n\n[x]\ny = 2\n'
    config = _write(home, text)
    install_plugin({}, codex_home_flag=str(home))
    edited = config.read_text()
    assert "enabled = true   # off for now" in edited and edited.count("[plugins.") == 1
    uninstall_plugin({}, codex_home_flag=str(home))
    assert config.read_text() == text


def test_a_user_owned_entry_is_kept_on_uninstall(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    text = '[plugins."tunnel-client@debug"]\nenabled = true\n'
    config = _write(home, text)
    install_plugin({}, codex_home_flag=str(home))
    assert config.read_text() == text
    uninstall_plugin({}, codex_home_flag=str(home))
    assert config.read_text() == text


def test_edits_after_install_fall_back_to_removing_the_plugin_tables(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    config = _write(home, 'model = "o3"\n')
    install_plugin({}, codex_home_flag=str(home), approve_tools="all")
    text = config.read_text().replace("enabled = true", "enabled = true # edited")
    config.write_text(text + '\n[later]\nkey = "v"\n')
    result = uninstall_plugin({}, codex_home_flag=str(home))
    assert not result.config_restored_exactly and result.notes
    left = config.read_text()
    assert "tunnel-client" not in left and '[later]\nkey = "v"' in left and left.startswith('model = "o3"\n')


def test_invalid_config_is_never_rewritten(tmp_path: Path) -> None:
    home = tmp_path / "codex"
    config = _write(home, "[plugins\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        install_plugin({}, codex_home_flag=str(home))
    assert config.read_text() == "[plugins\n"
    assert not plugin_dir(home, "debug").exists()


@pytest.mark.parametrize("marketplace", ["", ".", "..", "-x", "a/b", 'a"b', "a b"])
def test_bad_marketplace_names(tmp_path: Path, marketplace: str) -> None:
    with pytest.raises(UsageError):
        install_plugin({}, codex_home_flag=str(tmp_path), marketplace=marketplace)


def test_other_marketplace_and_codex_home_from_env(tmp_path: Path) -> None:
    env = {"CODEX_HOME": str(tmp_path / "env-home")}
    result = install_plugin(env, marketplace="mine")
    assert result.plugin_key == "tunnel-client@mine"
    assert (tmp_path / "env-home" / "plugins/cache/mine/tunnel-client/local/.mcp.json").is_file()
    assert uninstall_plugin(env, marketplace="debug").notes == [f"tunnel-client@debug was not installed in "
                                                                 f"{tmp_path / 'env-home'}"]
    uninstall_plugin(env, marketplace="mine")
    assert not (tmp_path / "env-home" / "config.toml").exists()


def test_export_writes_the_rendered_bundle(tmp_path: Path) -> None:
    result = export_bundle(str(tmp_path / "out"))
    assert ".codex-plugin/plugin.json" in result.files and ".tunnel-client-bin" in result.files
    assert json.loads((tmp_path / "out" / ".mcp.json").read_text())["mcpServers"]["tunnel-client"]["args"] == [
        "-m", "agent_tools"]


@pytest.mark.parametrize(("text", "keys"), [
    ('[a]\n[b.c]\n[[d]]\n', [("a",), ("b", "c"), ("d",)]),
    ('[ "x.y" . z ] # comment\n', [("x.y", "z")]),
    ("['lit'.\"q\\\"uote\"]\n", [("lit", 'q"uote')]),
    ('k = """\n[nope]\n"""\n[yes]\n', [("yes",)]),
    ("k = '''\n[nope]\n'''\n[yes]\n", [("yes",)]),
    ('arr = [\n  ["x"]\n]\n[yes]\n', [("yes",)]),
    ('inline = { a = [1,\n 2] }\n', []),
    ('s = "[not]"\n# [comment]\n', []),
])
def test_table_headers(text: str, keys: list[tuple[str, ...]]) -> None:
    assert [t.key for t in tomledit.tables(text)] == keys


def test_quote_key() -> None:
    assert tomledit.dotted(KEY) == 'plugins."tunnel-client@debug"'
    assert tomledit.quote_key("bare-key_1") == "bare-key_1"
    assert tomledit.quote_key('we"ird') == '"we\\"ird"'
