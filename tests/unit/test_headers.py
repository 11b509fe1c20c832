"""Header rules: what the connector may send to the target, and what comes back."""

from __future__ import annotations

import pytest

from tunnel_core.targets.headers import request_headers, response_headers

BLOCKED = [
    "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "TE", "Trailer",
    "Transfer-Encoding", "Upgrade", "Host", "Content-Length", "Accept-Encoding", "Cookie", "Expect",
    "Forwarded", "Via", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "X-Client-IP", "X-Cluster-Client-IP",
    "Fastly-Client-IP", "X-Original-Forwarded-For",
    "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "x-forwarded-anything",
    "X-Tunnel-Shard-Token", "X-Tunnel-Anything", "X-OpenAI-Authorization", "X-OpenAI-Internal-Route",
    "OpenAI-Organization", "OpenAI-Project",
]
FORWARDED = [
    "Authorization", "Accept", "Mcp-Session-Id", "Mcp-Protocol-Version", "Last-Event-ID", "User-Agent",
    "X-Request-Id", "X-Custom-Trace", "Mcp-Method", "Mcp-Name", "Content-Type",
]


@pytest.mark.parametrize("name", BLOCKED)
def test_blocked_request_header_is_not_forwarded(name: str) -> None:
    assert request_headers({name: ["v"], "X-Keep": ["1"]}) == [("X-Keep", "1")]


@pytest.mark.parametrize("name", [n.upper() for n in BLOCKED[:6]] + [n.lower() for n in BLOCKED[-6:]])
def test_blocked_request_headers_match_case_insensitively(name: str) -> None:
    assert request_headers({name: ["v"]}) == []


@pytest.mark.parametrize("name", FORWARDED)
def test_ordinary_request_header_is_forwarded(name: str) -> None:
    assert request_headers({name: ["v1", "v2"]}) == [(name, "v1"), (name, "v2")]


def test_connection_nominated_request_headers_are_dropped() -> None:
    headers = {"Connection": ["keep-alive, X-Hop-A", "x-hop-b"], "X-Hop-A": ["1"], "X-HOP-B": ["2"], "X-Keep": ["3"]}
    assert request_headers(headers) == [("X-Keep", "3")]


def test_authorization_is_dropped_only_when_disallowed() -> None:
    assert request_headers({"Authorization": ["Bearer t"]}) == [("Authorization", "Bearer t")]
    assert request_headers({"Authorization": ["Bearer t"]}, allow_authorization=False) == []


def test_request_header_values_keep_their_order() -> None:
    assert request_headers({"X-A": ["1", "2"], "X-B": ["3"]}) == [("X-A", "1"), ("X-A", "2"), ("X-B", "3")]


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("access-control-expose-headers", "Access-Control-Expose-Headers"),
        ("content-type", "Content-Type"),
        ("last-event-id", "Last-Event-Id"),
        ("mcp-protocol-version", "Mcp-Protocol-Version"),
        ("MCP-SESSION-ID", "Mcp-Session-Id"),
        ("WWW-Authenticate", "Www-Authenticate"),
    ],
)
def test_allowlisted_response_header_is_kept_under_its_canonical_name(name: str, canonical: str) -> None:
    assert response_headers([(name, "v")]) == {canonical: ["v"]}


@pytest.mark.parametrize(
    "name", ["Set-Cookie", "Server", "X-Powered-By", "Location", "Content-Length", "Connection", "X-Internal-Debug",
             "Strict-Transport-Security", "Cache-Control"],
)
def test_other_response_headers_are_dropped(name: str) -> None:
    assert response_headers([(name, "v")]) == {}


def test_empty_and_connection_nominated_response_headers_are_dropped() -> None:
    pairs = [("Connection", "Mcp-Session-Id"), ("Mcp-Session-Id", "s1"), ("Content-Type", "  "),
             ("Mcp-Protocol-Version", "2025-06-18")]
    assert response_headers(pairs) == {"Mcp-Protocol-Version": ["2025-06-18"]}


def test_repeated_response_header_values_are_all_kept() -> None:
    pairs = [("WWW-Authenticate", "Bearer a"), ("www-authenticate", "Basic b")]
    assert response_headers(pairs) == {"Www-Authenticate": ["Bearer a", "Basic b"]}
