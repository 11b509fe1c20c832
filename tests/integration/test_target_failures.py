"""The HTTP target against real misbehaving sockets: each failure becomes the right synthesized reply.

The target is built the way ``run`` builds it (settings -> runner.build_targets), so these
prove the classification of the HTTP stack's own exceptions, whatever library it uses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream
from anyio.abc._sockets import SocketAttribute

from tunnel_core.config.settings import default_flags, load_settings
from tunnel_core.config.specs import SPEC_BY_KEY
from tunnel_core.runner import build_targets
from tunnel_core.targets.base import Reply, Target
from tunnel_core.wire.models import JsonRpcCommand, SessionTerminationCommand, decode_command

pytestmark = pytest.mark.anyio

WAIT = 15.0
Handler = Callable[[SocketStream], Awaitable[None]]


def make_target(url: str, ttl: str = "10s") -> Target:
    flags = default_flags()
    flags[SPEC_BY_KEY["control_plane.tunnel_id"].dest] = "tunnel_" + "7" * 32
    flags[SPEC_BY_KEY["mcp.server_urls"].dest] = [url]
    flags[SPEC_BY_KEY["mcp.connection_max_ttl"].dest] = ttl
    settings = load_settings(flags, {"CONTROL_PLANE_API_KEY": "k_unit"})
    return build_targets(settings, max_concurrent=2)["main"]


def command(**over: Any) -> Any:
    raw: dict[str, Any] = {"request_id": "req_1", "shard_token": "s", "command_type": "jsonrpc",
                           "created_at": "", "headers": {},
                           "jsonrpc": {"jsonrpc": "2.0", "id": "rpc-9", "method": "tools/list"}}
    raw.update(over)
    return decode_command(raw)


async def never_emit(reply: Reply) -> bool:
    raise AssertionError(f"unexpected notification {reply}")


async def read_request_head(stream: SocketStream) -> None:
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += await stream.receive()


async def close_after_request(stream: SocketStream) -> None:
    await read_request_head(stream)
    await stream.aclose()


async def truncated_body(stream: SocketStream) -> None:
    await read_request_head(stream)
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
                      b'{"jsonrpc":"2.0",')
    await stream.aclose()


async def truncated_sse(stream: SocketStream) -> None:
    await read_request_head(stream)
    await stream.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"40\r\nevent: message\nda")  # a 64-byte chunk cut short
    await stream.aclose()


async def plain_http_on_any_bytes(stream: SocketStream) -> None:
    await stream.receive()  # a TLS ClientHello, answered in plain HTTP
    await stream.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await stream.aclose()


async def never_answers(stream: SocketStream) -> None:
    await read_request_head(stream)
    await anyio.sleep_forever()


class RawServer:
    """A raw TCP server on 127.0.0.1:0 running ``handler`` per connection, inside the test's task group."""

    def __init__(self, port: int) -> None:
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@pytest.fixture
async def raw_server(request: pytest.FixtureRequest) -> AsyncIterator[RawServer]:
    handler: Handler = request.param
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        yield RawServer(listener.extra(SocketAttribute.local_port))
        tg.cancel_scope.cancel()


def failure_of(reply: Reply) -> dict[str, Any]:
    assert reply.resp_type == "jsonrpc_response"
    assert reply.body is not None
    assert reply.body["id"] == "rpc-9"
    assert reply.body["error"]["code"] == -32603
    failure: dict[str, Any] = reply.body["error"]["data"]["tunnel_failure"]
    return failure


async def test_refused_connection_is_a_connect_failure(dead_port: int) -> None:
    target = make_target(f"http://127.0.0.1:{dead_port}/mcp")
    try:
        with anyio.fail_after(WAIT):
            reply = await target.call(command(), never_emit)
    finally:
        await target.aclose()
    assert reply.code == 502
    assert failure_of(reply) == {"version": 1, "source": "connect", "transport_error_kind": "connection_refused",
                                 "upstream_response_received": False}


@pytest.mark.parametrize(
    "raw_server", [close_after_request, truncated_body, truncated_sse],
    indirect=True, ids=["closed-before-answer", "truncated-json", "truncated-sse"],
)
async def test_connection_lost_mid_exchange_is_transport_closed(raw_server: RawServer) -> None:
    target = make_target(raw_server.url)
    try:
        with anyio.fail_after(WAIT):
            reply = await target.call(command(), never_emit)
    finally:
        await target.aclose()
    assert reply.code == 502
    failure = failure_of(reply)
    assert failure["source"] == "transport_closed"
    assert failure["upstream_response_received"] is False
    assert failure["transport_error_kind"] in {
        "unexpected_eof", "connection_closed", "connection_reset", "eof", "closed_pipe"}


@pytest.mark.parametrize("raw_server", [plain_http_on_any_bytes], indirect=True)
async def test_tls_to_a_plain_http_port_is_a_tls_failure(raw_server: RawServer) -> None:
    target = make_target(raw_server.url.replace("http://", "https://"))
    try:
        with anyio.fail_after(WAIT):
            reply = await target.call(command(), never_emit)
    finally:
        await target.aclose()
    assert reply.code == 502
    assert failure_of(reply)["source"] == "tls"


@pytest.mark.parametrize("raw_server", [never_answers], indirect=True)
async def test_connection_ttl_ends_a_silent_call_without_a_reply(raw_server: RawServer) -> None:
    target = make_target(raw_server.url, ttl="300ms")
    try:
        with anyio.fail_after(WAIT), pytest.raises(TimeoutError):
            await target.call(command(), never_emit)
    finally:
        await target.aclose()


async def test_notification_to_refused_port_is_acked_with_502_and_no_body(dead_port: int) -> None:
    target = make_target(f"http://127.0.0.1:{dead_port}/mcp")
    cmd = command(jsonrpc={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert isinstance(cmd, JsonRpcCommand)
    try:
        with anyio.fail_after(WAIT):
            reply = await target.call(cmd, never_emit)
    finally:
        await target.aclose()
    assert (reply.resp_type, reply.code, reply.body) == ("notify_ack", 502, None)


async def test_session_termination_to_refused_port_answers_502(dead_port: int) -> None:
    target = make_target(f"http://127.0.0.1:{dead_port}/mcp")
    cmd = command(command_type="session_termination", headers={"Mcp-Session-Id": ["s1"]})
    assert isinstance(cmd, SessionTerminationCommand)
    try:
        with anyio.fail_after(WAIT):
            reply = await target.terminate_session(cmd)
    finally:
        await target.aclose()
    assert (reply.resp_type, reply.code, reply.body) == ("session_termination_response", 502, None)
