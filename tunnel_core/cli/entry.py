"""The ``tunnel-client`` console script.

``tunnel-client codex mcp-server`` is started by Codex, which builds a turn's tool list about a
second later whether or not the server has answered its handshake. So that command goes
straight to the agent tools' stdio front (standard library only) before the CLI and its parser
are imported. ``tunnel-client help TOPIC`` prints a shipped page: argparse (with ``re``) is
most of what it would cost, so a topic page is printed from here, as the ``help`` command
prints it. Every other command (and ``help`` of anything else) is ``tunnel_core.cli.main``.
For ``run``, garbage collection is switched off from here until the relay is up (cli/runcmd.py).
"""

from __future__ import annotations

import sys


def entrypoint() -> None:
    argv = sys.argv[1:]
    if argv[:1] == ["run"]:
        import gc

        gc.disable()  # the relay's start, imports included, runs without cyclic collections: see cli/runcmd.py
    if argv == ["codex", "mcp-server"]:
        from agent_tools.front import main as serve

        sys.exit(serve())
    if len(argv) == 2 and argv[0] == "help" and not argv[1].startswith("-"):
        from tunnel_core.ops.topic_files import topic_text

        text = topic_text(argv[1].strip())
        if text is not None:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.exit(0)
    from tunnel_core.cli.main import entrypoint as run

    run()
