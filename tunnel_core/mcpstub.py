"""The embedded demo MCP server (``dev mcp-stub``, ``run --embedded-mcp-stub``).

Tools ``server_info``, ``echo {input}`` and ``uppercase {input}`` with the reference's
names and outputs, served over Streamable HTTP at ``/mcp``, plus a small in-memory OAuth
authorization server (``tunnel_core.oauth.devserver``: metadata, dynamic client
registration, authorization code with PKCE, token and refresh). ``/mcp`` is open unless
``StubOAuthOptions.require_auth`` (``dev mcp-stub --require-auth``) asks for a bearer token.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.routing import Mount

from tunnel_core.oauth.devserver import DevAuthServer, StubOAuthOptions

SAMPLE_PROMPTS = [
    "Use the echo tool with input 'hello from tunnel-client'.",
    "Use the uppercase tool on 'openai tunnel'.",
    "Call server_info and summarize the available demo tools.",
]


class ServerInfo(BaseModel):
    name: str
    version: str
    available_tools: list[str]
    sample_prompts: list[str]


class Echoed(BaseModel):
    echoed: str


class Uppercased(BaseModel):
    uppercase: str


def build_stub_app(name: str = "mcp-stub", version: str = "0.1.0", oauth: StubOAuthOptions | None = None) -> Any:
    """The demo server as an ASGI app; with ``oauth.require_auth`` set, ``/mcp`` needs a bearer token."""
    auth = DevAuthServer(oauth or StubOAuthOptions())
    server: Any = MCPServer(name, version=version)

    @server.tool(description="Describe the demo MCP server and show a few sample prompts to try in ChatGPT")
    def server_info() -> Annotated[CallToolResult, ServerInfo]:
        info = ServerInfo(name=name, version=version, available_tools=["server_info", "echo", "uppercase"],
                          sample_prompts=SAMPLE_PROMPTS)
        return CallToolResult(
            content=[TextContent(type="text", text=f"{name} {version} demo tools: server_info, echo, uppercase")],
            structured_content=info.model_dump(),
        )

    @server.tool(description="Echo a string back to the caller")
    def echo(input: str) -> Annotated[CallToolResult, Echoed]:
        return CallToolResult(content=[TextContent(type="text", text=input)],
                              structured_content={"echoed": input})

    @server.tool(description="Return an uppercased copy of the provided input string")
    def uppercase(input: str) -> Annotated[CallToolResult, Uppercased]:
        text = input.upper()
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structured_content={"uppercase": text})

    mcp_app = server.streamable_http_app(streamable_http_path="/mcp")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    app = Starlette(routes=[*auth.routes(), Mount("/", app=mcp_app)], lifespan=lifespan)
    return auth.protect(app)
