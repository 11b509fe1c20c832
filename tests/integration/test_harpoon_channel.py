"""The built-in ``harpoon`` channel: OAuth auto-registration, call_target, off-origin refusal, server info.

caller --front door ?channel=harpoon--> tunnel-client run --HTTP--> allow-listed endpoint
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tests.support import frontdoor as fd
from tests.support.proc import WAIT
from tests.support.servers import BackgroundLoop, RunningServer
from tests.support.targets import MCPTarget
from tests.support.tunnel import ClientRun, RecordingApp, StartClient, TunnelService
from tunnel_core.mcpstub import build_stub_app
from tunnel_core.oauth.devserver import StubOAuthOptions

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def recorded_stub(bg: BackgroundLoop) -> Iterator[tuple[RunningServer, RecordingApp]]:
    app = RecordingApp(build_stub_app("harpoon-stub", "1.0", StubOAuthOptions(require_auth=True)))
    server = bg.serve(app)
    yield server, app
    server.stop()


@pytest.fixture
def harpoon_relay(start_relay: StartClient, recorded_stub: tuple[RunningServer, RecordingApp]) -> ClientRun:
    server, _ = recorded_stub
    run = start_relay("--mcp.server-url", f"{server.url}/mcp", log_level="debug")
    run.wait_readyz(status=200)
    return run


async def _tool(url: str, name: str, args: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, url, fd.request("tools/call", {"name": name, "arguments": args}),
                                       headers)
    assert resp.status_code == 200, resp.text
    result: dict[str, Any] = msgs[-1]["result"]
    return result


def _server_info(run: ClientRun, service: TunnelService) -> list[dict[str, Any]]:
    polls = [r for r in service.runtime_requests(run.tunnel_id) if r.path.endswith("/poll")]
    return [json.loads(r.header("x-tunnel-mcp-server-info") or "{}") for r in polls]


async def test_discovered_registration_endpoint_is_callable_through_call_target(
    harpoon_relay: ClientRun, tunnel_service: TunnelService, recorded_stub: tuple[RunningServer, RecordingApp]
) -> None:
    server, recorder = recorded_stub
    url = tunnel_service.mcp_url(harpoon_relay.tunnel_id, channel="harpoon")
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            init, msgs = await fd.post(client, url, fd.request("initialize", fd.initialize_params()))
            assert init.status_code == 200
            assert msgs[-1]["result"]["serverInfo"]["name"] == "harpoon"
            _, msgs = await fd.post(client, url, fd.request("tools/list"))
    assert {t["name"] for t in msgs[-1]["result"]["tools"]} == {
        "list_targets", "call_target", "get_oauth_target_audience"}

    listed = (await _tool(url, "list_targets", {}))["structuredContent"]["targets"]
    labels = {t["label"] for t in listed}
    assert {"oauth-prmd-resource-0", "oauth-prmd-auth-server-0", "oauth-prmd-source-0",
            "oauth-auth-server-metadata-0", "oauth-issuer-0", "oauth-token-endpoint-0",
            "oauth-registration-endpoint-0", "oauth-revocation-endpoint-0", "oauth-jwks-uri-0"} <= labels
    assert all("url" not in t for t in listed)  # URLs are never listed
    only_tokens = (await _tool(url, "list_targets", {"tags": ["role=token-endpoint"]}))["structuredContent"]
    assert [t["label"] for t in only_tokens["targets"]] == ["oauth-token-endpoint-0"]

    before = len(recorder.records)
    registration = {"redirect_uris": ["http://127.0.0.1:9/cb"], "token_endpoint_auth_method": "none",
                    "client_name": "via harpoon"}
    result = await _tool(url, "call_target", {
        "label": "oauth-registration-endpoint-0", "method": "POST",
        "headers": {"Content-Type": "application/json", "X-Forwarded-For": "6.6.6.6", "Cookie": "a=b"},
        "body": json.dumps(registration)}, headers={"Authorization": "Bearer connector-token"})
    assert result["isError"] is False, result
    out = result["structuredContent"]
    assert out["status_code"] == 201
    body = json.loads(base64.b64decode(out["body_base64"]))
    assert body["client_name"] == "via harpoon" and body["client_id"].startswith("client_")
    assert out["body_size_bytes"] == len(base64.b64decode(out["body_base64"]))

    (hit,) = [r for r in recorder.records[before:] if r.path == "/register"]
    assert hit.method == "POST"
    assert hit.header("authorization") is None  # connector credentials never reach a Harpoon target
    assert hit.header("x-forwarded-for") is None and hit.header("cookie") is None
    assert (hit.header("user-agent") or "").startswith("oai-tunnel-client/")
    assert server.url  # same origin as the MCP server: allowed by the private-host rule


async def test_urls_of_registered_targets_come_back_as_harpoon_labels(
    harpoon_relay: ClientRun, tunnel_service: TunnelService, recorded_stub: tuple[RunningServer, RecordingApp]
) -> None:
    server, _ = recorded_stub
    url = tunnel_service.mcp_url(harpoon_relay.tunnel_id, channel="harpoon")
    out = (await _tool(url, "call_target", {"label": "oauth-auth-server-metadata-0", "method": "GET"}))
    doc = json.loads(base64.b64decode(out["structuredContent"]["body_base64"]))
    assert doc["token_endpoint"] == "harpoon://oauth-token-endpoint-0"
    assert doc["registration_endpoint"] == "harpoon://oauth-registration-endpoint-0"
    assert doc["revocation_endpoint"] == "harpoon://oauth-revocation-endpoint-0"
    assert doc["authorization_endpoint"] == f"{server.url}/authorize"  # never shimmed: the user's browser goes there

    prmd = await _tool(url, "call_target", {"label": "oauth-prmd-source-0", "method": "GET"})
    body = json.loads(base64.b64decode(prmd["structuredContent"]["body_base64"]))
    assert body["resource"] == f"{server.url}/mcp"  # a PRMD resource is left intact

    audience = await _tool(url, "get_oauth_target_audience", {"label": "oauth-token-endpoint-0"})
    assert audience["structuredContent"] == {"audience": f"{server.url}/token"}
    refused = await _tool(url, "get_oauth_target_audience", {"label": "oauth-jwks-uri-0"})
    assert refused["isError"] is True


async def test_tool_errors_for_unknown_labels_bad_methods_and_oversize_answers(
    harpoon_relay: ClientRun, tunnel_service: TunnelService
) -> None:
    url = tunnel_service.mcp_url(harpoon_relay.tunnel_id, channel="harpoon")
    unknown = await _tool(url, "call_target", {"label": "nope", "method": "GET"})
    assert unknown["isError"] is True and "unknown target" in unknown["content"][0]["text"]
    bad_method = await _tool(url, "call_target", {"label": "oauth-jwks-uri-0", "method": "DELETE"})
    assert bad_method["isError"] is True and "invalid method" in bad_method["content"][0]["text"]
    too_big = await _tool(url, "call_target", {"label": "oauth-auth-server-metadata-0", "method": "GET",
                                               "max_response_bytes": 16})
    assert too_big["isError"] is True and "exceeds" in too_big["content"][0]["text"]


async def test_server_info_lists_harpoon_only_while_a_target_is_registered(
    harpoon_relay: ClientRun, relay: ClientRun, tunnel_service: TunnelService
) -> None:
    # The session relay's target publishes no OAuth metadata: nothing registered, never listed.
    plain = _server_info(relay, tunnel_service)
    assert plain and all(c["name"] != "harpoon" for info in plain for c in info["channels"])

    with anyio.fail_after(WAIT):
        while not any(c["name"] == "harpoon" for c in _server_info(harpoon_relay, tunnel_service)[-1]["channels"]):
            await harpoon_relay_poll(harpoon_relay, tunnel_service)
    latest = _server_info(harpoon_relay, tunnel_service)[-1]
    assert latest == {"version": 1, "channels": [{"name": "main"}, {"name": "harpoon", "proc_affinity": True}]}

    # And without a registered target the channel is not routable at all.
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, tunnel_service.mcp_url(relay.tunnel_id, channel="harpoon"),
                                       fd.request("tools/list"))
    assert resp.status_code == 400
    assert msgs[-1]["error"]["message"] == 'Bad Request: unsupported channel "harpoon"'


async def harpoon_relay_poll(run: ClientRun, service: TunnelService) -> None:
    """Make the relay poll again (a front-door call completes one poll cycle)."""
    async with fd.http_client() as client:
        await fd.post(client, service.mcp_url(run.tunnel_id), fd.notification("notifications/initialized"))


@pytest.fixture(scope="module")
def split_auth(bg: BackgroundLoop) -> Iterator[tuple[RunningServer, RunningServer]]:
    """An MCP server whose PRMD names an authorization server on another loopback origin."""
    auth = bg.serve(build_stub_app("auth", "1"))
    mcp = bg.serve(build_stub_app("resource", "1", StubOAuthOptions(require_auth=True,
                                                                    authorization_server=auth.url)))
    yield mcp, auth
    mcp.stop()
    auth.stop()


async def test_off_origin_private_endpoints_are_not_registered(
    start_relay: StartClient, tunnel_service: TunnelService, split_auth: tuple[RunningServer, RunningServer]
) -> None:
    mcp, auth = split_auth
    run = start_relay("--mcp.server-url", f"{mcp.url}/mcp", log_level="debug")
    run.wait_readyz(status=200)
    skipped = run.proc.wait_log("harpoon host auto-registration skipped")
    assert skipped["inclusion_reason"] == "private-host-registration-disabled"
    url = tunnel_service.mcp_url(run.tunnel_id, channel="harpoon")
    listed = (await _tool(url, "list_targets", {}))["structuredContent"]["targets"]
    labels = {t["label"] for t in listed}
    # Only the PRMD's own records on the trusted MCP origin; nothing of the other origin.
    assert labels == {"oauth-prmd-resource-0", "oauth-prmd-source-0"}
    refused = await _tool(url, "call_target", {"label": "oauth-registration-endpoint-0", "method": "POST",
                                               "body": "{}"})
    assert refused["isError"] is True and "unknown target" in refused["content"][0]["text"]
    assert auth.url  # (the auth server itself is reachable; it is simply not on the allow-list)


async def test_configured_target_makes_harpoon_routable_without_oauth(
    start_relay: StartClient, tunnel_service: TunnelService, mcp_target: MCPTarget
) -> None:
    run = start_relay("--mcp.server-url", mcp_target.url, "--harpoon.allow-plaintext-http",
                      "--harpoon.target", f"label=internal-api,url={mcp_target.url},desc=an internal endpoint")
    run.wait_readyz(status=200)
    url = tunnel_service.mcp_url(run.tunnel_id, channel="harpoon")
    listed = (await _tool(url, "list_targets", {"sources": ["config"]}))["structuredContent"]["targets"]
    assert listed == [{"label": "internal-api", "description": "an internal endpoint", "category": "config",
                       "source": "config", "tags": [], "allowed_methods": ["GET", "POST", "PUT"]}]
    assert all(any(c["name"] == "harpoon" for c in info["channels"]) for info in _server_info(run, tunnel_service))
