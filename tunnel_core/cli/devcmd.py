"""``tunnel-client dev``: local tunnel service, dev proxy and the demo MCP server."""

from __future__ import annotations

import argparse
from typing import Any

from tunnel_core.cli import servecmd
from tunnel_core.cli.commands import HELP
from tunnel_core.cli.console import IO
from tunnel_core.cli.flags import duration_flag as _duration


def register(sub: Any) -> None:
    dev = sub.add_parser("dev", help=HELP["dev"])
    dsub = dev.add_subparsers(dest="dev_command", metavar="COMMAND")
    dev.set_defaults(handler=lambda a, io: (dev.print_help(io.stdout), 0)[1])

    p = dsub.add_parser(
        "proxy", help="local tunnel service + MCP target + tunnel client in one process; prints an MCP URL",
        description="Run the local tunnel service, a tunnel client and (with no MCP target given) the demo MCP "
        "server in one process, then print the MCP URL that any MCP client can use.",
    )
    p.add_argument("--listen", default=None, metavar="HOST:PORT", help="tunnel service address (default 127.0.0.1:0)")
    p.add_argument("--listen-unix-socket", default="", metavar="PATH",
                   help="serve the MCP front door on this Unix socket instead (the embedded client still polls "
                   "a loopback port); not with --listen")
    p.add_argument("--tunnel-id", default="tunnel_" + "2" * 32, metavar="ID")
    p.add_argument("--mcp-server-url", action="append", default=[], metavar="URL",
                   help="HTTP MCP target (repeatable; channel=NAME,url=URL)")
    p.add_argument("--mcp-command", action="append", default=[], metavar="CMD",
                   help="stdio MCP target (repeatable; channel=NAME,command=CMD)")
    p.add_argument("--profile", default="", metavar="NAME",
                   help="take the client's configuration (MCP targets, headers, ...) from this profile; the "
                   "control plane, tunnel id and key are the proxy's own")
    p.add_argument("--profile-file", default="", metavar="PATH", help="as --profile, from a <name>.yaml file")
    p.add_argument("--profile-dir", default="", metavar="DIR", help="where --profile looks (TUNNEL_CLIENT_PROFILE_DIR)")
    p.add_argument("--health-listen-addr", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="operator listener of the embedded client (default ephemeral)")
    p.add_argument("--health-url-file", default="", metavar="PATH", help="write the operator listener URL here")
    p.add_argument("--url-file", default="", metavar="PATH", help="write a JSON description here (0600)")
    p.add_argument("--print-json", action="store_true", help="print the JSON description instead of text")
    p.add_argument("--response-timeout", default="30s", metavar="DURATION",
                   help="response_timeout given to each front-door command")
    p.add_argument("--readiness-timeout", default="10s", metavar="DURATION",
                   help="how long to wait for readiness; if the tunnel is not ready by then, exit 1 with the "
                   "reason instead of printing a URL that cannot work")
    p.add_argument("--client-last-seen-timeout", default="20s", metavar="DURATION",
                   help="a call for a tunnel whose client has not polled for this long is refused at once (503 "
                   "tunnel_client_not_seen) instead of waiting --response-timeout")
    p.add_argument("--duration", default="", metavar="DURATION", help="stop after this long (default: until signal)")
    p.add_argument("--backend", default="auto", metavar="NAME",
                   help="local proxy backend: auto or python (this build's only one; the reference also has go "
                   "and rust)")
    p.add_argument("--log.level", dest="log_level", default="warn", metavar="LEVEL")
    servecmd.add_engine_flags(p)
    p.set_defaults(handler=cmd_proxy)

    s = dsub.add_parser(
        "tunnel-service", help="run only the local tunnel service (self-hostable relay)",
        description="Serve the tunnel runtime API (metadata, poll, response) and the MCP front door "
        "POST /v1/mcp/{tunnel_id}. Runtime keys are given by reference.",
    )
    s.add_argument("--listen", default="127.0.0.1:0", metavar="HOST:PORT")
    s.add_argument("--tunnel-id", action="append", default=[], metavar="ID", help="tunnel to serve (repeatable)")
    s.add_argument("--runtime-api-key", default="env:CONTROL_PLANE_API_KEY", metavar="[TUNNEL_ID=]REF",
                   help="runtime key clients must present, env:NAME or file:/path; valid for every tunnel served, "
                   "or with TUNNEL_ID=REF for that tunnel only (admin-minted keys are per tunnel either way)")
    s.add_argument("--admin-api-key", action="append", default=[], metavar="[ORG=]REF",
                   help="admin key for the tunnel CRUD API, env:NAME or file:/path (repeatable); ORG=REF limits "
                   "the key to tunnels of organization ORG")
    s.add_argument("--data-dir", default="", metavar="DIR",
                   help="keep tunnels created through the admin API in DIR (SQLite) across restarts")
    s.add_argument("--response-timeout", default="30s", metavar="DURATION")
    s.add_argument("--url-file", default="", metavar="PATH", help="write a JSON description here (0600)")
    s.add_argument("--log.level", dest="log_level", default="info", metavar="LEVEL")
    s.add_argument("--oauth-passthrough", action="store_true",
                   help="relay WWW-Authenticate unchanged (default: resource_metadata points at this service's "
                   "/.well-known/oauth-protected-resource/v1/mcp/<tunnel_id>, as the hosted service does)")
    s.add_argument("--test-controls", action="store_true",
                   help="enable /_test/requests and /_test/faults (for tests only; never expose)")
    servecmd.add_engine_flags(s)
    s.set_defaults(handler=cmd_tunnel_service)

    m = dsub.add_parser("mcp-stub", help="run the demo MCP server (server_info, echo, uppercase)")
    m.add_argument("--listen-addr", default="127.0.0.1:0", metavar="HOST:PORT")
    m.add_argument("--server-name", default="mcp-stub", metavar="NAME")
    m.add_argument("--server-version", default="0.1.0", metavar="VERSION")
    m.add_argument("--require-auth", action="store_true",
                   help="protect /mcp with OAuth bearer tokens from the built-in demo authorization server "
                   "(registration, PKCE authorization code, token and refresh; /authorize approves automatically)")
    m.add_argument("--issuer", default="", metavar="URL",
                   help="issuer to publish in the authorization server metadata (default: this server's URL; "
                   "a different value demonstrates an issuer mismatch)")
    m.set_defaults(handler=cmd_mcp_stub)


def cmd_proxy(args: argparse.Namespace, io: IO) -> int:
    import anyio

    from tunnel_core.cli.lifecycle import run_async
    from tunnel_core.devproxy import ProxyDescription, ProxyOptions, run_dev_proxy
    from tunnel_core.errors import ConfigError
    from tunnel_core.fileutil import write_setting_file
    from tunnel_core.logs import setup_logging
    from tunnel_core.ops.samples import check_tunnel_id

    if args.listen is not None and args.listen_unix_socket:
        raise ConfigError("--listen and --listen-unix-socket are mutually exclusive; give one")
    if args.backend not in ("auto", "python"):
        raise ConfigError(f"--backend {args.backend}: unavailable in this build, which has one backend, python "
                          "(in-process; --engine-queue-backend inmem or redis); use --backend auto")
    if args.profile and args.profile_file:
        raise ConfigError("--profile and --profile-file are mutually exclusive; give one")
    last_seen = _duration(args.client_last_seen_timeout, "--client-last-seen-timeout")
    if last_seen <= 0:
        raise ConfigError(f"--client-last-seen-timeout: must be greater than 0, got {args.client_last_seen_timeout!r}")
    opts = ProxyOptions(
        listen=args.listen or "127.0.0.1:0",
        listen_unix_socket=args.listen_unix_socket,
        profile=args.profile, profile_file=args.profile_file, profile_dir=args.profile_dir,
        client_last_seen_timeout=last_seen,
        tunnel_id=check_tunnel_id(args.tunnel_id),
        mcp_server_urls=args.mcp_server_url,
        mcp_commands=args.mcp_command,
        health_listen_addr=args.health_listen_addr or "127.0.0.1:0",
        response_timeout=_duration(args.response_timeout, "--response-timeout"),
        readiness_timeout=_duration(args.readiness_timeout, "--readiness-timeout"),
        log_level=args.log_level,
        backend=servecmd.engine_backend(args, io.env),
    )
    if args.health_url_file:
        opts.extra_flags["cfg__health__url_file"] = args.health_url_file
    duration = _duration(args.duration, "--duration") if args.duration else None
    setup_logging(level=args.log_level, fmt="struct-text")

    def on_ready(desc: ProxyDescription) -> None:
        from pathlib import Path

        if args.url_file:
            write_setting_file("--url-file", Path(args.url_file), desc.model_dump_json(indent=2) + "\n")
        if args.print_json:
            io.out(desc.model_dump_json())
            return
        if desc.mcp_transport == "unix":
            io.out(f"MCP Unix socket: {desc.mcp_unix_socket}")
            io.out(f"MCP URL path: {desc.mcp_url_path}")
        else:
            io.out(f"MCP URL: {desc.mcp_url}")
        io.out(f"Health URL: {desc.health_url}")
        io.out(f"UI URL: {desc.health_url}/ui")
        io.out("Try: tools/list, then tools/call echo {\"input\": \"hello\"} with any MCP client. Ctrl-C stops.")

    async def main(stop: anyio.Event) -> None:
        await run_dev_proxy(opts, stop, on_ready, env=dict(io.env))

    try:
        run_async(main, duration=duration)
    finally:
        if args.url_file:  # the description is only true while the proxy runs
            from pathlib import Path

            from tunnel_core.fileutil import remove_quietly

            remove_quietly(Path(args.url_file))
    return 0


def cmd_tunnel_service(args: argparse.Namespace, io: IO) -> int:
    import json
    from pathlib import Path

    import anyio

    from tunnel_core.cli.lifecycle import run_async
    from tunnel_core.config.refs import resolve_api_key
    from tunnel_core.devproxy import DEFAULT_TUNNEL_ID
    from tunnel_core.devservice.admin import split_admin_key_spec
    from tunnel_core.devservice.app import ServiceConfig, build_service_app
    from tunnel_core.devservice.broker import Broker
    from tunnel_core.devservice.store import StoreError
    from tunnel_core.errors import ConfigError
    from tunnel_core.fileutil import write_setting_file
    from tunnel_core.logs import setup_logging
    from tunnel_core.netserve import bind, serve
    from tunnel_core.ops.samples import check_tunnel_id

    bound_to, ref = servecmd.split_binding(args.runtime_api_key, "--runtime-api-key")
    key = resolve_api_key(ref, setting="--runtime-api-key", env=io.env)
    tunnels = [check_tunnel_id(t) for t in args.tunnel_id] or ([] if bound_to else [DEFAULT_TUNNEL_ID])
    if bound_to and bound_to not in tunnels:
        tunnels.append(bound_to)
    broker = Broker(servecmd.engine_backend(args, io.env))
    for t in tunnels:
        broker.add_tunnel(t)
    from tunnel_core.devservice.testcontrols import TestControls

    admin_keys: dict[str, str | None] = {}
    for spec in args.admin_api_key:
        org, ref = split_admin_key_spec(spec)
        if not ref.startswith(("env:", "file:")):
            raise ConfigError("--admin-api-key: give a reference (env:NAME or file:/path), not the key itself")
        admin_key = resolve_api_key(ref, setting="--admin-api-key", env=io.env)
        if admin_key == key:
            raise ConfigError(f"--admin-api-key {ref}: admin keys must differ from the runtime key")
        admin_keys[admin_key] = org
    # One key for every tunnel (a loopback tool), unless bound: TUNNEL_ID=REF, as on serve.
    config = ServiceConfig(runtime_keys=set() if bound_to else {key},
                           bound_runtime_keys=[(bound_to, key)] if bound_to else [], response_timeout=_duration(args.response_timeout, "--response-timeout"),
                           test_controls=TestControls() if args.test_controls else None, admin_keys=admin_keys,
                           data_dir=args.data_dir, rewrite_www_authenticate=not args.oauth_passthrough)
    setup_logging(level=args.log_level, fmt="struct-text")
    try:
        app = build_service_app(broker, config)
    except StoreError as exc:
        raise ConfigError(f"--data-dir: {exc}") from None
    sock = bind(args.listen, what="--listen")

    async def main(stop: anyio.Event) -> None:
        async with broker.running(), anyio.create_task_group() as tg:
            served = serve(app, sock, tg)
            desc = {"control_plane_base_url": served.url,
                    "tunnels": [{"tunnel_id": t, "mcp_url": f"{served.url}/v1/mcp/{t}"} for t in tunnels]}
            if args.url_file:
                write_setting_file("--url-file", Path(args.url_file), json.dumps(desc, indent=2) + "\n")
            io.out(f"Tunnel service: {served.url}")
            for t in tunnels:
                io.out(f"MCP URL: {served.url}/v1/mcp/{t}")
            await stop.wait()
            broker.close()  # waiting polls answer at once; queued commands stay queued (redis)
            served.stop()

    run_async(main)
    return 0


def cmd_mcp_stub(args: argparse.Namespace, io: IO) -> int:
    import anyio

    from tunnel_core.cli.lifecycle import run_async
    from tunnel_core.mcpstub import build_stub_app
    from tunnel_core.netserve import bind, serve
    from tunnel_core.oauth.devserver import StubOAuthOptions

    sock = bind(args.listen_addr, what="--listen-addr")
    oauth = StubOAuthOptions(require_auth=args.require_auth, issuer=args.issuer)

    async def main(stop: anyio.Event) -> None:
        async with anyio.create_task_group() as tg:
            served = serve(build_stub_app(args.server_name, args.server_version, oauth), sock, tg)
            io.out(f"MCP URL: {served.url}/mcp")
            io.out(f"Protected resource metadata: {served.url}/.well-known/oauth-protected-resource/mcp")
            io.out(f"Authorization server metadata: {served.url}/.well-known/oauth-authorization-server")
            if args.require_auth:
                io.out("OAuth: /mcp requires a bearer token (register at /register, authorize at /authorize, "
                       "exchange at /token); /authorize approves automatically")
            io.out(f"Next: tunnel-client run --mcp.server-url {served.url}/mcp ...")
            await stop.wait()
            served.stop()

    run_async(main)
    return 0
