"""Command-line entry point. Parsing only: each command calls one function and renders its result.

Heavy modules (anyio, httpx2, uvicorn, mcp) are imported inside the command functions, and
only the command being run is registered (the others are listed from ``cli/commands.py``),
so ``--help``, ``help TOPIC`` and ``--version`` answer in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence

from tunnel_core import __version__
from tunnel_core.cli.console import IO, Handler
from tunnel_core.errors import TunnelClientError

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs every command, --help included
if TYPE_CHECKING:
    from typing import Any, TextIO

SETUP_PAGES = """setup pages:
  Tunnels management     https://platform.openai.com/settings/organization/tunnels
  Runtime API keys       https://platform.openai.com/settings/organization/api-keys
  Admin API keys         https://platform.openai.com/settings/organization/admin-keys
  ChatGPT connectors     https://chatgpt.com/#settings/Connectors

try it locally with no account:
  tunnel-client dev proxy          local tunnel service + demo MCP server + client; prints an MCP URL
"""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose formatter knows the terminal width without importing shutil.

    argparse builds a help formatter for every add_argument call (to check the metavar), and
    each one imports shutil (with zlib, bz2, lzma) and asks the terminal for its size; here
    the width is looked up once. Nested subparsers inherit this class.
    """

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_width())  # type: ignore[call-arg]  # all of argparse's take width


_WIDTH: list[int] = []


def _width() -> int:
    """What shutil.get_terminal_size gives argparse: $COLUMNS, else the terminal's, else 80; minus 2."""
    if not _WIDTH:
        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
            except (AttributeError, ValueError, OSError):
                columns = 80
        _WIDTH.append(columns - 2)
    return _WIDTH[0]


def build_parser(command: str | None = "", *, only: bool = False) -> argparse.ArgumentParser:
    """The CLI's parser: every command (the default), or with ``only`` just ``command``'s (``None``: none).

    Commands that are not built are listed by name and help line (``cli/commands.py``), so the
    root ``--help`` and usage errors read the same either way.
    """
    from tunnel_core.cli.commands import COMMANDS
    from tunnel_core.ops.topic_files import topics_epilog

    parser = _Parser(
        prog="tunnel-client",
        description="Reach a private MCP server from ChatGPT, Codex or any hosted MCP client with no inbound port.",
        epilog=SETUP_PAGES + topics_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--version", action="version", version=__version__,
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    wanted = {where for name, where, _ in COMMANDS if not only or name == command}
    done: set[str] = set()
    for name, where, help_line in COMMANDS:
        if where not in wanted:
            _list_only(sub, name, help_line)
        elif where not in done:
            done.add(where)
            module, _, function = where.partition(":")
            register = getattr(__import__(f"tunnel_core.cli.{module}", fromlist=[function]), function)
            if register.__code__.co_argcount > 1:
                register(sub, parser)
            else:
                register(sub)
    return parser


class _NotBuilt:
    """Stands for a command that is listed but not built (main builds the one it parses)."""

    def parse_known_args(self, *_: object) -> None:
        raise RuntimeError("tunnel-client: internal error: a listed command was parsed without being built")


def _list_only(sub: Any, name: str, help_line: str | None) -> None:
    """Add ``name`` to the command list exactly as add_parser would show it, without building a parser.

    A real subparser per listed command costs about a fifth of ``--help``'s instructions; argparse's
    listing is its choice pseudo-actions plus the name map, which is what add_parser fills too.
    """
    if help_line is not None:
        sub._choices_actions.append(sub._ChoicesPseudoAction(name, (), help_line))
    sub._name_parser_map[name] = _NotBuilt()  # type: ignore[assignment]


def _command_of(argv: Sequence[str]) -> str | None:
    """The command word of ``argv`` when only that command's parser is needed; "" when the full tree is."""
    from tunnel_core.cli.commands import COMMANDS

    words = [w for w in argv if not w.startswith("-")]
    if not words or words[0] not in {name for name, _, _ in COMMANDS}:  # hidden ones (plugin) too
        return None  # the root's own options, its help, or a usage error: no command is built
    if words[0] == "completion" or (words[0] == "help" and len(words) > 1 and not _is_topic(words[1])):
        return ""  # these show the whole command tree
    return words[0]


def _is_topic(word: str) -> bool:
    from tunnel_core.ops.topic_files import topic_names

    return word.strip() in topic_names()


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the CLI; returns the process exit code."""
    io = IO(env if env is not None else os.environ, stdout or sys.stdout, stderr or sys.stderr)
    command = _command_of(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser(command, only=command != "")
    # argparse writes usage/--help to the process streams and exits 2 on a bad command
    # line; keep output on the injected streams and make usage errors exit 1 (2 means
    # "a check failed" for doctor and health).
    # (sys.stdout swapped by hand: contextlib.redirect_stdout would import contextlib for every command)
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = io.stdout, io.stderr
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        return 1 if code == 2 else code
    finally:
        sys.stdout, sys.stderr = saved
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(io.stdout)
        return 0
    typed = list(sys.argv[1:] if argv is None else argv)
    try:
        return handler(args, io)
    except KeyboardInterrupt:
        return 130
    except BaseException as exc:  # the one place where every failure becomes one line
        if isinstance(exc, SystemExit) or io.env.get("TUNNEL_CLIENT_TRACEBACK"):
            raise
        message, code = failure_line(exc)
        io.err(f"{getattr(args, 'error_prefix', 'tunnel-client')}: {as_typed(message, typed)}")
        return code


def failure_line(exc: BaseException) -> tuple[str, int]:
    """One line for a failure that reached the top, and the exit code; never a traceback.

    Our own errors carry their message and code. A file or socket the command needed is named
    with the reason. Anything else is a bug: the line says so and how to see the traceback.
    """
    from tunnel_core.logs import redact

    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, BaseExceptionGroup):
        lines = [failure_line(inner)[0] for inner in exc.exceptions]
        return "; ".join(dict.fromkeys(lines)), 1
    if isinstance(exc, TunnelClientError):
        return str(exc), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", 130
    if isinstance(exc, OSError) and exc.filename:
        return redact(f"{exc.filename}: {exc.strerror or exc}"), 1
    if isinstance(exc, OSError) and exc.strerror:
        return redact(exc.strerror), 1
    return redact(f"unexpected error ({type(exc).__name__}: {exc}); this is a bug, please report it with the "
                  "output of the same command run with TUNNEL_CLIENT_TRACEBACK=1"), 1


def as_typed(message: str, argv: Sequence[str]) -> str:
    """Name flags the way the user typed them: a hidden alias (``--health-listen-addr``) given on the
    command line replaces its canonical spelling (``--health.listen-addr``) in the message."""
    from tunnel_core.config.specs import SPECS

    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    for spec in SPECS:
        if spec.flag in given or spec.flag not in message:
            continue
        alias = next((a for a in spec.aliases if a in given), None)
        if alias:
            message = re.sub(re.escape(spec.flag) + r"(?![\w.-])", alias, message)
    return message


def entrypoint() -> None:
    sys.exit(main())
