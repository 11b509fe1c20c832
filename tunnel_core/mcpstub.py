"""The embedded demo MCP server (``dev mcp-stub``, ``run --embedded-mcp-stub``, ``dev proxy``).

Tools ``server_info``, ``echo {input}`` and ``uppercase {input}`` with the reference's
names and outputs, served over Streamable HTTP at ``/mcp``, plus a small in-memory OAuth
authorization server (``tunnel_core.oauth.devserver``: metadata, dynamic client
registration, authorization code with PKCE, token and refresh). ``/mcp`` is open unless
``StubOAuthOptions.require_auth`` (``dev mcp-stub --require-auth``) asks for a bearer token.

The MCP side is a small hand-written handler of the handshake-era Streamable HTTP transport
(protocol versions 2024-11-05 to 2025-11-25: ``initialize`` opens a session, requests are
answered as one SSE event, notifications with 202, ``DELETE`` ends the session, ``GET``
opens the session's server stream). Why not the mcp SDK's server: three fixed tools do not
need it, and in ``dev proxy`` it was a third of the process (about 26 MB of 77 MB) and most
of its start. Its answers are checked against the SDK's own, message for message, by
tests/integration/test_mcp_stub.py.
"""

from __future__ import annotations

import json
import secrets
from collections import OrderedDict
from typing import Any

import anyio
from starlette.applications import Starlette

from tunnel_core.oauth.devserver import DevAuthServer, StubOAuthOptions

SAMPLE_PROMPTS = [
    "Use the echo tool with input 'hello from tunnel-client'.",
    "Use the uppercase tool on 'openai tunnel'.",
    "Call server_info and summarize the available demo tools.",
]
PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
MAX_SESSIONS = 1024  # oldest sessions are forgotten beyond this (every initialize creates one)
MAX_BODY = 1024 * 1024

_STR = {"type": "string"}


def _input_schema(tool: str, *fields: str) -> dict[str, Any]:
    props = {f: {"title": f.capitalize(), **_STR} for f in fields}
    schema: dict[str, Any] = {"properties": props}
    if fields:
        schema["required"] = list(fields)
    return {**schema, "type": "object", "title": f"{tool}Arguments"}


TOOLS: list[dict[str, Any]] = [
    {"description": "Describe the demo MCP server and show a few sample prompts to try in ChatGPT",
     "inputSchema": _input_schema("server_info"), "name": "server_info",
     "outputSchema": {"properties": {"name": {"title": "Name", **_STR}, "version": {"title": "Version", **_STR},
                                     "available_tools": {"items": _STR, "title": "Available Tools", "type": "array"},
                                     "sample_prompts": {"items": _STR, "title": "Sample Prompts", "type": "array"}},
                      "required": ["name", "version", "available_tools", "sample_prompts"], "type": "object",
                      "title": "ServerInfo"}},
    {"description": "Echo a string back to the caller", "inputSchema": _input_schema("echo", "input"), "name": "echo",
     "outputSchema": {"properties": {"echoed": {"title": "Echoed", **_STR}}, "required": ["echoed"],
                      "type": "object", "title": "Echoed"}},
    {"description": "Return an uppercased copy of the provided input string",
     "inputSchema": _input_schema("uppercase", "input"), "name": "uppercase",
     "outputSchema": {"properties": {"uppercase": {"title": "Uppercase", **_STR}}, "required": ["uppercase"],
                      "type": "object", "title": "Uppercased"}},
]
CAPABILITIES = {"prompts": {"listChanged": False}, "resources": {"listChanged": False, "subscribe": False},
                "tools": {"listChanged": False}}


def _text_result(text: str, structured: dict[str, Any] | None = None, *, error: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"content": [{"text": text, "type": "text"}], "isError": error}
    if structured is not None:
        result["structuredContent"] = structured
    return result


class StubServer:
    """The demo tools and the JSON-RPC methods a handshake-era client uses."""

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version

    def call_tool(self, params: Any) -> dict[str, Any]:
        if not isinstance(params, dict) or not isinstance(params.get("name"), str):
            raise _RPCError(-32602, "Invalid request parameters", "")
        tool, args = params["name"], params.get("arguments") or {}
        if tool == "server_info":
            info = {"name": self.name, "version": self.version, "available_tools": ["server_info", "echo", "uppercase"],
                    "sample_prompts": SAMPLE_PROMPTS}
            return _text_result(f"{self.name} {self.version} demo tools: server_info, echo, uppercase", info)
        if tool not in ("echo", "uppercase"):
            return _text_result(f"Unknown tool: {tool}", error=True)
        value = args.get("input") if isinstance(args, dict) else None
        if not isinstance(value, str):
            why = "Field required" if not isinstance(args, dict) or "input" not in args else \
                "Input should be a valid string"
            return _text_result(f"Error executing tool {tool}: 1 validation error for {tool}Arguments\ninput\n  {why}",
                                error=True)
        if tool == "echo":
            return _text_result(value, {"echoed": value})
        return _text_result(value.upper(), {"uppercase": value.upper()})

    def answer(self, method: str, params: Any) -> dict[str, Any]:
        """The result of one request; raises _RPCError for a JSON-RPC error answer."""
        if method == "initialize":
            asked = params.get("protocolVersion") if isinstance(params, dict) else None
            version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[-1]
            return {"capabilities": CAPABILITIES, "protocolVersion": version,
                    "serverInfo": {"name": self.name, "version": self.version}}
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": TOOLS}
        if method == "tools/call":
            return self.call_tool(params)
        empty = {"resources/list": "resources", "resources/templates/list": "resourceTemplates",
                 "prompts/list": "prompts"}
        if method in empty:
            return {empty[method]: []}
        raise _RPCError(-32601, "Method not found", method)


class _RPCError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


class StreamableHTTP:
    """ASGI endpoint for ``/mcp``: sessions, SSE answers, 202 for notifications, DELETE and GET."""

    def __init__(self, server: StubServer) -> None:
        self.server = server
        self.sessions: OrderedDict[str, anyio.Event] = OrderedDict()  # id -> set when the session ends
        self.streams: set[str] = set()  # sessions with an open GET stream

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        if method == "POST":
            await self._post(headers, receive, send)
        elif method == "GET":
            await self._get(headers, receive, send)
        elif method == "DELETE":
            if (err := self._session_error(headers)) is not None:
                await _json(send, *err)
                return
            self.sessions.pop(headers["mcp-session-id"]).set()
            await _send(send, 200, [(b"content-type", b"application/json")], b"")
        else:
            await _json(send, 405, _error(None, -32600, "Method Not Allowed"))

    def _session_error(self, headers: dict[str, str]) -> tuple[int, dict[str, Any]] | None:
        sid = headers.get("mcp-session-id")
        if not sid:
            return 400, _error(None, -32600, "Bad Request: Missing session ID")
        if sid not in self.sessions:
            return 404, _error(None, -32600, "Session not found")
        version = headers.get("mcp-protocol-version")
        if version is not None and version not in PROTOCOL_VERSIONS:
            return 400, _error(None, -32600, f"Bad Request: Unsupported protocol version: {version}. "
                                             f"Supported versions: {', '.join(PROTOCOL_VERSIONS)}")
        return None

    async def _post(self, headers: dict[str, str], receive: Any, send: Any) -> None:
        accept = headers.get("accept", "")
        if not (_accepts(accept, "application/json") and _accepts(accept, "text/event-stream")):
            await _json(send, 406, _error(None, -32600,
                                          "Not Acceptable: Client must accept both application/json and "
                                          "text/event-stream"))
            return
        if not headers.get("content-type", "").lower().startswith("application/json"):
            await _json(send, 415, _error(None, -32600,
                                          "Unsupported Media Type: Content-Type must be application/json"))
            return
        body = await _body(receive)
        try:
            msg = json.loads(body) if body is not None else None
        except ValueError as exc:
            await _json(send, 400, _error(None, -32700, f"Parse error: {exc}"))
            return
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            await _json(send, 400, _error(None, -32600, "Invalid Request: a JSON-RPC 2.0 message object is required"))
            return
        extra: list[tuple[bytes, bytes]] = []
        if msg.get("method") == "initialize" and "id" in msg:
            sid = secrets.token_hex(16)
            self.sessions[sid] = anyio.Event()
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)[1].set()
        else:
            if (err := self._session_error(headers)) is not None:
                await _json(send, *err)
                return
            sid = headers["mcp-session-id"]
        extra.append((b"mcp-session-id", sid.encode()))
        if "id" not in msg or "method" not in msg:  # a notification, or an answer to nothing we asked
            await _send(send, 202, [(b"content-type", b"application/json"), *extra], b"")
            return
        try:
            reply = {"jsonrpc": "2.0", "id": msg["id"], "result": self.server.answer(msg["method"], msg.get("params"))}
        except _RPCError as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            reply = {"jsonrpc": "2.0", "id": msg["id"], "error": error}
        event = b"event: message\r\ndata: " + json.dumps(reply, separators=(",", ":")).encode() + b"\r\n\r\n"
        await _send(send, 200, [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform"),
                                (b"x-accel-buffering", b"no"), *extra], event)

    async def _get(self, headers: dict[str, str], receive: Any, send: Any) -> None:
        if not _accepts(headers.get("accept", ""), "text/event-stream"):
            await _json(send, 406, _error(None, -32600, "Not Acceptable: Client must accept text/event-stream"))
            return
        if (err := self._session_error(headers)) is not None:
            await _json(send, *err)
            return
        sid = headers["mcp-session-id"]
        if sid in self.streams:
            await _json(send, 409, _error(None, -32600, "Conflict: Only one SSE stream is allowed per session"))
            return
        self.streams.add(sid)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache, no-transform"),
                (b"x-accel-buffering", b"no"), (b"mcp-session-id", sid.encode())]})
            await send({"type": "http.response.body", "body": b"", "more_body": True})
            ended = self.sessions[sid]
            async with anyio.create_task_group() as tg:  # the demo never sends server-initiated messages

                async def until_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()

                tg.start_soon(until_disconnect)
                await ended.wait()
                tg.cancel_scope.cancel()
            await send({"type": "http.response.body", "body": b""})
        finally:
            self.streams.discard(sid)


def _accepts(accept: str, media: str) -> bool:
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    major = media.split("/")[0]
    return any(k in (media, "*/*", f"{major}/*") for k in kinds)


def _error(rpc_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": rpc_id, "error": {"code": code, "message": message}}


async def _body(receive: Any) -> bytes | None:
    """The request body; None when it is over MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    await _send(send, status, [(b"content-type", b"application/json")], json.dumps(body, separators=(",", ":")).encode())


def build_stub_app(name: str = "mcp-stub", version: str = "0.1.0", oauth: StubOAuthOptions | None = None) -> Any:
    """The demo server as an ASGI app; with ``oauth.require_auth`` set, ``/mcp`` needs a bearer token."""
    auth = DevAuthServer(oauth or StubOAuthOptions())
    mcp = StreamableHTTP(StubServer(name, version))
    others = Starlette(routes=auth.routes())

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in ("/mcp", "/mcp/"):
            await mcp(scope, receive, send)
        else:
            await others(scope, receive, send)

    return auth.protect(app)
