"""A small real MCP server (mcp 2.x ``MCPServer``) used as the private target in relay tests.

Tools:
- ``echo {text}``: returns the text.
- ``progress {steps, gate}``: reports ``steps`` progress notifications; with a ``gate`` name it
  stops after the first one until the test opens that gate, which proves notifications are
  relayed while the call is still running (not buffered until the end).
- ``fail {message}``: raises ``ToolError``, so the server answers with an ``isError`` tool result.
- ``rpc_error {code, message}``: raises ``MCPError``, so the server answers with a JSON-RPC error.
- ``seen_headers``: the HTTP request headers the MCP server received.
- ``ask {question, timeout}``: sends ``elicitation/create`` to the caller inside this call's
  stream and waits ``timeout`` seconds for the answer; returns the caller's action (``accept``
  with its ``answer``, ``decline``, ``cancel``) or, when nobody answers in time, this server's
  own timeout as a tool error.
- ``ping_caller``: sends ``ping`` to the caller inside this call; returns ``pong`` once answered.
- ``shout {text}``: sends ``text`` as a log message (``notifications/message``) tied to this
  call, then returns it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp.types import ElicitRequest, ElicitRequestFormParams, ElicitResult, EmptyResult, PingRequest
from starlette.applications import Starlette
from starlette.routing import Mount

GATE_TIMEOUT = 15.0


class Gates:
    """Named one-shot gates. Only touch from the server's event loop (``BackgroundLoop.call``)."""

    def __init__(self) -> None:
        self._events: dict[str, anyio.Event] = {}

    def _get(self, name: str) -> anyio.Event:
        if name not in self._events:
            self._events[name] = anyio.Event()
        return self._events[name]

    def open(self, name: str) -> None:
        self._get(name).set()

    async def wait(self, name: str) -> None:
        with anyio.fail_after(GATE_TIMEOUT):
            await self._get(name).wait()



def serve_at_mcp(server: MCPServer) -> Starlette:
    """``server``'s streamable HTTP transport at ``/mcp``, with its session manager running for the app's life."""
    mcp_app = server.streamable_http_app(streamable_http_path="/mcp")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return Starlette(routes=[Mount("/", app=mcp_app)], lifespan=lifespan)


def build_mcp_app(gates: Gates) -> Starlette:
    server = MCPServer("relay-test-server", version="1.2.3")

    @server.tool(description="Return the given text")
    def echo(text: str) -> str:
        return text

    @server.tool(description="Report progress `steps` times, optionally pausing at a gate after the first")
    async def progress(steps: int, ctx: Context, gate: str = "") -> str:
        for i in range(1, steps + 1):
            await ctx.report_progress(i, steps, f"step {i}")
            if gate and i == 1:
                await gates.wait(gate)
        return f"done after {steps} steps"

    @server.tool(description="Always fails with a tool error")
    def fail(message: str) -> str:
        raise ToolError(message)

    @server.tool(description="Always fails with a JSON-RPC error")
    def rpc_error(code: int, message: str) -> str:
        raise MCPError(code, message, {"from": "relay-test-server"})

    @server.tool(description="The HTTP request headers this server received")
    def seen_headers(ctx: Context) -> dict[str, str]:
        return {k.lower(): v for k, v in (ctx.headers or {}).items()}

    @server.tool(description="Ask the caller a question (elicitation) and wait `timeout` seconds for the answer")
    async def ask(question: str, ctx: Context, timeout: float = 10.0) -> str:
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
        request = ElicitRequest(params=ElicitRequestFormParams(message=question, requested_schema=schema))
        try:
            result = await ctx.session.send_request(
                request, ElicitResult, request_read_timeout_seconds=timeout,
                metadata=ServerMessageMetadata(related_request_id=ctx.request_id))
        except MCPError as exc:
            raise ToolError(f"no answer from the caller: {exc.error.message}") from None
        answer = (result.content or {}).get("answer", "")
        return f"{result.action}: {answer}" if answer else result.action

    @server.tool(description="Ping the caller from inside this call")
    async def ping_caller(ctx: Context) -> str:
        await ctx.session.send_request(PingRequest(), EmptyResult, request_read_timeout_seconds=GATE_TIMEOUT,
                                       metadata=ServerMessageMetadata(related_request_id=ctx.request_id))
        return "pong"

    @server.tool(description="Log `text` at info level inside this call, then return it")
    async def shout(text: str, ctx: Context) -> str:
        await ctx.info(text)
        return text

    return serve_at_mcp(server)
