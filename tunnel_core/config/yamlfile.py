"""Strict YAML config/profile files (``config_version: 1``).

Every key of the reference's schema is accepted so its profiles load unchanged; any
other key is rejected with its dotted path named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from tunnel_core.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerURLEntry(_Section):
    channel: str | None = None
    url: str | None = None
    unix_socket: str | None = None
    http_proxy: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


class CommandEntry(_Section):
    channel: str | None = None
    command: str | None = None


class ControlPlaneSection(_Section):
    base_url: str | None = None
    url_path: str | None = None
    tunnel_id: str | None = None
    organization_id: str | None = None
    api_key: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    http_proxy: str | None = None
    max_inflight_requests: int | str | None = None
    poll_timeout: str | None = None
    poll_deadline_guardrail: str | None = None
    poll_channels: list[str] | None = None
    extra_headers: dict[str, str] | None = None


class MCPSection(_Section):
    server_urls: list[ServerURLEntry] | None = None
    commands: list[CommandEntry] | None = None
    http_proxy: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    extra_headers: dict[str, str] | None = None
    discovery_extra_headers: dict[str, str] | None = None
    startup_wait_timeout: str | None = None
    connection_max_ttl: str | None = None
    max_concurrent_requests: int | str | None = None


class HealthSection(_Section):
    listen_addr: str | None = None
    unix_socket: str | None = None
    url_file: str | None = None


class LogSection(_Section):
    level: str | None = None
    format: str | None = None
    file: str | None = None
    http_raw_unsafe: bool | None = None


class ProcessSection(_Section):
    pid_file: str | None = None


class HarpoonTarget(_Section):
    label: str | None = None
    url: str | None = None
    unix_socket: str | None = None
    description: str | None = None


class HarpoonSection(_Section):
    targets: list[HarpoonTarget] | None = None
    allow_plaintext_http: bool | None = None
    max_response_bytes: int | None = None
    max_redirects: int | None = None
    http_proxy: str | None = None
    additional_transports: list[str] | None = None
    capture_payloads: bool | None = None
    hosts_include_suffix: list[str] | None = None
    hosts_include_regex: list[str] | None = None
    hosts_include_loopback: bool | None = None
    hosts_include_private: bool | None = None


class AdminUISection(_Section):
    allow_remote: bool | None = None
    open_browser: bool | None = None
    log_buffer_events: int | None = None


class ProxySection(_Section):
    check_interval: str | None = None


class CloudflaredSection(_Section):
    token: str | None = None
    managed: bool | None = None
    path: str | None = None
    ready_timeout: str | None = None


class ConfigFile(_Section):
    config_version: int | None = None
    ca_bundle: str | None = None
    http_proxy: str | None = None
    control_plane: ControlPlaneSection | None = None
    mcp: MCPSection | None = None
    health: HealthSection | None = None
    log: LogSection | None = None
    process: ProcessSection | None = None
    harpoon: HarpoonSection | None = None
    admin_ui: AdminUISection | None = None
    proxy: ProxySection | None = None
    cloudflared: CloudflaredSection | None = None


def parse_config_text(text: str, *, source: str) -> ConfigFile:
    """Parse and strictly validate YAML text; errors name the file and the offending key."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{source}: invalid YAML{where}; fix the syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: top level must be a mapping of settings")
    try:
        cfg = ConfigFile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            raise ConfigError(f"{source}: unknown key {key}; remove it or check its spelling") from None
        raise ConfigError(f"{source}: {key}: {err['msg']}") from None
    if cfg.config_version not in (None, 1):
        raise ConfigError(f"{source}: config_version {cfg.config_version} is not supported; use config_version: 1")
    return cfg


def load_config_file(path: Path) -> ConfigFile:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}; check the path") from None
    return parse_config_text(text, source=str(path))


def yaml_value(cfg: ConfigFile, key: str) -> Any:
    """Value at a dotted key (``control_plane.base_url``), or None when unset."""
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node
