"""``profiles list|add|edit`` and ``profiles samples list|show``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tunnel_core.cli.commands import HELP
from tunnel_core.cli.console import IO


def register(sub: Any) -> None:
    prof = sub.add_parser(
        "profiles", help=HELP["profiles"],
        description="Profiles are YAML files <dir>/<name>.yaml. Directory: --profile-dir > TUNNEL_CLIENT_PROFILE_DIR "
        "> $XDG_CONFIG_HOME/tunnel-client > ~/.config/tunnel-client.",
    )
    prof.add_argument("--profile-dir", default=None, metavar="DIR", help="profile directory")
    psub = prof.add_subparsers(dest="profiles_command", metavar="COMMAND")
    prof.set_defaults(handler=lambda a, io: (prof.print_help(io.stdout), 0)[1])

    def dir_flag(p: argparse.ArgumentParser) -> None:
        # SUPPRESS keeps a value given before the subcommand (profiles --profile-dir D list).
        p.add_argument("--profile-dir", default=argparse.SUPPRESS, metavar="DIR", help="profile directory")

    ls = psub.add_parser("list", help="list the profiles in the profile directory")
    dir_flag(ls)
    ls.add_argument("--json", action="store_true", help="print [{name, path}] as JSON")
    ls.set_defaults(handler=cmd_list)

    add = psub.add_parser(
        "add", help="add a profile from a YAML file or a sample",
        description="Create <dir>/<name>.yaml from --from-file or --sample; the content must load before it is written.",
    )
    dir_flag(add)
    add.add_argument("name", metavar="NAME")
    add.add_argument("--from-file", default="", metavar="PATH", help="copy this YAML file")
    add.add_argument("--sample", default="", metavar="SAMPLE", help="render this built-in sample")
    add.add_argument("--tunnel-id", default="", metavar="ID", help="tunnel id (for --sample)")
    add.add_argument("--mcp-server-url", default="", metavar="URL", help="HTTP MCP server URL (for --sample)")
    add.add_argument("--mcp-command", default="", metavar="CMD", help="stdio MCP server command (for --sample)")
    add.add_argument("--force", action="store_true", help="replace an existing profile")
    add.add_argument("--json", action="store_true", help="print the result as JSON")
    add.set_defaults(handler=cmd_add)

    edit = psub.add_parser(
        "edit", help="edit a profile in $VISUAL or $EDITOR; saved only if it still loads",
        description="Open a temporary copy in $VISUAL (else $EDITOR). When the editor exits successfully and the "
        "copy loads with the strict loader, it atomically replaces the profile; otherwise the profile is left "
        "untouched. A profile that does not exist yet starts from sample_mcp_with_dcr.",
    )
    dir_flag(edit)
    edit.add_argument("name", metavar="NAME")
    edit.set_defaults(handler=cmd_edit)

    samples = psub.add_parser("samples", help="list or show the built-in samples")
    ssub = samples.add_subparsers(dest="samples_command", metavar="COMMAND")
    samples.set_defaults(handler=lambda a, io: (samples.print_help(io.stdout), 0)[1])
    sl = ssub.add_parser("list", help="list the samples with a one-line summary")
    sl.add_argument("--json", action="store_true")
    sl.set_defaults(handler=cmd_samples_list)
    ss = ssub.add_parser("show", help="show a sample: when to use it, its inputs and the YAML it writes")
    ss.add_argument("name", metavar="SAMPLE")
    ss.add_argument("--json", action="store_true")
    ss.set_defaults(handler=cmd_samples_show)


def _dir(args: argparse.Namespace, io: IO) -> Any:
    from tunnel_core.ops.profiles import resolve_dir

    return resolve_dir(getattr(args, "profile_dir", None), io.env)


def cmd_list(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.ops.profiles import list_profiles

    directory = _dir(args, io)
    entries = list_profiles(directory)
    if args.json:
        io.out(json.dumps([e.model_dump() for e in entries], indent=2))
    elif not entries:
        io.out(f"No profiles found in {directory}")
    else:
        for e in entries:
            io.out(f"{e.name}\t{e.path}")
    return 0


def cmd_add(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.ops.profiles import add_profile
    from tunnel_core.ops.samples import SampleRequest

    result = add_profile(
        args.name, _dir(args, io), from_file=args.from_file, sample=args.sample, force=args.force,
        request=SampleRequest(tunnel_id=args.tunnel_id, mcp_server_url=args.mcp_server_url,
                              mcp_command=args.mcp_command),
    )
    if args.json:
        io.out(result.model_dump_json(indent=2))
    else:
        io.out(f"Added profile {result.name} at {result.path}" + (" (replaced)" if result.replaced else ""))
    return 0


def cmd_edit(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.ops.profiles import edit_profile

    result = edit_profile(args.name, _dir(args, io), io.env)
    if result.changed:
        io.out(f"Saved profile {result.name} at {result.path}")
    else:
        io.out(f"No changes; profile {result.name} at {result.path} left as it was")
    return 0


def cmd_samples_list(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.ops.samples import list_samples

    samples = list_samples()
    if args.json:
        io.out(json.dumps([s.model_dump() for s in samples], indent=2))
    else:
        for s in samples:
            io.out(f"{s.name}\t{s.summary}")
    return 0


def cmd_samples_show(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.ops.samples import show_sample

    d = show_sample(args.name)
    if args.json:
        io.out(d.model_dump_json(indent=2))
        return 0
    io.out(f"Sample: {d.name}")
    io.out(f"Summary: {d.summary}")
    io.out(f"Use when: {d.use_when}")
    for heading, items in (("Required", d.required), ("Optional", d.optional), ("Notes", d.notes)):
        io.out(f"{heading}:")
        for item in items:
            io.out(f"  - {item}")
    io.out()
    io.stdout.write(d.yaml)
    io.stdout.flush()
    return 0
