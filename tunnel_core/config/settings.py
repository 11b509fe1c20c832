"""Effective runtime settings: flags > environment > YAML file/profile > defaults.

``load_settings`` is the only entry point; it returns a frozen ``Settings`` or raises a
``ConfigError`` whose one-line message names the setting (flag / env / YAML key) and the fix.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from tunnel_core.config.durations import parse_duration
from tunnel_core.config.network import (
    HarpoonSettings,
    NetworkSettings,
    binding_extras,
    load_harpoon,
    load_network,
    path_value,
)
from tunnel_core.config.network import (
    bool_setting as _bool,
)
from tunnel_core.config.network import (
    int_setting as _int,
)
from tunnel_core.config.network import (
    setting_names as _names,
)
from tunnel_core.config.refs import is_reference, resolve_api_key
from tunnel_core.config.specs import API_KEY_ENV_FALLBACKS, SPEC_BY_KEY, SPECS, Spec
from tunnel_core.errors import ConfigError
from tunnel_core.records import record
from tunnel_core.wire.messages import CHANNEL_RE, MAIN_CHANNEL, TUNNEL_ID_RE

if TYPE_CHECKING:
    # The YAML schema (pydantic) is loaded only when a config file or profile is selected.
    from tunnel_core.config.yamlfile import ConfigFile

PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
HARPOON_CHANNEL = "harpoon"
RESERVED_CHANNELS = frozenset({HARPOON_CHANNEL})
LOG_LEVELS = ("debug", "info", "warn", "error")
_T = TypeVar("_T")


@record(frozen=True, slots=True)
class Binding:
    """One MCP target bound to a channel: ``kind`` is "http" (url) or "stdio" (argv)."""

    channel: str
    kind: str
    url: str = ""
    argv: tuple[str, ...] = ()
    command: str = ""
    unix_socket: str = ""  # dial this socket instead of TCP (http bindings only)
    http_proxy: str = field(default="", repr=False)  # per-channel proxy URL, "" = inherit
    client_cert: str = ""  # per-channel client certificate/key, "" = inherit --mcp.client-cert
    client_key: str = ""

    @property
    def target(self) -> str:
        return self.url if self.kind == "http" else self.command


@record(frozen=True, slots=True)
class Settings:
    base_url: str
    url_path: str
    tunnel_id: str
    organization_id: str
    api_key: str = field(repr=False)
    api_key_source: str
    max_inflight: int
    poll_timeout: float
    poll_guardrail: float
    poll_channels: tuple[str, ...] | None
    bindings: tuple[Binding, ...]
    max_concurrent: int
    startup_wait_timeout: float
    connection_max_ttl: float
    health_listen_addr: str
    health_url_file: str
    pid_file: str
    log_level: str
    log_format: str
    log_file: str
    config_source: str = "flags/env"
    profile_name: str = ""
    profile_path: str = ""
    allow_remote_ui: bool = False
    log_buffer_events: int = 2000
    network: NetworkSettings = field(default_factory=lambda: NetworkSettings())
    harpoon: HarpoonSettings = field(default_factory=lambda: HarpoonSettings())
    health_unix_socket: str = ""
    http_raw_unsafe: bool = False  # --log.http-raw-unsafe: MCP HTTP exchanges logged at debug (masked)
    open_browser: bool = False  # --open-web-ui
    proxy_check_interval: float = 60.0  # --proxy.check-interval, seconds

    @property
    def control_plane_url(self) -> str:
        return self.base_url.rstrip("/") + self.url_path

    def binding(self, channel: str) -> Binding | None:
        for b in self.bindings:
            if b.channel == channel:
                return b
        return None



@record(slots=True)
class _Sources:
    flags: Mapping[str, Any]
    env: Mapping[str, str]
    file: ConfigFile | None

    def get(self, spec: Spec) -> tuple[Any, str]:
        """The raw value of a setting and where it came from."""
        value = self.flags.get(spec.dest)
        if value is not None and value != []:
            return value, "flag"
        if spec.env and spec.env in self.env and self.env[spec.env] != "":
            raw = self.env[spec.env]
            if spec.repeat:
                sep = spec.env_sep or "\n"
                pattern = {",": r"[,;]", ";": r"[;\n]"}.get(sep, r"\n")
                items = [p.strip() for p in re.split(pattern, raw) if p.strip()]
                return items, "env"
            return raw, "env"
        if self.file is not None:
            value = _yaml_value(self.file, spec.key)
            if value is not None:
                return value, "yaml"
        return spec.default, "default"


def _yaml_value(file: ConfigFile, key: str) -> Any:
    from tunnel_core.config.yamlfile import yaml_value

    return yaml_value(file, key)


def _duration(src: _Sources, key: str, *, allow_zero: bool = False) -> float:
    spec = SPEC_BY_KEY[key]
    raw, _ = src.get(spec)
    try:
        value = parse_duration(str(raw))
    except ValueError:
        raise ConfigError(f"{_names(spec)}: invalid duration {raw!r}; use forms like 30s, 2m or 500ms") from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{_names(spec)}: must be greater than 0{' or 0s' if allow_zero else ''}, got {raw!r}")
    return value




def _str(src: _Sources, key: str) -> str:
    raw, _ = src.get(SPEC_BY_KEY[key])
    return str(raw).strip() if raw is not None else ""


def _validate_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{what}: {value!r} is not an absolute http(s) URL; use e.g. https://host/mcp")
    return value


def _split_qualified(raw: str) -> dict[str, str] | None:
    """Parse ``channel=x,url=...`` style values; None when the value is a plain target."""
    if not re.match(r"^\s*(channel|url|command|unix-socket|http-proxy|client-cert|client-key)\s*=", raw):
        return None
    out: dict[str, str] = {}
    rest = raw.strip()
    while rest:
        m = re.match(r"(channel|url|command|unix-socket|http-proxy|client-cert|client-key)\s*=", rest)
        if not m:
            raise ValueError(f"cannot parse {raw!r}")
        key = m.group(1)
        rest = rest[m.end():]
        if key == "command":
            # The command runs to the end unless a trailing ",channel=" follows.
            cm = re.search(r",\s*channel\s*=\s*([^,]*)$", rest)
            if cm:
                out["command"], out["channel"] = rest[: cm.start()], cm.group(1).strip()
                rest = ""
            else:
                out["command"], rest = rest, ""
            continue
        value, _, rest = rest.partition(",")
        out[key] = value.strip()
    return out


def _bindings(src: _Sources) -> tuple[Binding, ...]:
    urls_spec, cmds_spec = SPEC_BY_KEY["mcp.server_urls"], SPEC_BY_KEY["mcp.commands"]
    urls_raw, _ = src.get(urls_spec)
    cmds_raw, _ = src.get(cmds_spec)
    out: list[Binding] = []
    for item in urls_raw or []:
        if isinstance(item, str):
            try:
                q = _split_qualified(item)
            except ValueError as exc:
                raise ConfigError(f"{_names(urls_spec)}: {exc}; use URL or channel=NAME,url=URL") from None
            channel, url = (q.get("channel") or MAIN_CHANNEL, q.get("url", "")) if q else (MAIN_CHANNEL, item)
            if q and "command" in q:
                raise ConfigError(f"{_names(urls_spec)}: command= belongs in --mcp.command")
            extra = {k.replace("-", "_"): v for k, v in (q or {}).items() if k not in ("channel", "url")}
        else:
            channel, url = item.channel or MAIN_CHANNEL, item.url or ""
            extra = {k: getattr(item, k) or "" for k in ("unix_socket", "http_proxy", "client_cert", "client_key")}
        channel = channel.strip().lower()
        e = binding_extras(src, channel, extra)
        out.append(Binding(channel, "http", url=_validate_url(url.strip(), _names(urls_spec)),
                           unix_socket=e["unix_socket"], http_proxy=e["http_proxy"], client_cert=e["client_cert"],
                           client_key=e["client_key"]))
    for item in cmds_raw or []:
        if isinstance(item, str):
            try:
                q = _split_qualified(item)
            except ValueError as exc:
                raise ConfigError(f"{_names(cmds_spec)}: {exc}; use CMD or channel=NAME,command=CMD") from None
            if q and set(q) - {"channel", "command"}:
                bad = sorted(set(q) - {"channel", "command"})[0]
                raise ConfigError(f"{_names(cmds_spec)}: {bad}= is not allowed for stdio commands")
            channel, command = (q.get("channel") or MAIN_CHANNEL, q.get("command", "")) if q else (MAIN_CHANNEL, item)
        else:
            channel, command = item.channel or MAIN_CHANNEL, item.command or ""
        try:
            argv = tuple(shlex.split(command))
        except ValueError as exc:
            raise ConfigError(f"{_names(cmds_spec)}: cannot split {command!r} ({exc}); check the quotes") from None
        if not argv:
            raise ConfigError(f"{_names(cmds_spec)}: empty command; give the program to run")
        out.append(Binding(channel.strip().lower(), "stdio", argv=argv, command=command))
    seen: set[str] = set()
    for b in out:
        if not CHANNEL_RE.match(b.channel):
            raise ConfigError(f"mcp binding: channel {b.channel!r} is invalid; use [a-z0-9_-], up to 64 characters")
        if b.channel in RESERVED_CHANNELS:
            raise ConfigError(f"mcp binding: channel {b.channel!r} is reserved; choose another name")
        if b.channel in seen:
            raise ConfigError(f"mcp binding: channel {b.channel!r} is bound twice; give each channel one target")
        seen.add(b.channel)
    return tuple(out)


def _api_key(src: _Sources) -> tuple[str, str]:
    spec = SPEC_BY_KEY["control_plane.api_key"]
    flag = src.flags.get(spec.dest)
    if flag:
        if not is_reference(flag):
            raise ConfigError(
                f"{spec.flag}: give a reference (env:NAME or file:/path), not the key itself"
            )
        return resolve_api_key(flag, setting=spec.flag, env=src.env), flag
    if src.env.get("CONTROL_PLANE_API_KEY", "").strip():
        return resolve_api_key("env:CONTROL_PLANE_API_KEY", setting="CONTROL_PLANE_API_KEY", env=src.env), (
            "env:CONTROL_PLANE_API_KEY"
        )
    yaml_key = _yaml_value(src.file, "control_plane.api_key") if src.file else None
    if yaml_key:
        if is_reference(yaml_key):
            return resolve_api_key(yaml_key, setting="control_plane.api_key", env=src.env), yaml_key
        return resolve_api_key("env:_", setting="control_plane.api_key", env={"_": yaml_key}), "control_plane.api_key"
    if src.env.get("OPENAI_API_KEY", "").strip():
        return resolve_api_key("env:OPENAI_API_KEY", setting="OPENAI_API_KEY", env=src.env), "env:OPENAI_API_KEY"
    raise ConfigError(
        "control plane API key is required; export CONTROL_PLANE_API_KEY or pass "
        f"{spec.flag} env:NAME (fallbacks: {', '.join(API_KEY_ENV_FALLBACKS)}, control_plane.api_key)"
    )


def _url_path(raw: str) -> str:
    spec = SPEC_BY_KEY["control_plane.url_path"]
    if raw in ("", "/"):
        return ""
    parts = urlsplit(raw)
    if not raw.startswith("/") or parts.scheme or parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"{_names(spec)}: {raw!r} must be a path starting with / (no scheme, host or query)")
    return raw.rstrip("/")


class ConfigErrors(ConfigError):
    """Every invalid setting of one load, not just the first.

    ``str()`` is the first error, so ``run`` still prints one line; ``errors`` holds them all
    (each with ``setting`` = the key or group it belongs to) and ``partial`` the settings built
    with a stand-in for each bad value, so ``doctor`` can still run the checks that do not
    depend on them.
    """

    def __init__(self, errors: list[ConfigError], partial: Settings) -> None:
        super().__init__(str(errors[0]))
        self.errors = errors
        self.partial = partial


PLACEHOLDER_TUNNEL_ID = "tunnel_" + "0" * 32
# Setting groups that are not single keys: the MCP targets as a whole.
MCP_TARGET = "mcp.target"


class _Collector:
    """Runs each parse step; a ConfigError is recorded (tagged with its setting) and a stand-in used."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def take(self, setting: str, parse: Callable[[], _T], stand_in: _T) -> _T:
        try:
            return parse()
        except ConfigErrors as many:
            self.errors.extend(many.errors)
        except ConfigError as exc:
            exc.setting = exc.setting or setting
            self.errors.append(exc)
        return stand_in


def _tunnel_id(src: _Sources) -> str:
    tunnel_id = _str(src, "control_plane.tunnel_id")
    tid_names = _names(SPEC_BY_KEY["control_plane.tunnel_id"])
    if not tunnel_id:
        raise ConfigError(f"tunnel ID is required; set {tid_names} to the tunnel_... id of your tunnel")
    if not TUNNEL_ID_RE.match(tunnel_id):
        raise ConfigError(
            f"invalid tunnel ID {tunnel_id!r} ({tid_names}); use tunnel_ followed by 32 lowercase letters or digits"
        )
    return tunnel_id


def _poll_channels(src: _Sources) -> tuple[str, ...] | None:
    poll_channels_raw, _ = src.get(SPEC_BY_KEY["control_plane.poll_channels"])
    if not poll_channels_raw:
        return None
    chans = [c.strip().lower() for c in poll_channels_raw if c.strip()]
    for c in chans:
        if not CHANNEL_RE.match(c):
            raise ConfigError(f"--control-plane.poll-channel: invalid channel {c!r}; use [a-z0-9_-]")
    if len(set(chans)) != len(chans):
        raise ConfigError("--control-plane.poll-channel: channels must be unique")
    return tuple(sorted(chans))


def _require_targets(bindings: tuple[Binding, ...], poll_channels: tuple[str, ...] | None,
                     require_target: bool) -> None:
    main_needed = poll_channels is None or MAIN_CHANNEL in poll_channels
    if require_target and main_needed and not any(b.channel == MAIN_CHANNEL for b in bindings):
        raise ConfigError(
            "main channel is required; set --mcp.server-url URL or --mcp.command CMD "
            "(MCP_SERVER_URL / MCP_COMMAND / mcp.server_urls / mcp.commands)"
        )


def _poll_channels_bound(bindings: tuple[Binding, ...], poll_channels: tuple[str, ...] | None) -> None:
    bound = {b.channel for b in bindings}
    for c in poll_channels or ():
        if c not in bound and c != HARPOON_CHANNEL:
            raise ConfigError(f"--control-plane.poll-channel: channel {c!r} has no MCP binding; bind it or drop it")


def _log_level(src: _Sources) -> str:
    log_level = _str(src, "log.level").lower() or "info"
    if log_level == "warning":
        log_level = "warn"
    if log_level not in LOG_LEVELS:
        raise ConfigError(f"{_names(SPEC_BY_KEY['log.level'])}: {log_level!r} is not a level; use debug, info, warn or error")
    return log_level


def _log_format(src: _Sources) -> str:
    log_format = _str(src, "log.format").lower()
    if log_format not in ("", "json", "struct-text"):
        raise ConfigError(f"{_names(SPEC_BY_KEY['log.format'])}: {log_format!r} is not a format; use json or struct-text")
    return log_format


def _poll_budget(src: _Sources) -> tuple[float, float]:
    poll_timeout = _duration(src, "control_plane.poll_timeout")
    guardrail = _duration(src, "control_plane.poll_deadline_guardrail")
    if guardrail >= 60:
        raise ConfigError("--control-plane.poll-deadline-guardrail: must be under 60s")
    if poll_timeout + guardrail > 600:
        raise ConfigError("--control-plane.poll-timeout: poll timeout plus guardrail must not exceed 10m")
    return poll_timeout, guardrail


def _listen(src: _Sources) -> str:
    listen = _str(src, "health.listen_addr")
    parse_listen_addr(listen, what=_names(SPEC_BY_KEY["health.listen_addr"]))
    return listen


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    *,
    require_target: bool = True,
) -> Settings:
    """Build settings from parsed flags (by ``Spec.dest``), environment and the selected YAML file.

    A file that cannot be read or parsed raises ``ConfigError`` at once; invalid settings are all
    collected and raised together as ``ConfigErrors``.
    """
    selection = select_config_file(flags, env)
    file = None
    if selection.path:
        from tunnel_core.config.yamlfile import load_config_file

        file = load_config_file(selection.path)
    src = _Sources(flags, env, file)
    c = _Collector()

    base_spec = SPEC_BY_KEY["control_plane.base_url"]
    base_url = c.take("control_plane.base_url", lambda: _validate_url(_str(src, base_spec.key), _names(base_spec)),
                      str(base_spec.default))
    tunnel_id = c.take("control_plane.tunnel_id", lambda: _tunnel_id(src), PLACEHOLDER_TUNNEL_ID)
    api_key, key_source = c.take("control_plane.api_key", lambda: _api_key(src), ("", ""))
    poll_channels = c.take("control_plane.poll_channels", lambda: _poll_channels(src), None)
    parsed = c.take(MCP_TARGET, lambda: _bindings(src), None)
    bindings: tuple[Binding, ...] = parsed or ()
    if parsed is not None:
        c.take(MCP_TARGET, lambda: _require_targets(bindings, poll_channels, require_target), None)
        c.take("control_plane.poll_channels", lambda: _poll_channels_bound(bindings, poll_channels), None)
    log_level = c.take("log.level", lambda: _log_level(src), "info")
    log_format = c.take("log.format", lambda: _log_format(src), "")
    poll_timeout, guardrail = c.take("control_plane.poll_timeout", lambda: _poll_budget(src), (30.0, 5.0))
    listen = c.take("health.listen_addr", lambda: _listen(src), "127.0.0.1:0")
    network = c.take("network", lambda: load_network(src, sum(1 for b in bindings if b.kind == "http")),
                     NetworkSettings())
    harpoon = c.take("harpoon", lambda: load_harpoon(src), HarpoonSettings())
    if poll_channels == (HARPOON_CHANNEL,) and not harpoon.targets:
        c.errors.append(ConfigError(
            "--control-plane.poll-channel: polling only harpoon needs at least one --harpoon.target; "
            "add one or poll main too"
        ))

    def duration(key: str, stand_in: float, *, allow_zero: bool = False) -> float:
        return c.take(key, lambda: _duration(src, key, allow_zero=allow_zero), stand_in)

    def integer(key: str, lo: int, hi: int, stand_in: int) -> int:
        return c.take(key, lambda: _int(src, key, lo, hi), stand_in)

    def boolean(key: str) -> bool:
        return c.take(key, lambda: _bool(src, key), False)

    settings = Settings(
        base_url=base_url.rstrip("/"),
        url_path=c.take("control_plane.url_path", lambda: _url_path(_str(src, "control_plane.url_path")), ""),
        tunnel_id=tunnel_id,
        organization_id=_str(src, "control_plane.organization_id"),
        api_key=api_key,
        api_key_source=key_source,
        max_inflight=integer("control_plane.max_inflight_requests", 1, 10000, 20),
        poll_timeout=poll_timeout,
        poll_guardrail=guardrail,
        poll_channels=poll_channels,
        bindings=bindings,
        max_concurrent=integer("mcp.max_concurrent_requests", 1, 10000, 10),
        startup_wait_timeout=duration("mcp.startup_wait_timeout", 0.0, allow_zero=True),
        connection_max_ttl=duration("mcp.connection_max_ttl", 600.0),
        health_listen_addr=listen,
        health_url_file=os.path.expanduser(_str(src, "health.url_file")),
        pid_file=os.path.expanduser(_str(src, "process.pid_file")),
        log_level=log_level,
        log_format=log_format or "struct-text",
        log_file=os.path.expanduser(_str(src, "log.file")),
        config_source=selection.source,
        profile_name=selection.profile_name,
        profile_path=str(selection.path or ""),
        allow_remote_ui=boolean("admin_ui.allow_remote"),
        log_buffer_events=integer("admin_ui.log_buffer_events", 1, 100000, 2000),
        network=network,
        harpoon=harpoon,
        http_raw_unsafe=boolean("log.http_raw_unsafe"),
        open_browser=boolean("admin_ui.open_browser"),
        proxy_check_interval=duration("proxy.check_interval", 60.0),
        health_unix_socket=c.take("health.unix_socket", lambda: path_value(
            _str(src, "health.unix_socket"), _names(SPEC_BY_KEY["health.unix_socket"]), env), ""),
    )
    if c.errors:
        raise ConfigErrors(c.errors, settings)
    return settings


def parse_listen_addr(value: str, *, what: str, empty_host: str = "127.0.0.1") -> tuple[str, int]:
    """Split HOST:PORT; an empty host becomes ``empty_host`` ("" = all interfaces, see tunnel_core.listen).

    Raises ConfigError naming ``what`` for anything else than HOST:PORT with a port in 0..65535."""
    host, sep, port = value.rpartition(":")
    if not sep:
        raise ConfigError(f"{what}: {value!r} must be HOST:PORT, e.g. 127.0.0.1:8080 or :0")
    host = host.strip("[]") or empty_host
    try:
        num = int(port)
    except ValueError:
        raise ConfigError(f"{what}: port {port!r} is not a number; use HOST:PORT") from None
    if not 0 <= num <= 65535:
        raise ConfigError(f"{what}: port {num} is out of range 0..65535")
    return host, num


@record(frozen=True, slots=True)
class ConfigSelection:
    path: Path | None
    source: str
    profile_name: str = ""


def profile_dir(flags: Mapping[str, Any], env: Mapping[str, str]) -> Path:
    """Profile directory: --profile-dir > TUNNEL_CLIENT_PROFILE_DIR > $XDG_CONFIG_HOME > ~/.config."""
    explicit = flags.get("profile_dir") or env.get("TUNNEL_CLIENT_PROFILE_DIR")
    if explicit:
        return Path(os.path.expanduser(explicit))
    xdg = env.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg) / "tunnel-client"
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".config" / "tunnel-client"


def select_config_file(flags: Mapping[str, Any], env: Mapping[str, str]) -> ConfigSelection:
    """Which YAML file to read: --config / --profile / --profile-file (exclusive), flags before env."""
    def pick(values: Sequence[tuple[str, str | None]], what: str) -> tuple[str, str] | None:
        given = [(n, v) for n, v in values if v]
        if len(given) > 1:
            raise ConfigError(f"{' and '.join(n for n, _ in given)} are mutually exclusive; {what} only one")
        return given[0] if given else None

    chosen = pick(
        [("--config", flags.get("config")), ("--profile", flags.get("profile")),
         ("--profile-file", flags.get("profile_file"))],
        "pass",
    ) or pick(
        [("TUNNEL_CLIENT_CONFIG", env.get("TUNNEL_CLIENT_CONFIG")),
         ("TUNNEL_CLIENT_PROFILE", env.get("TUNNEL_CLIENT_PROFILE")),
         ("TUNNEL_CLIENT_PROFILE_FILE", env.get("TUNNEL_CLIENT_PROFILE_FILE"))],
        "set",
    )
    if chosen is None:
        return ConfigSelection(None, "flags/env")
    name, value = chosen
    if name in ("--config", "TUNNEL_CLIENT_CONFIG"):
        return ConfigSelection(Path(os.path.expanduser(value)), f"config:{value}")
    if name in ("--profile", "TUNNEL_CLIENT_PROFILE"):
        if not PROFILE_NAME_RE.match(value):
            raise ConfigError(f"{name}: {value!r} is not a valid profile name; use letters, digits, '.', '_' or '-'")
        path = profile_dir(flags, env) / f"{value}.yaml"
        if not path.exists():
            raise ConfigError(f"{name}: profile {value!r} not found at {path}; create it with tunnel-client init")
        return ConfigSelection(path, f"profile:{value}", value)
    path = Path(os.path.expanduser(value))
    if path.suffix != ".yaml" or not PROFILE_NAME_RE.match(path.stem):
        raise ConfigError(f"{name}: {value!r} must be a <profile-name>.yaml file")
    return ConfigSelection(path, f"profile-file:{value}", path.stem)


def default_flags() -> dict[str, Any]:
    """A flags mapping with nothing set, for callers that build settings from env/YAML only."""
    return {s.dest: None for s in SPECS}
