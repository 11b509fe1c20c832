"""Command-line entry point. Parsing only: each command calls one function and renders its result.

Heavy modules (anyio, httpx2, uvicorn, mcp) are imported inside the command functions so
``--help`` and ``--version`` answer fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from tunnel_core import __version__
from tunnel_core.config.specs import SPECS
from tunnel_core.errors import TunnelClientError

SETUP_PAGES = """setup pages:
  Tunnels management     https://platform.openai.com/settings/organization/tunnels
  Runtime API keys       https://platform.openai.com/settings/organization/api-keys
  Admin API keys         https://platform.openai.com/settings/organization/admin-keys
  ChatGPT connectors     https://chatgpt.com/#settings/Connectors

try it locally with no account:
  tunnel-client dev proxy          local tunnel service + demo MCP server + client; prints an MCP URL
"""


@dataclass(slots=True)
class IO:
    env: Mapping[str, str]
    stdout: TextIO
    stderr: TextIO

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()


Handler = Callable[[argparse.Namespace, IO], int]


def add_config_selection(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("config file selection (mutually exclusive)")
    g.add_argument("--config", metavar="PATH", help="YAML config file (TUNNEL_CLIENT_CONFIG)")
    g.add_argument("--profile", metavar="NAME", help="profile name in the profile directory (TUNNEL_CLIENT_PROFILE)")
    g.add_argument("--profile-file", metavar="PATH", help="profile file <name>.yaml (TUNNEL_CLIENT_PROFILE_FILE)")
    g.add_argument("--profile-dir", metavar="DIR", help="profile directory (TUNNEL_CLIENT_PROFILE_DIR)")


def add_runtime_flags(p: argparse.ArgumentParser) -> None:
    """Every runtime setting of the table, with its canonical flag and hidden aliases."""
    g = p.add_argument_group("runtime settings (flag > env > YAML > default)")
    for spec in SPECS:
        env = f" [{spec.env}]" if spec.env else ""
        default = "" if spec.default in (None, "") else f" (default {spec.default})"
        g.add_argument(
            spec.flag, dest=spec.dest, action="append" if spec.repeat else "store", metavar=spec.metavar,
            help=f"{spec.help}{env}{default}",
            nargs="?" if spec.boolean else None, const="true" if spec.boolean else None,
        )
        for alias in spec.aliases:
            g.add_argument(alias, dest=spec.dest + "__alias", action="append" if spec.repeat else "store",
                           help=argparse.SUPPRESS)
    add_config_selection(p)


def merge_aliases(ns: argparse.Namespace) -> dict[str, object]:
    """Flags as a dict by Spec.dest, hidden aliases applied only where the canonical flag is unset."""
    flags = vars(ns).copy()
    for spec in SPECS:
        alias = flags.pop(spec.dest + "__alias", None)
        if flags.get(spec.dest) is None and alias is not None:
            flags[spec.dest] = alias
    return flags


def build_parser() -> argparse.ArgumentParser:
    from tunnel_core.cli import admincmd, codexcmd, devcmd, opscmd, profilescmd, runcmd, runtimescmd, servecmd

    parser = argparse.ArgumentParser(
        prog="tunnel-client",
        description="Reach a private MCP server from ChatGPT, Codex or any hosted MCP client with no inbound port.",
        epilog=SETUP_PAGES + opscmd.topics_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runcmd.register(sub)
    devcmd.register(sub)
    servecmd.register(sub)
    profilescmd.register(sub)
    opscmd.register(sub)
    admincmd.register(sub)
    runtimescmd.register(sub)
    codexcmd.register(sub)
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
