"""The operator listener (/healthz, /readyz, /metrics, /ui) and the stop sequence of ``tunnel-client run``."""

from __future__ import annotations

import secrets
import signal
import stat
from typing import Any

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support import frontdoor as fd
from tests.support.servers import BackgroundLoop, bind_loopback
from tests.support.targets import MCPTarget
from tests.support.tunnel import ClientRun, StartClient, TunnelService, new_tunnel_id, start_tunnel_service

WAIT = 15.0


def samples(text: str) -> dict[str, list[Any]]:
    """Prometheus exposition text -> {sample name: [Sample, ...]} (parsed with the reference parser)."""
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append(s)
    return out


# ---- /healthz, /readyz ----------------------------------------------------------------------------


def test_healthz_answers_live(relay: ClientRun) -> None:
    resp = relay.get("/healthz")
    assert (resp.status_code, resp.text) == (200, "live")
    assert resp.headers["cache-control"] == "no-store"


def test_readyz_is_ready_once_target_probed_and_control_plane_reached(relay: ClientRun) -> None:
    resp = relay.get("/readyz")
    assert (resp.status_code, resp.text) == (200, "ready")


def test_readyz_is_503_with_reason_when_the_mcp_target_is_down(dead_relay: ClientRun, dead_port: int) -> None:
    resp = dead_relay.wait_readyz(
        status=503, text=f"mcp probe failed: cannot connect to http://127.0.0.1:{dead_port}/mcp: connection refused")
    assert resp.headers["content-type"].startswith("text/plain")
    assert dead_relay.get("/healthz").status_code == 200  # alive, just not ready


def test_readyz_is_503_until_the_control_plane_answers_then_200(
    bg: BackgroundLoop, runtime_key: str, mcp_target: MCPTarget, start_relay: StartClient
) -> None:
    # A listening socket nobody accepts on yet: the client's metadata fetch and poll wait in its backlog.
    sock = bind_loopback()
    tunnel_id = new_tunnel_id()
    service: TunnelService | None = None
    try:
        run = start_relay("--mcp.server-url", mcp_target.url, tunnel_id=tunnel_id,
                          service_url=f"http://127.0.0.1:{sock.getsockname()[1]}")
        run.wait_readyz(status=503, text="control plane not yet reached")
        service = start_tunnel_service(bg, runtime_key, sock, tunnel_ids=(tunnel_id,))
        run.wait_readyz(status=200, text="ready")
    finally:
        if service is not None:
            service.server.stop()
        else:
            sock.close()


# ---- /metrics, /ui, /api/status -------------------------------------------------------------------


@pytest.mark.anyio
async def test_metrics_expose_poll_queue_worker_and_latency_metrics(
    relay: ClientRun, tunnel_service: TunnelService
) -> None:
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            session = await fd.open_session(client, tunnel_service.mcp_url(relay.tunnel_id))
            await fd.post(client, tunnel_service.mcp_url(relay.tunnel_id),
                          fd.request("tools/call", {"name": "echo", "arguments": {"text": "m"}}), session)
            resp = await client.get(relay.health_url + "/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    m = samples(resp.text)
    assert m["commands_poll_cycles_total"][0].value >= 1
    assert m["commands_polled_total"][0].value >= 3
    assert m["commands_queue_capacity"][0].value == 20
    assert m["dispatcher_worker_pool_capacity"][0].value == 10
    assert "commands_queue_length" in m
    assert "dispatcher_worker_pool_occupancy" in m
    assert "commands_poll_latency_seconds_count" in m
    calls = [s for s in m["command_end_to_end_latency_milliseconds_count"]
             if s.labels["request_method"] == "tools/call"]
    assert calls and calls[0].value >= 1
    assert {c.labels["latency_type"] for c in calls} == {"poll_to_response", "enqueue_to_response"}
    assert calls[0].labels["tunnel_id"] == relay.tunnel_id
    assert calls[0].labels["tunnel_service_status"] == "200"
    assert calls[0].labels["request_kind"] == "call"
    assert m["readiness"][0].value == 1
    assert m["liveness"][0].value == 1


def test_ui_and_status_api_describe_the_running_relay(relay: ClientRun) -> None:
    ui = relay.get("/ui")
    assert ui.status_code == 200
    assert relay.tunnel_id in ui.text
    status = relay.get("/api/status").json()
    assert status["control_plane_tunnel_id"] == relay.tunnel_id
    assert status["ready"] is True
    assert {c["name"]: c["probe_status"] for c in status["channels"]} == {"main": "ok", "odd": "ok"}


# ---- stopping ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_stops_cleanly_with_exit_0_and_removes_the_url_file(
    start_relay: StartClient, mcp_target: MCPTarget, runtime_key: str, sig: signal.Signals
) -> None:
    run = start_relay("--mcp.server-url", mcp_target.url)
    run.wait_readyz()
    assert run.url_file.read_text() == run.health_url + "\n"
    assert stat.S_IMODE(run.url_file.stat().st_mode) == 0o600
    run.proc.popen.send_signal(sig)
    assert run.proc.wait() == 0
    assert not run.url_file.exists()
    records = run.proc.log_records()
    assert "tunnel-client stopped" in [r["msg"] for r in records]
    assert [r for r in records if r["level"] == "ERROR"] == []
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(run.health_url + "/healthz", timeout=2.0, trust_env=False)
    assert runtime_key not in run.proc.output()


@pytest.mark.anyio
async def test_sigterm_lets_an_in_flight_call_finish_before_exiting(
    start_relay: StartClient, mcp_target: MCPTarget, tunnel_service: TunnelService
) -> None:
    run = start_relay("--mcp.server-url", mcp_target.url)
    await anyio.to_thread.run_sync(run.wait_readyz)
    url = tunnel_service.mcp_url(run.tunnel_id)
    gate = "stop-" + secrets.token_hex(4)
    call = fd.request("tools/call", {"name": "progress", "arguments": {"steps": 2, "gate": gate},
                                     "_meta": {"progressToken": "t"}})
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            session = await fd.open_session(client, url)
            headers = {"Content-Type": "application/json", "Accept": fd.ACCEPT_BOTH, **session}
            async with client.stream("POST", url, json=call, headers=headers) as resp:
                events = aiter(httpx2.EventSource(resp))
                first: Any = (await anext(events)).json()
                assert first["method"] == "notifications/progress"  # the call is running, parked at the gate
                run.proc.popen.send_signal(signal.SIGTERM)
                stopping = await anyio.to_thread.run_sync(
                    run.proc.wait_log, "stopping: polling halted, letting held commands finish")
                assert stopping["held"] == 1
                mcp_target.open_gate(gate)
                rest: list[Any] = [e.json() async for e in events]
    assert rest[-1]["id"] == call["id"]
    assert rest[-1]["result"]["structuredContent"] == {"result": "done after 2 steps"}
    assert await anyio.to_thread.run_sync(run.proc.wait) == 0
    assert not run.url_file.exists()
