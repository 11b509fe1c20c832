"""The agent tool server: tunnel-client operations as MCP tools, docs as resources, starter prompts.

``build_server()`` is the composition root (tests build it in-process); ``main()`` serves it on
stdio for Codex. stdout carries only MCP; logs go to stderr.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from mcp.server import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.server.mcpserver.resources.types import FunctionResource

from agent_tools import admin_tools, runtime_tools, setup_tools
from agent_tools.toolkit import Env, ToolSpec, build_tool, process_env
from tunnel_core import __version__
from tunnel_core.codex.bundle import MCP_SERVER_NAME
from tunnel_core.codex.knowledge import docs_dir
from tunnel_core.codex.prompts import SERVER_INSTRUCTIONS, STARTER_PROMPTS, StarterPrompt
from tunnel_core.ops.topic_files import TOPIC_DIR, topic_titles

ALL_SPECS: tuple[ToolSpec, ...] = (*setup_tools.SPECS, *runtime_tools.SPECS, *admin_tools.SPECS)
DOCS_URI = "tunnel-client://docs/"
HELP_URI = "tunnel-client://help/"


def _reader(path: str) -> Callable[[], str]:
    def read() -> str:
        with open(path, encoding="utf-8") as f:
            return f.read()

    return read


def resources() -> list[FunctionResource]:
    """Every doc page and help topic, read lazily."""
    out: list[FunctionResource] = []
    docs = docs_dir()
    if docs is not None:
        for p in sorted(docs.glob("*.md")):
            first = p.read_text(encoding="utf-8").split("\n", 1)[0].lstrip("# ").strip()
            out.append(FunctionResource(uri=DOCS_URI + p.name, name=f"docs/{p.name}", title=first or p.name,
                                        description=f"tunnel-client documentation: {first}",
                                        mime_type="text/markdown", fn=_reader(str(p))))
    for name, title in topic_titles():
        out.append(FunctionResource(uri=HELP_URI + name, name=f"help/{name}", title=title,
                                    description=f"`tunnel-client help {name}`: {title}", mime_type="text/plain",
                                    fn=_reader(str(TOPIC_DIR / f"{name}.txt"))))
    return out


def _prompt(p: StarterPrompt) -> Prompt:
    def render() -> str:
        return p.text

    return Prompt.from_function(render, name=p.name, title=p.title, description=p.description)


def build_server(env_provider: Callable[[], Env] = process_env,
                 specs: Sequence[ToolSpec] = ALL_SPECS) -> MCPServer:
    """The MCP server with every tool, resource and prompt; ``env_provider`` is read at each tool call."""
    server: MCPServer = MCPServer(
        MCP_SERVER_NAME, title="Tunnel Client", instructions=SERVER_INSTRUCTIONS, version=__version__,
        tools=[build_tool(s, env_provider) for s in specs], log_level="WARNING",
    )
    for r in resources():
        server.add_resource(r)
    for p in STARTER_PROMPTS:
        server.add_prompt(_prompt(p))
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Serve on stdio until the client closes stdin."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build_server().run("stdio")
    return 0
