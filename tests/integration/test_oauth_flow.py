"""OAuth-protected MCP server behind the tunnel, end to end on 127.0.0.1.

mcp SDK client (OAuthClientProvider) --> tunnel service front door --> tunnel-client run --> dev mcp-stub
(--require-auth). The client only ever sees tunnel URLs for the resource and its metadata;
the authorization server (the stub's) is reached directly, as a public one would be.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support import frontdoor as fd
from tests.support.net_helpers import AutoApprove, MemoryTokenStorage, oauth_http_client, start_oauth_service
from tests.support.servers import BackgroundLoop, RunningServer
from tests.support.tunnel import ClientRun, StartClient, TunnelService
from tunnel_core.mcpstub import build_stub_app
from tunnel_core.oauth.devserver import StubOAuthOptions

pytestmark = pytest.mark.anyio

WAIT = 20.0


@pytest.fixture(scope="module")
def protected_stub(bg: BackgroundLoop) -> Iterator[RunningServer]:
    server = bg.serve(build_stub_app("oauth-stub", "9.9.9", StubOAuthOptions(require_auth=True)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tunnel_service(bg: BackgroundLoop, runtime_key: str) -> Iterator[TunnelService]:
    """This module's tunnel service rewrites OAuth discovery to tunnel URLs, as the hosted one does."""
    service = start_oauth_service(bg, runtime_key)
    yield service
    service.server.stop()


@pytest.fixture
def oauth_relay(start_relay: StartClient, protected_stub: RunningServer) -> ClientRun:
    run = start_relay("--mcp.server-url", f"{protected_stub.url}/mcp", log_level="debug")
    run.wait_readyz(status=200)
    return run


def _prmd_url(service: TunnelService, tunnel_id: str) -> str:
    return f"{service.base_url}/.well-known/oauth-protected-resource/v1/mcp/{tunnel_id}"


async def test_sdk_client_signs_in_through_the_tunnel_and_calls_a_tool(
    oauth_relay: ClientRun, tunnel_service: TunnelService, protected_stub: RunningServer
) -> None:
    url = tunnel_service.mcp_url(oauth_relay.tunnel_id)
    storage, approve = MemoryTokenStorage(), AutoApprove()
    with anyio.fail_after(WAIT):
        async with oauth_http_client(url, storage, approve) as http, \
                Client(streamable_http_client(url, http_client=http), mode="legacy") as client:
            result = await client.call_tool("echo", {"input": "through the tunnel"})
    assert result.structured_content == {"echoed": "through the tunnel"}
    # The full flow ran: registration, one authorization with PKCE S256 and the tunnel URL as
    # RFC 8707 resource, a token; the stored token is a real bearer token of the stub.
    assert storage.client_info is not None and storage.client_info.client_id.startswith("client_")
    assert storage.tokens is not None and storage.tokens.access_token.startswith("at_")
    assert storage.tokens.refresh_token
    (authorize,) = approve.authorize_urls
    assert authorize.startswith(f"{protected_stub.url}/authorize?")
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"]
    assert query["resource"] == [url]  # the tunnel URL, never the private one


async def test_unauthenticated_call_is_relayed_as_401_with_tunnel_resource_metadata(
    oauth_relay: ClientRun, tunnel_service: TunnelService, protected_stub: RunningServer
) -> None:
    url = tunnel_service.mcp_url(oauth_relay.tunnel_id)
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, _ = await fd.post(client, url, fd.request("initialize", fd.initialize_params()))
            assert resp.status_code == 401
            challenge = resp.headers["www-authenticate"]
            prmd_url = _prmd_url(tunnel_service, oauth_relay.tunnel_id)
            assert challenge == f'Bearer resource_metadata="{prmd_url}"'
            assert protected_stub.url not in challenge  # the private address never reaches the caller

            meta = await client.get(prmd_url)
    assert meta.status_code == 200
    body = meta.json()
    assert body["resource"] == url  # rewritten to the tunnel URL of the same tunnel_id
    assert body["authorization_servers"] == [protected_stub.url]  # passed through untouched
    assert body["scopes_supported"] == ["read", "write"]


async def test_authorization_header_reaches_the_mcp_server(
    oauth_relay: ClientRun, tunnel_service: TunnelService, protected_stub: RunningServer
) -> None:
    url = tunnel_service.mcp_url(oauth_relay.tunnel_id)
    token = await _token_for(protected_stub.url, resource=url)
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            bad, _ = await fd.post(client, url, fd.request("tools/list"), {"Authorization": "Bearer nope"})
            good, msgs = await fd.post(client, url, fd.request("initialize", fd.initialize_params()),
                                       {"Authorization": f"Bearer {token}"})
    assert bad.status_code == 401 and 'error="invalid_token"' in bad.headers["www-authenticate"]
    assert good.status_code == 200, good.text
    assert msgs[-1]["result"]["serverInfo"]["name"] == "oauth-stub"


async def test_readiness_and_status_reflect_discovery(oauth_relay: ClientRun, protected_stub: RunningServer) -> None:
    ready = oauth_relay.get("/readyz")
    assert ready.status_code == 200
    assert ready.text.startswith("ready (mcp initialize requires auth")
    oauth = oauth_relay.get("/api/oauth").json()
    assert oauth["configured"] is True and oauth["pending"] is False
    assert oauth["metadata_source"] == "www_authenticate"
    assert oauth["discovery_urls"][0] == f"{protected_stub.url}/.well-known/oauth-protected-resource/mcp"
    assert oauth["selected_authorization_server"] == protected_stub.url
    asm = oauth["metadata"]["auth_server_metadata"]
    assert asm["selected_url"] == f"{protected_stub.url}/.well-known/oauth-authorization-server"
    assert asm["issuer_mismatch"] is False
    started = oauth_relay.proc.wait_log("OAuth discovery ProtectedResourceMetaData fetched")
    assert started["metadata_source"] == "www_authenticate"


async def _token_for(stub_url: str, *, resource: str) -> str:
    """Register, authorize (auto-approved) and exchange a code directly at the stub."""
    import base64
    import hashlib
    import secrets

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    redirect = "http://127.0.0.1:9/cb"
    async with httpx2.AsyncClient(trust_env=False, timeout=10) as c:
        reg: dict[str, Any] = (await c.post(f"{stub_url}/register", json={
            "redirect_uris": [redirect], "token_endpoint_auth_method": "none"})).json()
        auth = await c.get(f"{stub_url}/authorize", params={
            "response_type": "code", "client_id": reg["client_id"], "redirect_uri": redirect, "state": "s1",
            "code_challenge": challenge, "code_challenge_method": "S256", "resource": resource})
        code = parse_qs(urlsplit(auth.headers["location"]).query)["code"][0]
        tok = await c.post(f"{stub_url}/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
            "client_id": reg["client_id"], "code_verifier": verifier})
    assert tok.status_code == 200, tok.text
    return str(tok.json()["access_token"])
