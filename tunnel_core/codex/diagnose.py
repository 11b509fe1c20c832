"""``codex diagnose``: the plugin, this installation, its state and profile directories and one runtime.

Reports; never fails: every problem found becomes an entry of ``problems`` with a next step.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tunnel_core import __version__
from tunnel_core.codex.bundle import BINARY_HINT_FILE, FORWARDED_ENV, current_entry_point
from tunnel_core.codex.home import codex_home
from tunnel_core.codex.status import CodexCli, StaleEntry, codex_plugin_state, inspect_codex
from tunnel_core.config.settings import profile_dir
from tunnel_core.errors import ConfigError
from tunnel_core.state.root import resolve_state_root


class HealthProbe(BaseModel):
    url: str = ""
    healthz_ok: bool = False
    readyz_ok: bool = False
    error: str = ""


class CodexDiagnosis(BaseModel):
    """``tunnel-client codex diagnose [--alias A] --json``: plugin, binary, state and runtime wiring."""

    loaded_plugin_source: str
    codex_home: str
    config_path: str
    enabled_plugin_config_keys: list[str]
    cache_path: str
    plugin_key: str
    plugin_marketplace: str
    plugin_version: str
    plugin_installed: bool
    plugin_mcp_command: list[str]
    plugin_points_here: bool
    plugin_binary_hint: str
    plugin_binary_hint_path: str
    plugin_binary_hint_found: bool
    stale_plugin_config_entries: list[StaleEntry]
    resolved_tunnel_client_binary: str
    resolved_tunnel_client_source: str
    binary_version: str
    python: str
    state_root: str
    state_root_error: str = ""
    profile_dir: str
    profile_dir_error: str = ""
    forwarded_env_present: list[str]
    forwarded_env_missing: list[str]
    current_health_url: str = ""
    health_probe: HealthProbe | None = None
    runtime_status: dict[str, Any] | None = None
    runtime_status_error: str = ""
    codex_bridge: CodexCli
    problems: list[str]
    next_steps: list[str]


def codex_diagnose(env: Mapping[str, str], *, codex_home_flag: str | None = None, alias: str = "",
                   plugin_root: str = "", health_url: str = "") -> CodexDiagnosis:
    """Plugin files, this installation, state/profile directories and (optionally) one runtime."""
    home = codex_home(env, codex_home_flag)
    plugin = codex_plugin_state(env, codex_home_flag)
    best = next((i for i in plugin.installations if i.key == plugin.plugin_key), None)
    source = plugin_root or (best.dir if best else "")
    hint = best.binary_hint if best else ""
    if plugin_root:
        try:
            hint = (Path(plugin_root) / BINARY_HINT_FILE).read_text(encoding="utf-8").strip()
        except OSError:
            hint = ""
    entry = current_entry_point()
    problems: list[str] = []
    steps: list[str] = []
    if not plugin.plugin_installed:
        problems.append("the tunnel-client plugin is not installed in " + str(home))
        steps.append("tunnel-client codex plugin install")
    elif not plugin.plugin_points_here:
        problems.append(f"the installed plugin starts {' '.join(plugin.plugin_mcp_command) or '?'}, not this "
                        f"installation ({' '.join(plugin.current_mcp_command)})")
        steps.append(plugin.reinstall_command)
    elif not plugin.plugin_enabled:
        problems.append(f"{plugin.plugin_key} is installed but not enabled in {plugin.config_path}")
        steps.append(plugin.reinstall_command)
    for s in plugin.stale_plugin_config_entries:
        problems.append(f"stale config entry {s.key}: {s.reason}")
    try:
        state_root, state_error = str(resolve_state_root(env).path), ""
    except ConfigError as exc:
        state_root, state_error = "", str(exc)
    try:
        pdir, pdir_error = str(profile_dir({}, env)), ""
    except ConfigError as exc:
        pdir, pdir_error = "", str(exc)
    present = [n for n in FORWARDED_ENV if env.get(n)]
    missing = [n for n in ("CONTROL_PLANE_API_KEY", "OPENAI_ADMIN_KEY") if not env.get(n)]
    status: dict[str, Any] | None = None
    status_error = ""
    current_url = health_url
    if alias:
        from tunnel_core.runtimes.manager import AdminOptions
        from tunnel_core.runtimes.manager import status as runtime_status

        try:
            payload, _ = runtime_status(env, alias=alias, admin=AdminOptions())
            status = payload.model_dump(mode="json", exclude={"local"})
            current_url = current_url or payload.health_url
            if not (payload.process_running and payload.healthy):
                problems.append(f"runtime {alias} is {payload.runtime_state}")
                steps += payload.next_steps[:2]
        except ConfigError as exc:
            status_error = str(exc)
        except Exception as exc:  # a diagnosis reports, it does not fail
            status_error = f"{type(exc).__name__}: {exc}"
    probe = _health(current_url) if current_url else None
    return CodexDiagnosis(
        loaded_plugin_source=source, codex_home=str(home), config_path=plugin.config_path,
        enabled_plugin_config_keys=plugin.enabled_plugin_config_keys, cache_path=str(home / "plugins" / "cache"),
        plugin_key=plugin.plugin_key, plugin_marketplace=plugin.plugin_marketplace,
        plugin_version=plugin.plugin_version, plugin_installed=plugin.plugin_installed,
        plugin_mcp_command=plugin.plugin_mcp_command, plugin_points_here=plugin.plugin_points_here,
        plugin_binary_hint=hint, plugin_binary_hint_path=str(Path(source) / BINARY_HINT_FILE) if source else "",
        plugin_binary_hint_found=bool(hint), stale_plugin_config_entries=plugin.stale_plugin_config_entries,
        resolved_tunnel_client_binary=entry or sys.executable,
        resolved_tunnel_client_source="this_installation", binary_version=__version__, python=sys.executable,
        state_root=state_root, state_root_error=state_error, profile_dir=pdir, profile_dir_error=pdir_error,
        forwarded_env_present=present, forwarded_env_missing=missing, current_health_url=current_url,
        health_probe=probe, runtime_status=status, runtime_status_error=status_error,
        codex_bridge=inspect_codex(env, home), problems=problems, next_steps=steps,
    )


def _health(url: str) -> HealthProbe:
    from tunnel_core.runtimes.probe import probe_health

    try:
        probe = probe_health(url)
    except Exception as exc:  # a diagnosis reports, it does not fail
        return HealthProbe(url=url, error=f"{type(exc).__name__}: {exc}")
    return HealthProbe(url=probe.healthz.url or url, healthz_ok=probe.healthz.ok, readyz_ok=probe.readyz.ok,
                       error=probe.healthz.error or probe.readyz.error)
