"""``codex plugin install|uninstall|export``: put the bundle where Codex loads it, and take it back out.

Default route (as the reference does): copy the rendered bundle to
``$CODEX_HOME/plugins/cache/<marketplace>/tunnel-client/local/`` and enable it with a
``[plugins."tunnel-client@<marketplace>"]`` table in ``config.toml``. Every config edit is a
text edit whose exact bytes are kept in an install record inside the plugin directory, so
uninstall removes exactly what install added and leaves the rest of the file byte for byte.
Reinstalling is idempotent: nothing already added is added again.

Official route (``--via-marketplace``): write a local marketplace directory and let Codex
install from it (``codex plugin marketplace add DIR`` then ``codex plugin add NAME@MARKETPLACE``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from tunnel_core import __version__
from tunnel_core.codex import tomledit
from tunnel_core.codex.bundle import (
    BINARY_HINT_FILE,
    MCP_SERVER_NAME,
    PLUGIN_NAME,
    READ_ONLY_TOOLS,
    MarketplaceEntry,
    MarketplaceInterface,
    MarketplaceManifest,
    MarketplacePluginSource,
    current_entry_point,
    current_launch,
    load_bundle,
)
from tunnel_core.codex.home import check_marketplace, codex_child_env, codex_home, find_codex
from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.fileutil import atomic_write
from tunnel_core.state.root import utc_now

RECORD_FILE = ".tunnel-client-install.json"
OFFICIAL_MARKETPLACE = "tunnel-client-local"
MARKETPLACE_MARKER = ".tunnel-client-marketplace"
ApproveTools = Literal["none", "read-only", "all"]
CODEX_TIMEOUT = 120.0


class InstallRecord(BaseModel):
    """What install changed in config.toml, byte for byte (kept in the plugin directory)."""

    plugin_key: str
    config_path: str
    config_created: bool = False
    inserted: list[str] = []
    enabled_line: tuple[str, str] | None = None  # (original, replacement)
    installed_at: str = ""
    tunnel_client_version: str = ""
    mcp_command: list[str] = []


class InstallResult(BaseModel):
    route: Literal["cache", "marketplace"] = "cache"
    plugin_key: str
    plugin_name: str
    marketplace: str
    version: str
    codex_home: str
    plugin_dir: str
    config_path: str
    config_changed: bool
    config_notes: list[str] = []
    mcp_server: str
    mcp_command: list[str]
    binary_hint_path: str
    binary_hint: str
    approve_tools: str
    marketplace_dir: str = ""
    next_steps: list[str]


class UninstallResult(BaseModel):
    route: Literal["cache", "marketplace"] = "cache"
    plugin_key: str
    codex_home: str
    plugin_dir: str
    removed_plugin_dir: bool
    config_path: str
    config_changed: bool
    config_restored_exactly: bool
    notes: list[str] = []
    next_steps: list[str]


class ExportResult(BaseModel):
    dir: str
    files: list[str]
    mcp_command: list[str]
    binary_hint_path: str
    binary_hint: str
    next_steps: list[str]


def plugin_key(marketplace: str) -> str:
    return f"{PLUGIN_NAME}@{marketplace}"


def plugin_dir(home: Path, marketplace: str) -> Path:
    return home / "plugins" / "cache" / marketplace / PLUGIN_NAME / "local"


def binary_hint() -> str:
    """What ``.tunnel-client-bin`` holds: this installation's entry point (else its interpreter)."""
    return current_entry_point() or current_launch().command


def _write_bundle(dest: Path, files: Mapping[str, bytes]) -> list[str]:
    written = []
    for rel, data in sorted(files.items()):
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.chmod(path, 0o644)
        written.append(rel)
    (dest / BINARY_HINT_FILE).write_text(binary_hint() + "\n", encoding="utf-8")
    written.append(BINARY_HINT_FILE)
    return written


def _read_record(target: Path) -> InstallRecord | None:
    try:
        return InstallRecord.model_validate_json((target / RECORD_FILE).read_bytes())
    except (OSError, ValidationError):
        return None


def _read_config(path: Path) -> tuple[str, bool]:
    try:
        return path.read_bytes().decode("utf-8"), True
    except FileNotFoundError:
        return "", False
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read it ({exc}); fix its permissions or encoding") from None


def _write_config(path: Path, text: str) -> None:
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text, mode=mode)


def _approval_tables(data: dict[str, Any], base: tuple[str, ...], approve: ApproveTools) -> tuple[list[str], list[str]]:
    """The approval tables to append, and notes about settings that were kept as they are."""
    server_key = (*base, "mcp_servers", MCP_SERVER_NAME)
    node: Any = data
    for part in server_key:
        node = node.get(part) if isinstance(node, dict) else None
    server = node if isinstance(node, dict) else None
    parts: list[str] = []
    notes: list[str] = []
    if approve == "all":
        if server is None:
            parts.append(f"[{tomledit.dotted(server_key)}]\ndefault_tools_approval_mode = \"approve\"\n")
        elif "default_tools_approval_mode" not in server:
            notes.append(f"kept your [{tomledit.dotted(server_key)}] table; add default_tools_approval_mode = "
                         "\"approve\" to it yourself to pre-approve every tool")
    elif approve == "read-only":
        tools = server.get("tools", {}) if server else {}
        for tool in READ_ONLY_TOOLS:
            if isinstance(tools, dict) and tool in tools:
                continue
            parts.append(f"[{tomledit.dotted((*server_key, 'tools', tool))}]\napproval_mode = \"approve\"\n")
    return parts, notes


def _enable(text: str, source: str, key: str, approve: ApproveTools,
            record: InstallRecord) -> tuple[str, list[str]]:
    """Add what is missing for ``key`` (enabled, approvals); the record gets the exact edits."""
    data = tomledit.parse(text, source)
    plugins = data.get("plugins", {})
    if not isinstance(plugins, dict):
        raise ConfigError(f"{source}: 'plugins' is not a table; fix it, then run the command again")
    base = ("plugins", key)
    entry = plugins.get(key)
    parts: list[str] = []
    notes: list[str] = []
    if entry is None:
        parts.append(f"[{tomledit.dotted(base)}]\nenabled = true\n")
    elif not isinstance(entry, dict):
        raise ConfigError(f"{source}: plugins.{key} is not a table; remove it, then run the command again")
    elif entry.get("enabled", True) is not True:
        edited = tomledit.enable_line(text, base)
        if edited is None:
            raise ConfigError(f"{source}: [{tomledit.dotted(base)}] disables the plugin in a form this installer "
                              "does not edit; set enabled = true there yourself")
        text, old, new = edited
        record.enabled_line = (old, new)
    more, notes = _approval_tables(data, base, approve)
    parts += more
    if parts:
        text, inserted = tomledit.append_block(text, "\n".join(parts))
        record.inserted.append(inserted)
    check = tomledit.parse(text, source + " (after the edit)")
    if check.get("plugins", {}).get(key, {}).get("enabled", True) is not True:
        raise ConfigError(f"{source}: the edit did not enable {key}; nothing was written")
    return text, notes


def install_plugin(env: Mapping[str, str], *, codex_home_flag: str | None = None, marketplace: str = "debug",
                   approve_tools: ApproveTools = "none") -> InstallResult:
    """Install the bundle into the Codex cache and enable it; idempotent."""
    home = codex_home(env, codex_home_flag)
    marketplace = check_marketplace(marketplace)
    bundle = load_bundle()
    launch = current_launch()
    files = bundle.render(launch)
    key = plugin_key(marketplace)
    target = plugin_dir(home, marketplace)
    config = home / "config.toml"
    previous = _read_record(target)
    text, existed = _read_config(config)

    record = InstallRecord(plugin_key=key, config_path=str(config), config_created=not existed)
    if previous is not None and previous.plugin_key == key:
        still_there = all(chunk in text for chunk in previous.inserted)
        if still_there:
            record = previous.model_copy(deep=True)
    new_text, notes = _enable(text, str(config), key, approve_tools, record)

    # Write the bundle next to its final place and swap it in, so Codex never sees half of it.
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".install-", dir=target.parent))
    try:
        _write_bundle(staging, files)
        record.installed_at = utc_now()
        record.tunnel_client_version = __version__
        record.mcp_command = [launch.command, *launch.args]
        (staging / RECORD_FILE).write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    changed = new_text != text
    if changed:
        _write_config(config, new_text)
    return InstallResult(
        plugin_key=key, plugin_name=PLUGIN_NAME, marketplace=marketplace, version=bundle.manifest.version,
        codex_home=str(home), plugin_dir=str(target), config_path=str(config), config_changed=changed,
        config_notes=notes, mcp_server=MCP_SERVER_NAME, mcp_command=record.mcp_command,
        binary_hint_path=str(target / BINARY_HINT_FILE), binary_hint=binary_hint(), approve_tools=approve_tools,
        next_steps=[f"test -f {target}/.codex-plugin/plugin.json",
                    "start a new Codex session: the tools appear as mcp__tunnel_client",
                    "check the wiring: tunnel-client codex status"],
    )


def _prune_empty(start: Path, stop: Path) -> None:
    """Remove empty directories from ``start`` up to (not including) ``stop``."""
    p = start
    while p != stop and stop in p.parents:
        try:
            p.rmdir()
        except OSError:
            return
        p = p.parent


def uninstall_plugin(env: Mapping[str, str], *, codex_home_flag: str | None = None,
                     marketplace: str = "debug") -> UninstallResult:
    """Remove the plugin directory and exactly the config edits install recorded."""
    home = codex_home(env, codex_home_flag)
    marketplace = check_marketplace(marketplace)
    key = plugin_key(marketplace)
    target = plugin_dir(home, marketplace)
    config = home / "config.toml"
    record = _read_record(target)
    text, existed = _read_config(config)
    notes: list[str] = []
    exact = True
    new_text = text
    if existed:
        if record is not None and record.plugin_key == key:
            for chunk in reversed(record.inserted):
                removed = tomledit.remove_inserted(new_text, chunk)
                if removed is None:
                    exact = False
                    break
                new_text = removed
            if exact and record.enabled_line is not None:
                original, replacement = record.enabled_line
                restored = tomledit.restore_line(new_text, ("plugins", key), replacement, original)
                if restored is None:
                    exact = False
                else:
                    new_text = restored
        else:
            exact = False
        if not exact:
            new_text, count = tomledit.remove_tables(text, ("plugins", key))
            if count:
                notes.append(f"config.toml changed since install (or no install record): removed the "
                             f"[{tomledit.dotted(('plugins', key))}] tables and kept everything else")
        tomledit.parse(new_text, f"{config} (after the edit)")
    changed = new_text != text
    if changed:
        if new_text == "" and record is not None and record.config_created:
            config.unlink()
        else:
            _write_config(config, new_text)
    removed_dir = target.is_dir()
    if removed_dir:
        shutil.rmtree(target)
        _prune_empty(target.parent, home)
    if not removed_dir and not changed:
        notes.append(f"{key} was not installed in {home}")
    return UninstallResult(
        plugin_key=key, codex_home=str(home), plugin_dir=str(target), removed_plugin_dir=removed_dir,
        config_path=str(config), config_changed=changed, config_restored_exactly=exact and record is not None,
        notes=notes, next_steps=["start a new Codex session to unload the plugin"] if removed_dir or changed else [],
    )


def export_bundle(directory: str) -> ExportResult:
    """Write the rendered bundle (and the binary hint) to ``directory`` for inspection or manual install."""
    if not directory.strip():
        raise UsageError("--dir is required")
    dest = Path(os.path.abspath(os.path.expanduser(directory)))
    bundle = load_bundle()
    launch = current_launch()
    dest.mkdir(parents=True, exist_ok=True)
    files = _write_bundle(dest, bundle.render(launch))
    return ExportResult(
        dir=str(dest), files=files, mcp_command=[launch.command, *launch.args],
        binary_hint_path=str(dest / BINARY_HINT_FILE), binary_hint=binary_hint(),
        next_steps=[f"inspect {dest}/.codex-plugin/plugin.json and {dest}/.mcp.json",
                    "install for Codex: tunnel-client codex plugin install"],
    )


# ---------------------------------------------------------------------------- official marketplace route


def _run_codex(codex: str, args: Sequence[str], env: Mapping[str, str], home: Path) -> Any:
    try:
        done = subprocess.run([codex, *args], env=codex_child_env(env, home), capture_output=True, text=True,
                              timeout=CODEX_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"codex {' '.join(args)}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ConfigError(f"codex {' '.join(args)} failed (exit {done.returncode}): {' / '.join(tail)}")
    with contextlib.suppress(ValueError):
        return json.loads(done.stdout)
    return done.stdout


def _require_codex(env: Mapping[str, str]) -> str:
    codex = find_codex(env)
    if codex is None:
        raise ConfigError("the marketplace route runs `codex plugin ...` but no codex program is on PATH; install "
                          "Codex (tunnel-client codex install) or use the default route (no --via-marketplace)")
    return codex


def default_marketplace_dir(home: Path) -> Path:
    return home / "tunnel-client-marketplace"


def install_via_marketplace(env: Mapping[str, str], *, codex_home_flag: str | None = None,
                            marketplace_dir: str = "") -> InstallResult:
    """Write a local marketplace with the bundle and let Codex install the plugin from it."""
    codex = _require_codex(env)
    home = codex_home(env, codex_home_flag)
    root = Path(os.path.abspath(os.path.expanduser(marketplace_dir))) if marketplace_dir else default_marketplace_dir(home)
    bundle = load_bundle()
    launch = current_launch()
    plugin_root = root / "plugins" / PLUGIN_NAME
    if plugin_root.exists():
        shutil.rmtree(plugin_root)
    plugin_root.mkdir(parents=True)
    _write_bundle(plugin_root, bundle.render(launch))
    manifest = MarketplaceManifest(
        name=OFFICIAL_MARKETPLACE, interface=MarketplaceInterface(displayName="Tunnel Client (local)"),
        plugins=[MarketplaceEntry(name=PLUGIN_NAME, source=MarketplacePluginSource(path=f"./plugins/{PLUGIN_NAME}"))],
    )
    (root / ".agents" / "plugins").mkdir(parents=True, exist_ok=True)
    (root / ".agents" / "plugins" / "marketplace.json").write_text(
        manifest.model_dump_json(by_alias=True, indent=2) + "\n", encoding="utf-8")
    (root / MARKETPLACE_MARKER).write_text("written by tunnel-client codex plugin install --via-marketplace\n",
                                           encoding="utf-8")
    known = _run_codex(codex, ["plugin", "marketplace", "list", "--json"], env, home)
    if OFFICIAL_MARKETPLACE not in json.dumps(known):
        _run_codex(codex, ["plugin", "marketplace", "add", str(root), "--json"], env, home)
    added = _run_codex(codex, ["plugin", "add", plugin_key(OFFICIAL_MARKETPLACE), "--json"], env, home)
    installed = str(added.get("installedPath", "")) if isinstance(added, dict) else ""
    return InstallResult(
        route="marketplace", plugin_key=plugin_key(OFFICIAL_MARKETPLACE), plugin_name=PLUGIN_NAME,
        marketplace=OFFICIAL_MARKETPLACE, version=bundle.manifest.version, codex_home=str(home), plugin_dir=installed,
        config_path=str(home / "config.toml"), config_changed=True, mcp_server=MCP_SERVER_NAME,
        mcp_command=[launch.command, *launch.args], binary_hint_path=str(Path(installed) / BINARY_HINT_FILE)
        if installed else "", binary_hint=binary_hint(), approve_tools="none", marketplace_dir=str(root),
        next_steps=["codex plugin list  (shows tunnel-client@" + OFFICIAL_MARKETPLACE + ")",
                    "start a new Codex session: the tools appear as mcp__tunnel_client"],
    )


def uninstall_via_marketplace(env: Mapping[str, str], *, codex_home_flag: str | None = None,
                              marketplace_dir: str = "") -> UninstallResult:
    """``codex plugin remove`` + ``codex plugin marketplace remove``, then delete the marketplace we wrote."""
    codex = _require_codex(env)
    home = codex_home(env, codex_home_flag)
    root = Path(os.path.abspath(os.path.expanduser(marketplace_dir))) if marketplace_dir else default_marketplace_dir(home)
    key = plugin_key(OFFICIAL_MARKETPLACE)
    notes: list[str] = []
    for args in (["plugin", "remove", key, "--json"], ["plugin", "marketplace", "remove", OFFICIAL_MARKETPLACE,
                                                        "--json"]):
        try:
            _run_codex(codex, args, env, home)
        except ConfigError as exc:
            notes.append(str(exc))
    removed = (root / MARKETPLACE_MARKER).is_file()
    if removed:
        shutil.rmtree(root)
    return UninstallResult(
        route="marketplace", plugin_key=key, codex_home=str(home), plugin_dir=str(root), removed_plugin_dir=removed,
        config_path=str(home / "config.toml"), config_changed=True, config_restored_exactly=False, notes=notes,
        next_steps=["start a new Codex session to unload the plugin"],
    )
