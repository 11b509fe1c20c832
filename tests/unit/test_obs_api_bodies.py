"""API bodies of the operator listener (opsserver.api): the OAuth provider plug-in, masking of stdio
command lines, system extras, traffic limits, served through the real app (ASGI transport)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import httpx2
import pytest

from tunnel_core.logs import LogBuffer
from tunnel_core.opsserver.app import build_ops_app
from tunnel_core.opsserver.context import OpsContext
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.state import RuntimeState
from tunnel_core.relay.traffic import TrafficRecorder

SECRET = "PLANTEDapibodies99"
TID = "tunnel_" + "f" * 32


def _status() -> dict[str, Any]:
    return {"control_plane_tunnel_id": TID, "channels": [
        {"name": "main", "transport_kind": "stdio",
         "target": f"mcp-server --api-key {SECRET} --token={SECRET} --port 9 --note 'a b'"},
        {"name": "web", "transport_kind": "http", "target": f"https://u:{SECRET}@h/mcp"},
    ]}


def _client(**ctx: Any) -> httpx2.AsyncClient:
    context = OpsContext(state=RuntimeState(tunnel_id=TID, instance_id="y" * 32), metrics=RelayMetrics(),
                         status=_status, logs=LogBuffer(), **ctx)
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(build_ops_app(context)),
                              base_url="http://127.0.0.1:8080")


@pytest.mark.anyio
async def test_status_masks_secret_flags_in_stdio_commands_and_credentials_in_urls() -> None:
    async with _client() as c:
        status = (await c.get("/api/status")).json()
    targets = {ch["name"]: ch["target"] for ch in status["channels"]}
    assert targets == {"main": "mcp-server --api-key '[REDACTED]' '--token=[REDACTED]' --port 9 --note 'a b'",
                       "web": "https://[REDACTED]@h/mcp"}
    assert status["control_plane_poll"] == {"ok": False, "last_success": "", "last_error": "",
                                            "consecutive_failures": 0}


OAuthProvider = Callable[[], Mapping[str, Any] | None]


@pytest.mark.anyio
@pytest.mark.parametrize("provider", [None, lambda: None, lambda: {}], ids=["no provider", "None", "empty"])
async def test_oauth_without_discovery_says_not_configured(provider: OAuthProvider | None) -> None:
    async with _client(oauth=provider) as c:
        body = (await c.get("/api/oauth")).json()
    assert body["configured"] is False and body["discovery_urls"] == [] and body["pending"] is False
    assert body["auth_server_metadata_mode"] == "authorization_servers[0] only (source of truth)"


@pytest.mark.anyio
async def test_oauth_provider_plugs_in_and_its_data_is_redacted() -> None:
    def provider() -> Mapping[str, Any]:
        return {"discovery_urls": ["https://mcp.example/.well-known/oauth-protected-resource/mcp"],
                "pending": False, "metadata_source": "well_known",
                "metadata": {"headers": {"Set-Cookie": [f"sid={SECRET}"]}, "body_text": f"client_secret={SECRET}"},
                "error": f"fetch failed: Authorization: Bearer {SECRET}"}

    async with _client(oauth=provider) as c:
        resp = await c.get("/api/oauth")
    assert SECRET not in resp.text
    body = resp.json()
    assert body["configured"] is True and body["metadata_source"] == "well_known"
    assert body["discovery_urls"] == ["https://mcp.example/.well-known/oauth-protected-resource/mcp"]
    assert body["authorization_server_count"] == 0  # defaults fill what the provider leaves out


@pytest.mark.anyio
async def test_system_extras_merge_and_traffic_limits_apply() -> None:
    traffic = TrafficRecorder(capacity=4)
    for i in range(6):
        traffic.add(f"req_{i}", "main", "tools/call", "call", 200, "ok", 1.0)
    async with _client(system_extra=lambda: {"proxy_health": [{"health_state": "direct"}]}, traffic=traffic) as c:
        system = (await c.get("/api/system")).json()
        assert system["proxy_health"] == [{"health_state": "direct"}]
        assert system["runtime"]["traffic_capacity"] == 4
        assert len((await c.get("/api/traffic?limit=999")).json()["calls"]) == 4
        assert len((await c.get("/api/traffic?limit=2")).json()["calls"]) == 2
        assert len((await c.get("/api/traffic?limit=bogus")).json()["calls"]) == 4
        assert (await c.post("/api/status")).status_code == 405
