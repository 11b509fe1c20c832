"""OAuth discovery against real HTTP servers on 127.0.0.1 (in-process ``Discoverer``, and the relay)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from tests.support.servers import BackgroundLoop, RunningServer
from tests.support.tunnel import StartClient
from tunnel_core.httpio import HTTPPool
from tunnel_core.mcpstub import build_stub_app
from tunnel_core.oauth.devserver import StubOAuthOptions
from tunnel_core.oauth.discovery import Discoverer, discovered_urls

pytestmark = pytest.mark.anyio

Answer = tuple[int, Any, dict[str, str]]


def scripted_app(routes: dict[str, Answer]) -> Starlette:
    """Answers ``routes[path]`` = (status, JSON body or None, headers); 404 elsewhere. ``{base}`` is filled in."""

    async def handler(request: Request) -> Response:
        base = f"http://{request.headers['host']}"
        status, body, headers = routes.get(request.url.path, (404, None, {}))
        headers = {k: v.replace("{base}", base) for k, v in headers.items()}
        if status in (301, 302, 307, 308):
            return RedirectResponse(headers["location"], status_code=status)
        if body is None:
            return Response(status_code=status, headers=headers)
        text = json.dumps(body).replace("{base}", base)
        return Response(text, status_code=status, headers={"content-type": "application/json", **headers})

    return Starlette(routes=[Route("/{path:path}", handler, methods=["GET", "POST"])])


@pytest.fixture
async def pool() -> AsyncIterator[HTTPPool]:
    p = HTTPPool()
    yield p
    await p.aclose()


@pytest.fixture
def serve(bg: BackgroundLoop) -> Iterator[Any]:
    servers: list[RunningServer] = []

    def start(app: Any) -> RunningServer:
        server = bg.serve(app)
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.stop()


PRMD = {"resource": "{base}/mcp", "authorization_servers": ["{base}"]}


async def test_nothing_advertised_is_optional(serve: Any, pool: HTTPPool) -> None:
    server = serve(scripted_app({}))
    result = await Discoverer(f"{server.url}/mcp", pool).discover()
    assert not result.ok and result.optional
    assert [(a.source, a.status_code) for a in result.attempts] == [("well_known_path", 404), ("well_known_root", 404)]
    assert result.probe.attempted and "got status 404" in result.probe.error


async def test_www_authenticate_probe_comes_first(serve: Any, pool: HTTPPool) -> None:
    server = serve(scripted_app({
        "/mcp": (401, None, {"WWW-Authenticate": 'Bearer realm="x", resource_metadata="{base}/meta/prmd"'}),
        "/meta/prmd": (200, PRMD, {}),
    }))
    result = await Discoverer(f"{server.url}/mcp", pool).discover()
    assert result.ok and result.metadata_source == "www_authenticate"
    assert result.url == f"{server.url}/meta/prmd"
    assert result.candidates[0] == f"{server.url}/meta/prmd"


async def test_server_error_falls_back_to_the_next_candidate(serve: Any, pool: HTTPPool) -> None:
    server = serve(scripted_app({
        "/.well-known/oauth-protected-resource/mcp": (503, {"error": "busy"}, {}),
        "/.well-known/oauth-protected-resource": (200, PRMD, {}),
    }))
    result = await Discoverer(f"{server.url}/mcp", pool).discover()
    assert result.ok and result.url == f"{server.url}/.well-known/oauth-protected-resource"
    assert [a.status_code for a in result.attempts] == [503, 200]
    assert result.attempts[1].selected and not result.attempts[0].selected


async def test_invalid_metadata_fails_discovery_with_the_reason(serve: Any, pool: HTTPPool) -> None:
    server = serve(scripted_app({"/.well-known/oauth-protected-resource/mcp": (200, {"scopes": []}, {})}))
    result = await Discoverer(f"{server.url}/mcp", pool).discover()
    assert not result.ok and not result.optional
    assert result.error == (f"oauth discovery invalid metadata from {server.url}/.well-known/oauth-protected-resource"
                            "/mcp: protected resource metadata missing resource")


async def test_redirects_stay_on_the_discovery_origin(serve: Any, pool: HTTPPool) -> None:
    other = serve(scripted_app({"/.well-known/oauth-protected-resource": (200, PRMD, {})}))
    server = serve(scripted_app({
        "/.well-known/oauth-protected-resource/mcp": (302, None, {"location": "/moved"}),
        "/moved": (200, PRMD, {}),
        "/.well-known/oauth-protected-resource": (302, None, {"location": f"{other.url}/elsewhere"}),
    }))
    same = await Discoverer(f"{server.url}/mcp", pool).discover()
    assert same.ok and same.prmd is not None and same.prmd["resource"] == f"{server.url}/mcp"

    cross = serve(scripted_app({
        "/.well-known/oauth-protected-resource/mcp": (404, None, {}),
        "/.well-known/oauth-protected-resource": (302, None, {"location": f"{other.url}/.well-known/x"}),
    }))
    blocked = await Discoverer(f"{cross.url}/mcp", pool).discover()
    assert not blocked.ok and not blocked.optional
    assert "redirect" in blocked.error and "blocked" in blocked.error


async def test_only_the_first_authorization_server_is_used(serve: Any, pool: HTTPPool) -> None:
    stub = serve(build_stub_app())
    server = serve(scripted_app({"/.well-known/oauth-protected-resource/mcp": (200, {
        "resource": "{base}/mcp", "authorization_servers": [stub.url, "https://second.invalid"]}, {})}))
    result = await Discoverer(f"{server.url}/mcp", pool).discover()
    assert result.auth_server is not None and result.auth_server.issuer_url == stub.url
    assert all("second.invalid" not in a.url for a in result.auth_server.attempts)
    assert result.auth_server.selected_url == f"{stub.url}/.well-known/oauth-authorization-server"


async def test_issuer_mismatch_is_accepted_and_kept_for_diagnostics(serve: Any, pool: HTTPPool) -> None:
    stub = serve(build_stub_app(oauth=StubOAuthOptions(issuer="https://issuer.example")))
    result = await Discoverer(f"{stub.url}/mcp", pool).discover()
    asm = result.auth_server
    assert result.ok and asm is not None and asm.document is not None
    assert asm.issuer_mismatch and asm.document["issuer"] == "https://issuer.example"
    selected = next(a for a in asm.attempts if a.selected)
    assert (selected.expected_issuer_url, selected.metadata_issuer) == (stub.url, "https://issuer.example")
    assert selected.warning.startswith("issuer mismatch")
    # The metadata is still used: its endpoints are published for Harpoon registration.
    roles = {u.role: u.url for u in discovered_urls(result, f"{stub.url}/mcp")}
    assert roles["registration-endpoint"] == f"{stub.url}/register"
    assert roles["token-endpoint"] == f"{stub.url}/token"


async def test_path_issuer_tries_appended_well_known_first(serve: Any, pool: HTTPPool) -> None:
    asm = {"issuer": "{base}/tenant", "token_endpoint": "{base}/tenant/token"}
    server = serve(scripted_app({
        "/.well-known/oauth-protected-resource/mcp": (200, {"resource": "{base}/mcp",
                                                            "authorization_servers": ["{base}/tenant"]}, {}),
        "/tenant/.well-known/openid-configuration": (200, asm, {}),
    }))
    result = await Discoverer(f"{server.url}/mcp", pool).discover()
    assert result.auth_server is not None
    tried = [(a.document, a.path_style) for a in result.auth_server.attempts]
    assert tried == [("oauth-authorization-server", "append"), ("oauth-authorization-server", "prepend"),
                     ("openid-configuration", "append")]
    assert result.auth_server.selected_url == f"{server.url}/tenant/.well-known/openid-configuration"
    assert not result.auth_server.issuer_mismatch


async def test_relay_is_ready_with_an_issuer_mismatch(start_relay: StartClient, serve: Any) -> None:
    stub = serve(build_stub_app(oauth=StubOAuthOptions(require_auth=True, issuer="https://issuer.example")))
    run = start_relay("--mcp.server-url", f"{stub.url}/mcp")
    run.wait_readyz(status=200)
    warning = run.proc.wait_log("oauth auth-server metadata issuer differs from authorization_servers[0]")
    assert warning["expected_issuer_url"] == stub.url and warning["metadata_issuer"] == "https://issuer.example"
    oauth = run.get("/api/oauth").json()
    asm = oauth["metadata"]["auth_server_metadata"]
    assert oauth["error"] == "" and asm["issuer_mismatch"] is True
    assert any(a["issuer_mismatch"] and a["selected"] for a in asm["attempts"])


async def test_relay_readiness_reports_failed_discovery(start_relay: StartClient, serve: Any) -> None:
    server = serve(scripted_app({"/.well-known/oauth-protected-resource/mcp": (200, ["not", "an", "object"], {})}))
    run = start_relay("--mcp.server-url", f"{server.url}/mcp")
    run.wait_readyz(status=503, text=f"oauth discovery failed: oauth discovery invalid metadata from {server.url}"
                    "/.well-known/oauth-protected-resource/mcp: protected resource metadata is not a JSON object")


async def test_relay_without_oauth_metadata_is_ready(relay: Any) -> None:
    assert relay.get("/readyz").text == "ready"
    oauth = relay.get("/api/oauth").json()
    assert oauth["configured"] is True and oauth["optional"] is True
    assert oauth["metadata_source"] == "not_advertised" and oauth["error"] == ""
