"""``tunnel-client run``: the relay in the foreground."""

from __future__ import annotations

import argparse
import dataclasses
import gc
from collections.abc import Mapping
from typing import Any

from tunnel_core.cli.commands import HELP
from tunnel_core.cli.console import IO
from tunnel_core.cli.flags import add_runtime_flags, merge_aliases

FIRST_USE = (
    "first use: 'tunnel-client dev proxy' runs everything locally; for a real tunnel set "
    "CONTROL_PLANE_TUNNEL_ID, CONTROL_PLANE_API_KEY and --mcp.server-url or --mcp.command"
)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run", help=HELP["run"],
        description="Long-poll the tunnel control plane and forward each MCP command to the private MCP server. "
        "Operator endpoints: http://<health.listen-addr>/healthz, /readyz, /metrics, /ui.",
    )
    add_runtime_flags(p)
    g = p.add_argument_group("embedded demo MCP server")
    g.add_argument("--embedded-mcp-stub", action="store_true",
                   help="serve the demo MCP server in-process and use it as the main target")
    g.add_argument("--embedded-mcp-listen-addr", default="127.0.0.1:0", metavar="HOST:PORT")
    g.add_argument("--embedded-mcp-server-name", default="mcp-stub", metavar="NAME")
    g.add_argument("--embedded-mcp-server-version", default="0.1.0", metavar="VERSION")
    p.set_defaults(handler=cmd_run, error_prefix="configure tunnel-client")


def cmd_run(args: argparse.Namespace, io: IO) -> int:
    # No cyclic garbage collection while the relay starts: its imports and set-up allocate a few
    # hundred thousand objects that all stay alive, and the collector would walk them again and again
    # (about 4% of the start's instructions). It resumes when the operator listener is up (_start).
    gc.disable()
    try:
        return _run(args, io)
    finally:
        gc.enable()


def _run(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.config.settings import load_settings
    from tunnel_core.errors import ConfigError

    flags = merge_aliases(args)
    if args.embedded_mcp_stub and (flags.get("cfg__mcp__server_urls") or flags.get("cfg__mcp__commands")):
        raise ConfigError("--embedded-mcp-stub cannot be combined with --mcp.server-url or --mcp.command")
    try:
        settings = load_settings(flags, io.env, require_target=not args.embedded_mcp_stub)
    except ConfigError as exc:
        if not args.embedded_mcp_stub and nothing_configured(flags, io.env):
            raise ConfigError(f"{exc}; {FIRST_USE}") from None
        more = len(getattr(exc, "errors", ())) - 1
        if more > 0:  # one line still, but say that fixing this one is not the end
            raise ConfigError(f"{exc} (and {more} more problem{'s' if more > 1 else ''}: "
                              "tunnel-client doctor with the same settings lists them all)") from None
        raise
    if args.embedded_mcp_stub:
        settings = dataclasses.replace(settings, bindings=())
    args.error_prefix = "tunnel-client"
    _start(settings, args, io)
    return 0


_SELECTION_ENV = ("TUNNEL_CLIENT_CONFIG", "TUNNEL_CLIENT_PROFILE", "TUNNEL_CLIENT_PROFILE_FILE", "OPENAI_API_KEY")


def nothing_configured(flags: Mapping[str, Any], env: Mapping[str, str]) -> bool:
    """True when no runtime flag, config file, profile or tunnel-client variable was given at all."""
    from tunnel_core.config.specs import SPECS

    if any(flags.get(spec.dest) not in (None, "", []) for spec in SPECS):
        return False
    if any(flags.get(name) for name in ("config", "profile", "profile_file")):
        return False
    return not any(env.get(name) for name in (*(s.env for s in SPECS if s.env), *_SELECTION_ENV))


def _start(settings: Any, args: argparse.Namespace, io: IO) -> None:
    import dataclasses as dc

    import anyio

    from tunnel_core.cli.lifecycle import run_async
    from tunnel_core.config.settings import Binding
    from tunnel_core.logs import setup_logging
    from tunnel_core.runner import RunHandle, run_client

    setup_logging(level=settings.log_level, fmt=settings.log_format, file=settings.log_file,
                  context={"tunnel_id": settings.tunnel_id})

    async def main(stop: anyio.Event) -> None:
        handle = RunHandle(stop=stop)
        async with anyio.create_task_group() as tg:
            cfg = settings
            stub = None
            if args.embedded_mcp_stub:
                from tunnel_core.mcpstub import build_stub_app
                from tunnel_core.netserve import bind, serve

                sock = bind(args.embedded_mcp_listen_addr, what="--embedded-mcp-listen-addr")
                stub = serve(build_stub_app(args.embedded_mcp_server_name, args.embedded_mcp_server_version),
                             sock, tg)
                io.out(f"Embedded MCP stub: {stub.url}/mcp")
                cfg = dc.replace(settings, bindings=(Binding("main", "http", url=f"{stub.url}/mcp"),))
            await run_client(cfg, handle=handle, announce=lambda _url: gc.enable())  # listener up: see cmd_run
            if stub:
                stub.stop()

    run_async(main)
