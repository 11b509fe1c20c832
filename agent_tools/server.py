"""The SDK server: tunnel-client operations as MCP tools, docs as resources, starter prompts.

``build_server()`` is the composition root (tests build it in-process). ``python -m
agent_tools.server`` serves it on stdio; the stdio front (``agent_tools.front``, what Codex
starts) runs it as its child and relays to it. stdout carries only MCP; logs go to stderr.
The listings (identity, prompts, resources) come from ``agent_tools.listing``, shared with the
front; the tools are also recorded in ``catalogue.json`` (``agent_tools.catalogue``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence

from mcp.server import MCPServer
from mcp.server.mcpserver.prompts.base import Prompt
from mcp.server.mcpserver.resources.types import FunctionResource

from agent_tools import admin_tools, runtime_tools, setup_tools
from agent_tools.listing import SERVER_NAME, SERVER_TITLE, resource_entries
from agent_tools.toolkit import Env, ToolSpec, build_tool, process_env
from tunnel_core import __version__
from tunnel_core.codex.prompts import SERVER_INSTRUCTIONS, STARTER_PROMPTS, StarterPrompt

ALL_SPECS: tuple[ToolSpec, ...] = (setup_tools.SPECS[0], setup_tools.SPECS[1], *runtime_tools.SPECS, *setup_tools.SPECS[2:],
                                  *admin_tools.SPECS)


def _reader(path: str) -> Callable[[], str]:
    def read() -> str:
        with open(path, encoding="utf-8") as f:
            return f.read()

    return read


def resources() -> list[FunctionResource]:
    """Every doc page and help topic, read lazily."""
    return [FunctionResource(uri=e["uri"], name=e["name"], title=e["title"], description=e["description"],
                             mime_type=e["mimeType"], fn=_reader(e["path"])) for e in resource_entries()]


def _prompt(p: StarterPrompt) -> Prompt:
    def render() -> str:
        return p.text

    return Prompt.from_function(render, name=p.name, title=p.title, description=p.description)


def build_server(env_provider: Callable[[], Env] = process_env,
                 specs: Sequence[ToolSpec] = ALL_SPECS) -> MCPServer:
    """The MCP server with every tool, resource and prompt; ``env_provider`` is read at each tool call."""
    server: MCPServer = MCPServer(
        SERVER_NAME, title=SERVER_TITLE, instructions=SERVER_INSTRUCTIONS, version=__version__,
        tools=[build_tool(s, env_provider) for s in specs], log_level="WARNING",
    )
    for r in resources():
        server.add_resource(r)
    for p in STARTER_PROMPTS:
        server.add_prompt(_prompt(p))
    return server


def main() -> int:
    """Serve on stdio until the client closes stdin."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    build_server().run("stdio")
    return 0


if __name__ == "__main__":
    sys.exit(main())
