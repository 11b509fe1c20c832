"""The MCP target of a runtime and the profile file written for it.

The profile is JSON (valid YAML) in the profile directory, 0600, and holds the runtime key
as a *reference* only. Its ``health.url_file`` and ``log.file`` point into the state root so
``status`` can find the daemon's operator URL and logs.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from tunnel_core.config.settings import PROFILE_NAME_RE
from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.fileutil import atomic_write
from tunnel_core.state.refs import normalize_alias, reject_inline_secret_material, validate_secret_reference

DEFAULT_RUNTIME_KEY_REF = "env:CONTROL_PLANE_API_KEY"


@dataclass(frozen=True, slots=True)
class Target:
    kind: Literal["server_url", "command"]
    value: str


def target_from_options(server_url: str, command: str) -> Target:
    """Exactly one MCP target, free of inline credentials."""
    server_url, command = server_url.strip(), command.strip()
    if server_url and command:
        raise UsageError("connect takes --mcp-server-url or --mcp-command, not both")
    if server_url:
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError("--mcp-server-url must be an http or https URL")
        reject_inline_secret_material(server_url, "mcp server URL")
        return Target("server_url", server_url)
    if command:
        reject_inline_secret_material(command, "mcp command")
        try:
            if not shlex.split(command):
                raise ValueError("empty")
        except ValueError as exc:
            raise UsageError(f"--mcp-command: cannot split {command!r} ({exc}); check the quotes") from None
        return Target("command", command)
    raise UsageError("connect requires --mcp-server-url or --mcp-command")


def normalize_profile_name(name: str, alias: str) -> str:
    value = name.strip() or normalize_alias(alias)
    if value in (".", "..") or "/" in value or "\\" in value:
        raise UsageError("profile name must not contain path separators")
    if not PROFILE_NAME_RE.match(value):
        raise UsageError("profile name must use letters, numbers, '.', '_' or '-'")
    return value


def runtime_profile(
    *, tunnel_id: str, base_url: str, url_path: str, api_key_ref: str, target: Target, health_url_file: Path,
    log_path: Path,
) -> dict[str, object]:
    """The content of a generated runtime profile (``config_version: 1``)."""
    control_plane: dict[str, str] = {"base_url": base_url, "tunnel_id": tunnel_id, "api_key": api_key_ref}
    if url_path:
        control_plane["url_path"] = url_path
    entry = {"channel": "main", "url" if target.kind == "server_url" else "command": target.value}
    return {
        "config_version": 1,
        "control_plane": control_plane,
        "health": {"listen_addr": "127.0.0.1:0", "url_file": str(health_url_file)},
        "admin_ui": {"open_browser": False},
        "log": {"level": "info", "format": "json", "file": str(log_path)},
        "mcp": {"server_urls" if target.kind == "server_url" else "commands": [entry]},
    }


def write_runtime_profile(path: Path, content: dict[str, object]) -> None:
    """Validate with the strict loader, then write atomically with mode 0600."""
    from tunnel_core.config.yamlfile import parse_config_text

    text = json.dumps(content, indent=2) + "\n"
    parse_config_text(text, source=str(path))
    try:
        atomic_write(path, text, mode=0o600)
    except OSError as exc:
        raise ConfigError(f"profile {path}: cannot write it ({exc.strerror}); check --profile-dir") from None


def _control_plane_section(path: str) -> dict[str, object]:
    if not path.strip():
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    cp = data.get("control_plane") if isinstance(data, dict) else None
    return cp if isinstance(cp, dict) else {}


def profile_control_plane(path: str) -> tuple[str, str]:
    """(``base_url``, ``url_path``) of a generated profile: where its runtime polls; ("", "") if unknown."""
    cp = _control_plane_section(path)
    base, url_path = cp.get("base_url"), cp.get("url_path")
    return (base if isinstance(base, str) else ""), (url_path if isinstance(url_path, str) else "")


def api_key_ref_from_profile(path: str) -> str:
    """The ``control_plane.api_key`` reference of a generated profile, or "" (never a literal)."""
    ref = _control_plane_section(path).get("api_key")
    if not isinstance(ref, str):
        return ""
    try:
        return validate_secret_reference(ref, "runtime api_key")
    except ConfigError:
        return ""
