"""``codex status``: is Codex here, can it run the assistant, is the plugin wired to this installation.

Plugin facts come from files only (``codex_plugin_state``, also used by the operator UI):
installations under ``$CODEX_HOME/plugins/cache/<marketplace>/<plugin>/<version>/`` (a
``local`` version wins, else the highest), ``[plugins."<plugin>@<marketplace>"]`` tables of
``config.toml`` (enabled unless ``enabled = false``), and whether the installed ``.mcp.json``
starts this installation's interpreter. An enabled key without an installation is *stale*.
Codex facts come from running it: ``codex --version``, ``codex app-server --help`` and a short
app-server session (``initialize`` + ``account/read``) for the assistant bridge.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from tunnel_core.codex import tomledit
from tunnel_core.codex.appserver import AppServer, AppServerError, app_server_argv, app_server_cwd
from tunnel_core.codex.bundle import (
    BINARY_HINT_FILE,
    LEGACY_PLUGIN_NAMES,
    MCP_SERVER_NAME,
    PLUGIN_NAME,
    current_entry_point,
    current_launch,
)
from tunnel_core.codex.home import DOCS_URL, codex_child_env, codex_home, find_codex
from tunnel_core.codex.packages import InstallMethods, install_methods
from tunnel_core.errors import ConfigError

PROBE_TIMEOUT = 20.0


class PluginInstallation(BaseModel):
    key: str
    plugin: str
    marketplace: str
    version: str
    dir: str
    manifest_path: str
    installed: bool
    enabled: bool
    legacy: bool
    binary_hint_path: str = ""
    binary_hint: str = ""
    mcp_command: list[str] = []
    points_here: bool = False


class StaleEntry(BaseModel):
    key: str
    marketplace: str
    reason: str


class PluginState(BaseModel):
    """The plugin as Codex would load it, read from files only."""

    codex_home: str
    config_path: str
    config_exists: bool
    config_error: str = ""
    plugin_installed: bool
    plugin_enabled: bool
    plugin_key: str = ""
    plugin_marketplace: str = ""
    plugin_version: str = ""
    plugin_dir: str = ""
    plugin_mcp_command: list[str] = []
    plugin_points_here: bool = False
    current_mcp_command: list[str]
    installations: list[PluginInstallation]
    enabled_plugin_config_keys: list[str]
    stale_plugin_config_entries: list[StaleEntry]
    legacy_plugin_keys: list[str]
    reinstall_command: str


def _version_key(version: str, mtime: float) -> tuple[int, tuple[int, ...], float]:
    nums = tuple(int(n) for n in re.findall(r"\d+", version)[:3])
    return (1 if version == "local" else 0, nums, mtime)


def _mcp_command(root: Path) -> list[str]:
    try:
        data = json.loads((root / ".mcp.json").read_text(encoding="utf-8"))
        servers = data.get("mcpServers", data)
        entry = servers.get(MCP_SERVER_NAME) or next(iter(servers.values()))
        return [str(entry.get("command", "")), *(str(a) for a in entry.get("args", []))]
    except (OSError, ValueError, AttributeError, StopIteration, TypeError):
        return []


def _config_plugins(config: Path) -> tuple[dict[str, Any], str, bool]:
    try:
        text = config.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}, "", False
    except (OSError, UnicodeDecodeError) as exc:
        return {}, f"cannot read {config}: {exc}", True
    try:
        data = tomledit.parse(text, str(config))
    except ConfigError as exc:
        return {}, str(exc), True
    plugins = data.get("plugins")
    return (plugins if isinstance(plugins, dict) else {}), "", True


def codex_plugin_state(env: Mapping[str, str], codex_home_flag: str | None = None) -> PluginState:
    """Every tunnel-client (and legacy tunnel-mcp) plugin installation and config entry; never raises."""
    home = codex_home(env, codex_home_flag)
    config = home / "config.toml"
    plugins, config_error, config_exists = _config_plugins(config)
    names = (PLUGIN_NAME, *LEGACY_PLUGIN_NAMES)
    enabled = sorted(k for k, v in plugins.items()
                     if k.split("@", 1)[0] in names and isinstance(v, dict) and v.get("enabled", True) is True)
    launch = current_launch()
    mine = [launch.command, *launch.args]
    found: dict[str, tuple[tuple[int, tuple[int, ...], float], PluginInstallation]] = {}
    for name in names:
        for version_dir in sorted(home.glob(f"plugins/cache/*/{name}/*")):
            if not version_dir.is_dir() or version_dir.name.startswith("."):
                continue
            marketplace = version_dir.parent.parent.name
            manifest = version_dir / ".codex-plugin" / "plugin.json"
            version = version_dir.name
            installed = False
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
                installed = isinstance(data, dict)
                if installed and isinstance(data.get("version"), str):
                    version = data["version"]
            except (OSError, ValueError):
                pass
            hint_path = version_dir / BINARY_HINT_FILE
            try:
                hint = hint_path.read_text(encoding="utf-8").strip()
            except OSError:
                hint = ""
            command = _mcp_command(version_dir)
            key = f"{name}@{marketplace}"
            inst = PluginInstallation(
                key=key, plugin=name, marketplace=marketplace, version=version, dir=str(version_dir),
                manifest_path=str(manifest), installed=installed, enabled=key in enabled, legacy=name != PLUGIN_NAME,
                binary_hint_path=str(hint_path) if hint else "", binary_hint=hint, mcp_command=command,
                points_here=bool(command) and command == mine,
            )
            try:
                mtime = manifest.stat().st_mtime
            except OSError:
                mtime = 0.0
            rank = _version_key(version_dir.name, mtime)
            if key not in found or rank > found[key][0]:
                found[key] = (rank, inst)
    installations = [inst for _, inst in sorted(found.values(), key=lambda p: p[1].key)]
    installed_keys = {i.key for i in installations if i.installed}
    stale = [StaleEntry(key=k, marketplace=k.split("@", 1)[1] if "@" in k else "",
                        reason="plugin is not installed" if not any(i.key == k for i in installations)
                        else "missing or invalid plugin.json")
             for k in enabled if k not in installed_keys]
    ours = [i for i in installations if not i.legacy and i.installed]
    best = next((i for i in ours if i.enabled), ours[0] if ours else None)
    reinstall = "tunnel-client codex plugin install" + (
        f" --marketplace {best.marketplace}" if best and best.marketplace != "debug" else "")
    return PluginState(
        codex_home=str(home), config_path=str(config), config_exists=config_exists, config_error=config_error,
        plugin_installed=best is not None, plugin_enabled=bool(best and best.enabled),
        plugin_key=best.key if best else "", plugin_marketplace=best.marketplace if best else "",
        plugin_version=best.version if best else "", plugin_dir=best.dir if best else "",
        plugin_mcp_command=best.mcp_command if best else [], plugin_points_here=bool(best and best.points_here),
        current_mcp_command=mine, installations=installations, enabled_plugin_config_keys=enabled,
        stale_plugin_config_entries=stale, legacy_plugin_keys=[i.key for i in installations if i.legacy],
        reinstall_command=reinstall,
    )


# ---------------------------------------------------------------------------- the Codex CLI


class CodexCli(BaseModel):
    detected: bool
    path: str = ""
    version: str = ""
    app_server_supported: bool = False
    app_server_support_error: str = ""


class BridgeProbe(BaseModel):
    """What a short app-server session said: can ``codex assistant`` run a turn?"""

    attempted: bool = False
    ready: bool = False
    logged_in: bool = False
    requires_openai_auth: bool = False
    account_type: str = ""
    user_agent: str = ""
    error: str = ""


def _run(argv: list[str], env: Mapping[str, str], timeout: float = PROBE_TIMEOUT) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, env=dict(env), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:g}s"
    except OSError as exc:
        return -1, str(exc.strerror or exc)
    return done.returncode, (done.stdout + "\n" + done.stderr).strip()


def inspect_codex(env: Mapping[str, str], home: Path) -> CodexCli:
    path = find_codex(env)
    if path is None:
        return CodexCli(detected=False)
    child = codex_child_env(env, home)
    code, out = _run([path, "--version"], child)
    version = ""
    if code == 0:
        m = re.search(r"(\d+\.\d+\.\d+\S*)", out)
        version = m.group(1) if m else out.splitlines()[-1] if out else ""
    code, out = _run([path, "app-server", "--help"], child)
    error = "" if code == 0 else (out.splitlines()[-1] if out else f"exit {code}")
    return CodexCli(detected=True, path=path, version=version, app_server_supported=code == 0,
                    app_server_support_error=error)


async def _probe(argv: list[str], env: Mapping[str, str], cwd: str) -> BridgeProbe:
    async with AppServer(argv, env=env, cwd=cwd, request_timeout=PROBE_TIMEOUT) as server:
        init = await server.initialize()
        account = await server.request("account/read", {"refreshToken": False})
    answer: dict[str, Any] = account if isinstance(account, dict) else {}
    acct = answer.get("account")
    requires = bool(answer.get("requiresOpenaiAuth", True))
    logged_in = isinstance(acct, dict)
    return BridgeProbe(attempted=True, ready=logged_in or not requires, logged_in=logged_in,
                       requires_openai_auth=requires,
                       account_type=str(acct.get("type", "")) if isinstance(acct, dict) else "",
                       user_agent=str(init.get("userAgent", "")))


def probe_bridge(env: Mapping[str, str], home: Path, codex: str) -> BridgeProbe:
    """Start ``codex app-server`` once: initialize and read the account (no model request is made)."""
    import anyio

    child = codex_child_env(env, home)
    try:
        return anyio.run(_probe, app_server_argv(codex, env), child, app_server_cwd(env))
    except AppServerError as exc:
        return BridgeProbe(attempted=True, error=str(exc))


# ---------------------------------------------------------------------------- status


class CodexStatus(BaseModel):
    """``tunnel-client codex status --json`` (field names follow the reference)."""

    state: Literal["missing", "unsupported", "error", "logged_out", "bridge_ready", "ready"]
    docs_url: str
    codex_home: str
    config_path: str
    detected: bool
    path: str
    version: str
    app_server_supported: bool
    app_server_support_error: str
    bridge_error: str
    bridge_ready: bool
    assistant_state: str
    assistant_error: str
    plugin_installed: bool
    plugin_enabled: bool
    plugin_key: str
    plugin_marketplace: str
    plugin_version: str
    plugin_dir: str
    plugin_binary_hint: str
    plugin_binary_hint_path: str
    plugin_binary_hint_found: bool
    plugin_mcp_command: list[str]
    current_mcp_command: list[str]
    current_tunnel_client_path: str
    plugin_matches_current_binary: bool
    plugin_reinstall_command: str
    enabled_plugin_config_keys: list[str]
    plugin_installations: list[PluginInstallation]
    stale_plugin_config_entries: list[StaleEntry]
    legacy_plugin_keys: list[str]
    config_error: str
    preferred_install_method: str
    recommended_install_command: str
    recommended_upgrade_command: str
    recommended_uninstall_command: str
    fallback_install_commands: list[str]
    recommended_commands: list[str]


def _recommendations(cli: CodexCli, bridge: BridgeProbe, plugin: PluginState, methods: InstallMethods) -> list[str]:
    out: list[str] = []
    if not cli.detected:
        out.append(methods.preferred.install_command)
    elif not cli.app_server_supported:
        out.append(methods.preferred.upgrade_command)
    if not plugin.plugin_installed or not plugin.plugin_points_here or not plugin.plugin_enabled:
        out.append(plugin.reinstall_command)
    for entry in plugin.stale_plugin_config_entries:
        name, _, marketplace = entry.key.partition("@")
        if name == PLUGIN_NAME:
            out.append(f"tunnel-client codex plugin uninstall --marketplace {marketplace}")
        else:
            out.append(f"remove the [plugins.\"{entry.key}\"] table from {plugin.config_path} (stale)")
    if cli.detected and bridge.attempted and not bridge.ready and bridge.requires_openai_auth and not bridge.error:
        out.append("codex login")
    if not out:
        out.append('tunnel-client codex assistant "how do I connect my MCP server?"')
    return out


def codex_status(env: Mapping[str, str], *, codex_home_flag: str | None = None, probe: bool = True) -> CodexStatus:
    """Everything ``codex status`` reports; runs Codex only to read its version and probe app-server."""
    home = codex_home(env, codex_home_flag)
    cli = inspect_codex(env, home)
    plugin = codex_plugin_state(env, codex_home_flag)
    bridge = probe_bridge(env, home, cli.path) if (probe and cli.app_server_supported) else BridgeProbe()
    methods = install_methods(env)
    best = next((i for i in plugin.installations if i.key == plugin.plugin_key), None)
    entry = current_entry_point()
    hint = best.binary_hint if best else ""
    if not cli.detected:
        state: Any = "missing"
    elif not cli.app_server_supported:
        state = "unsupported"
    elif bridge.error:
        state = "error"
    elif bridge.attempted and not bridge.ready:
        state = "logged_out"
    elif plugin.plugin_installed and plugin.plugin_enabled and plugin.plugin_points_here:
        state = "ready"
    else:
        state = "bridge_ready"
    assistant = ("ready" if bridge.ready else "login_required" if state == "logged_out"
                 else "offline" if state in ("missing", "unsupported", "error") else "unknown")
    return CodexStatus(
        state=state, docs_url=DOCS_URL, codex_home=plugin.codex_home, config_path=plugin.config_path,
        detected=cli.detected, path=cli.path, version=cli.version, app_server_supported=cli.app_server_supported,
        app_server_support_error=cli.app_server_support_error, bridge_error=bridge.error,
        bridge_ready=bridge.ready, assistant_state=assistant,
        assistant_error=bridge.error or ("Codex is not logged in" if state == "logged_out" else ""),
        plugin_installed=plugin.plugin_installed, plugin_enabled=plugin.plugin_enabled, plugin_key=plugin.plugin_key,
        plugin_marketplace=plugin.plugin_marketplace, plugin_version=plugin.plugin_version,
        plugin_dir=plugin.plugin_dir, plugin_binary_hint=hint,
        plugin_binary_hint_path=best.binary_hint_path if best else "", plugin_binary_hint_found=bool(hint),
        plugin_mcp_command=plugin.plugin_mcp_command, current_mcp_command=plugin.current_mcp_command,
        current_tunnel_client_path=entry or sys.executable,
        plugin_matches_current_binary=plugin.plugin_points_here, plugin_reinstall_command=plugin.reinstall_command,
        enabled_plugin_config_keys=plugin.enabled_plugin_config_keys, plugin_installations=plugin.installations,
        stale_plugin_config_entries=plugin.stale_plugin_config_entries, legacy_plugin_keys=plugin.legacy_plugin_keys,
        config_error=plugin.config_error, preferred_install_method=methods.preferred.name,
        recommended_install_command=methods.preferred.install_command,
        recommended_upgrade_command=methods.preferred.upgrade_command,
        recommended_uninstall_command=methods.preferred.uninstall_command,
        fallback_install_commands=[m.install_command for m in methods.methods if m.name != methods.preferred.name],
        recommended_commands=_recommendations(cli, bridge, plugin, methods),
    )
