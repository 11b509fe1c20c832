"""TLS towards the MCP server: a private CA (``--ca-bundle`` / ``CA_BUNDLE``) and client certificates (mTLS).

The target is the test MCP server served over TLS with ``tests/fixtures/tls`` (a test-only
certificate for localhost / 127.0.0.1 that no system trust store knows).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support import frontdoor as fd
from tests.support.mcp_app import Gates, build_mcp_app
from tests.support.net_helpers import CA_BUNDLE, ClientPKI, make_client_pki, serve_tls
from tests.support.proc import WAIT, wait_until
from tests.support.servers import BackgroundLoop, RunningServer
from tests.support.targets import MCPTarget
from tests.support.tunnel import ClientRun, StartClient, TunnelService, start_client
from tunnel_core.devservice.app import ServiceConfig, build_service_app
from tunnel_core.devservice.broker import Broker

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def tls_target(bg: BackgroundLoop) -> Iterator[str]:
    server = serve_tls(bg, build_mcp_app(Gates()))
    yield f"https://127.0.0.1:{server.port}/mcp"
    server.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClientPKI:
    return make_client_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def mtls_target(bg: BackgroundLoop, pki: ClientPKI) -> Iterator[str]:
    server: RunningServer = serve_tls(bg, build_mcp_app(Gates()), client_ca=pki.ca_cert)
    yield f"https://localhost:{server.port}/mcp"
    server.stop()


async def _echo(service: TunnelService, run: ClientRun, text: str, channel: str | None = None) -> tuple[int, dict[str, Any]]:
    """initialize (when the target answers) then tools/call echo; (status, last message) of the last step."""
    url = service.mcp_url(run.tunnel_id, channel=channel)
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, url, fd.request("initialize", fd.initialize_params()))
            if resp.status_code != 200:
                return resp.status_code, msgs[-1]
            session = {"Mcp-Session-Id": resp.headers["mcp-session-id"], "Mcp-Protocol-Version": fd.PROTOCOL}
            await fd.post(client, url, fd.notification("notifications/initialized"), session)
            resp, msgs = await fd.post(client, url, fd.request("tools/call", {"name": "echo", "arguments": {"text": text}}),
                                       session)
    return resp.status_code, msgs[-1]


def _failure(msg: dict[str, Any]) -> dict[str, Any]:
    failure: dict[str, Any] = msg["error"]["data"]["tunnel_failure"]
    return failure


async def test_private_ca_target_fails_without_the_bundle(
    start_relay: StartClient, tunnel_service: TunnelService, tls_target: str
) -> None:
    run = start_relay("--mcp.server-url", tls_target)
    # OAuth discovery fails the same way; readiness names the cause, the probe.
    prefix = f"mcp probe failed: TLS certificate of {tls_target} not accepted: "

    def names_the_certificate() -> bool:
        r = run.get("/readyz")
        return r.status_code == 503 and r.text.startswith(prefix) and "certificate" in r.text[len(prefix):]

    wait_until(names_the_certificate, "/readyz to say the target's certificate was not accepted")
    failed = run.proc.wait_log("OAuth discovery failed")
    assert failed["error"].endswith(": tls error (tls)")
    status, msg = await _echo(tunnel_service, run, "x")
    assert status == 502
    assert _failure(msg) == {"version": 1, "source": "tls", "transport_error_kind": "tls",
                             "upstream_response_received": False}


async def test_ca_bundle_flag_adds_the_private_ca(
    start_relay: StartClient, tunnel_service: TunnelService, tls_target: str
) -> None:
    run = start_relay("--mcp.server-url", tls_target, "--ca-bundle", str(CA_BUNDLE))
    run.wait_readyz(status=200, text="ready")
    status, msg = await _echo(tunnel_service, run, "over TLS")
    assert status == 200 and msg["result"]["content"][0]["text"] == "over TLS"


async def test_ca_bundle_from_the_environment_and_by_reference(
    tunnel_service: TunnelService, tls_target: str, tmp_path: Path, runtime_key: str
) -> None:
    # CA_BUNDLE=<path> works like the flag; --ca-bundle env:NAME names a variable holding the path.
    for args, env in ((["--mcp.server-url", tls_target], {"CA_BUNDLE": str(CA_BUNDLE)}),
                      (["--mcp.server-url", tls_target, "--ca-bundle", "env:MY_CA"], {"MY_CA": str(CA_BUNDLE)})):
        run = start_client(service_url=tunnel_service.base_url, tunnel_id=tunnel_service.add_tunnel(),
                           runtime_key=runtime_key, home=tmp_path, args=args, extra_env=env)
        try:
            run.wait_readyz(status=200, text="ready")
        finally:
            run.proc.kill()


async def test_client_certificate_satisfies_a_target_that_requires_one(
    start_relay: StartClient, tunnel_service: TunnelService, mtls_target: str, pki: ClientPKI
) -> None:
    run = start_relay("--mcp.server-url", mtls_target, "--ca-bundle", str(CA_BUNDLE),
                      "--mcp.client-cert", str(pki.client_cert), "--mcp.client-key", str(pki.client_key))
    run.wait_readyz(status=200, text="ready")
    status, msg = await _echo(tunnel_service, run, "mutual TLS")
    assert status == 200 and msg["result"]["content"][0]["text"] == "mutual TLS"


@pytest.mark.parametrize("which", ["none", "foreign"])
async def test_target_requiring_a_client_certificate_refuses_none_or_a_foreign_one(
    start_relay: StartClient, tunnel_service: TunnelService, mtls_target: str, pki: ClientPKI, which: str
) -> None:
    args = ["--mcp.server-url", mtls_target, "--ca-bundle", str(CA_BUNDLE)]
    if which == "foreign":
        args += ["--mcp.client-cert", str(pki.other_cert), "--mcp.client-key", str(pki.other_key)]
    run = start_relay(*args)
    status, msg = await _echo(tunnel_service, run, "x")
    assert status == 502
    # TLS 1.3: the server refuses the (missing) certificate after the client's handshake is done, so
    # the client sees the connection dropped rather than a handshake alert.
    assert _failure(msg)["source"] in ("tls", "transport_closed")
    assert _failure(msg)["upstream_response_received"] is False
    probe = run.proc.wait_log("mcp startup probe")
    assert probe["probe_status"] == "failed"
    run.wait_readyz(status=503, text=f"mcp probe failed: {probe['probe_error']}")


async def test_per_channel_client_certificate(
    start_relay: StartClient, tunnel_service: TunnelService, tls_target: str, mtls_target: str, pki: ClientPKI
) -> None:
    # main needs no certificate; channel "secure" presents its own, scoped to its origin.
    run = start_relay("--mcp.server-url", tls_target, "--ca-bundle", str(CA_BUNDLE), "--mcp.server-url",
                      f"channel=secure,url={mtls_target},client-cert={pki.client_cert},client-key={pki.client_key}")
    run.wait_readyz(status=200, text="ready")
    status, msg = await _echo(tunnel_service, run, "scoped", channel="secure")
    assert status == 200 and msg["result"]["content"][0]["text"] == "scoped"


async def test_control_plane_client_certificate(
    bg: BackgroundLoop, pki: ClientPKI, mcp_target: MCPTarget, runtime_key: str, tmp_path: Path
) -> None:
    # A tunnel service that demands a client certificate (an mTLS control-plane endpoint).
    broker = bg.call(Broker)
    tunnel_id = "tunnel_" + "c" * 32
    bg.call(broker.add_tunnel, tunnel_id)
    app = build_service_app(broker, ServiceConfig(runtime_keys={runtime_key}, response_timeout=10.0))
    server = serve_tls(bg, app, client_ca=pki.ca_cert)
    base = ["--mcp.server-url", mcp_target.url, "--ca-bundle", str(CA_BUNDLE)]
    try:
        with_cert = start_client(service_url=f"https://localhost:{server.port}", tunnel_id=tunnel_id,
                                 runtime_key=runtime_key, home=tmp_path, args=[
                                     *base, "--control-plane.client-cert", str(pki.client_cert),
                                     "--control-plane.client-key", str(pki.client_key)])
        try:
            with_cert.wait_readyz(status=200, text="ready")
        finally:
            with_cert.proc.kill()
        without = start_client(service_url=f"https://localhost:{server.port}", tunnel_id=tunnel_id,
                               runtime_key=runtime_key, home=tmp_path, args=base)
        try:
            failed = without.proc.wait_log("poll failed; backing off")
            assert failed.get("status_code") in (None, 0)  # refused at the TLS layer, not by HTTP
            assert without.get("/readyz").status_code == 503
        finally:
            without.proc.kill()
    finally:
        server.stop()
