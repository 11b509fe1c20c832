"""The ``tunnel-client`` console script.

``tunnel-client codex mcp-server`` is started by Codex, which builds a turn's tool list about a
second later whether or not the server has answered its handshake. So that command goes
straight to the agent tools' stdio front (standard library only) before the CLI and its parser
are imported; every other command is ``tunnel_core.cli.main``.
"""

from __future__ import annotations

import sys


def entrypoint() -> None:
    if sys.argv[1:] == ["codex", "mcp-server"]:
        from agent_tools.front import main as serve

        sys.exit(serve())
    from tunnel_core.cli.main import entrypoint as run

    run()
