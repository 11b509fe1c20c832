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
# A result as no JSON encoder would write it: odd whitespace, keys out of order, escaped and raw
# non-ASCII text, a surrogate pair, numbers beyond a double. ``ID`` is replaced by the request's id.
ODD_RESULT = (b'{ "result" : {"z":1, "a":[1.0000000000000000001, 123456789012345678901234567890, 1e400, -0.0],'
              b'\n  "s":"caf\\u00e9 \xc3\xa9 \\ud83d\\ude00 \\"q\\" \\/"},\t"id":ID,  "jsonrpc":"2.0" }')
# A notification split over two data lines (the relay joins them with LF, as SSE says).
ODD_NOTE_LINES = (b'{"method":"notifications/message",', b' "params":{"data":"\\u2713 d\xc3\xa9j\xc3\xa0","level":"info"}, "jsonrpc":"2.0"}')


def odd_result(rpc_id: Any) -> bytes:
    return ODD_RESULT.replace(b"ID", json.dumps(rpc_id).encode())


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
        if method == "odd/raw_json":
            return Response(odd_result(rpc_id), media_type="application/json")
        if method == "odd/raw_sse":  # CRLF line ends, as some servers write them
            note = b"data: " + ODD_NOTE_LINES[0] + b"\r\ndata: " + ODD_NOTE_LINES[1] + b"\r\n\r\n"
            lines = odd_result(rpc_id).split(b"\n")  # its line break becomes a second data line
            final = b"event: message\r\n" + b"".join(b"data: " + line + b"\r\n" for line in lines) + b"\r\n"
            return StreamingResponse(iter([note, final]), media_type="text/event-stream")
        if method == "odd/wrong_id":
            return JSONResponse({"jsonrpc": "2.0", "id": "someone-else", "result": {}})
        return JSONResponse({"jsonrpc": "2.0", "id": rpc_id, "error": {"code": -32601, "message": "Method not found"}},
                            status_code=200)

    return Starlette(routes=[Route("/mcp", mcp, methods=["POST", "DELETE"])])
