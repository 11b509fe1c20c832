"""End to end through the real ``tunnel-client run`` subprocess and the local tunnel service.

caller --HTTP--> front door /v1/mcp/<tunnel> --poll/response--> tunnel-client --HTTP--> MCP target
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from tests.support import frontdoor as fd
from tests.support.odd_app import (
    ODD_NOTE_LINES,
    ODD_SESSION,
    PRESERVED_ERROR,
    UNAVAILABLE_BODY,
    WWW_AUTHENTICATE,
    odd_result,
)
from tests.support.targets import MCPTarget, OddTarget
from tests.support.tunnel import ClientRun, TunnelService
from tunnel_core.wire.prmd import prmd_url

pytestmark = pytest.mark.anyio

WAIT = 15.0


@pytest.fixture
def main_url(relay: ClientRun, tunnel_service: TunnelService) -> str:
    return tunnel_service.mcp_url(relay.tunnel_id)


@pytest.fixture
def odd_url(relay: ClientRun, tunnel_service: TunnelService) -> str:
    return tunnel_service.mcp_url(relay.tunnel_id, channel="odd")


def text_of(result_msg: dict[str, Any]) -> str:
    content = result_msg["result"]["content"]
    return "".join(c["text"] for c in content if c["type"] == "text")


# ---- MCP session through the relay --------------------------------------------------------------


async def test_session_id_flows_through_initialize_initialized_list_and_call(main_url: str) -> None:
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            session = await fd.open_session(client, main_url)  # initialize -> notifications/initialized

            resp, msgs = await fd.post(client, main_url, fd.request("tools/list"), session)
            assert resp.status_code == 200
            assert resp.headers["mcp-session-id"] == session["Mcp-Session-Id"]
            assert {t["name"] for t in msgs[-1]["result"]["tools"]} >= {"echo", "progress", "fail", "seen_headers"}

            resp, msgs = await fd.post(
                client, main_url, fd.request("tools/call", {"name": "echo", "arguments": {"text": "héllo ✓"}}), session)
            assert resp.status_code == 200
            assert text_of(msgs[-1]) == "héllo ✓"

            # The target saw the connector's session id and protocol version on the call.
            _, msgs = await fd.post(
                client, main_url, fd.request("tools/call", {"name": "seen_headers", "arguments": {}}), session)
            seen = msgs[-1]["result"]["structuredContent"]
            assert seen["mcp-session-id"] == session["Mcp-Session-Id"]
            assert seen["mcp-protocol-version"] == fd.PROTOCOL

            # DELETE on the front door becomes a session_termination -> DELETE at the target.
            resp = await client.delete(main_url, headers=session)
            assert resp.status_code == 200
            resp, _ = await fd.post(client, main_url, fd.request("tools/list"), session)
            assert resp.status_code == 404  # the target no longer knows the session


async def test_request_ids_are_relayed_untouched(main_url: str) -> None:
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            session = await fd.open_session(client, main_url)
            for rpc_id in ("req-\u00e9\u2713", 0, 2**53, "1"):
                msg = fd.request("tools/call", {"name": "echo", "arguments": {"text": str(rpc_id)}}, rpc_id=rpc_id)
                _, msgs = await fd.post(client, main_url, msg, session)
                assert msgs[-1]["id"] == rpc_id
                assert text_of(msgs[-1]) == str(rpc_id)


async def test_concurrent_calls_reusing_one_jsonrpc_id_each_get_their_own_answer(main_url: str) -> None:
    # Different connectors (sessions) all use id 1 at the same time; the relay keys work by request_id.
    answers: dict[str, Any] = {}
    async with fd.http_client() as client:

        async def call(i: int) -> None:
            session = await fd.open_session(client, main_url)
            msg = fd.request("tools/call", {"name": "echo", "arguments": {"text": f"call-{i}"}}, rpc_id=1)
            _, msgs = await fd.post(client, main_url, msg, session)
            answers[f"call-{i}"] = msgs[-1]

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(call, i)
    assert {k: text_of(v) for k, v in answers.items()} == {f"call-{i}": f"call-{i}" for i in range(8)}
    assert all(v["id"] == 1 for v in answers.values())


async def test_mcp_sdk_client_handshake_lists_and_calls_tools(main_url: str) -> None:
    with anyio.fail_after(WAIT):
        async with Client(main_url, mode="legacy") as c:
            tools = await c.list_tools()
            assert {t.name for t in tools.tools} >= {"echo", "progress"}
            result = await c.call_tool("echo", {"text": "via sdk"})
            assert result.structured_content == {"result": "via sdk"}
            assert not result.is_error


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_mcp_sdk_progress_callback_sees_every_step_before_the_result(main_url: str, mode: str) -> None:
    events: list[Any] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    with anyio.fail_after(WAIT):
        async with Client(main_url, mode=mode) as c:
            result = await c.call_tool("progress", {"steps": 3}, progress_callback=on_progress)
            events.append("result")
    assert events == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3"), "result"]
    assert result.structured_content == {"result": "done after 3 steps"}


async def test_progress_notifications_reach_sse_caller_before_the_result(main_url: str, mcp_target: MCPTarget) -> None:
    gate = "gate-" + secrets.token_hex(4)
    call = fd.request("tools/call", {"name": "progress", "arguments": {"steps": 2, "gate": gate},
                                     "_meta": {"progressToken": "tok-1"}})
    received: list[Any] = []
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            session = await fd.open_session(client, main_url)
            headers = {"Content-Type": "application/json", "Accept": fd.ACCEPT_BOTH, **session}
            async with client.stream("POST", main_url, json=call, headers=headers) as resp:
                assert resp.status_code == 200
                assert resp.headers["content-type"].startswith("text/event-stream")
                async for event in httpx2.EventSource(resp):
                    msg: Any = event.json()
                    received.append(msg)
                    if len(received) == 1:
                        # The tool is parked at the gate: this notification was relayed while the call ran.
                        assert msg["method"] == "notifications/progress"
                        mcp_target.open_gate(gate)
    assert [m.get("method", "result") for m in received] == [
        "notifications/progress", "notifications/progress", "result"]
    assert [m["params"]["progress"] for m in received[:2]] == [1, 2]
    assert all(m["params"]["progressToken"] == "tok-1" for m in received[:2])
    assert received[-1]["id"] == call["id"]
    assert text_of(received[-1]) == "done after 2 steps"


# ---- errors -------------------------------------------------------------------------------------


async def test_tool_exception_comes_back_as_an_is_error_result(main_url: str) -> None:
    with anyio.fail_after(WAIT):
        async with Client(main_url, mode="legacy") as c:
            result = await c.call_tool("fail", {"message": "boom"})
    assert result.is_error
    assert "boom" in result.content[0].text  # type: ignore[union-attr]


async def test_sdk_server_jsonrpc_error_is_preserved(main_url: str) -> None:
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            session = await fd.open_session(client, main_url)
            call = fd.request("tools/call", {"name": "rpc_error", "arguments": {"code": -32042, "message": "nope"}})
            resp, msgs = await fd.post(client, main_url, call, session)
    assert resp.status_code == 200
    assert msgs[-1] == {"jsonrpc": "2.0", "id": call["id"],
                        "error": {"code": -32042, "message": "nope", "data": {"from": "relay-test-server"}}}


@pytest.mark.parametrize("accept", ["application/json", fd.ACCEPT_BOTH])
async def test_target_jsonrpc_error_is_preserved_exactly_with_its_http_status(odd_url: str, accept: str) -> None:
    msg = fd.request("odd/jsonrpc_error", rpc_id="err-1")
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, odd_url, msg, accept=accept)
    assert resp.status_code == 401
    assert msgs == [{"jsonrpc": "2.0", "id": "err-1", "error": PRESERVED_ERROR}]
    # The JSON-RPC error and status pass through untouched; the service points the challenge's
    # resource_metadata at its own well-known URL for this tunnel (the target's is private).
    base, _, rest = odd_url.partition("/v1/mcp/")
    tunnel_id = rest.split("?")[0]
    assert WWW_AUTHENTICATE != resp.headers["www-authenticate"]
    assert resp.headers["www-authenticate"] == f'Bearer resource_metadata="{prmd_url(base, tunnel_id)}"'
    assert "x-internal-debug" not in resp.headers


async def test_target_http_error_without_jsonrpc_body_becomes_synthesized_failure(
    odd_url: str, odd_target: OddTarget
) -> None:
    msg = fd.request("odd/unavailable")
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, odd_url, msg, accept="application/json")
    assert resp.status_code == 503
    assert msgs == [{"jsonrpc": "2.0", "id": msg["id"], "error": {
        "code": -32603, "message": "Service Unavailable", "data": {"tunnel_failure": {
            "version": 1, "source": "target_http", "transport_error_kind": "malformed_json",
            "upstream_response_received": True, "upstream_status": 503}}}}]
    # No raw target body, URL or address in the envelope.
    assert UNAVAILABLE_BODY not in resp.text
    assert str(odd_target.server.port) not in resp.text


@pytest.mark.parametrize("method", ["odd/raw_json", "odd/raw_sse"])
async def test_the_servers_json_bytes_are_posted_unchanged(
    method: str, relay: ClientRun, tunnel_service: TunnelService, odd_url: str
) -> None:
    # The relay checks each message (valid JSON, the answer to this id) but posts the server's own
    # bytes: key order, whitespace, escapes and numbers no double holds all survive.
    rpc_id = f"bytes-{secrets.token_hex(4)}"
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, odd_url, fd.request(method, rpc_id=rpc_id))
    assert resp.status_code == 200
    assert msgs[-1] == json.loads(odd_result(rpc_id))  # the caller gets the same value
    bodies = [bytes(r.body) for r in tunnel_service.posted_responses(relay.tunnel_id) if rpc_id.encode() in r.body]
    [final] = bodies
    assert final.endswith(b',"resp_json":' + odd_result(rpc_id) + b"}")
    if method == "odd/raw_sse":
        note = b"\n".join(ODD_NOTE_LINES)
        assert msgs[0] == json.loads(note)
        [notified] = [bytes(r.body) for r in tunnel_service.posted_responses(relay.tunnel_id) if note in r.body]
        assert notified.endswith(b',"resp_json":' + note + b"}") and b'"resp_type":"jsonrpc_notify"' in notified


async def test_unreachable_target_yields_connect_failure_502(
    dead_relay: ClientRun, tunnel_service: TunnelService, dead_port: int
) -> None:
    msg = fd.request("tools/list", rpc_id="dead-1")
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, tunnel_service.mcp_url(dead_relay.tunnel_id), msg)
    assert resp.status_code == 502
    assert resp.headers["content-type"].startswith("application/json")
    error = msgs[-1]["error"]
    assert msgs[-1]["id"] == "dead-1"
    assert error["code"] == -32603
    assert error["message"] == "Bad Gateway"
    assert error["data"]["tunnel_failure"] == {
        "version": 1, "source": "connect", "transport_error_kind": "connection_refused",
        "upstream_response_received": False}
    assert str(dead_port) not in resp.text


async def test_notification_to_unreachable_target_is_acked_with_502(
    dead_relay: ClientRun, tunnel_service: TunnelService
) -> None:
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, tunnel_service.mcp_url(dead_relay.tunnel_id),
                                       fd.notification("notifications/initialized"))
    assert resp.status_code == 502
    assert msgs == []


async def test_sse_stream_that_ends_without_a_result_yields_transport_closed(odd_url: str) -> None:
    msg = fd.request("odd/sse_then_eof")
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, odd_url, msg)
    assert resp.status_code == 200  # the stream had started with a notification
    assert msgs[0]["method"] == "notifications/message"
    assert msgs[-1]["id"] == msg["id"]
    assert msgs[-1]["error"]["data"]["tunnel_failure"] == {
        "version": 1, "source": "transport_closed", "transport_error_kind": "eof", "upstream_response_received": False}


async def test_answer_for_another_id_yields_protocol_failure_502(odd_url: str) -> None:
    msg = fd.request("odd/wrong_id")
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, odd_url, msg, accept="application/json")
    assert resp.status_code == 502
    assert msgs[-1]["id"] == msg["id"]
    assert msgs[-1]["error"]["data"]["tunnel_failure"]["source"] == "protocol"
    assert "someone-else" not in resp.text


async def test_unknown_channel_is_answered_400_without_falling_back_to_main(
    relay: ClientRun, tunnel_service: TunnelService
) -> None:
    msg = fd.request("tools/list")
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, tunnel_service.mcp_url(relay.tunnel_id, channel="nope"), msg)
    assert resp.status_code == 400
    assert msgs == [{"jsonrpc": "2.0", "id": msg["id"],
                     "error": {"code": -32603, "message": 'Bad Request: unsupported channel "nope"'}}]


# ---- headers ------------------------------------------------------------------------------------

FORBIDDEN = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "evil.example",
    "Forwarded": "for=203.0.113.7;proto=https",
    "X-Real-IP": "203.0.113.7",
    "True-Client-IP": "203.0.113.7",
    "Cookie": "session=stolen",
    "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
    "X-Hop-Secret": "nominated-by-connection",
    "X-Tunnel-Shard-Token": "forged",
    "OpenAI-Organization": "org-forged",
}
ORDINARY = {
    "Authorization": "Bearer connector-token-123",
    "X-Custom-Trace": "trace-abc",
    "Mcp-Protocol-Version": fd.PROTOCOL,
    "User-Agent": "relay-tests/1",
}


async def test_forbidden_request_headers_never_reach_the_target(odd_url: str, odd_target: OddTarget) -> None:
    rpc_id = "hdr-" + secrets.token_hex(4)
    headers = {**FORBIDDEN, **ORDINARY, "Connection": "keep-alive, X-Hop-Secret"}
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, _ = await fd.post(client, odd_url, fd.request("odd/echo_headers", rpc_id=rpc_id), headers)
    assert resp.status_code == 200
    [seen] = [r for r in odd_target.state.received if isinstance(r.body, dict) and r.body.get("id") == rpc_id]
    names = {k.lower() for k, _ in seen.headers}
    assert not names & {k.lower() for k in FORBIDDEN}, f"forbidden headers reached the target: {seen.headers}"
    for name, value in ORDINARY.items():
        assert seen.header(name) == [value], f"{name} did not arrive intact: {seen.headers}"
    # The target answered with headers of its own: only the protocol allowlist comes back.
    assert resp.headers["mcp-session-id"] == ODD_SESSION
    assert resp.headers["mcp-protocol-version"] == fd.PROTOCOL
    assert "set-cookie" not in resp.headers
    assert "x-powered-by" not in resp.headers


async def test_connector_notification_is_forwarded_and_acked_202(odd_url: str, odd_target: OddTarget) -> None:
    marker = secrets.token_hex(4)
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp, msgs = await fd.post(client, odd_url, fd.notification("notifications/cancelled",
                                                                        {"requestId": marker}))
    assert resp.status_code == 202
    assert msgs == []
    assert [r.body["params"] for r in odd_target.state.for_rpc("notifications/cancelled")
            if r.body["params"]["requestId"] == marker] == [{"requestId": marker}]


async def test_session_termination_sends_delete_with_session_and_authorization(
    odd_url: str, odd_target: OddTarget
) -> None:
    session = "odd-" + secrets.token_hex(4)
    headers = {"Mcp-Session-Id": session, "Authorization": "Bearer connector-token-123",
               "Mcp-Protocol-Version": fd.PROTOCOL, "Cookie": "a=b"}
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp = await client.delete(odd_url, headers=headers)
    assert resp.status_code == 204
    assert resp.headers["mcp-session-id"] == session
    [seen] = [r for r in odd_target.state.received if r.method == "DELETE" and r.header("mcp-session-id") == [session]]
    assert seen.header("authorization") == ["Bearer connector-token-123"]
    assert seen.header("mcp-protocol-version") == [fd.PROTOCOL]
    assert seen.header("cookie") == []


async def test_delete_without_session_id_is_refused_by_the_front_door(main_url: str) -> None:
    async with fd.http_client() as client:
        with anyio.fail_after(WAIT):
            resp = await client.delete(main_url)
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "missing_mcp_session_id"
