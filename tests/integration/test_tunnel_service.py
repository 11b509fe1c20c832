"""The local tunnel service's own contract: runtime auth and errors, and not losing work to dead pollers."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx2
import pytest

from tests.support import frontdoor as fd
from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc, base_env
from tests.support.schema import schema_errors
from tests.support.targets import MCPTarget
from tests.support.tunnel import StartClient, TunnelService


def get(url: str, **kw: object) -> httpx2.Response:
    return httpx2.get(url, timeout=5.0, trust_env=False, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "headers", "status", "code"),
    [
        ("/v1/tunnels/{tid}", {}, 401, "invalid_api_key"),
        ("/v1/tunnels/{tid}", {"Authorization": "Bearer wrong-key"}, 401, "invalid_api_key"),
        ("/v1/tunnels/{tid}/poll?limit=1&timeout_ms=0", {"Authorization": "Basic abc"}, 401, "invalid_api_key"),
        ("/v1/tunnels/tunnel_UPPER", {"Authorization": "Bearer {key}"}, 400, "invalid_tunnel_id_format"),
        ("/v1/tunnels/tunnel_" + "0" * 32, {"Authorization": "Bearer {key}"}, 404, "tunnel_not_found"),
    ],
)
def test_runtime_api_refuses_bad_keys_and_ids_with_contract_errors(
    tunnel_service: TunnelService, runtime_key: str, path: str, headers: dict[str, str], status: int, code: str
) -> None:
    tid = tunnel_service.add_tunnel()
    h = {k: v.format(key=runtime_key) for k, v in headers.items()}
    resp = get(tunnel_service.base_url + path.format(tid=tid), headers=h)
    assert resp.status_code == status
    assert resp.json()["error"]["code"] == code
    assert schema_errors("APIErrorResponse", resp.json()) == []


def test_runtime_metadata_and_empty_poll(tunnel_service: TunnelService, runtime_key: str) -> None:
    tid = tunnel_service.add_tunnel()
    auth = {"Authorization": f"Bearer {runtime_key}"}
    meta = get(f"{tunnel_service.base_url}/v1/tunnels/{tid}", headers=auth)
    assert meta.status_code == 200
    assert meta.json()["id"] == tid
    assert get(f"{tunnel_service.base_url}/v1/tunnels/{tid}/poll?limit=25&timeout_ms=0", headers=auth).status_code == 204
    too_many = get(f"{tunnel_service.base_url}/v1/tunnels/{tid}/poll?limit=26&timeout_ms=0", headers=auth)
    assert too_many.status_code == 400


def test_response_for_an_unknown_request_is_404_pending_request_not_found(
    tunnel_service: TunnelService, runtime_key: str
) -> None:
    tid = tunnel_service.add_tunnel()
    resp = httpx2.post(
        f"{tunnel_service.base_url}/v1/tunnels/{tid}/response", trust_env=False, timeout=5.0,
        headers={"Authorization": f"Bearer {runtime_key}", "X-Tunnel-Shard-Token": "dev:x"},
        json={"request_id": "req_nope", "channel": "main", "resp_code": 200, "resp_type": "notify_ack"},
    )
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "pending_request_not_found"


def test_front_door_rejects_get_and_non_object_bodies(tunnel_service: TunnelService) -> None:
    url = tunnel_service.mcp_url(tunnel_service.add_tunnel())
    assert get(url).status_code == 405
    resp = httpx2.post(url, content=b"[1, 2]", headers={"Content-Type": "application/json"}, trust_env=False,
                       timeout=5.0)
    assert (resp.status_code, resp.json()["error"]["code"]) == (400, "invalid_json_payload")


def test_command_is_not_lost_to_a_poller_whose_client_was_killed(
    start_relay: StartClient, mcp_target: MCPTarget, tunnel_service: TunnelService
) -> None:
    tid = tunnel_service.add_tunnel()
    first = start_relay("--mcp.server-url", mcp_target.url, "--control-plane.poll-timeout", "30s", tunnel_id=tid)
    first.wait_readyz()
    deadline = time.monotonic() + WAIT
    while not [r for r in tunnel_service.runtime_requests(tid) if r.path.endswith("/poll") and not r.status]:
        assert time.monotonic() < deadline, "the first client never opened a long poll"
        time.sleep(0.02)
    os.killpg(first.proc.pid, signal.SIGKILL)  # its long poll is left behind at the service
    first.proc.wait()

    second = start_relay("--mcp.server-url", mcp_target.url, tunnel_id=tid)
    second.wait_readyz()
    body = fd.request("initialize", fd.initialize_params())
    resp = httpx2.post(tunnel_service.mcp_url(tid), json=body, trust_env=False, timeout=WAIT,
                       headers={"Accept": fd.ACCEPT_BOTH})
    assert resp.status_code == 200, resp.text
    assert fd.messages(resp)[-1]["result"]["serverInfo"]["name"] == "relay-test-server"


def test_dev_tunnel_service_command_serves_the_contract(tmp_path: Path, runtime_key: str) -> None:
    tid = "tunnel_" + "5" * 32
    url_file = tmp_path / "service.json"
    proc = Proc([TUNNEL_CLIENT, "dev", "tunnel-service", "--listen", "127.0.0.1:0", "--tunnel-id", tid,
                 "--url-file", str(url_file)], base_env(tmp_path, CONTROL_PLANE_API_KEY=runtime_key))
    try:
        base = proc.wait_stdout(r"^Tunnel service: (http://127\.0\.0\.1:\d+)$").group(1)
        proc.wait_stdout(rf"^MCP URL: {base}/v1/mcp/{tid}$")
        desc = json.loads(url_file.read_text(encoding="utf-8"))
        assert desc == {"control_plane_base_url": base, "tunnels": [{"tunnel_id": tid, "mcp_url": f"{base}/v1/mcp/{tid}"}]}
        meta = get(f"{base}/v1/tunnels/{tid}", headers={"Authorization": f"Bearer {runtime_key}"})
        assert (meta.status_code, meta.json()["id"]) == (200, tid)
        assert get(f"{base}/v1/tunnels/{tid}").status_code == 401
        assert proc.terminate() == 0
        assert runtime_key not in proc.output()
    finally:
        proc.kill()
