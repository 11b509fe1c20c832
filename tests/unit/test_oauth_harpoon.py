"""Harpoon: host classification, auto-registration rules, labels, channel routing, tool errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tunnel_core.config.network import HarpoonSettings
from tunnel_core.httpio import HTTPPool
from tunnel_core.oauth.discovery import DiscoveredURL
from tunnel_core.targets.base import Reply
from tunnel_core.targets.harpoon import ChannelTable, HarpoonServer, ToolError, _outbound_headers
from tunnel_core.targets.harpoon_registry import HarpoonTarget, HostClassifier, Registry, register_discovered
from tunnel_core.wire.models import JsonRpcCommand

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("host", "private", "reason"),
    [
        ("127.0.0.1", True, "loopback"), ("localhost", True, "loopback"), ("api.localhost", True, "loopback"),
        ("::1", True, "loopback"), ("10.1.2.3", True, "private-network"), ("172.20.0.1", True, "private-network"),
        ("192.168.1.1", True, "private-network"), ("fd00::1", True, "private-network"),
        ("8.8.8.8", False, "public-host"), ("example.com", False, "public-host"),
        ("auth.corp.internal", True, "suffix:corp.internal"), ("sso-7.example.net", True, r"regex:^sso-\d+\."),
    ],
)
def test_host_classifier(host: str, private: bool, reason: str) -> None:
    classifier = HostClassifier(suffixes=("corp.internal",), patterns=(__import__("re").compile(r"^sso-\d+\."),))
    assert classifier.classify(host) == (private, reason)


def test_classifier_switches() -> None:
    assert HostClassifier(loopback=False).classify("127.0.0.1") == (False, "public-host")
    assert HostClassifier(private=False).classify("10.0.0.1") == (False, "public-host")


def _rec(url: str, role: str, disallow: bool = False) -> DiscoveredURL:
    return DiscoveredURL(url, role, role, disallow_private=disallow)


def test_private_same_origin_records_register_with_reference_labels() -> None:
    registry = Registry()
    added = register_discovered(registry, [
        _rec("http://10.0.0.5/mcp", "prmd-resource"),
        _rec("http://10.0.0.5/register", "registration-endpoint"),
        _rec("https://public.example/token", "token-endpoint"),
    ], HostClassifier())
    assert added == ["oauth-prmd-resource-0", "oauth-registration-endpoint-0"]
    target = registry.lookup("oauth-registration-endpoint-0")
    assert target is not None and (target.category, target.source, target.role) == ("oauth", "oauth",
                                                                                      "registration-endpoint")
    assert target.inclusion_reason == "private-network"


def test_public_records_register_on_the_protected_resource_host_and_subdomains() -> None:
    registry = Registry()
    register_discovered(registry, [
        _rec("https://mcp.example.com/mcp", "prmd-resource"),
        _rec("https://auth.mcp.example.com/token", "token-endpoint"),
        _rec("https://other.com/token", "revocation-endpoint"),
    ], HostClassifier())
    token = registry.lookup("oauth-token-endpoint-0")
    assert token is not None and token.inclusion_reason == "oauth-protected-resource-host"
    assert registry.lookup("oauth-revocation-endpoint-0") is None


def test_off_origin_private_records_need_an_exact_resource_origin() -> None:
    registry = Registry()
    register_discovered(registry, [
        _rec("http://10.0.0.5:8080/mcp", "prmd-resource"),
        _rec("http://10.0.0.9/register", "registration-endpoint", disallow=True),  # private, but off-origin
        _rec("http://10.0.0.5:8080/token", "token-endpoint", disallow=True),  # exact resource origin
    ], HostClassifier())
    assert registry.lookup("oauth-registration-endpoint-0") is None
    token = registry.lookup("oauth-token-endpoint-0")
    assert token is not None and token.inclusion_reason == "oauth-protected-resource-host"


def test_same_url_is_registered_once_and_collisions_get_suffixes() -> None:
    registry = Registry()
    records = [_rec("http://10.0.0.5/register", "registration-endpoint")]
    assert register_discovered(registry, records, HostClassifier()) == ["oauth-registration-endpoint-0"]
    assert register_discovered(registry, records, HostClassifier()) == []
    moved = [_rec("http://10.0.0.5/v2/register", "registration-endpoint")]
    assert register_discovered(registry, moved, HostClassifier()) == ["oauth-registration-endpoint-0-1"]
    assert registry.version == 2


class _Target:
    channel, kind, proc_affinity = "main", "http", False


def _server(registry: Registry) -> HarpoonServer:
    return HarpoonServer(registry, HarpoonSettings(), lambda sock: HTTPPool())


def test_channel_table_lists_and_routes_harpoon_only_while_registered() -> None:
    registry = Registry()
    harpoon = _server(registry)
    table = ChannelTable({"main": _Target()}, harpoon)  # type: ignore[dict-item]
    assert table.server_info() == '{"version":1,"channels":[{"name":"main"}]}'
    assert table.get("harpoon") is None and "harpoon" not in table and len(table) == 1
    registry.register(HarpoonTarget("api", "https://10.0.0.1/x"))
    assert table.server_info() == ('{"version":1,"channels":[{"name":"main"},'
                                   '{"name":"harpoon","proc_affinity":true}]}')
    assert table.get("harpoon") is harpoon and list(table) == ["main", "harpoon"]
    excluded = ChannelTable({"main": _Target()}, harpoon, poll_channels=("main",))  # type: ignore[dict-item]
    assert excluded.get("harpoon") is None and "harpoon" not in excluded.server_info()


def _cmd(method: str, params: dict[str, Any] | None = None, rpc_id: Any = 1) -> JsonRpcCommand:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params or {}}
    if rpc_id is not None:
        msg["id"] = rpc_id
    return JsonRpcCommand(request_id="r", shard_token="s", channel="harpoon", jsonrpc=msg)


async def _noemit(_: Reply) -> bool:
    return True


async def test_harpoon_speaks_mcp() -> None:
    server = _server(Registry())
    init = await server.call(_cmd("initialize", {"protocolVersion": "2025-06-18"}), _noemit)
    assert init.body is not None and init.body["result"]["protocolVersion"] == "2025-06-18"
    assert init.body["result"]["serverInfo"]["name"] == "harpoon"
    ack = await server.call(_cmd("notifications/initialized", rpc_id=None), _noemit)
    assert (ack.resp_type, ack.code) == ("notify_ack", 202)
    unknown = await server.call(_cmd("server/discover"), _noemit)
    assert unknown.body is not None and unknown.body["error"]["code"] == -32601
    tools = await server.call(_cmd("tools/list"), _noemit)
    assert tools.body is not None
    call = next(t for t in tools.body["result"]["tools"] if t["name"] == "call_target")
    assert call["inputSchema"]["properties"]["max_response_bytes"]["maximum"] == 102400
    assert call["inputSchema"]["required"] == ["label", "method"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"method": "GET"}, "label is required"),
        ({"label": "missing", "method": "GET"}, "unknown target"),
        ({"label": "api", "method": "DELETE"}, "invalid method"),
        ({"label": "api", "method": "GET", "timeout_ms": 5}, "timeout_ms must be between 100 and 120000"),
        ({"label": "api", "method": "GET", "max_redirects": 9}, "max_redirects must be between 0 and 5"),
        ({"label": "api", "method": "POST", "body": "x" * 20, "max_response_bytes": 10},
         "request body exceeds size limit"),
        ({"label": "api", "method": "GET", "headers": {"bad name": "x"}}, "headers must map header names"),
    ],
)
async def test_call_target_argument_errors_are_tool_errors(args: dict[str, Any], message: str) -> None:
    registry = Registry()
    registry.register(HarpoonTarget("api", "https://10.0.0.1/x"))
    reply = await _server(registry).call(_cmd("tools/call", {"name": "call_target", "arguments": args}), _noemit)
    assert reply.body is not None
    result = reply.body["result"]
    assert result["isError"] is True and message in result["content"][0]["text"]


def test_outbound_headers_drop_forwarding_auth_and_nominated_headers() -> None:
    headers = _outbound_headers({"Content-Type": "application/json", "Host": "evil", "Cookie": "a", "User-Agent": "x",
                                 "X-Forwarded-For": "1.2.3.4", "Forwarded": "for=x", "X-OpenAI-Authorization": "t",
                                 "Connection": "X-Secret", "X-Secret": "s", "Authorization": "Bearer ok"})
    names = [k for k, _ in headers]
    assert names == ["Content-Type", "Authorization", "User-Agent"]
    assert dict(headers)["User-Agent"].startswith("oai-tunnel-client/")
    with pytest.raises(ToolError):
        _outbound_headers({"X": "a\r\nInjected: 1"})


def test_harpoon_rewrites_registered_urls_but_not_a_prmd_resource() -> None:
    registry = Registry()
    registry.register(HarpoonTarget("oauth-token-endpoint-0", "https://10.0.0.1:443/token"))
    registry.register(HarpoonTarget("oauth-prmd-resource-0", "https://10.0.0.1/mcp"))
    server = _server(registry)
    body = json.dumps({"token_endpoint": "https://10.0.0.1/token", "resource": "https://10.0.0.1/mcp",
                       "nested": [{"u": "https://10.0.0.1/mcp"}], "other": "https://10.0.0.1/else"}).encode()
    out = json.loads(server._rewrite_body(body, [("Content-Type", "application/json")]))
    assert out == {"token_endpoint": "harpoon://oauth-token-endpoint-0", "resource": "https://10.0.0.1/mcp",
                   "nested": [{"u": "harpoon://oauth-prmd-resource-0"}], "other": "https://10.0.0.1/else"}
    headers = server._rewrite_headers([("Location", "/token"), ("Link", '</mcp>; rel="x"'), ("X", "https://10.0.0.1/mcp")],
                                      "https://10.0.0.1/start")
    assert headers == {"Location": ["harpoon://oauth-token-endpoint-0"],
                       "Link": ['<harpoon://oauth-prmd-resource-0>; rel="x"'], "X": ["https://10.0.0.1/mcp"]}
    assert server._rewrite_body(b"not json", [("Content-Type", "text/plain")]) == b"not json"
