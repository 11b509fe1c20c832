"""``tunnel-client runtimes ...``: long-lived local runtimes managed by alias (no tmux, no nohup)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tunnel_core.cli.commands import HELP
from tunnel_core.cli.console import IO


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("admin connection (saved in the admin profile)")
    g.add_argument("--admin-profile", default=argparse.SUPPRESS, metavar="NAME", help="admin profile name to use")
    g.add_argument("--admin-key", default=argparse.SUPPRESS, metavar="REF",
                   help="admin key reference to store/use, env:NAME or file:/path")
    g.add_argument("--control-plane-base-url", default=argparse.SUPPRESS, metavar="URL", help="control-plane base URL")
    g.add_argument("--control-plane-url-path", default=argparse.SUPPRESS, metavar="PATH",
                   help="optional URL path appended to the control-plane base URL")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="output JSON")
    return common


def _scope(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--organization-id", action="append", default=[], metavar="ID",
                   help=f"organization scope for {what}")
    p.add_argument("--workspace-id", action="append", default=[], metavar="ID", help=f"workspace scope for {what}")


def register(sub: Any) -> None:
    common = _common()
    rt = sub.add_parser(
        "runtimes", parents=[common], help=HELP["runtimes"],
        description="Create or attach tunnels by alias and keep 'tunnel-client run' going in the background, "
        "supervised, with logs and health in the state directory (TUNNEL_CLIENT_STATE_DIR). Use 'runtimes connect' "
        "instead of nohup, then 'runtimes status <alias>' before reporting success.",
    )
    rsub = rt.add_subparsers(dest="runtimes_command", metavar="COMMAND")
    rt.set_defaults(handler=lambda a, io: (rt.print_help(io.stdout), 0)[1])

    c = rsub.add_parser("create", parents=[common], help="create or reuse a remote tunnel alias")
    c.add_argument("--alias", required=True, help="alias to create")
    c.add_argument("--name", default="", help="remote tunnel name (default: the alias)")
    c.add_argument("--description", default="", help="remote tunnel description")
    _scope(c, "remote tunnel creation")
    c.set_defaults(handler=cmd_create)

    k = rsub.add_parser(
        "connect", parents=[common], help="create or reuse a tunnel alias and run it locally in the background",
        description="Create or reuse a tunnel alias, write its runtime profile and start 'tunnel-client run' detached "
        "in its own session. Exit 0 once /healthz answers, 2 when it does not (the JSON payload is still printed).",
    )
    k.add_argument("--alias", required=True, help="alias to connect")
    k.add_argument("--name", default="", help="remote tunnel name override")
    k.add_argument("--description", default="", help="remote tunnel description override")
    _scope(k, "remote tunnel lookup/creation")
    k.add_argument("--tunnel-id", default="", metavar="ID", help="attach to an existing tunnel id without admin CRUD")
    k.add_argument("--profile", default="", metavar="NAME", help="profile name to write and run (default: the alias)")
    k.add_argument("--profile-dir", default="", metavar="DIR", help="directory for generated runtime profiles")
    k.add_argument("--mcp-server-url", default="", metavar="URL", help="Streamable HTTP MCP server URL")
    k.add_argument("--mcp-command", default="", metavar="CMD", help="local stdio MCP command")
    k.add_argument("--runtime-api-key", default="", metavar="REF",
                   help="runtime key reference stored in the profile, env:NAME or file:/path "
                   "(default env:CONTROL_PLANE_API_KEY)")
    k.add_argument("--tunnel-client-bin", default="", metavar="PATH",
                   help="tunnel-client executable for the runtime (must be this installation's)")
    k.add_argument("--restart", default="", choices=["no", "on-failure"],
                   help="on-failure: a small supervisor restarts a crashed runtime with backoff (default: keep the "
                   "running runtime's policy, else no)")
    k.add_argument("--health-timeout", default="20s", metavar="DURATION",
                   help="how long to wait for /healthz after launch (default 20s)")
    k.set_defaults(handler=cmd_connect)

    ls = rsub.add_parser("list", parents=[common], help="list local aliases and optionally remote scoped tunnels")
    _scope(ls, "remote listing")
    ls.add_argument("--tenant-id", default="", metavar="ID", help="tenant scope for remote listing")
    ls.set_defaults(handler=cmd_list)

    cl = rsub.add_parser("cleanup", parents=[common], help="inspect and optionally remove stale alias metadata")
    cl.add_argument("--apply", action="store_true", help="remove only entries classified as stale_alias")
    cl.set_defaults(handler=cmd_cleanup)

    st = rsub.add_parser("status", parents=[common], help="inspect a local alias and its runtime state")
    st.add_argument("alias", metavar="ALIAS")
    st.set_defaults(handler=cmd_status)

    sp = rsub.add_parser("stop", aliases=["disconnect"], parents=[common],
                         help="stop the managed local runtime for an alias")
    sp.add_argument("alias", metavar="ALIAS")
    sp.set_defaults(handler=cmd_stop)

    rm = rsub.add_parser("rm", aliases=["remove"], parents=[common],
                         help="remove local runtime metadata (never deletes the remote tunnel)")
    rm.add_argument("alias", metavar="ALIAS")
    rm.set_defaults(handler=cmd_rm)


def _admin(args: argparse.Namespace) -> Any:
    from tunnel_core.runtimes.manager import AdminOptions

    return AdminOptions(admin_profile=getattr(args, "admin_profile", ""), admin_key=getattr(args, "admin_key", ""),
                        base_url=getattr(args, "control_plane_base_url", ""),
                        url_path=getattr(args, "control_plane_url_path", ""))


def _json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _dump(io: IO, data: dict[str, Any]) -> None:
    io.out(json.dumps(data, indent=2))


def _single(values: list[str], flag: str) -> list[str]:
    from tunnel_core.controlplane.admin import clean_ids

    return clean_ids(values, flag)


def cmd_create(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.runtimes.manager import create

    payload = create(io.env, alias=args.alias, admin=_admin(args), name=args.name, description=args.description,
                     organization_ids=_single(args.organization_id, "organization-id"),
                     workspace_ids=_single(args.workspace_id, "workspace-id"))
    if _json(args):
        _dump(io, payload.model_dump(mode="json"))
    else:
        io.out(f"Created alias {payload.alias} for tunnel {payload.tunnel.id}")
    return 0


def cmd_connect(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.config.durations import parse_duration
    from tunnel_core.errors import UsageError
    from tunnel_core.runtimes.manager import ConnectOptions, connect

    try:
        health_timeout = parse_duration(args.health_timeout)
    except ValueError:
        raise UsageError(f"--health-timeout: invalid duration {args.health_timeout!r}; use forms like 20s") from None
    opts = ConnectOptions(
        alias=args.alias, admin=_admin(args), name=args.name, description=args.description,
        organization_ids=_single(args.organization_id, "organization-id"),
        workspace_ids=_single(args.workspace_id, "workspace-id"), tunnel_id=args.tunnel_id, profile=args.profile,
        profile_dir=args.profile_dir, mcp_server_url=args.mcp_server_url, mcp_command=args.mcp_command,
        runtime_api_key=args.runtime_api_key, tunnel_client_bin=args.tunnel_client_bin, restart=args.restart,
        health_timeout=health_timeout,
    )
    from tunnel_core.cli.progress import progress

    with progress(io.stderr, f"starting runtime {args.alias} and waiting for /healthz"):
        payload, code = connect(io.env, opts)
    if _json(args):
        _dump(io, payload.model_dump(mode="json"))
        return code
    if code == 0:
        io.out(f"Connected {payload.alias} using {payload.mode} mode")
        return 0
    if payload.healthy:  # it answers /healthz, but the control plane rejects it
        io.err(f"tunnel-client: runtime for {payload.alias} is failed: {payload.reason}")
        io.err(f"next: tunnel-client runtimes status {payload.alias} --json")
        return code
    diag = payload.launch_diagnostics
    exit_note = f" (exit code {diag.exit_code})" if diag and diag.exit_code is not None else ""
    io.err(f"tunnel-client: runtime for {payload.alias} did not answer /healthz within {args.health_timeout}"
           f"{exit_note}; log: {payload.log_path}")
    if diag and diag.log_tail:
        io.err("last log lines:\n" + diag.log_tail)
    io.err(f"next: tunnel-client runtimes status {payload.alias} --json")
    return code


def cmd_list(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.errors import UsageError
    from tunnel_core.runtimes.manager import list_runtimes

    orgs = _single(args.organization_id, "organization-id")
    wss = _single(args.workspace_id, "workspace-id")
    if sum(map(bool, (orgs, wss, args.tenant_id.strip()))) > 1:
        raise UsageError("runtimes list accepts exactly one remote scope family: --organization-id, --workspace-id, "
                         "or --tenant-id")
    if len(orgs) > 1:
        raise UsageError("runtimes list accepts at most one --organization-id for remote listing")
    if len(wss) > 1:
        raise UsageError("runtimes list accepts at most one --workspace-id for remote listing")
    payload = list_runtimes(io.env, admin=_admin(args), organization_id=orgs[0] if orgs else "",
                            workspace_id=wss[0] if wss else "", tenant_id=args.tenant_id.strip())
    if _json(args):
        _dump(io, payload.model_dump(mode="json", exclude={"remote_tunnels"} if payload.remote_tunnels is None
                                     else None))
        return 0
    if not payload.aliases:
        io.out(f"No runtime aliases found in {payload.state_root}")
    for a in payload.aliases:
        io.out(f"{a.alias}\t{a.tunnel_id}")
    return 0


def cmd_cleanup(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.runtimes.manager import cleanup

    payload = cleanup(io.env, apply=args.apply)
    if _json(args):
        _dump(io, payload.model_dump(mode="json"))
        return 0
    if not payload.entries:
        io.out(f"No runtime aliases found in {payload.state_root}")
        return 0
    for e in payload.entries:
        io.out(f"{e.alias}\t{e.classification}\t{e.tunnel_id}")
    if not args.apply:
        io.out("Dry run only. Re-run with --apply to remove entries classified as stale_alias.")
    return 0


def cmd_status(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.runtimes.manager import status

    payload, code = status(io.env, alias=args.alias, admin=_admin(args))
    if _json(args):
        _dump(io, payload.model_dump(mode="json"))
        return code
    io.out(f"{payload.alias}\t{payload.runtime_state}\t{payload.tunnel_id}")
    if code != 0 and payload.error:
        io.err(f"tunnel-client: {payload.error}")
    return code


def cmd_stop(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.runtimes.manager import stop

    payload, code = stop(io.env, alias=args.alias, admin=_admin(args))
    if _json(args):
        _dump(io, payload.model_dump(mode="json"))
        return code
    if code != 0:
        io.err(f"tunnel-client: {payload.stop_error}")
        return code
    io.out(f"Stopped {payload.alias}")
    return 0


def cmd_rm(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.runtimes.manager import remove

    payload = remove(io.env, alias=args.alias)
    if _json(args):
        _dump(io, payload.model_dump(mode="json"))
    else:
        io.out(f"Removed local runtime metadata for {payload.alias}")
    return 0
