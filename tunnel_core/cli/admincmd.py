"""``tunnel-client admin [--json] tunnels|runtime-keys|caller-tokens ...`` and ``tunnel-client admin-profiles ...``.

Flags of the ``admin`` group (``--json``, ``--admin-key``, ``--control-plane.base-url``,
``--control-plane.url-path``, ``--ca-bundle``) are accepted before or after the subcommand,
like the reference's persistent flags. In ``--json`` mode every failure is printed as
``{"error": {...}}`` on stdout with exit 1.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from tunnel_core.cli.commands import HELP
from tunnel_core.cli.console import IO

CREATE_NOTE = "Note: wait 25-30 seconds before expecting a newly created tunnel to be active and ready."


def _admin_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("admin connection")
    g.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="output JSON instead of text")
    g.add_argument("--admin-key", default=argparse.SUPPRESS, metavar="REF",
                   help="admin API key reference, env:NAME or file:/path (default: $OPENAI_ADMIN_KEY)")
    g.add_argument("--control-plane.base-url", dest="base_url", default=argparse.SUPPRESS, metavar="URL",
                   help="control-plane base URL [CONTROL_PLANE_BASE_URL] (default https://api.openai.com)")
    g.add_argument("--control-plane.url-path", dest="url_path", default=argparse.SUPPRESS, metavar="PATH",
                   help="path prefix before /v1/... [CONTROL_PLANE_URL_PATH]")
    g.add_argument("--ca-bundle", default=argparse.SUPPRESS, metavar="PATH",
                   help="PEM CA certificates to trust in addition to the system store [CA_BUNDLE]")
    return common


def _scope_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--organization-id", action="append", metavar="ID",
                   help="organization id used for scope and attachment (repeatable, or comma-separated)")
    p.add_argument("--workspace-id", action="append", metavar="ID",
                   help="workspace id used for scope and attachment (repeatable, or comma-separated)")


def register(sub: Any) -> None:
    common = _admin_flags()
    admin = sub.add_parser("admin", parents=[common], help=HELP["admin"],
                           description="Manage tunnels through the control-plane management API with an admin key.")
    asub = admin.add_subparsers(dest="admin_command", metavar="COMMAND")
    admin.set_defaults(handler=lambda a, io: (admin.print_help(io.stdout), 0)[1])
    tunnels = asub.add_parser(
        "tunnels", parents=[common], help="inspect or manage tunnels via the control-plane API",
        description="get is a read-only lookup that also works with a runtime key (CONTROL_PLANE_API_KEY / "
        "OPENAI_API_KEY); list, create, update and delete need an admin key (OPENAI_ADMIN_KEY / --admin-key).",
    )
    tsub = tunnels.add_subparsers(dest="tunnels_command", metavar="COMMAND")
    tunnels.set_defaults(handler=lambda a, io: (tunnels.print_help(io.stdout), 0)[1])

    c = tsub.add_parser("create", parents=[common], help="create a tunnel",
                        description="Create a tunnel attached to organizations and/or workspaces (at least one). "
                        "Then wait 25-30 seconds before expecting it to be active.")
    c.add_argument("--name", default="", help="name for the tunnel (required)")
    c.add_argument("--description", default="", help="description for the tunnel (required)")
    _scope_flags(c)
    c.set_defaults(handler=_json_errors(cmd_create))

    g = tsub.add_parser("get", parents=[common], help="fetch a tunnel by id")
    g.add_argument("tunnel_id", metavar="TUNNEL_ID")
    g.set_defaults(handler=_json_errors(cmd_get))

    ls = tsub.add_parser("list", parents=[common], help="list tunnels of one organization, workspace or tenant",
                         description="Requires an admin key and exactly one scope filter.")
    _scope_flags(ls)
    ls.add_argument("--tenant-id", default="", metavar="ID", help="tenant id to filter by")
    ls.set_defaults(handler=_json_errors(cmd_list))

    u = tsub.add_parser("update", parents=[common], help="update a tunnel",
                        description="Only the flags you give are sent; organization/workspace lists replace the "
                        "stored ones (omit them to keep existing attachments).")
    u.add_argument("tunnel_id", metavar="TUNNEL_ID")
    u.add_argument("--name", default=None, help="new name")
    u.add_argument("--description", default=None, help="new description")
    _scope_flags(u)
    u.set_defaults(handler=_json_errors(cmd_update))

    d = tsub.add_parser("delete", parents=[common], help="delete a tunnel (requires --confirm)",
                        description="Delete a tunnel by id with an admin key; --confirm is required. Organization "
                        "and workspace flags are accepted for symmetry and ignored.")
    d.add_argument("tunnel_id", metavar="TUNNEL_ID")
    d.add_argument("--confirm", action="store_true", help="required to delete a tunnel")
    _scope_flags(d)
    d.set_defaults(handler=_json_errors(cmd_delete))

    for kind, noun, secret_help in (
            ("runtime_key", "runtime-keys", "a runtime key: tunnel-client run presents it (CONTROL_PLANE_API_KEY) and "
             "it opens this tunnel's poll, response and metadata routes only"),
            ("caller_token", "caller-tokens", "a caller token: MCP clients send it in the X-Tunnel-Caller-Token "
             "header to call this tunnel's front door")):
        _register_credentials(asub, common, kind, noun, secret_help)

    _register_profiles(sub)


def _register_credentials(asub: Any, common: argparse.ArgumentParser, kind: str, noun: str, secret_help: str) -> None:
    label = noun.rstrip("s").replace("-", " ")
    group = asub.add_parser(
        noun, parents=[common], help=f"mint, list or revoke a tunnel's {noun.replace('-', ' ')} (self-hosted serve)",
        description=f"Each {label} is {secret_help}. It is shown once, when created, and stored hashed. Needs an "
        "admin key that may manage the tunnel (one of its organization, or an unscoped key).",
    )
    gsub = group.add_subparsers(dest=f"{kind}_command", metavar="COMMAND")
    group.set_defaults(handler=lambda a, io: (group.print_help(io.stdout), 0)[1])
    for action, help_text in (("create", f"mint a {label} (printed once)"), ("list", f"list the {noun} (ids only)"),
                              ("revoke", f"revoke a {label} by id")):
        p = gsub.add_parser(action, parents=[common], help=help_text)
        p.add_argument("--tunnel-id", default="", metavar="ID", help="the tunnel (required)")
        if action == "revoke":
            p.add_argument("credential_id", metavar="ID", help=f"the {label} id ({'rk_' if kind == 'runtime_key' else 'ct_'}...)")
        p.set_defaults(handler=_json_errors(_credential_command(kind, action)), credential_kind=kind)


# ---------------------------------------------------------------------------- admin tunnels


def _json_errors(fn: Callable[[argparse.Namespace, IO], int]) -> Callable[[argparse.Namespace, IO], int]:
    def run(args: argparse.Namespace, io: IO) -> int:
        from tunnel_core.errors import TunnelClientError

        try:
            return fn(args, io)
        except TunnelClientError as exc:
            if not getattr(args, "json", False):
                raise
            json_error = getattr(exc, "json_error", None)
            payload = json_error() if callable(json_error) else {"error": {"message": str(exc)}}
            io.out(json.dumps(payload, indent=2))
            return 1

    return run


def _client(args: argparse.Namespace, io: IO, *, read_only: bool = False) -> Any:
    from tunnel_core.controlplane.admin import (
        AdminClient,
        connection_from_flags,
        read_only_key,
        resolve_admin_key,
    )

    flag = getattr(args, "admin_key", "")
    key = read_only_key(flag, io.env) if read_only else resolve_admin_key(flag, io.env)
    conn = connection_from_flags(io.env, base_url=getattr(args, "base_url", None),
                                 url_path=getattr(args, "url_path", None), ca_bundle=getattr(args, "ca_bundle", None),
                                 key=key)
    return AdminClient(conn)


def _print_tunnel(args: argparse.Namespace, io: IO, tunnel: Any) -> None:
    if getattr(args, "json", False):
        io.out(json.dumps(tunnel.output(), indent=2))
        return
    io.out(f"Tunnel {tunnel.id}")
    io.out(f"  Name: {tunnel.name}")
    io.out(f"  Description: {tunnel.description}")
    if tunnel.creator:
        io.out(f"  Creator: {tunnel.creator}")
    io.out(f"  Organizations: {', '.join(tunnel.organization_ids or [])}")
    io.out(f"  Workspaces: {', '.join(tunnel.workspace_ids or [])}")
    if tunnel.tenant_ids:
        io.out(f"  Tenants: {', '.join(tunnel.tenant_ids)}")


def cmd_create(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.controlplane.admin import clean_ids
    from tunnel_core.errors import UsageError

    if not args.name.strip():
        raise UsageError("name is required (set --name)")
    if not args.description.strip():
        raise UsageError("description is required (set --description)")
    orgs = clean_ids(args.organization_id, "organization-id")
    wss = clean_ids(args.workspace_id, "workspace-id")
    with _client(args, io) as client:
        if not (orgs or wss):
            raise UsageError("at least one of --organization-id or --workspace-id is required")
        tunnel = client.create(name=args.name, description=args.description, organization_ids=orgs,
                               workspace_ids=wss)
    _print_tunnel(args, io, tunnel)
    if not getattr(args, "json", False):
        io.out(CREATE_NOTE)
    return 0


def cmd_get(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.errors import UsageError

    if not args.tunnel_id.strip():
        raise UsageError("tunnel id is required")
    with _client(args, io, read_only=True) as client:
        tunnel = client.get(args.tunnel_id.strip())
    _print_tunnel(args, io, tunnel)
    return 0


def cmd_list(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.controlplane.admin import clean_ids
    from tunnel_core.errors import UsageError

    orgs = clean_ids(args.organization_id, "organization-id")
    wss = clean_ids(args.workspace_id, "workspace-id")
    with _client(args, io) as client:
        if sum(map(bool, (orgs, wss, args.tenant_id.strip()))) != 1:
            raise UsageError("provide exactly one of --organization-id, --workspace-id, or --tenant-id")
        found = client.list(organization_id=orgs[0] if orgs else "", workspace_id=wss[0] if wss else "",
                            tenant_id=args.tenant_id.strip())
    if getattr(args, "json", False):
        io.out(json.dumps(found.output(), indent=2))
        return 0
    for tunnel in found.tunnels:
        _print_tunnel(args, io, tunnel)
    return 0


def cmd_update(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.controlplane.admin import update_changes
    from tunnel_core.errors import UsageError

    with _client(args, io) as client:
        changes = update_changes(name=args.name, description=args.description,
                                 organization_ids=args.organization_id, workspace_ids=args.workspace_id,
                                 org_label="organization-id", ws_label="workspace-id")
        if not changes:
            raise UsageError("provide at least one field to update")
        tunnel = client.update(args.tunnel_id.strip(), changes)
    _print_tunnel(args, io, tunnel)
    return 0


def cmd_delete(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.errors import UsageError

    if not args.confirm:
        raise UsageError("refusing to delete without --confirm")
    with _client(args, io) as client:
        tunnel = client.delete(args.tunnel_id.strip())
    _print_tunnel(args, io, tunnel)
    return 0


def _credential_command(kind: str, action: str) -> Callable[[argparse.Namespace, IO], int]:
    def run(args: argparse.Namespace, io: IO) -> int:
        from tunnel_core.errors import UsageError

        tunnel_id = args.tunnel_id.strip()
        if not tunnel_id:
            raise UsageError("tunnel id is required (set --tunnel-id)")
        with _client(args, io) as client:
            if action == "create":
                result = client.create_credential(tunnel_id, kind)
            elif action == "list":
                result = client.list_credentials(tunnel_id, kind)
            else:
                result = client.revoke_credential(tunnel_id, kind, args.credential_id.strip())
        if getattr(args, "json", False):
            io.out(json.dumps(result.output(), indent=2))
        elif action == "list":
            for c in result.items:
                io.out(f"{c.id}\tcreated {_when(c.created_at)}\t{c.creator}")
        else:
            _print_credential(io, kind, action, result)
        return 0

    return run


def _when(epoch: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _print_credential(io: IO, kind: str, action: str, c: Any) -> None:
    label = "Runtime key" if kind == "runtime_key" else "Caller token"
    if action == "revoke":
        io.out(f"{label} {c.id} of tunnel {c.tunnel_id} revoked")
        return
    io.out(f"{label} {c.id} for tunnel {c.tunnel_id}")
    io.out(f"  {'Key' if kind == 'runtime_key' else 'Token'} (shown once; store it now): {c.key or c.token}")
    if kind == "runtime_key":
        io.out("  Use: put it in a 0600 file and run tunnel-client run --control-plane.api-key file:/path "
               f"--control-plane.tunnel-id {c.tunnel_id} ...")
    else:
        io.out("  Use: configure the MCP client to send it in the X-Tunnel-Caller-Token header")


# ---------------------------------------------------------------------------- admin-profiles


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "t", "true", "yes"):
        return True
    if lowered in ("0", "f", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{value!r} is not a boolean; use true or false")


def _register_profiles(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="output JSON")
    p = sub.add_parser("admin-profiles", parents=[common],
                       help=HELP["admin-profiles"],
                       description="Named control-plane connections for the runtimes commands. Keys are stored as "
                       "env:NAME or file:/path references in <state dir>/admin_profiles.yaml (0600), never as values.")
    psub = p.add_subparsers(dest="profiles_command", metavar="COMMAND")
    p.set_defaults(handler=lambda a, io: (p.print_help(io.stdout), 0)[1])

    ls = psub.add_parser("list", parents=[common], help="list saved admin profiles")
    ls.set_defaults(handler=cmd_profiles_list)
    s = psub.add_parser("set", parents=[common], help="create or update an admin profile")
    s.add_argument("name", metavar="NAME")
    s.add_argument("--control-plane-base-url", default="", metavar="URL", help="control-plane base URL")
    s.add_argument("--control-plane-url-path", default="", metavar="PATH",
                   help="optional URL path appended to the control-plane base URL")
    s.add_argument("--admin-key", default="", metavar="REF",
                   help="admin key reference to store, env:NAME or file:/path (default env:OPENAI_ADMIN_KEY)")
    s.add_argument("--activate", type=_bool, nargs="?", const=True, default=True, metavar="BOOL",
                   help="mark the profile active after saving (default true; --activate=false to keep the current)")
    s.set_defaults(handler=cmd_profiles_set)
    a = psub.add_parser("activate", parents=[common], help="mark an existing admin profile as active")
    a.add_argument("name", metavar="NAME")
    a.set_defaults(handler=cmd_profiles_activate)
    d = psub.add_parser("delete", parents=[common], help="delete an unused admin profile")
    d.add_argument("name", metavar="NAME")
    d.set_defaults(handler=cmd_profiles_delete)


def _out(args: argparse.Namespace, io: IO, model: Any, text: str) -> int:
    if getattr(args, "json", False):
        io.out(json.dumps(model.model_dump(mode="json"), indent=2))
    else:
        io.out(text)
    return 0


def cmd_profiles_list(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.state.admin_profiles import list_admin_profiles

    result = list_admin_profiles(io.env)
    if getattr(args, "json", False) or not result.profiles:
        return _out(args, io, result, f"No admin profiles found in {result.path}")
    for prof in result.profiles:
        io.out(f"{prof.name}\t{prof.control_plane_base_url}" + ("\t(active)" if prof.active else ""))
    return 0


def cmd_profiles_set(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.state.admin_profiles import set_admin_profile

    result = set_admin_profile(io.env, args.name, base_url=args.control_plane_base_url,
                               url_path=args.control_plane_url_path, admin_key=args.admin_key,
                               activate=args.activate)
    return _out(args, io, result,
                f"Saved admin profile {result.profile.name} ({result.profile.control_plane_base_url})")


def cmd_profiles_activate(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.state.admin_profiles import activate_admin_profile

    result = activate_admin_profile(io.env, args.name)
    return _out(args, io, result, f"Activated admin profile {result.profile.name}")


def cmd_profiles_delete(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.state.admin_profiles import delete_admin_profile

    result = delete_admin_profile(io.env, args.name)
    return _out(args, io, result, f"Deleted admin profile {result.deleted_profile}")
