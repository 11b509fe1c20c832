"""A raw Starlette "MCP server" with odd behaviours, selected by the JSON-RPC method.

It answers ``initialize`` like a normal server (so the client's startup probe passes) and
records every request it receives, so tests can assert what reached the target.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

ODD_SESSION = "odd-session-1"
UNAVAILABLE_BODY = "maintenance: db-7.internal.example is down (trace 8d1f)"
PRESERVED_ERROR = {"code": -32001, "message": "Unauthorized: token expired", "data": {"hint": "sign in again"}}
WWW_AUTHENTICATE = 'Bearer resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource/mcp"'


@dataclass(slots=True)
class Received:
    method: str
    headers: list[tuple[str, str]]
    body: Any

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass(slots=True)
class OddState:
    received: list[Received] = field(default_factory=list)

    def for_rpc(self, method: str) -> list[Received]:
        return [r for r in self.received if isinstance(r.body, dict) and r.body.get("method") == method]


def _sse(*messages: dict[str, Any]) -> bytes:
    return b"".join(b"event: message\ndata: " + json.dumps(m).encode() + b"\n\n" for m in messages)


def build_odd_app(state: OddState) -> Starlette:
    async def mcp(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        state.received.append(Received(request.method, list(request.headers.items()), body))
        if request.method == "DELETE":
            return Response(status_code=204, headers={"Mcp-Session-Id": request.headers.get("mcp-session-id", "")})
        if not isinstance(body, dict):
            return PlainTextResponse("bad request", status_code=400)
        method, rpc_id = body.get("method"), body.get("id")
        if "id" not in body:
            return Response(status_code=202)  # a notification
        if method == "initialize":
            return JSONResponse(
                {"jsonrpc": "2.0", "id": rpc_id, "result": {
                    "protocolVersion": "2025-06-18", "capabilities": {"tools": {}},
                    "serverInfo": {"name": "odd", "version": "0"}}},
                headers={"Mcp-Session-Id": ODD_SESSION},
            )
        if method == "odd/jsonrpc_error":
            return JSONResponse(
                {"jsonrpc": "2.0", "id": rpc_id, "error": PRESERVED_ERROR},
                status_code=401,
                headers={"WWW-Authenticate": WWW_AUTHENTICATE, "X-Internal-Debug": "node-7"},
            )
        if method == "odd/unavailable":
            return PlainTextResponse(UNAVAILABLE_BODY, status_code=503)
        if method == "odd/echo_headers":
            return JSONResponse(
                {"jsonrpc": "2.0", "id": rpc_id, "result": {"headers": list(request.headers.items())}},
                headers={"Mcp-Session-Id": ODD_SESSION, "Set-Cookie": "track=1", "X-Powered-By": "odd",
                         "Mcp-Protocol-Version": "2025-06-18"},
            )
        if method == "odd/sse_then_eof":
            note = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "x"}}
            return StreamingResponse(iter([_sse(note)]), media_type="text/event-stream")
        if method == "odd/wrong_id":
            return JSONResponse({"jsonrpc": "2.0", "id": "someone-else", "result": {}})
        return JSONResponse({"jsonrpc": "2.0", "id": rpc_id, "error": {"code": -32601, "message": "Method not found"}},
                            status_code=200)

    return Starlette(routes=[Route("/mcp", mcp, methods=["POST", "DELETE"])])
