"""Command-line entry point. Parsing only: each command calls one function and renders its result.

Heavy modules (anyio, httpx2, uvicorn, mcp) are imported inside the command functions so
``--help`` and ``--version`` answer fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TextIO

from tunnel_core import __version__
from tunnel_core.cli.console import IO, Handler
from tunnel_core.errors import TunnelClientError

SETUP_PAGES = """setup pages:
  Tunnels management     https://platform.openai.com/settings/organization/tunnels
  Runtime API keys       https://platform.openai.com/settings/organization/api-keys
  Admin API keys         https://platform.openai.com/settings/organization/admin-keys
  ChatGPT connectors     https://chatgpt.com/#settings/Connectors

try it locally with no account:
  tunnel-client dev proxy          local tunnel service + demo MCP server + client; prints an MCP URL
"""


def build_parser() -> argparse.ArgumentParser:
    from tunnel_core.cli import (
        admincmd,
        codexcmd,
        completioncmd,
        devcmd,
        opscmd,
        profilescmd,
        runcmd,
        runtimescmd,
        servecmd,
    )

    parser = argparse.ArgumentParser(
        prog="tunnel-client",
        description="Reach a private MCP server from ChatGPT, Codex or any hosted MCP client with no inbound port.",
        epilog=SETUP_PAGES + opscmd.topics_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--version", action="version", version=__version__,
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runcmd.register(sub)
    devcmd.register(sub)
    servecmd.register(sub)
    profilescmd.register(sub)
    opscmd.register(sub, parser)
    admincmd.register(sub)
    runtimescmd.register(sub)
    codexcmd.register(sub)
    completioncmd.register(sub, parser)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the CLI; returns the process exit code."""
    io = IO(env if env is not None else os.environ, stdout or sys.stdout, stderr or sys.stderr)
    parser = build_parser()
    # argparse writes usage/--help to the process streams and exits 2 on a bad command
    # line; keep output on the injected streams and make usage errors exit 1 (2 means
    # "a check failed" for doctor and health).
    try:
        with contextlib.redirect_stdout(io.stdout), contextlib.redirect_stderr(io.stderr):
            args = parser.parse_args(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        return 1 if code == 2 else code
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(io.stdout)
        return 0
    try:
        return handler(args, io)
    except TunnelClientError as exc:
        io.err(f"{getattr(args, 'error_prefix', 'tunnel-client')}: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def entrypoint() -> None:
    sys.exit(main())
