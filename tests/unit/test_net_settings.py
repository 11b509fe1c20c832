"""Networking and Harpoon settings: value forms, precedence, validation and proxy routing."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml

from tunnel_core.config.settings import Settings, default_flags, load_settings
from tunnel_core.config.specs import SPEC_BY_KEY
from tunnel_core.errors import ConfigError
from tunnel_core.httpio import HTTPPool, ProxyRoute, default_ssl_context
from tunnel_core.netconfig import TLSContexts, control_plane_base_url, mcp_pool, proxy_route, route_summary
from tunnel_core.targets.headers import StaticHeaders, with_static

TID = "tunnel_" + "b" * 32
TLS = Path(__file__).resolve().parent.parent / "fixtures" / "tls"


def load(flags: dict[str, Any] | None = None, env: dict[str, str] | None = None,
         yaml_data: dict[str, Any] | None = None, tmp_path: Path | None = None) -> Settings:
    f = default_flags()
    f[SPEC_BY_KEY["control_plane.tunnel_id"].dest] = TID
    f[SPEC_BY_KEY["mcp.server_urls"].dest] = ["https://mcp.corp/mcp"]
    for key, value in (flags or {}).items():
        f[SPEC_BY_KEY[key].dest] = value
    if yaml_data is not None:
        assert tmp_path is not None
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(yaml_data))
        f["config"] = str(path)
    return load_settings(f, {"CONTROL_PLANE_API_KEY": "k_1", **(env or {})})


def test_nothing_configured_means_direct_routes() -> None:
    s = load()
    assert s.network.ca_bundle == "" and s.health_unix_socket == "" and s.harpoon.targets == ()
    assert s.network.proxy("mcp") == ("", "direct")


@pytest.mark.parametrize(
    ("flags", "env", "route", "channel", "expected"),
    [
        ({"http_proxy": "http://global:1"}, {}, "mcp", "", ("http://global:1", "global")),
        ({"http_proxy": "http://global:1", "mcp.http_proxy": "http://mcp:1"}, {}, "mcp", "", ("http://mcp:1", "mcp")),
        ({"mcp.http_proxy": "http://mcp:1"}, {}, "mcp", "http://chan:1", ("http://chan:1", "channel")),
        ({"mcp.http_proxy": "http://mcp:1"}, {}, "control_plane", "", ("", "direct")),
        ({"control_plane.http_proxy": "env:CORP_PROXY"}, {"CORP_PROXY": "https://cp:3128"}, "control_plane", "",
         ("https://cp:3128", "control_plane")),
        ({}, {"HTTPS_PROXY": "http://envproxy:8080"}, "mcp", "", ("", "env")),
    ],
)
def test_proxy_precedence(flags: dict[str, Any], env: dict[str, str], route: str, channel: str,
                          expected: tuple[str, str]) -> None:
    assert load(flags, env).network.proxy(route, channel) == expected


def test_env_proxy_honours_no_proxy_and_never_proxies_loopback() -> None:
    s = load(env={"HTTPS_PROXY": "http://p:3128", "http_proxy": "http://lower:1", "NO_PROXY": "internal.corp,.svc"})
    route = proxy_route(s.network, "mcp")
    assert route.proxy_for("https://api.example/x") == "http://p:3128"
    assert route.proxy_for("http://api.example/x") == "http://lower:1"
    assert route.proxy_for("https://internal.corp/x") is None
    assert route.proxy_for("https://a.b.svc:8443/x") is None
    assert route.proxy_for("https://127.0.0.1:9/x") is None and route.proxy_for("http://localhost/x") is None
    explicit = ProxyRoute("http://p:3128", "mcp")
    assert explicit.proxy_for("http://127.0.0.1/x") == "http://p:3128"  # an explicit proxy applies to everything


def test_proxy_credentials_go_into_proxy_authorization_and_stay_out_of_reprs() -> None:
    s = load({"http_proxy": "http://user:pa%3Ass@proxy:3128"})
    assert "pa%3Ass" not in repr(s) and "user:" not in repr(s)
    pool = mcp_pool(s, s.bindings[0], TLSContexts(s.network), max_connections=4)
    target = pool._target("https://mcp.corp/mcp")
    assert target.connect == ("proxy", 3128) and target.tunnel == "mcp.corp:443"  # CONNECT through the proxy
    assert target.proxy_auth == "Basic dXNlcjpwYTpzcw=="
    summary = route_summary(s)
    assert summary["mcp_routes"][0]["proxy"] == "http://proxy:3128"


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        ({"http_proxy": "proxy:3128"}, {}, "is not a proxy URL"),
        ({"http_proxy": "file:/etc/proxy"}, {}, "not a file reference"),
        ({"mcp.http_proxy": "env:NOPE"}, {}, "NOPE is unset"),
        ({"ca_bundle": "/nonexistent/ca.pem"}, {}, "does not exist"),
        ({"mcp.client_cert": str(TLS / "test_server_cert.pem")}, {}, "give both"),
        ({"control_plane.client_cert": str(TLS / "test_server_cert.pem"),
          "control_plane.client_key": str(TLS / "test_ca_bundle.pem")}, {}, "cannot load the certificate"),
        ({"mcp.extra_headers": ["NoColon"]}, {}, "has no value"),
        ({"mcp.extra_headers": ["Bad Name: x"]}, {}, "not a valid header name"),
        ({"mcp.extra_headers": ["Host: x"]}, {}, "managed by the HTTP client"),
        ({"mcp.extra_headers": ["X-A: 1", "x-a: 2"]}, {}, "given twice with different values"),
        ({"mcp.discovery_extra_headers": ["X-A: env:MISSING"]}, {}, "MISSING is unset"),
        ({"harpoon.targets": ["label=Bad!,url=https://x"]}, {}, "is invalid"),
        ({"harpoon.targets": ["label=a,url=http://x"]}, {}, "allow-plaintext-http"),
        ({"harpoon.targets": ["label=a,url=https://x", "label=a,url=https://y"]}, {}, "used twice"),
        ({"harpoon.targets": ["https://x"]}, {}, "cannot parse"),
        ({"harpoon.max_response_bytes": "200000"}, {}, "out of range"),
        ({"harpoon.hosts_include_regex": ["("]}, {}, "not a valid pattern"),
        ({"mcp.server_urls": ["channel=main,url=https://h/mcp,unix-socket=/s,http-proxy=http://p:1"]}, {},
         "cannot be combined"),
    ],
)
def test_invalid_values_name_the_setting(flags: dict[str, Any], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(flags, env)


def test_client_certificate_needs_an_http_binding() -> None:
    f = default_flags()
    f[SPEC_BY_KEY["control_plane.tunnel_id"].dest] = TID
    f[SPEC_BY_KEY["mcp.commands"].dest] = ["python server.py"]
    f[SPEC_BY_KEY["mcp.client_cert"].dest] = str(TLS / "test_server_cert.pem")
    f[SPEC_BY_KEY["mcp.client_key"].dest] = str(TLS / "test_server_key.pem")
    with pytest.raises(ConfigError, match="needs an HTTP MCP binding"):
        load_settings(f, {"CONTROL_PLANE_API_KEY": "k_1"})


def test_paths_accept_plain_env_and_file_forms(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    shutil.copy(TLS / "test_ca_bundle.pem", ca)
    assert load({"ca_bundle": str(ca)}).network.ca_bundle == str(ca)
    assert load({"ca_bundle": "env:CORP_CA"}, {"CORP_CA": str(ca)}).network.ca_bundle == str(ca)
    assert load({"ca_bundle": f"file:{ca}"}).network.ca_bundle == str(ca)
    assert load(env={"CA_BUNDLE": str(ca)}).network.ca_bundle == str(ca)


def test_yaml_env_reference_to_an_unset_variable_counts_as_unset(tmp_path: Path) -> None:
    # The enterprise sample's ca_bundle/http_proxy come from the environment when it has them.
    data = {"ca_bundle": "env:ENTERPRISE_CA_BUNDLE", "http_proxy": "env:HTTPS_PROXY"}
    s = load(yaml_data=data, tmp_path=tmp_path)
    assert s.network.ca_bundle == "" and s.network.http_proxy == ""
    s = load(yaml_data=data, tmp_path=tmp_path, env={"ENTERPRISE_CA_BUNDLE": str(TLS / "test_ca_bundle.pem"),
                                                     "HTTPS_PROXY": "http://corp:3128"})
    assert s.network.ca_bundle.endswith("test_ca_bundle.pem") and s.network.http_proxy == "http://corp:3128"
    with pytest.raises(ConfigError, match="ENTERPRISE_CA_BUNDLE is unset"):
        load({"ca_bundle": "env:ENTERPRISE_CA_BUNDLE"})  # explicit on the command line: an error


def test_static_headers_from_flags_env_yaml_and_references(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("file-value\n")
    s = load({"mcp.extra_headers": ["X-A: plain", f"X-File: file:{secret}", "X-Env: env:HV"]}, {"HV": "env-value"})
    assert s.network.mcp_extra_headers == (("X-A", "plain"), ("X-File", "file-value"), ("X-Env", "env-value"))
    assert "env-value" not in repr(s) and "file-value" not in repr(s)
    assert load(env={"MCP_EXTRA_HEADERS": "X-A: 1; X-B: 2"}).network.mcp_extra_headers == (("X-A", "1"), ("X-B", "2"))
    data = {"mcp": {"extra_headers": {"X-Yaml": "y"}, "discovery_extra_headers": {"X-D": "d"}}}
    from_yaml = load(yaml_data=data, tmp_path=tmp_path)
    assert from_yaml.network.mcp_extra_headers == (("X-Yaml", "y"),)
    assert from_yaml.network.mcp_discovery_extra_headers == (("X-D", "d"),)
    # A flag (or env var) replaces the YAML map entirely: no merge.
    both = load({"mcp.extra_headers": ["X-Flag: f"]}, yaml_data=data, tmp_path=tmp_path)
    assert both.network.mcp_extra_headers == (("X-Flag", "f"),)


def test_per_channel_binding_keys_and_yaml_entries(tmp_path: Path) -> None:
    cert, key = str(TLS / "test_server_cert.pem"), str(TLS / "test_server_key.pem")
    s = load({"mcp.server_urls": ["https://mcp.corp/mcp",
                                  "channel=b,url=http://localhost:1/mcp,unix-socket=/run/b.sock",
                                  f"channel=c,url=https://c/mcp,http-proxy=http://p:1,client-cert={cert},client-key={key}"]})
    b, c = s.binding("b"), s.binding("c")
    assert b is not None and b.unix_socket == "/run/b.sock"
    assert c is not None and (c.http_proxy, c.client_cert, c.client_key) == ("http://p:1", cert, key)
    data = {"mcp": {"server_urls": [{"channel": "main", "url": "https://m/mcp", "unix_socket": "/run/m.sock"}]}}
    f = default_flags()
    f[SPEC_BY_KEY["control_plane.tunnel_id"].dest] = TID
    path = tmp_path / "y.yaml"
    path.write_text(yaml.safe_dump(data))
    f["config"] = str(path)
    main = load_settings(f, {"CONTROL_PLANE_API_KEY": "k_1"}).binding("main")
    assert main is not None and main.unix_socket == "/run/m.sock"


def test_harpoon_settings_and_poll_channels() -> None:
    s = load({"harpoon.targets": ["label=idp,url=https://idp.corp/token,desc=token, with a comma"],
              "harpoon.max_redirects": "0", "harpoon.hosts_include_loopback": "false",
              "harpoon.hosts_include_suffix": [".corp.internal"]})
    (t,) = s.harpoon.targets
    assert (t.label, t.url, t.description) == ("idp", "https://idp.corp/token", "token, with a comma")
    assert s.harpoon.max_redirects == 0 and not s.harpoon.hosts_include_loopback
    assert s.harpoon.hosts_include_suffix == ("corp.internal",)
    env = load(env={"HARPOON_TARGETS": "label=a,url=https://a;label=b,url=https://b"})
    assert [x.label for x in env.harpoon.targets] == ["a", "b"]
    assert load({"control_plane.poll_channels": ["main", "harpoon"]}).poll_channels == ("harpoon", "main")
    with pytest.raises(ConfigError, match=r"polling only harpoon needs at least one --harpoon\.target"):
        load({"control_plane.poll_channels": ["harpoon"]})


def test_control_plane_certificate_switches_the_openai_host_to_mtls() -> None:
    cert, key = str(TLS / "test_server_cert.pem"), str(TLS / "test_server_key.pem")
    s = load({"control_plane.client_cert": cert, "control_plane.client_key": key})
    assert control_plane_base_url(s) == "https://mtls.api.openai.com"
    other = load({"control_plane.client_cert": cert, "control_plane.client_key": key,
                  "control_plane.base_url": "https://tunnel.corp"})
    assert control_plane_base_url(other) == "https://tunnel.corp"


def test_client_certificate_is_presented_to_the_mcp_origin_only() -> None:
    cert, key = str(TLS / "test_server_cert.pem"), str(TLS / "test_server_key.pem")
    s = load({"mcp.client_cert": cert, "mcp.client_key": key})
    pool = mcp_pool(s, s.bindings[0], TLSContexts(s.network), max_connections=4)
    with_cert = pool._target("https://mcp.corp/mcp").tls
    assert isinstance(with_cert, ssl.SSLContext)
    assert pool._target("https://MCP.corp:443/.well-known/x").tls is with_cert
    assert pool._target("https://login.corp/token").tls is not with_cert  # the authorization server never sees it
    assert pool._target("https://mcp.corp:8443/mcp").tls is not with_cert
    plain = HTTPPool(ssl_context=default_ssl_context())
    assert plain._target("https://a/x") is plain._target("https://a/x")  # routing is worked out once per URL


def test_static_headers_scope() -> None:
    static = StaticHeaders("https://mcp.corp/mcp/", (("X-A", "a"), ("X-Both", "extra")), (("X-Both", "disc"),))
    assert static.for_request("https://mcp.corp/mcp") == [("X-A", "a"), ("X-Both", "extra")]
    assert static.for_request("https://mcp.corp/other") == []
    assert static.for_discovery("https://mcp.corp/.well-known/oauth-protected-resource/mcp") == [
        ("X-A", "a"), ("X-Both", "disc")]
    assert static.for_discovery("https://mcp.corp:8443/mcp") == []
    assert static.for_discovery("https://login.corp/.well-known/oauth-authorization-server") == []
    assert with_static([("X-A", "static"), ("X-B", "b")], [("x-a", "connector")]) == [("X-B", "b"), ("x-a", "connector")]
