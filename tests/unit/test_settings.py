"""Config core: precedence flags > env > YAML > defaults, key references and one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tunnel_core.config.settings import Settings, default_flags, load_settings
from tunnel_core.config.specs import SPEC_BY_KEY
from tunnel_core.errors import ConfigError

TID_FLAG = "tunnel_" + "f" * 32
TID_ENV = "tunnel_" + "e" * 32
TID_YAML = "tunnel_" + "a" * 32
SECRET = "k_unit_Secret_value_123"


def dest(key: str) -> str:
    return SPEC_BY_KEY[key].dest


def nested(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_yaml(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "tunnel-client.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return str(path)


def load(
    tmp_path: Path,
    *,
    flags: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    yaml_data: dict[str, Any] | None = None,
    base: bool = True,
) -> Settings:
    """load_settings with the required settings filled in (unless the case sets them)."""
    f = default_flags()
    e: dict[str, str] = {}
    if base:
        f[dest("control_plane.tunnel_id")] = TID_FLAG
        f[dest("mcp.server_urls")] = ["http://127.0.0.1:9/mcp"]
        e["CONTROL_PLANE_API_KEY"] = SECRET
    f.update(flags or {})
    e.update(env or {})
    if yaml_data is not None:
        f["config"] = write_yaml(tmp_path, yaml_data)
    return load_settings(f, e)


# (YAML key, settings attribute, flag value, env value, YAML value, expected for each, default)
PRECEDENCE = [
    ("control_plane.base_url", "base_url", "https://flag.example", "https://env.example", "https://yaml.example",
     ("https://flag.example", "https://env.example", "https://yaml.example"), "https://api.openai.com"),
    ("control_plane.url_path", "url_path", "/flag", "/env", "/yaml", ("/flag", "/env", "/yaml"), ""),
    ("control_plane.organization_id", "organization_id", "org-flag", "org-env", "org-yaml",
     ("org-flag", "org-env", "org-yaml"), ""),
    ("control_plane.max_inflight_requests", "max_inflight", "7", "8", 9, (7, 8, 9), 20),
    ("control_plane.poll_timeout", "poll_timeout", "5s", "6s", "1m", (5.0, 6.0, 60.0), 30.0),
    ("control_plane.poll_deadline_guardrail", "poll_guardrail", "1s", "2s", "3s", (1.0, 2.0, 3.0), 5.0),
    ("mcp.max_concurrent_requests", "max_concurrent", "3", "4", 5, (3, 4, 5), 10),
    ("mcp.startup_wait_timeout", "startup_wait_timeout", "1s", "2s", "3s", (1.0, 2.0, 3.0), 0.0),
    ("mcp.connection_max_ttl", "connection_max_ttl", "1m", "2m", "3m", (60.0, 120.0, 180.0), 600.0),
    ("health.listen_addr", "health_listen_addr", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3",
     ("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), "127.0.0.1:8080"),
    ("health.url_file", "health_url_file", "/tmp/flag.url", "/tmp/env.url", "/tmp/yaml.url",
     ("/tmp/flag.url", "/tmp/env.url", "/tmp/yaml.url"), ""),
    ("log.level", "log_level", "debug", "warn", "error", ("debug", "warn", "error"), "info"),
    ("log.format", "log_format", "json", "struct-text", "json", ("json", "struct-text", "json"), "struct-text"),
]
LAYERS = [("flag", "env", "yaml"), ("env", "yaml"), ("yaml",), ()]


@pytest.mark.parametrize("layers", LAYERS, ids=lambda ls: "+".join(ls) or "defaults")
@pytest.mark.parametrize("case", PRECEDENCE, ids=lambda c: c[0])
def test_setting_comes_from_the_highest_layer_present(tmp_path: Path, case: tuple[Any, ...], layers: tuple[str, ...]) -> None:
    key, attr, flag_v, env_v, yaml_v, expected, default = case
    spec = SPEC_BY_KEY[key]
    flags = {spec.dest: flag_v} if "flag" in layers else {}
    env = {spec.env: env_v} if "env" in layers and spec.env else {}
    yaml_data = nested(key, yaml_v) if "yaml" in layers else None
    settings = load(tmp_path, flags=flags, env=env, yaml_data=yaml_data)
    want = expected[("flag", "env", "yaml").index(layers[0])] if layers else default
    assert getattr(settings, attr) == want


@pytest.mark.parametrize(
    ("layers", "expected"),
    [(("flag", "env", "yaml"), TID_FLAG), (("env", "yaml"), TID_ENV), (("yaml",), TID_YAML)],
)
def test_tunnel_id_comes_from_the_highest_layer_present(tmp_path: Path, layers: tuple[str, ...], expected: str) -> None:
    flags = {dest("control_plane.tunnel_id"): TID_FLAG if "flag" in layers else None}
    env = {"CONTROL_PLANE_TUNNEL_ID": TID_ENV} if "env" in layers else {}
    settings = load(tmp_path, flags=flags, env=env, yaml_data=nested("control_plane.tunnel_id", TID_YAML))
    assert settings.tunnel_id == expected


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        (("flag", "env", "yaml"), "http://flag.example/mcp"),
        (("env", "yaml"), "http://env.example/mcp"),
        (("yaml",), "http://yaml.example/mcp"),
    ],
)
def test_mcp_server_url_comes_from_the_highest_layer_present(
    tmp_path: Path, layers: tuple[str, ...], expected: str
) -> None:
    flags = {dest("mcp.server_urls"): ["http://flag.example/mcp"] if "flag" in layers else None}
    env = {"MCP_SERVER_URL": "http://env.example/mcp"} if "env" in layers else {}
    settings = load(tmp_path, flags=flags, env=env,
                    yaml_data={"mcp": {"server_urls": [{"url": "http://yaml.example/mcp"}]}})
    assert [(b.channel, b.kind, b.url) for b in settings.bindings] == [("main", "http", expected)]


def test_qualified_server_urls_bind_channels(tmp_path: Path) -> None:
    settings = load(tmp_path, flags={dest("mcp.server_urls"): [
        "http://127.0.0.1:1/mcp", "channel=Docs,url=http://127.0.0.1:2/mcp"]})
    assert [(b.channel, b.url) for b in settings.bindings] == [
        ("main", "http://127.0.0.1:1/mcp"), ("docs", "http://127.0.0.1:2/mcp")]


# API key: --control-plane.api-key ref > CONTROL_PLANE_API_KEY > YAML control_plane.api_key > OPENAI_API_KEY
KEY_LAYERS = {
    "flag": ({dest("control_plane.api_key"): "env:MY_KEY"}, {"MY_KEY": "k_flag"}, None),
    "env": ({}, {"CONTROL_PLANE_API_KEY": "k_env"}, None),
    "yaml": ({}, {}, "k_yaml"),
    "openai": ({}, {"OPENAI_API_KEY": "k_openai"}, None),
}


@pytest.mark.parametrize(
    ("present", "expected_key", "expected_source"),
    [
        (("flag", "env", "yaml", "openai"), "k_flag", "env:MY_KEY"),
        (("env", "yaml", "openai"), "k_env", "env:CONTROL_PLANE_API_KEY"),
        (("yaml", "openai"), "k_yaml", "control_plane.api_key"),
        (("openai",), "k_openai", "env:OPENAI_API_KEY"),
    ],
)
def test_api_key_fallback_order(
    tmp_path: Path, present: tuple[str, ...], expected_key: str, expected_source: str
) -> None:
    flags: dict[str, Any] = {}
    env: dict[str, str] = {}
    yaml_data: dict[str, Any] = {}
    for layer in present:
        f, e, y = KEY_LAYERS[layer]
        flags.update(f)
        env.update(e)
        if y:
            yaml_data = nested("control_plane.api_key", y)
    base_flags = {dest("control_plane.tunnel_id"): TID_FLAG, dest("mcp.server_urls"): ["http://127.0.0.1:9/mcp"]}
    settings = load(tmp_path, flags={**base_flags, **flags}, env=env, yaml_data=yaml_data or None, base=False)
    assert settings.api_key == expected_key
    assert settings.api_key_source == expected_source


def test_api_key_file_reference_is_read_and_trimmed(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("k_from_file\n", encoding="utf-8")
    settings = load(tmp_path, flags={dest("control_plane.api_key"): f"file:{key_file}"})
    assert settings.api_key == "k_from_file"


def test_api_key_never_shows_in_settings_repr(tmp_path: Path) -> None:
    assert SECRET not in repr(load(tmp_path))


def test_yaml_env_reference_for_api_key_is_resolved(tmp_path: Path) -> None:
    settings = load(tmp_path, env={"CONTROL_PLANE_API_KEY": "", "OTHER": "k_other"},
                    yaml_data=nested("control_plane.api_key", "env:OTHER"))
    assert settings.api_key == "k_other"


def test_env_var_selects_config_file_when_no_flag(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, nested("control_plane.base_url", "https://from-env-config.example"))
    settings = load(tmp_path, env={"TUNNEL_CLIENT_CONFIG": path})
    assert settings.base_url == "https://from-env-config.example"
    assert settings.config_source == f"config:{path}"


# (flags, env, yaml, text the one-line error must contain)
ERRORS = [
    pytest.param({dest("control_plane.tunnel_id"): "tunnel_ABC"}, {}, None, "--control-plane.tunnel-id",
                 id="invalid-tunnel-id"),
    pytest.param({dest("control_plane.tunnel_id"): None}, {}, None, "--control-plane.tunnel-id",
                 id="missing-tunnel-id"),
    pytest.param({}, {"CONTROL_PLANE_API_KEY": ""}, None, "CONTROL_PLANE_API_KEY", id="missing-api-key"),
    pytest.param({dest("control_plane.api_key"): SECRET}, {}, None, "--control-plane.api-key",
                 id="literal-key-in-flag"),
    pytest.param({dest("control_plane.api_key"): "env:NOPE_UNSET"}, {}, None, "NOPE_UNSET", id="unset-env-ref"),
    pytest.param({dest("control_plane.api_key"): "file:/nonexistent/key"}, {}, None, "--control-plane.api-key",
                 id="missing-key-file"),
    pytest.param({}, {"CONTROL_PLANE_API_KEY": f'"{SECRET}"'}, None, "CONTROL_PLANE_API_KEY",
                 id="quoted-env-key"),
    pytest.param({}, {}, {"control_plane": {"tunnel_idd": TID_YAML}}, "unknown key control_plane.tunnel_idd",
                 id="unknown-yaml-key"),
    pytest.param({}, {}, {"config_version": 2}, "config_version", id="bad-config-version"),
    pytest.param({dest("control_plane.poll_timeout"): "5"}, {}, None, "--control-plane.poll-timeout",
                 id="duration-without-unit"),
    pytest.param({}, {"CONTROL_PLANE_POLL_TIMEOUT": "0s"}, None, "CONTROL_PLANE_POLL_TIMEOUT", id="zero-poll-timeout"),
    pytest.param({dest("control_plane.max_inflight_requests"): "0"}, {}, None, "--control-plane.max-inflight",
                 id="max-inflight-zero"),
    pytest.param({dest("control_plane.max_inflight_requests"): "many"}, {}, None, "--control-plane.max-inflight",
                 id="max-inflight-not-number"),
    pytest.param({dest("mcp.server_urls"): ["ftp://x/mcp"]}, {}, None, "--mcp.server-url", id="non-http-mcp-url"),
    pytest.param({dest("mcp.server_urls"): None}, {}, None, "--mcp.server-url", id="no-mcp-target"),
    pytest.param({dest("control_plane.base_url"): "api.openai.com"}, {}, None, "--control-plane.base-url",
                 id="base-url-without-scheme"),
    pytest.param({dest("control_plane.url_path"): "tunnels"}, {}, None, "--control-plane.url-path",
                 id="url-path-without-slash"),
    pytest.param({dest("health.listen_addr"): "localhost"}, {}, None, "--health.listen-addr",
                 id="listen-addr-without-port"),
    pytest.param({dest("log.level"): "loud"}, {}, None, "--log.level", id="bad-log-level"),
    pytest.param({dest("log.format"): "xml"}, {}, None, "--log.format", id="bad-log-format"),
    pytest.param({"config": "/nonexistent/cfg.yaml"}, {}, None, "/nonexistent/cfg.yaml", id="missing-config-file"),
    pytest.param({"config": "/a.yaml", "profile": "p"}, {}, None, "mutually exclusive", id="config-and-profile"),
]


@pytest.mark.parametrize(("flags", "env", "yaml_data", "names"), ERRORS)
def test_bad_value_fails_with_one_line_naming_the_setting(
    tmp_path: Path, flags: dict[str, Any], env: dict[str, str], yaml_data: dict[str, Any] | None, names: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, flags=flags, env=env, yaml_data=yaml_data)
    message = str(info.value)
    assert names in message
    assert "\n" not in message
    assert SECRET not in message
    assert info.value.exit_code == 1
