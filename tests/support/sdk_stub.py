"""The demo tools of ``tunnel_core.mcpstub`` on the mcp SDK's own server.

Two uses: the oracle that tests/integration/test_mcp_stub.py compares the hand-written stub
with, and the HTTP upstream of bench/relay_bench.py (the same program before and after any
change to the product, so relay figures stay comparable):

    python -m tests.support.sdk_stub --port-file /tmp/port     # serves /mcp on 127.0.0.1, port written
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Annotated, Any

from mcp.server import MCPServer
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from tests.support.mcp_app import serve_at_mcp

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


def sdk_stub(name: str = "mcp-stub", version: str = "0.1.0") -> Any:
    """The demo tools on the SDK's server (what mcpstub replaced), as the oracle."""
    server: Any = MCPServer(name, version=version)

    @server.tool(description="Describe the demo MCP server and show a few sample prompts to try in ChatGPT")
    def server_info() -> Annotated[CallToolResult, ServerInfo]:
        info = ServerInfo(name=name, version=version, available_tools=["server_info", "echo", "uppercase"],
                          sample_prompts=SAMPLE_PROMPTS)
        return CallToolResult(content=[TextContent(type="text", text=f"{name} {version} demo tools: server_info, "
                                                                       "echo, uppercase")],
                              structured_content=info.model_dump())

    @server.tool(description="Echo a string back to the caller")
    def echo(input: str) -> Annotated[CallToolResult, Echoed]:
        return CallToolResult(content=[TextContent(type="text", text=input)], structured_content={"echoed": input})

    @server.tool(description="Return an uppercased copy of the provided input string")
    def uppercase(input: str) -> Annotated[CallToolResult, Uppercased]:
        return CallToolResult(content=[TextContent(type="text", text=input.upper())],
                              structured_content={"uppercase": input.upper()})

    return serve_at_mcp(server)


def main() -> None:
    import socket

    import uvicorn

    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    a = ap.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY on accepted sockets
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)
    Path(a.port_file).write_text(f"{sock.getsockname()[1]}\n")
    config = uvicorn.Config(sdk_stub(), log_config=None, access_log=False, http="httptools", ws="none",
                            timeout_keep_alive=30)  # as the product's servers: idle callers are not cut off
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
