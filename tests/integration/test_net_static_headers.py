"""Operator static headers (``--mcp.extra-headers``, ``--mcp.discovery-extra-headers``) stay scoped.

They reach the MCP origin (the MCP URL for ordinary traffic; discovery and probe requests on
that origin) and never the authorization server on another origin; connector headers win.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.support import frontdoor as fd
from tests.support.proc import WAIT
from tests.support.servers import BackgroundLoop, RunningServer
from tests.support.tunnel import ClientRun, RecordingApp, TunnelService, start_client
from tunnel_core.mcpstub import build_stub_app
from tunnel_core.oauth.devserver import StubOAuthOptions

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-static-value"


@pytest.fixture(scope="module")
def servers(bg: BackgroundLoop) -> Iterator[tuple[RunningServer, RecordingApp, RunningServer, RecordingApp]]:
    auth_app = RecordingApp(build_stub_app("auth", "1"))
    auth = bg.serve(auth_app)
    mcp_app = RecordingApp(build_stub_app("resource", "1", StubOAuthOptions(authorization_server=auth.url)))
    mcp = bg.serve(mcp_app)
    yield mcp, mcp_app, auth, auth_app
    mcp.stop()
    auth.stop()


@pytest.fixture
def run(tunnel_service: TunnelService, runtime_key: str, tmp_path: Path,
        servers: tuple[RunningServer, RecordingApp, RunningServer, RecordingApp]) -> Iterator[ClientRun]:
    mcp = servers[0]
    args = ["--mcp.server-url", f"{mcp.url}/mcp", "--mcp.extra-headers", "X-Static: s1",
            "--mcp.extra-headers", "X-Both: from-static", "--mcp.extra-headers", "X-Secret: env:STATIC_SECRET",
            "--mcp.discovery-extra-headers", "X-Discovery: d1"]
    started = start_client(service_url=tunnel_service.base_url, tunnel_id=tunnel_service.add_tunnel(),
                           runtime_key=runtime_key, home=tmp_path, args=args, extra_env={"STATIC_SECRET": SECRET})
    yield started
    started.proc.kill()


async def test_static_headers_reach_only_the_mcp_origin(
    run: ClientRun, tunnel_service: TunnelService,
    servers: tuple[RunningServer, RecordingApp, RunningServer, RecordingApp],
) -> None:
    mcp, mcp_rec, _, auth_rec = servers
    run.wait_readyz(status=200, text="ready")
    asm = run.proc.wait_log("OAuth discovery ProtectedResourceMetaData fetched")
    assert asm["metadata_url"] == f"{mcp.url}/.well-known/oauth-protected-resource/mcp"

    url = tunnel_service.mcp_url(run.tunnel_id)
    before = len(mcp_rec.records)
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            session = await fd.open_session(client, url)
            resp, msgs = await fd.post(client, url, fd.request("tools/call", {"name": "echo", "arguments": {
                "input": "hi"}}), {**session, "X-Both": "from-connector"})
    assert resp.status_code == 200 and msgs[-1]["result"]["structuredContent"] == {"echoed": "hi"}

    traffic = [r for r in mcp_rec.records[before:] if r.path == "/mcp"]
    assert traffic
    for r in traffic:
        assert r.header("x-static") == "s1" and r.header("x-secret") == SECRET
        assert r.header("x-discovery") is None  # discovery headers are for discovery and the probe only
    call = next(r for r in traffic if b'"tools/call"' in bytes(r.body))
    assert call.header("x-both") == "from-connector"  # connector headers win conflicts

    startup = mcp_rec.records[:before]
    probe = next(r for r in startup if r.path == "/mcp" and b"tunnel-client-probe" in bytes(r.body))
    assert probe.header("x-discovery") == "d1" and probe.header("x-static") == "s1"
    well_known = [r for r in startup if r.path.startswith("/.well-known/")]
    assert well_known and all(r.header("x-discovery") == "d1" for r in well_known)

    auth_seen = list(auth_rec.records)
    assert any(r.path == "/.well-known/oauth-authorization-server" for r in auth_seen)  # discovery went there
    for r in auth_seen:
        assert r.header("x-static") is None and r.header("x-discovery") is None and r.header("x-secret") is None
    assert SECRET not in run.proc.output()
