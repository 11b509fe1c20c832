"""What the tool server lists besides its tools: server identity, starter prompts, docs and help resources.

Standard library only: the stdio front (``agent_tools.front``) answers ``initialize``,
``prompts/list`` and ``resources/list`` from here before the ``mcp`` SDK has loaded, and the
SDK server (``agent_tools.server``) registers the very same entries, so the two cannot
disagree (a drift test asks both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tunnel_core
from tunnel_core.codex.prompts import SERVER_INSTRUCTIONS, STARTER_PROMPTS

if TYPE_CHECKING:
    from pathlib import Path

SERVER_NAME = "tunnel-client"  # equals tunnel_core.codex.bundle.MCP_SERVER_NAME (checked by a test)
SERVER_TITLE = "Tunnel Client"
DOCS_URI = "tunnel-client://docs/"
HELP_URI = "tunnel-client://help/"


def docs_dir() -> Path | None:
    """The user docs: shipped in the wheel (``tunnel_core/_bundle/docs``) or the checkout's ``docs/``."""
    from pathlib import Path

    package = Path(tunnel_core.__file__).resolve().parent
    for candidate in (package / "_bundle" / "docs", package.parent / "docs"):
        if candidate.is_dir():
            return candidate
    return None


def _first_line(path: Path) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().lstrip("# ").strip()


def resource_entries() -> list[dict[str, str]]:
    """Every doc page and help topic as ``{uri, name, title, description, mimeType, path}``."""
    from tunnel_core.ops.topic_files import topic_path, topic_titles

    out: list[dict[str, str]] = []
    docs = docs_dir()
    if docs is not None:
        for p in sorted(docs.glob("*.md")):
            first = _first_line(p)
            out.append({"uri": DOCS_URI + p.name, "name": f"docs/{p.name}", "title": first or p.name,
                        "description": f"tunnel-client documentation: {first}", "mimeType": "text/markdown",
                        "path": str(p)})
    for name, title in topic_titles():
        out.append({"uri": HELP_URI + name, "name": f"help/{name}", "title": title,
                    "description": f"`tunnel-client help {name}`: {title}", "mimeType": "text/plain",
                    "path": topic_path(name)})
    return out


def resources_list() -> dict[str, Any]:
    """The ``resources/list`` result."""
    return {"resources": [{k: v for k, v in e.items() if k != "path"} for e in resource_entries()]}


def prompts_list() -> dict[str, Any]:
    """The ``prompts/list`` result: the starter prompts, none of which takes arguments."""
    return {"prompts": [{"name": p.name, "title": p.title, "description": p.description, "arguments": []}
                        for p in STARTER_PROMPTS]}


def server_info() -> dict[str, str]:
    return {"name": SERVER_NAME, "title": SERVER_TITLE, "version": tunnel_core.__version__}


def initialize_result(requested: object, protocol: dict[str, Any]) -> dict[str, Any]:
    """The ``initialize`` result for a requested protocol version, negotiated as the SDK does.

    ``protocol`` is the catalogue's record of the SDK: ``versions`` (the handshake-era versions
    it accepts), ``latest`` (its answer to anything else) and ``capabilities``.
    """
    versions = protocol["versions"]
    version = requested if isinstance(requested, str) and requested in versions else protocol["latest"]
    return {"capabilities": protocol["capabilities"], "instructions": SERVER_INSTRUCTIONS,
            "protocolVersion": version, "serverInfo": server_info()}
