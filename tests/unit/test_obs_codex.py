"""Codex plugin state for the UI's Codex tab (opsserver.codex), on real files in a temp CODEX_HOME.

Every case runs against both readers: the Codex package's ``codex_plugin_state`` (what the
listener uses when it is installed) and the files-only fallback, which must agree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tunnel_core.opsserver import codex

Reader = Callable[[dict[str, str]], dict[str, Any]]


def _fallback(env: dict[str, str]) -> dict[str, Any]:
    return codex.summarize(codex.files_only_state(env), env)


@pytest.fixture(params=["listener", "files-only"])
def read(request: pytest.FixtureRequest) -> Reader:
    return codex.plugin_state if request.param == "listener" else _fallback


def _env(home: Path, path: str = "") -> dict[str, str]:
    return {"CODEX_HOME": str(home), "PATH": path}


def _install(home: Path, version_dir: str, version: str, name: str = "tunnel-client", marketplace: str = "debug") -> Path:
    manifest = home / "plugins/cache" / marketplace / name / version_dir / ".codex-plugin/plugin.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"name": name, "version": version}))
    return manifest.parent.parent


def test_no_codex_at_all(read: Reader, tmp_path: Path) -> None:
    state = read(_env(tmp_path / "absent"))
    assert (state["state"], state["detected"], state["plugin_installed"]) == ("codex_not_detected", False, False)
    assert state["install_hint"].startswith("tunnel-client codex plugin install")


def test_codex_on_path_but_no_plugin(read: Reader, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "codex").write_text("#!/bin/sh\n")
    os.chmod(bin_dir / "codex", 0o755)
    state = read(_env(tmp_path / "absent", str(bin_dir)))
    assert (state["state"], state["detected"], state["codex_on_path"]) == ("not_installed", True, True)


def test_installed_and_enabled_prefers_the_local_version(read: Reader, tmp_path: Path) -> None:
    home = tmp_path / "codex"
    _install(home, "0.9.0", "0.9.0")
    local = _install(home, "local", "0.1.0")
    (home / "config.toml").write_text('model = "x"\n\n[plugins."tunnel-client@debug"]\nenabled = true\n')
    state = read(_env(home))
    assert state["state"] == "installed" and state["install_hint"] == ""
    assert (state["plugin_key"], state["plugin_version"], state["plugin_dir"]) == (
        "tunnel-client@debug", "0.1.0", str(local))
    assert state["enabled_plugin_config_keys"] == ["tunnel-client@debug"]
    assert state["stale_plugin_config_entries"] == []


def test_installed_but_disabled(read: Reader, tmp_path: Path) -> None:
    home = tmp_path / "codex"
    _install(home, "local", "0.1.0")
    (home / "config.toml").write_text('[plugins."tunnel-client@debug"]\nenabled = false\n')
    assert read(_env(home))["state"] == "installed_not_enabled"


def test_enabled_entry_without_files_is_stale(read: Reader, tmp_path: Path) -> None:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text('[plugins."tunnel-client@debug"]\nenabled = true\n')
    state = read(_env(home))
    assert state["state"] == "stale_config"
    assert [e["key"] for e in state["stale_plugin_config_entries"]] == ["tunnel-client@debug"]


def test_the_reference_plugin_name_counts_as_legacy_not_installed(read: Reader, tmp_path: Path) -> None:
    home = tmp_path / "codex"
    _install(home, "local", "0.1.4", name="tunnel-mcp")
    (home / "config.toml").write_text('[plugins."tunnel-mcp@debug"]\nenabled = true\n')
    state = read(_env(home))
    assert state["state"] == "not_installed" and state["legacy_plugin_keys"] == ["tunnel-mcp@debug"]


def test_unreadable_config_is_reported_not_fatal(read: Reader, tmp_path: Path) -> None:
    home = tmp_path / "codex"
    home.mkdir()
    (home / "config.toml").write_text("[plugins\n")
    state = read(_env(home))
    assert state["state"] == "not_installed" and state["config_error"]
