"""Enterprise networking and Harpoon settings: proxies, CA bundle, client certificates,
static MCP headers, Unix sockets and the allow-listed Harpoon targets.

Value forms follow the reference: proxies are ``http(s)://host:port`` or ``env:NAME``;
certificate, key, CA and socket paths are a plain path, ``env:NAME`` (the variable holds the
path) or ``file:/path``; static header values may be ``env:NAME`` or ``file:/path`` (the
file's one trailing newline is dropped). Resolved header values are secrets: they are kept
out of ``repr`` and never appear in error text.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import field
from typing import Any, Protocol
from urllib.parse import urlsplit

from tunnel_core.config.refs import ENV_NAME_RE, is_reference, resolve_ref
from tunnel_core.config.specs import SPEC_BY_KEY, Spec
from tunnel_core.errors import ConfigError
from tunnel_core.records import record

HEADER_NAME_RE = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
HARPOON_LABEL_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
HARPOON_MAX_RESPONSE_BYTES = 102400
HARPOON_MAX_REDIRECTS = 5

# Framing and hop-by-hop headers belong to the HTTP stack, never to operator configuration.
RESERVED_STATIC_HEADERS = frozenset({
    "host", "content-length", "content-type", "connection", "keep-alive", "transfer-encoding", "te", "trailer",
    "upgrade", "proxy-authorization", "proxy-authenticate", "proxy-connection", "expect",
})

# Identity and routing headers the client sets on every control-plane request itself; an operator
# header of the same name would be ambiguous on the wire, so it is refused at load.
RESERVED_CONTROL_PLANE_HEADERS = frozenset({
    "authorization", "accept", "user-agent", "x-tunnel-client-name", "x-tunnel-client-version",
    "x-tunnel-client-instance-id", "x-tunnel-client-wire-protocol-version", "x-tunnel-mcp-server-info",
    "x-tunnel-shard-token", "x-client-request-id",
})

HARPOON_TRANSPORTS = ("http-streamable",)

Headers = tuple[tuple[str, str], ...]


class _Lookup(Protocol):
    env: Mapping[str, str]

    def get(self, spec: Spec) -> tuple[Any, str]: ...


def setting_names(spec: Spec) -> str:
    return " / ".join(p for p in (spec.flag, spec.env, spec.key) if p)


@record(frozen=True, slots=True)
class NetworkSettings:
    """Outbound networking; every proxy here is a resolved URL ("" = not set)."""

    ca_bundle: str = ""
    http_proxy: str = field(default="", repr=False)  # proxy URLs may carry credentials
    control_plane_http_proxy: str = field(default="", repr=False)
    control_plane_client_cert: str = ""
    control_plane_client_key: str = ""
    mcp_http_proxy: str = field(default="", repr=False)
    mcp_client_cert: str = ""
    mcp_client_key: str = ""
    mcp_extra_headers: Headers = field(default=(), repr=False)
    mcp_discovery_extra_headers: Headers = field(default=(), repr=False)
    control_plane_extra_headers: Headers = field(default=(), repr=False)
    env_proxies: Mapping[str, str] = field(default_factory=dict, repr=False)  # HTTP(S)_PROXY / NO_PROXY

    def proxy(self, route: str, channel_proxy: str = "") -> tuple[str, str]:
        """(explicit proxy URL or "", source) for ``route`` in mcp | control_plane | harpoon.

        Precedence: per-channel > route (``--mcp.http-proxy`` ...) > ``--http-proxy`` > the
        standard environment variables (source ``env``, empty URL: decided per request).
        """
        route_proxy = {"mcp": self.mcp_http_proxy, "control_plane": self.control_plane_http_proxy}.get(route, "")
        for value, source in ((channel_proxy, "channel"), (route_proxy, route), (self.http_proxy, "global")):
            if value:
                return value, source
        return "", "env" if self.env_proxies.get("http") or self.env_proxies.get("https") else "direct"


@record(frozen=True, slots=True)
class HarpoonTargetSpec:
    label: str
    url: str
    unix_socket: str = ""
    description: str = ""


@record(frozen=True, slots=True)
class HarpoonSettings:
    targets: tuple[HarpoonTargetSpec, ...] = ()
    allow_plaintext_http: bool = False
    max_response_bytes: int = HARPOON_MAX_RESPONSE_BYTES
    max_redirects: int = HARPOON_MAX_REDIRECTS
    http_proxy: str = field(default="", repr=False)
    hosts_include_suffix: tuple[str, ...] = ()
    hosts_include_regex: tuple[str, ...] = ()
    hosts_include_loopback: bool = True
    hosts_include_private: bool = True
    additional_transports: tuple[str, ...] = ()  # "http-streamable": also served at /harpoon/mcp
    capture_payloads: bool = False  # keep call bodies for /api/harpoon/calls


# ---- value forms --------------------------------------------------------------------------------


def proxy_value(raw: str, what: str, env: Mapping[str, str]) -> str:
    """A proxy URL from ``http(s)://...`` or ``env:NAME``; "" stays ""."""
    raw = raw.strip()
    if not raw:
        return ""
    value = raw
    if raw.startswith("env:"):
        value = resolve_ref(raw, setting=what, env=env)
    elif raw.startswith("file:"):
        raise ConfigError(f"{what}: a proxy is http(s)://host:port or env:NAME, not a file reference")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = raw if raw.startswith("env:") else _redact_userinfo(raw)
        raise ConfigError(f"{what}: {shown!r} is not a proxy URL; use http://host:port or https://host:port")
    return value


def _redact_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
    return url


def path_value(raw: str, what: str, env: Mapping[str, str]) -> str:
    """A file path from ``PATH``, ``env:NAME`` (the variable holds the path) or ``file:/path``."""
    raw = raw.strip()
    if raw.startswith("env:"):
        name = raw[4:]
        if not ENV_NAME_RE.match(name):
            raise ConfigError(f"{what}: {raw!r} is not a valid env reference; use env:NAME")
        raw = env.get(name, "").strip()
        if not raw:
            raise ConfigError(f"{what}: environment variable {name} is unset or empty; export it or give a path")
    elif raw.startswith("file:"):
        raw = raw[5:]
    return os.path.expanduser(raw) if raw else ""


def _unset_yaml_ref(raw: Any, origin: str, env: Mapping[str, str]) -> bool:
    """A profile's ``env:NAME`` for an optional setting whose variable is unset counts as not set.

    Profiles such as the enterprise sample say ``ca_bundle: "env:ENTERPRISE_CA_BUNDLE"`` so one
    file works on machines with and without the corporate proxy; a flag or environment
    variable naming an unset variable is still an error (it was asked for explicitly).
    """
    return origin == "yaml" and isinstance(raw, str) and raw.startswith("env:") and not env.get(raw[4:], "").strip()


def _path(src: _Lookup, key: str) -> str:
    spec = SPEC_BY_KEY[key]
    raw, origin = src.get(spec)
    if _unset_yaml_ref(raw, origin, src.env):
        return ""
    return path_value(str(raw or ""), setting_names(spec), src.env)


def _proxy(src: _Lookup, key: str) -> str:
    spec = SPEC_BY_KEY[key]
    raw, origin = src.get(spec)
    if _unset_yaml_ref(raw, origin, src.env):
        return ""
    return proxy_value(str(raw or ""), setting_names(spec), src.env)


def check_ca_bundle(path: str, what: str) -> None:
    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} does not exist; give the path of a PEM CA bundle") from None
    except (OSError, ssl.SSLError, ValueError):
        raise ConfigError(f"{what}: {path} is not a readable PEM CA bundle; check the file") from None


def check_cert_pair(cert: str, key: str, what: str) -> None:
    """Both or neither; when both, they must load as a matching PEM certificate and key."""
    if bool(cert) != bool(key):
        raise ConfigError(f"{what}: give both the client certificate and its key, or neither")
    if not cert:
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"{what}: {exc.filename or cert} does not exist; check the path") from None
    except (OSError, ssl.SSLError, ValueError):
        raise ConfigError(
            f"{what}: cannot load the certificate {cert} with key {key}; both must be PEM and belong together"
        ) from None


# ---- static headers -----------------------------------------------------------------------------


def parse_headers(raw: Any, what: str, env: Mapping[str, str],
                  reserved: frozenset[str] = frozenset()) -> Headers:
    """``["Name: value", ...]`` (flags, env) or ``{name: value}`` (YAML) to validated pairs.

    Names in ``reserved`` (lower case) are refused like the framing headers."""
    if not raw:
        return ()
    if isinstance(raw, Mapping):
        items = [(str(k), str(v)) for k, v in raw.items()]
    else:
        items = []
        for entry in raw:
            name, sep, value = str(entry).partition(":")
            if not sep:
                raise ConfigError(f"{what}: {name.strip()!r} has no value; use 'Name: value'")
            items.append((name, value))
    out: dict[str, tuple[str, str]] = {}
    for name, value in items:
        name, value = name.strip(), value.strip()
        if not HEADER_NAME_RE.match(name):
            raise ConfigError(f"{what}: {name!r} is not a valid header name")
        if name.lower() in RESERVED_STATIC_HEADERS:
            raise ConfigError(f"{what}: {name} is managed by the HTTP client and cannot be set")
        if name.lower() in reserved:
            raise ConfigError(f"{what}: {name} is set by tunnel-client itself and cannot be overridden")
        if is_reference(value):
            value = resolve_ref(value, setting=f"{what} {name}", env=env, strip_one_newline=True)
        if "\r" in value or "\n" in value:
            raise ConfigError(f"{what}: the value of {name} contains a line break; remove it")
        prior = out.get(name.lower())
        if prior is not None and prior[1] != value:
            raise ConfigError(f"{what}: {name} is given twice with different values; keep one")
        out[name.lower()] = (prior[0] if prior else name, value)
    return tuple(out.values())


def _headers(src: _Lookup, key: str, reserved: frozenset[str] = frozenset()) -> Headers:
    spec = SPEC_BY_KEY[key]
    raw, _ = src.get(spec)
    return parse_headers(raw, setting_names(spec), src.env, reserved)


# ---- assembling ---------------------------------------------------------------------------------


def binding_extras(src: _Lookup, channel: str, extra: Mapping[str, str]) -> dict[str, str]:
    """Validated per-channel keys of an HTTP binding (unix_socket, http_proxy, client_cert, client_key)."""
    what = f"mcp binding {channel!r}"
    out = {
        "unix_socket": path_value(extra.get("unix_socket", ""), f"{what} unix-socket", src.env),
        "http_proxy": proxy_value(extra.get("http_proxy", ""), f"{what} http-proxy", src.env),
        "client_cert": path_value(extra.get("client_cert", ""), f"{what} client-cert", src.env),
        "client_key": path_value(extra.get("client_key", ""), f"{what} client-key", src.env),
    }
    if out["unix_socket"] and out["http_proxy"]:
        raise ConfigError(f"{what}: unix-socket and http-proxy cannot be combined; a socket is dialled directly")
    check_cert_pair(out["client_cert"], out["client_key"], f"{what} client-cert/client-key")
    return out


def env_proxies(env: Mapping[str, str]) -> dict[str, str]:
    """``{"http", "https", "no"}`` from HTTP_PROXY/HTTPS_PROXY/NO_PROXY (lower-case names win, as in curl)."""
    out: dict[str, str] = {}
    for key in ("http", "https", "no"):
        value = env.get(f"{key}_proxy") or env.get(f"{key.upper()}_PROXY") or ""
        if value.strip():
            out[key] = value.strip()
    return out


def load_network(src: _Lookup, http_bindings: int) -> NetworkSettings:
    ca = _path(src, "ca_bundle")
    if ca:
        check_ca_bundle(ca, setting_names(SPEC_BY_KEY["ca_bundle"]))
    cp_cert, cp_key = _path(src, "control_plane.client_cert"), _path(src, "control_plane.client_key")
    check_cert_pair(cp_cert, cp_key, "--control-plane.client-cert / --control-plane.client-key")
    mcp_cert, mcp_key = _path(src, "mcp.client_cert"), _path(src, "mcp.client_key")
    check_cert_pair(mcp_cert, mcp_key, "--mcp.client-cert / --mcp.client-key")
    if mcp_cert and not http_bindings:
        raise ConfigError("--mcp.client-cert: needs an HTTP MCP binding (--mcp.server-url); stdio targets use no TLS")
    return NetworkSettings(
        ca_bundle=ca,
        http_proxy=_proxy(src, "http_proxy"),
        control_plane_http_proxy=_proxy(src, "control_plane.http_proxy"),
        control_plane_client_cert=cp_cert,
        control_plane_client_key=cp_key,
        mcp_http_proxy=_proxy(src, "mcp.http_proxy"),
        mcp_client_cert=mcp_cert,
        mcp_client_key=mcp_key,
        mcp_extra_headers=_headers(src, "mcp.extra_headers"),
        mcp_discovery_extra_headers=_headers(src, "mcp.discovery_extra_headers"),
        control_plane_extra_headers=_headers(src, "control_plane.extra_headers", RESERVED_CONTROL_PLANE_HEADERS),
        env_proxies=env_proxies(src.env),
    )


_TARGET_KEYS = ("label", "url", "unix-socket", "unix_socket", "desc", "description")


def _split_target(raw: str, what: str) -> dict[str, str]:
    parts = re.split(r",(?=\s*(?:label|url|unix-socket|unix_socket|desc|description)\s*=)", raw.strip())
    out: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in _TARGET_KEYS:
            raise ConfigError(f"{what}: cannot parse {raw!r}; use label=NAME,url=URL[,unix-socket=PATH][,desc=TEXT]")
        out[{"unix-socket": "unix_socket", "desc": "description"}.get(key, key)] = value.strip()
    return out


def bool_setting(src: _Lookup, key: str) -> bool:
    spec = SPEC_BY_KEY[key]
    raw, _ = src.get(spec)
    value = str(raw).strip().lower()
    if value in ("true", "1", "yes", "on"):
        return True
    if value in ("false", "0", "no", "off", ""):
        return False
    raise ConfigError(f"{setting_names(spec)}: {raw!r} is not a boolean; use true or false")


def int_setting(src: _Lookup, key: str, lo: int, hi: int) -> int:
    spec = SPEC_BY_KEY[key]
    raw, _ = src.get(spec)
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise ConfigError(f"{setting_names(spec)}: {raw!r} is not a whole number; use {lo}..{hi}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{setting_names(spec)}: {value} is out of range; use {lo}..{hi}")
    return value


def _list(src: _Lookup, key: str) -> tuple[str, ...]:
    raw, _ = src.get(SPEC_BY_KEY[key])
    return tuple(str(v).strip() for v in raw or () if str(v).strip())


def load_harpoon(src: _Lookup) -> HarpoonSettings:
    spec = SPEC_BY_KEY["harpoon.targets"]
    what = setting_names(spec)
    plaintext = bool_setting(src, "harpoon.allow_plaintext_http")
    raw, _ = src.get(spec)
    targets: list[HarpoonTargetSpec] = []
    for item in raw or ():
        fields = _split_target(item, what) if isinstance(item, str) else {
            k: getattr(item, k) or "" for k in ("label", "url", "unix_socket", "description")}
        label = fields.get("label", "").strip().lower()
        if not HARPOON_LABEL_RE.match(label):
            raise ConfigError(f"{what}: label {label!r} is invalid; use [a-z0-9][a-z0-9_-], up to 64 characters")
        if label in {t.label for t in targets}:
            raise ConfigError(f"{what}: label {label!r} is used twice; give each target its own label")
        url = fields.get("url", "").strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{what} {label}: {url!r} is not an absolute http(s) URL")
        if parts.username or parts.password or parts.fragment:
            raise ConfigError(f"{what} {label}: the URL must not carry credentials or a fragment")
        if parts.scheme == "http" and not plaintext:
            raise ConfigError(f"{what} {label}: http:// needs --harpoon.allow-plaintext-http true; prefer https")
        targets.append(HarpoonTargetSpec(label, url, path_value(fields.get("unix_socket", ""), what, src.env),
                                         fields.get("description", "")))
    transports = tuple(dict.fromkeys(t.lower() for t in _list(src, "harpoon.additional_transports")))
    for t in transports:
        if t not in HARPOON_TRANSPORTS:
            raise ConfigError(f"{setting_names(SPEC_BY_KEY['harpoon.additional_transports'])}: {t!r} is not a "
                              f"Harpoon transport; use {', '.join(HARPOON_TRANSPORTS)}")
    regexes = _list(src, "harpoon.hosts_include_regex")
    for rx in regexes:
        try:
            re.compile(rx)
        except re.error as exc:
            raise ConfigError(f"--harpoon.hosts-include-regex: {rx!r} is not a valid pattern ({exc})") from None
    return HarpoonSettings(
        targets=tuple(targets),
        allow_plaintext_http=plaintext,
        max_response_bytes=int_setting(src, "harpoon.max_response_bytes", 1, HARPOON_MAX_RESPONSE_BYTES),
        max_redirects=int_setting(src, "harpoon.max_redirects", 0, HARPOON_MAX_REDIRECTS),
        http_proxy=_proxy(src, "harpoon.http_proxy"),
        hosts_include_suffix=tuple(s.lower().lstrip(".") for s in _list(src, "harpoon.hosts_include_suffix")),
        hosts_include_regex=regexes,
        hosts_include_loopback=bool_setting(src, "harpoon.hosts_include_loopback"),
        hosts_include_private=bool_setting(src, "harpoon.hosts_include_private"),
        additional_transports=transports,
        capture_payloads=bool_setting(src, "harpoon.capture_payloads"),
    )
