"""The demo authorization server of ``dev mcp-stub``: DCR, PKCE code flow, refresh, revoke, bearer guard."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import pytest

from tunnel_core.mcpstub import build_stub_app
from tunnel_core.oauth.devserver import StubOAuthOptions

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8123"
REDIRECT = "http://127.0.0.1:9/cb"
VERIFIER = "v" * 64
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip("=")


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    app = build_stub_app("stub", "1", StubOAuthOptions(require_auth=True))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url=BASE) as c:
        yield c


async def _register(c: httpx2.AsyncClient, method: str = "none") -> dict[str, Any]:
    resp = await c.post("/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": method,
                                           "client_name": "unit"})
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def _code(c: httpx2.AsyncClient, client_id: str, **extra: str) -> str:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT, "state": "st",
              "code_challenge": CHALLENGE, "code_challenge_method": "S256", **extra}
    resp = await c.get("/authorize", params=params)
    assert resp.status_code == 302
    query = parse_qs(urlsplit(resp.headers["location"]).query)
    assert query["state"] == ["st"]
    return query["code"][0]


async def test_metadata_documents(client: httpx2.AsyncClient) -> None:
    prmd = (await client.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert prmd["resource"] == f"{BASE}/mcp" and prmd["authorization_servers"] == [BASE]
    asm = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert asm["issuer"] == BASE and asm["code_challenge_methods_supported"] == ["S256"]
    assert asm["registration_endpoint"] == f"{BASE}/register" and asm["token_endpoint"] == f"{BASE}/token"


async def test_code_flow_with_pkce_then_refresh_and_revoke(client: httpx2.AsyncClient) -> None:
    reg = await _register(client)
    assert "client_secret" not in reg
    code = await _code(client, reg["client_id"], resource="https://tunnel/v1/mcp/t")
    token = await client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                               "redirect_uri": REDIRECT, "client_id": reg["client_id"],
                                               "code_verifier": VERIFIER})
    assert token.status_code == 200, token.text
    tok = token.json()
    assert tok["token_type"] == "Bearer" and tok["scope"] == "read write"
    replay = await client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                                "redirect_uri": REDIRECT, "client_id": reg["client_id"],
                                                "code_verifier": VERIFIER})
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"  # codes are single use

    refreshed = await client.post("/token", data={"grant_type": "refresh_token", "client_id": reg["client_id"],
                                                   "refresh_token": tok["refresh_token"]})
    assert refreshed.status_code == 200
    new = refreshed.json()
    assert new["access_token"] != tok["access_token"] and new["refresh_token"] != tok["refresh_token"]
    again = await client.post("/token", data={"grant_type": "refresh_token", "client_id": reg["client_id"],
                                               "refresh_token": tok["refresh_token"]})
    assert again.status_code == 400  # refresh tokens rotate

    assert (await client.post("/revoke", data={"token": new["access_token"], "client_id": reg["client_id"]})
            ).status_code == 200
    guarded = await client.post("/mcp", headers={"Authorization": f"Bearer {new['access_token']}"}, json={})
    assert guarded.status_code == 401 and 'error="invalid_token"' in guarded.headers["www-authenticate"]


async def test_pkce_mismatch_and_secret_clients(client: httpx2.AsyncClient) -> None:
    reg = await _register(client, "client_secret_post")
    assert reg["client_secret"]
    code = await _code(client, reg["client_id"])
    wrong = await client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                               "redirect_uri": REDIRECT, "client_id": reg["client_id"],
                                               "client_secret": reg["client_secret"], "code_verifier": "x" * 64})
    assert wrong.status_code == 400 and wrong.json()["error_description"] == "PKCE verification failed"
    no_secret = await client.post("/token", data={"grant_type": "refresh_token", "client_id": reg["client_id"],
                                                   "refresh_token": "rt"})
    assert no_secret.status_code == 401
    basic = base64.b64encode(f"{reg['client_id']}:{reg['client_secret']}".encode()).decode()
    code = await _code(client, reg["client_id"])
    ok = await client.post("/token", headers={"Authorization": f"Basic {basic}"}, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "code_verifier": VERIFIER})
    assert ok.status_code == 200


async def test_authorize_refuses_what_it_must(client: httpx2.AsyncClient) -> None:
    reg = await _register(client)
    unknown = await client.get("/authorize", params={"client_id": "nope", "redirect_uri": REDIRECT})
    assert unknown.status_code == 400
    other = await client.get("/authorize", params={"client_id": reg["client_id"], "redirect_uri": "http://evil/cb"})
    assert other.status_code == 400  # never redirects to an unregistered URI
    plain = await client.get("/authorize", params={"response_type": "code", "client_id": reg["client_id"],
                                                   "redirect_uri": REDIRECT, "code_challenge": "x",
                                                   "code_challenge_method": "plain"})
    assert plain.status_code == 302 and "error=invalid_request" in plain.headers["location"]
    bad_reg = await client.post("/register", json={"redirect_uris": ["not a url"]})
    assert bad_reg.status_code == 400


async def test_mcp_requires_a_bearer_token(client: httpx2.AsyncClient) -> None:
    resp = await client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize"})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == (
        f'Bearer resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"')
