"""Pure rules of OAuth discovery: candidates, PRMD validation, the URL bundle, state and replies."""

from __future__ import annotations

import json

import pytest

from tunnel_core.oauth.discovery import (
    Attempt,
    AuthServerMetadata,
    DiscoveryResult,
    asm_candidates,
    discovered_urls,
    validate_prmd,
    well_known_candidates,
)
from tunnel_core.oauth.service import discovery_reply
from tunnel_core.oauth.state import DiscoveryState


@pytest.mark.parametrize(
    ("mcp_url", "expected"),
    [
        ("https://h/mcp", ["https://h/.well-known/oauth-protected-resource/mcp",
                           "https://h/.well-known/oauth-protected-resource"]),
        ("https://h:8443/a/b/", ["https://h:8443/.well-known/oauth-protected-resource/a/b",
                                 "https://h:8443/.well-known/oauth-protected-resource"]),
        ("https://h", ["https://h/.well-known/oauth-protected-resource"]),
        ("https://h/.well-known/oauth-protected-resource/x",
         ["https://h/.well-known/oauth-protected-resource/x", "https://h/.well-known/oauth-protected-resource"]),
    ],
)
def test_well_known_candidates_path_first_then_root(mcp_url: str, expected: list[str]) -> None:
    assert [u for u, _ in well_known_candidates(mcp_url)] == expected


def test_asm_candidates_root_issuer_prepends_first() -> None:
    assert asm_candidates("https://as.example") == [
        ("https://as.example/.well-known/oauth-authorization-server", "oauth-authorization-server", "prepend"),
        ("https://as.example/.well-known/openid-configuration", "openid-configuration", "prepend"),
    ]


def test_asm_candidates_path_issuer_appends_first() -> None:
    assert [(u, s) for u, _, s in asm_candidates("https://as.example/realms/x")] == [
        ("https://as.example/realms/x/.well-known/oauth-authorization-server", "append"),
        ("https://as.example/.well-known/oauth-authorization-server/realms/x", "prepend"),
        ("https://as.example/realms/x/.well-known/openid-configuration", "append"),
        ("https://as.example/.well-known/openid-configuration/realms/x", "prepend"),
    ]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (b"{}", "missing resource"),
        (b'{"resource": ""}', "missing resource"),
        (b'{"resource": "https://r", "authorization_servers": "https://as"}', "list of URLs"),
        (b'{"resource": "https://r", "authorization_servers": ["as.example"]}', "not an absolute URL"),
    ],
)
def test_invalid_prmd_is_rejected_with_a_reason(body: bytes, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        validate_prmd(body)


def test_minimal_prmd_is_accepted() -> None:
    assert validate_prmd(b'{"resource": "https://r/mcp"}') == {"resource": "https://r/mcp"}


def _result(prmd: dict[str, object], source_url: str, asm: dict[str, object] | None = None,
            issuer: str = "") -> DiscoveryResult:
    r = DiscoveryResult("https://mcp.corp:8443/mcp")
    r.prmd, r.url, r.status_code, r.body = prmd, source_url, 200, json.dumps(prmd).encode()
    r.attempts = [Attempt(source_url, "well_known_path", tried=True, status_code=200, selected=True)]
    if asm is not None:
        r.auth_server = AuthServerMetadata(issuer, selected_url=f"{issuer}/.well-known/oauth-authorization-server",
                                           document=asm)
    return r


def test_bundle_marks_off_origin_records() -> None:
    issuer = "https://login.corp"
    result = _result({"resource": "https://mcp.corp:8443/mcp", "authorization_servers": [issuer, "https://2nd"]},
                     "https://mcp.corp:8443/.well-known/oauth-protected-resource/mcp",
                     {"issuer": issuer, "token_endpoint": f"{issuer}/token", "authorization_endpoint": f"{issuer}/auth",
                      "registration_endpoint": "https://elsewhere.corp/register"}, issuer)
    records = {r.role: r for r in discovered_urls(result, "https://mcp.corp:8443/mcp")}
    assert set(records) == {"prmd-resource", "prmd-auth-server", "prmd-source", "auth-server-metadata", "issuer",
                            "token-endpoint", "registration-endpoint"}  # authorization_endpoint is never published
    assert not records["prmd-resource"].disallow_private and not records["prmd-source"].disallow_private
    assert records["prmd-auth-server"].disallow_private  # another origin than the configured MCP URL
    assert all(records[r].disallow_private for r in ("issuer", "token-endpoint", "registration-endpoint"))
    assert records["token-endpoint"].group == records["prmd-auth-server"].group


def test_bundle_allows_same_origin_auth_server_endpoints_on_the_issuer_origin_only() -> None:
    base = "https://mcp.corp:8443"
    result = _result({"resource": f"{base}/mcp", "authorization_servers": [base]},
                     f"{base}/.well-known/oauth-protected-resource/mcp",
                     {"issuer": base, "token_endpoint": f"{base}/token", "jwks_uri": "https://keys.corp/jwks"}, base)
    records = {r.role: r for r in discovered_urls(result, f"{base}/mcp")}
    assert not records["token-endpoint"].disallow_private
    assert records["jwks-uri"].disallow_private  # not on the issuer's origin


def test_failed_result_publishes_nothing() -> None:
    assert discovered_urls(DiscoveryResult("https://h/mcp"), "https://h/mcp") == []


def test_state_reasons_follow_the_reference() -> None:
    touched: list[int] = []
    state = DiscoveryState(enabled=True, on_change=lambda: touched.append(1))
    assert state.readiness_reason() is None  # not started yet
    state.start()
    assert state.readiness_reason() == "oauth discovery pending"
    failed = DiscoveryResult("https://h/mcp", error="oauth discovery status 500 from https://h/x")
    state.record(failed)
    assert state.readiness_reason() == "oauth discovery failed: oauth discovery status 500 from https://h/x"
    optional = DiscoveryResult("https://h/mcp", error="not advertised", optional=True)
    state.record(optional)
    assert state.readiness_reason() is None
    assert touched == [1, 1, 1]
    assert DiscoveryState(enabled=False, pending=True).readiness_reason() is None
    snap = state.snapshot()
    assert snap is not None and snap["optional"] is True and snap["error"] == "" and snap["runs"] == 2


def test_command_replies() -> None:
    ok = _result({"resource": "https://r/mcp"}, "https://r/.well-known/oauth-protected-resource/mcp")
    ok.headers = [("Content-Type", "application/json"), ("Content-Length", "30"), ("Cache-Control", "max-age=60")]
    reply = discovery_reply(ok)
    assert (reply.resp_type, reply.code, reply.body) == ("oauth_discovery_response", 200, {"resource": "https://r/mcp"})
    assert reply.headers == {"Content-Type": ["application/json"], "Cache-Control": ["max-age=60"]}
    none = discovery_reply(DiscoveryResult("https://r/mcp", optional=True))
    assert none.code == 404 and none.body is not None and none.body["error"]["code"] == "oauth_metadata_not_advertised"
    bad = discovery_reply(DiscoveryResult("https://r/mcp", error="boom"))
    assert bad.code == 502 and bad.body == {"error": {"message": "boom", "type": "server_error",
                                                      "code": "oauth_discovery_failed"}}


def test_readiness_names_the_probe_when_the_server_is_unreachable() -> None:
    from tunnel_core.relay.state import RuntimeState
    from tunnel_core.targets.base import ProbeResult

    state = RuntimeState(tunnel_id="t", instance_id="i", control_plane_ok=True)
    state.oauth = DiscoveryState(enabled=True)
    state.oauth.start()
    state.probes["main"] = ProbeResult("failed", "connect: connection_refused")
    assert state.readiness() == (False, "oauth discovery pending")
    refused = DiscoveryResult("https://h/mcp", error="oauth discovery GET https://h/x: connect error (connection_refused)")
    refused.attempts = [Attempt("https://h/x", "well_known_root", tried=True, error="refused")]
    state.oauth.record(refused)
    assert state.readiness() == (False, "mcp probe failed: connect: connection_refused")
    answered = DiscoveryResult("https://h/mcp", error="oauth discovery invalid metadata from https://h/x: boom")
    answered.attempts = [Attempt("https://h/x", "well_known_root", tried=True, status_code=200)]
    state.oauth.record(answered)
    assert state.readiness() == (False, "oauth discovery failed: oauth discovery invalid metadata from https://h/x: boom")
    state.probes["main"] = ProbeResult("auth-required", "HTTP 401")
    state.oauth.record(DiscoveryResult("https://h/mcp", optional=True))
    assert state.readiness() == (True, "ready (mcp initialize requires auth: HTTP 401)")


async def _handle(channel: str, discoverer: object = None) -> tuple[int, object]:
    from tunnel_core.oauth.service import OAuthDiscovery
    from tunnel_core.wire.models import OAuthDiscoveryCommand

    cmd = OAuthDiscoveryCommand(request_id="r", shard_token="s", channel=channel, command_type="oauth_discovery")
    reply = await OAuthDiscovery(discoverer, DiscoveryState()).handle(cmd)  # type: ignore[arg-type]
    return reply.code, reply.body


@pytest.mark.anyio
async def test_oauth_discovery_command_is_for_an_http_main_channel_only() -> None:
    code, body = await _handle("tools")
    assert code == 400 and body == {"error": {"message": 'Bad Request: unsupported channel "tools"',
                                              "type": "invalid_request_error", "code": "unsupported_channel"}}
    code, body = await _handle("main")  # e.g. a stdio main: nothing to discover
    assert code == 404 and isinstance(body, dict) and body["error"]["code"] == "oauth_discovery_unavailable"
