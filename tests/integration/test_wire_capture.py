"""What the real client puts on the wire, recorded at the tunnel service and checked against the contract."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import pytest

from tests.support import frontdoor as fd
from tests.support.schema import assert_valid_response_payload, schema_errors, tunnel_failure_of
from tests.support.tunnel import ClientRun, Recorded, TunnelService
from tunnel_core import __version__

pytestmark = pytest.mark.anyio

WAIT = 15.0


async def drive_every_reply_kind(service: TunnelService, relay: ClientRun, dead: ClientRun) -> None:
    """One of each: response, notify, notify_ack, session_termination_response, preserved and synthesized errors."""
    main, odd = service.mcp_url(relay.tunnel_id), service.mcp_url(relay.tunnel_id, channel="odd")
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            session = await fd.open_session(client, main)  # jsonrpc_response + notify_ack
            call = fd.request("tools/call", {"name": "progress", "arguments": {"steps": 2},
                                             "_meta": {"progressToken": 5}})
            await fd.post(client, main, call, {**session, "X-Request-Id": "conn-req-1"})  # jsonrpc_notify
            await client.delete(main, headers=session)  # session_termination_response
            await fd.post(client, odd, fd.request("odd/jsonrpc_error"))  # preserved 401
            await fd.post(client, odd, fd.request("odd/unavailable"))  # target_http failure
            await fd.post(client, odd, fd.request("odd/sse_then_eof"))  # transport_closed failure
            await fd.post(client, service.mcp_url(relay.tunnel_id, channel="nope"), fd.request("x"))  # unsupported
            await fd.post(client, service.mcp_url(dead.tunnel_id), fd.request("tools/list"))  # connect failure
            await fd.post(client, service.mcp_url(dead.tunnel_id), fd.notification("notifications/initialized"))


@pytest.fixture
async def traffic(tunnel_service: TunnelService, relay: ClientRun, dead_relay: ClientRun) -> None:
    await drive_every_reply_kind(tunnel_service, relay, dead_relay)


def answered(records: list[Recorded]) -> list[Recorded]:
    return [r for r in records if r.status]


@pytest.mark.usefixtures("traffic")
async def test_every_posted_response_matches_the_openapi_schema(
    tunnel_service: TunnelService, relay: ClientRun, dead_relay: ClientRun
) -> None:
    posted = tunnel_service.posted_responses(relay.tunnel_id) + tunnel_service.posted_responses(dead_relay.tunnel_id)
    payloads = [r.json() for r in posted]
    for payload in payloads:
        assert_valid_response_payload(payload)
    kinds = {p["resp_type"] for p in payloads}
    assert kinds == {"jsonrpc_response", "jsonrpc_notify", "notify_ack", "session_termination_response"}
    sources = {tunnel_failure_of(p)["source"] for p in payloads if tunnel_failure_of(p)}
    assert sources >= {"connect", "target_http", "transport_closed"}


@pytest.mark.usefixtures("traffic")
async def test_every_runtime_request_carries_key_and_client_identity_headers(
    tunnel_service: TunnelService, relay: ClientRun, runtime_key: str
) -> None:
    records = tunnel_service.runtime_requests(relay.tunnel_id)
    assert records
    instance_ids = set()
    for r in records:
        assert r.header("authorization") == f"Bearer {runtime_key}"
        assert r.header("accept") == "application/json"
        assert r.header("user-agent") == f"oai-tunnel-client/{__version__}"
        assert r.header("x-tunnel-client-name") == "oai-tunnel-client"
        assert r.header("x-tunnel-client-version") == __version__
        assert json.loads(r.header("x-tunnel-mcp-server-info") or "") == {
            "version": 1, "channels": [{"name": "main"}, {"name": "odd"}]}
        instance_ids.add(r.header("x-tunnel-client-instance-id"))
    [instance_id] = instance_ids  # one random id per process
    assert re.fullmatch(r"[0-9a-f]{32}", instance_id or "")


@pytest.mark.usefixtures("traffic")
async def test_metadata_is_fetched_once_and_polls_respect_limits(
    tunnel_service: TunnelService, relay: ClientRun
) -> None:
    records = tunnel_service.runtime_requests(relay.tunnel_id)
    metadata = [r for r in records if r.method == "GET" and r.path == f"/v1/tunnels/{relay.tunnel_id}"]
    assert len(metadata) == 1
    assert metadata[0].status == 200
    assert schema_errors("TunnelClientMetadata", metadata[0].response_json()) == []
    polls = [r for r in records if r.path.endswith("/poll")]
    assert len(polls) >= 2
    for p in polls:
        assert p.method == "GET"
        assert 1 <= int(p.query["limit"][0]) <= 20  # min(25, free part of max-inflight 20)
        assert p.query["timeout_ms"] == ["5000"]
        assert "channel" not in p.query  # no poll channels configured
    for p in answered(polls):
        if p.status == 200:
            assert schema_errors("PolledCommandList", p.response_json()) == []
        else:
            assert p.status == 204


@pytest.mark.usefixtures("traffic")
async def test_response_posts_carry_the_shard_token_of_their_command(
    tunnel_service: TunnelService, relay: ClientRun
) -> None:
    records = tunnel_service.runtime_requests(relay.tunnel_id)
    shard_of: dict[str, str] = {}
    headers_of: dict[str, dict[str, Any]] = {}
    for p in answered([r for r in records if r.path.endswith("/poll") and r.status == 200]):
        for cmd in p.response_json()["commands"]:
            shard_of[cmd["request_id"]] = cmd["shard_token"]
            headers_of[cmd["request_id"]] = cmd.get("headers", {})
    posted = tunnel_service.posted_responses(relay.tunnel_id)
    assert posted
    for r in posted:
        request_id = r.json()["request_id"]
        assert r.header("x-tunnel-shard-token") == shard_of[request_id]
        assert r.header("content-type") == "application/json"
        connector_request_id = headers_of[request_id].get("X-Request-Id") or headers_of[request_id].get("x-request-id")
        assert r.header("x-client-request-id") == (connector_request_id[0] if connector_request_id else None)
    assert any(r.header("x-client-request-id") == "conn-req-1" for r in posted)


@pytest.mark.usefixtures("traffic")
async def test_notifications_are_posted_before_their_terminal_response(
    tunnel_service: TunnelService, relay: ClientRun
) -> None:
    by_request: dict[str, list[str]] = {}
    for r in tunnel_service.posted_responses(relay.tunnel_id):
        payload = r.json()
        by_request.setdefault(payload["request_id"], []).append(payload["resp_type"])
    with_notes = [types for types in by_request.values() if "jsonrpc_notify" in types]
    assert with_notes
    for types in with_notes:
        assert types[-1] == "jsonrpc_response"
        assert set(types[:-1]) == {"jsonrpc_notify"}
