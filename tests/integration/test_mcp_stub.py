"""The demo MCP server answers like an mcp SDK server with the same three tools, message for message.

``tunnel_core.mcpstub`` is a small hand-written Streamable HTTP handler (it keeps the SDK out
of ``dev proxy``). The oracle here is the SDK's own ``MCPServer`` with the same tools: the
same requests go to both over real sockets and the answers must agree (status, framing,
JSON-RPC messages; session ids and pydantic's wording of validation errors aside). Then the
SDK's client uses the stub end to end, validating structured output against the schemas.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.support.sdk_stub import sdk_stub
from tests.support.servers import BackgroundLoop, RunningServer
from tunnel_core.mcpstub import SAMPLE_PROMPTS, build_stub_app

ACCEPT = "application/json, text/event-stream"


@pytest.fixture(scope="module")
def servers(bg: BackgroundLoop) -> Iterator[tuple[RunningServer, RunningServer]]:
    ours, oracle = bg.serve(build_stub_app()), bg.serve(sdk_stub())
    yield ours, oracle
    ours.stop()
    oracle.stop()


def _messages(resp: httpx2.Response) -> list[Any]:
    if resp.headers.get("content-type", "").startswith("text/event-stream"):
        return [json.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:")]
    return [resp.json()] if resp.content else []


def _normalise(msgs: list[Any]) -> list[Any]:
    out = []
    for m in msgs:
        m = json.loads(json.dumps(m))
        content = (m.get("result") or {}).get("content")
        if content and m["result"].get("isError") and content[0]["text"].startswith("Error executing tool"):
            content[0]["text"] = content[0]["text"].split("\n")[0]  # pydantic words the rest
        if isinstance(m.get("error"), dict) and m["error"]["code"] == -32700:
            m["error"]["message"] = "Parse error"  # the JSON parser's own words differ
        out.append(m)
    return out


def _exchange(base: str, script: list[tuple[str, dict[str, str], bytes]]) -> list[tuple[int, str, list[Any]]]:
    out = []
    session: str | None = None
    with httpx2.Client(trust_env=False, timeout=10) as c:
        for method, headers, body in script:
            h = dict(headers)
            if session and h.pop("session", "yes") == "yes":
                h["Mcp-Session-Id"] = session
            h.pop("session", None)
            resp = c.request(method, base + "/mcp", headers=h, content=body)
            if b'"initialize"' in body and resp.status_code == 200:
                session = resp.headers.get("mcp-session-id")
            kind = resp.headers.get("content-type", "").split(";")[0]
            out.append((resp.status_code, kind, _normalise(_messages(resp))))
    return out


def _rpc(rpc_id: int | None, method: str, params: Any = None) -> bytes:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if rpc_id is not None:
        msg["id"] = rpc_id
    if params is not None:
        msg["params"] = params
    return json.dumps(msg).encode()


POST = {"Content-Type": "application/json", "Accept": ACCEPT, "Mcp-Protocol-Version": "2025-06-18"}
SCRIPT: list[tuple[str, dict[str, str], bytes]] = [
    ("POST", {**POST, "session": "no"}, _rpc(1, "ping")),  # no session yet
    ("POST", {**POST, "Accept": "application/json"}, _rpc(1, "ping")),
    ("POST", POST, _rpc(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                          "clientInfo": {"name": "t", "version": "1"}})),
    ("POST", POST, _rpc(None, "notifications/initialized")),
    ("POST", POST, _rpc(2, "tools/list")),
    ("POST", POST, _rpc(3, "tools/call", {"name": "server_info", "arguments": {}})),
    ("POST", POST, _rpc(4, "tools/call", {"name": "echo", "arguments": {"input": "héllo"}})),
    ("POST", POST, _rpc(5, "tools/call", {"name": "uppercase", "arguments": {"input": "openai tunnel"}})),
    ("POST", POST, _rpc(6, "tools/call", {"name": "echo", "arguments": {}})),
    ("POST", POST, _rpc(7, "tools/call", {"name": "echo", "arguments": {"input": 5}})),
    ("POST", POST, _rpc(8, "tools/call", {"name": "nope", "arguments": {}})),
    ("POST", POST, _rpc(9, "ping")),
    ("POST", POST, _rpc(10, "resources/list")),
    ("POST", POST, _rpc(11, "resources/templates/list")),
    ("POST", POST, _rpc(12, "prompts/list")),
    ("POST", POST, _rpc(13, "bogus/method")),
    ("POST", POST, b"not json"),
    ("POST", {**POST, "Mcp-Session-Id": "no-such-session", "session": "no"}, _rpc(14, "ping")),
    ("DELETE", {"session": "yes"}, b""),
    ("POST", POST, _rpc(15, "ping")),  # the session is gone
]


def test_the_stub_answers_like_the_sdk_server(servers: tuple[RunningServer, RunningServer]) -> None:
    ours, oracle = servers
    got, want = _exchange(ours.url, SCRIPT), _exchange(oracle.url, SCRIPT)
    for step, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"step {step}: {SCRIPT[step][2][:60]!r}"


def test_initialize_counter_offers_the_newest_handshake_version(servers: tuple[RunningServer, RunningServer]) -> None:
    for server in servers:
        init = _rpc(1, "initialize", {"protocolVersion": "2099-01-01", "capabilities": {},
                                      "clientInfo": {"name": "t", "version": "1"}})
        (status, _, msgs), = _exchange(server.url, [("POST", POST, init)])
        assert status == 200 and msgs[0]["result"]["protocolVersion"] == "2025-11-25"


@pytest.mark.anyio
async def test_the_sdk_client_uses_the_stub_with_structured_output(
        servers: tuple[RunningServer, RunningServer]) -> None:
    ours, _ = servers
    async with streamable_http_client(ours.url + "/mcp") as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        assert [t.name for t in tools.tools] == ["server_info", "echo", "uppercase"]
        result = await session.call_tool("uppercase", {"input": "openai tunnel"})
        assert result.structured_content == {"uppercase": "OPENAI TUNNEL"} and not result.is_error
        info = await session.call_tool("server_info", {})
        assert info.structured_content is not None and info.structured_content["sample_prompts"] == SAMPLE_PROMPTS
