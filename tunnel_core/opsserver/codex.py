"""Codex plugin state for the UI's Codex tab (read-only: looks at files, runs nothing).

The facts come from ``tunnel_core.codex.status.codex_plugin_state`` (the same reader as
``tunnel-client codex status``) when that package is present, else from the small files-only
reader below, which follows the same rules: installations under
``$CODEX_HOME/plugins/cache/<marketplace>/<plugin>/<version>/.codex-plugin/plugin.json``
(a ``local`` version wins, else the highest), ``[plugins."<plugin>@<marketplace>"]`` tables of
``config.toml`` (enabled unless ``enabled = false``), the reference's ``tunnel-mcp`` counted as a
legacy name, and an enabled key without an installation reported as *stale*.

On top of those facts this module adds what the tab shows first: ``detected`` (``$CODEX_HOME``
or its ``config.toml`` exists, or ``codex`` is on PATH), one ``state`` word and the install hint.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PLUGIN_NAME = "tunnel-client"
LEGACY_PLUGIN_NAMES = ("tunnel-mcp",)
INSTALL_HINT = "tunnel-client codex plugin install"


def codex_home(env: Mapping[str, str]) -> Path:
    explicit = (env.get("CODEX_HOME") or "").strip()
    if explicit:
        return Path(os.path.abspath(os.path.expanduser(explicit)))
    home = (env.get("HOME") or "").strip() or os.path.expanduser("~")
    return Path(os.path.abspath(home)) / ".codex"


def plugin_state(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``/api/codex/plugin`` body: the plugin facts plus ``state``, ``detected`` and ``install_hint``."""
    try:
        from tunnel_core.codex.status import codex_plugin_state
    except ImportError:  # the Codex integration is optional for the listener
        facts = files_only_state(env)
    else:
        facts = codex_plugin_state(env).model_dump()
    return summarize(facts, env)


def summarize(facts: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    home = Path(facts["codex_home"])
    on_path = shutil.which("codex", path=env.get("PATH", os.defpath)) is not None
    detected = home.is_dir() or bool(facts.get("config_exists")) or on_path
    stale = facts.get("stale_plugin_config_entries") or []
    if not detected:
        state = "codex_not_detected"
    elif facts.get("plugin_installed") and facts.get("plugin_enabled"):
        state = "installed"
    elif facts.get("plugin_installed"):
        state = "installed_not_enabled"
    elif stale:
        state = "stale_config"
    else:
        state = "not_installed"
    return {
        **facts,
        "state": state,
        "detected": detected,
        "codex_on_path": on_path,
        "install_hint": "" if state == "installed" else (facts.get("reinstall_command") or INSTALL_HINT),
    }


# ---------------------------------------------------------------------------- files-only fallback


def _rank(version_dir: str, version: str, mtime: float) -> tuple[int, tuple[int, ...], float]:
    return (1 if version_dir == "local" else 0, tuple(int(n) for n in re.findall(r"\d+", version)[:3]), mtime)


def _config_plugins(config: Path) -> tuple[dict[str, Any], str, bool]:
    try:
        data = tomllib.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}, "", False
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return {}, f"cannot read {config}: {exc}", True
    plugins = data.get("plugins")
    return (plugins if isinstance(plugins, dict) else {}), "", True


def files_only_state(env: Mapping[str, str]) -> dict[str, Any]:
    """Plugin facts with the field names of ``codex_plugin_state``, read from files only."""
    home = codex_home(env)
    config = home / "config.toml"
    plugins, config_error, config_exists = _config_plugins(config)
    names = (PLUGIN_NAME, *LEGACY_PLUGIN_NAMES)
    enabled = sorted(k for k, v in plugins.items()
                     if k.split("@", 1)[0] in names and isinstance(v, dict) and v.get("enabled", True) is True)
    found: dict[str, tuple[tuple[int, tuple[int, ...], float], dict[str, Any]]] = {}
    for name in names:
        for version_dir in sorted(home.glob(f"plugins/cache/*/{name}/*")):
            if not version_dir.is_dir() or version_dir.name.startswith("."):
                continue
            manifest = version_dir / ".codex-plugin" / "plugin.json"
            version, installed, mtime = version_dir.name, False, 0.0
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
                installed = isinstance(data, dict)
                if installed and isinstance(data.get("version"), str):
                    version = data["version"]
                mtime = manifest.stat().st_mtime
            except (OSError, ValueError):
                pass
            marketplace = version_dir.parent.parent.name
            key = f"{name}@{marketplace}"
            inst = {"key": key, "plugin": name, "marketplace": marketplace, "version": version,
                    "dir": str(version_dir), "installed": installed, "enabled": key in enabled,
                    "legacy": name != PLUGIN_NAME}
            rank = _rank(version_dir.name, version, mtime)
            if key not in found or rank > found[key][0]:
                found[key] = (rank, inst)
    installations = [inst for _, inst in sorted(found.values(), key=lambda p: p[1]["key"])]
    installed_keys = {i["key"] for i in installations if i["installed"]}
    stale = [{"key": k, "marketplace": k.split("@", 1)[1] if "@" in k else "", "reason": "plugin is not installed"}
             for k in enabled if k not in installed_keys]
    ours = [i for i in installations if not i["legacy"] and i["installed"]]
    best = next((i for i in ours if i["enabled"]), ours[0] if ours else None)
    return {
        "codex_home": str(home), "config_path": str(config), "config_exists": config_exists,
        "config_error": config_error, "plugin_installed": best is not None,
        "plugin_enabled": bool(best and best["enabled"]), "plugin_key": best["key"] if best else "",
        "plugin_marketplace": best["marketplace"] if best else "", "plugin_version": best["version"] if best else "",
        "plugin_dir": best["dir"] if best else "", "installations": installations,
        "enabled_plugin_config_keys": enabled, "stale_plugin_config_entries": stale,
        "legacy_plugin_keys": [i["key"] for i in installations if i["legacy"]],
        "reinstall_command": INSTALL_HINT,
    }
