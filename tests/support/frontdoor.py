"""Raw calls to the tunnel service's MCP front door, with exact control over headers."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx2

ACCEPT_BOTH = "application/json, text/event-stream"
PROTOCOL = "2025-06-18"
_ids = itertools.count(1000)


def next_id() -> int:
    return next(_ids)


def http_client() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(trust_env=False, timeout=httpx2.Timeout(15.0))


def messages(resp: httpx2.Response) -> list[Any]:
    """The JSON-RPC messages of a front-door answer, whether JSON or SSE."""
    ctype = resp.headers.get("content-type", "")
    if ctype.startswith("text/event-stream"):
        return [json.loads(line[5:]) for line in resp.text.splitlines() if line.startswith("data:")]
    return [resp.json()] if resp.content else []


async def post(
    client: httpx2.AsyncClient, url: str, message: dict[str, Any], headers: dict[str, str] | None = None,
    *, accept: str = ACCEPT_BOTH,
) -> tuple[httpx2.Response, list[Any]]:
    h = {"Content-Type": "application/json", "Accept": accept, **(headers or {})}
    resp = await client.post(url, content=json.dumps(message).encode(), headers=h)
    return resp, messages(resp)


def request(method: str, params: dict[str, Any] | None = None, rpc_id: Any = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "id": next_id() if rpc_id is None else rpc_id, "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def notification(method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        msg["params"] = params
    return msg


def initialize_params() -> dict[str, Any]:
    return {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "relay-tests", "version": "1"}}


async def open_session(client: httpx2.AsyncClient, url: str) -> dict[str, str]:
    """Handshake-era initialize + notifications/initialized; returns the headers for later requests."""
    resp, msgs = await post(client, url, request("initialize", initialize_params()))
    assert resp.status_code == 200, resp.text
    session = resp.headers.get("mcp-session-id")
    assert session, f"no Mcp-Session-Id in {dict(resp.headers)}"
    assert msgs[-1]["result"]["protocolVersion"] == PROTOCOL
    headers = {"Mcp-Session-Id": session, "Mcp-Protocol-Version": PROTOCOL}
    ack, _ = await post(client, url, notification("notifications/initialized"), headers)
    assert ack.status_code == 202, ack.text
    return headers
