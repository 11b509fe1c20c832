"""The embedded demo MCP server (``dev mcp-stub``, ``run --embedded-mcp-stub``).

Tools ``server_info``, ``echo {input}`` and ``uppercase {input}`` with the reference's
names and outputs, served over Streamable HTTP at ``/mcp``, plus minimal OAuth metadata
documents so discovery has something to find.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

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


def build_stub_app(name: str = "mcp-stub", version: str = "0.1.0") -> Starlette:
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

    def base(request: Request) -> str:
        return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"

    async def prmd(request: Request) -> JSONResponse:
        b = base(request)
        return JSONResponse({"resource": f"{b}/mcp", "authorization_servers": [b],
                             "scopes_supported": ["read", "write"]})

    async def asm(request: Request) -> JSONResponse:
        b = base(request)
        return JSONResponse({
            "issuer": b,
            "authorization_endpoint": f"{b}/authorize",
            "token_endpoint": f"{b}/token",
            "jwks_uri": f"{b}/jwks",
            "registration_endpoint": f"{b}/register",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        })

    async def jwks(_: Request) -> JSONResponse:
        return JSONResponse({"keys": []})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with server.session_manager.run():
            yield

    return Starlette(
        routes=[
            Route("/.well-known/oauth-protected-resource", prmd),
            Route("/.well-known/oauth-protected-resource/mcp", prmd),
            Route("/.well-known/oauth-authorization-server", asm),
            Route("/jwks", jwks),
            Mount("/", app=mcp_app),
        ],
        lifespan=lifespan,
    )
