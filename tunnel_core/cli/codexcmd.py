"""``tunnel-client codex ...``: the Codex plugin, Codex status and diagnosis, the assistant, the tool server.

codex plugin install|uninstall|export   (hidden alias: ``plugin codex ...``)
codex status [--json] / codex diagnose [ALIAS] [--json]
codex assistant [QUESTION...]
codex mcp-server                        the agent tool server on stdio (what the plugin starts)
codex install|upgrade|uninstall         print the package-manager command for the Codex CLI
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from tunnel_core.cli.commands import HELP
from tunnel_core.cli.console import IO

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tunnel_core.codex.diagnose import CodexDiagnosis
    from tunnel_core.codex.install import InstallResult, UninstallResult
    from tunnel_core.codex.status import CodexStatus


def _json(io: IO, model: BaseModel) -> None:
    io.out(model.model_dump_json(indent=2))


def _help_of(parser: argparse.ArgumentParser) -> Any:
    def show(args: argparse.Namespace, io: IO) -> int:
        parser.print_help(io.stdout)
        return 0

    return show


def _home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codex-home", default=None, metavar="DIR",
                   help="Codex home directory (default $CODEX_HOME, else ~/.codex)")


def _plugin_commands(parent: argparse.ArgumentParser) -> None:
    psub = parent.add_subparsers(dest="plugin_command", metavar="COMMAND")
    parent.set_defaults(handler=_help_of(parent))

    i = psub.add_parser("install", help="install the tunnel-client plugin for Codex",
                        description="Copy the plugin bundle to $CODEX_HOME/plugins/cache/<marketplace>/tunnel-client/"
                        "local, pointed at this installation, and enable it in config.toml (only the plugin's table "
                        "is added; the rest of the file is kept byte for byte). Safe to run again.")
    _home(i)
    i.add_argument("--marketplace", default="debug", help="marketplace name of the install (default %(default)s)")
    i.add_argument("--approve-tools", default="none", choices=["none", "read-only", "all"],
                   help="pre-approve tool calls in config.toml: none (Codex asks), read-only tools, or all tools "
                   "(needed with approval_policy = \"never\"); default %(default)s")
    i.add_argument("--via-marketplace", action="store_true",
                   help="install through a local marketplace and `codex plugin add` (needs the codex program)")
    i.add_argument("--marketplace-dir", default="", metavar="DIR",
                   help="where --via-marketplace writes the marketplace (default $CODEX_HOME/tunnel-client-marketplace)")
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    i.set_defaults(handler=cmd_install)

    u = psub.add_parser("uninstall", help="remove the plugin and exactly the config entries install added")
    _home(u)
    u.add_argument("--marketplace", default="debug", help="marketplace name of the install (default %(default)s)")
    u.add_argument("--via-marketplace", action="store_true", help="undo an install --via-marketplace")
    u.add_argument("--marketplace-dir", default="", metavar="DIR", help="the --marketplace-dir used at install")
    u.add_argument("--json", action="store_true", help="print the result as JSON")
    u.set_defaults(handler=cmd_uninstall)

    e = psub.add_parser("export", help="write the plugin bundle to a directory")
    e.add_argument("--dir", required=True, metavar="DIR", help="directory to write the bundle to")
    e.add_argument("--json", action="store_true", help="print the result as JSON")
    e.set_defaults(handler=cmd_export)


def register(sub: Any) -> None:
    codex = sub.add_parser("codex", help=HELP["codex"],
                           description="Work with Codex: install the tunnel-client plugin, check the wiring, ask the "
                           "assistant, or run the agent tool server.")
    csub = codex.add_subparsers(dest="codex_command", metavar="COMMAND")
    codex.set_defaults(handler=_help_of(codex))

    plugin = csub.add_parser("plugin", help="install, uninstall or export the Codex plugin")
    _plugin_commands(plugin)

    st = csub.add_parser("status", help="Codex CLI, app-server, login and plugin wiring")
    _home(st)
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    st.add_argument("--no-probe", action="store_true", help="do not start codex app-server to check the login")
    st.set_defaults(handler=cmd_status)

    dg = csub.add_parser("diagnose", help="plugin, installation, state and runtime wiring, with problems found")
    _home(dg)
    dg.add_argument("alias_arg", nargs="?", default="", metavar="ALIAS", help="runtime alias to include")
    dg.add_argument("--alias", default="", help="runtime alias to include")
    dg.add_argument("--plugin-root", default="", metavar="DIR", help="plugin directory to inspect")
    dg.add_argument("--health-url", default="", metavar="URL", help="operator URL of a runtime to probe")
    dg.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    dg.set_defaults(handler=cmd_diagnose)

    a = csub.add_parser("assistant", help="ask Codex about tunnel-client (offline answers without Codex)",
                        description="Answer a question about tunnel-client through `codex app-server`, grounded in "
                        "the tunnel-client docs. With no question and a terminal, start a conversation. Without "
                        "Codex (or its login), answer from the local docs and help topics.")
    a.add_argument("prompt", nargs="*", metavar="QUESTION")
    _home(a)
    a.add_argument("--cwd", default="", metavar="DIR", help="working directory of the Codex thread")
    a.add_argument("--model", default="", help="model to use (default: Codex's)")
    a.add_argument("--model-provider", default="", help="model provider to use (default: Codex's)")
    a.add_argument("--approval-policy", default="never", choices=["untrusted", "on-request", "never"],
                   help="approval policy of the thread (default %(default)s)")
    a.add_argument("--sandbox-type", default="read-only", choices=["read-only", "workspace-write", "danger-full-access"],
                   help="sandbox of the thread (default %(default)s: the assistant answers, it does not edit)")
    a.add_argument("--developer-instructions", default="", metavar="TEXT",
                   help="extra developer instructions appended to the prompt pack")
    a.add_argument("--effort", default="", choices=["", "low", "medium", "high"], help="reasoning effort")
    a.add_argument("--summary", default="", help="reasoning summary mode")
    a.add_argument("--login-timeout", default="5m", metavar="DURATION", help="device-code login wait (default 5m)")
    a.add_argument("--idle-timeout", default="2m", metavar="DURATION",
                   help="give up when Codex makes no progress for this long (default 2m)")
    a.add_argument("--offline", action="store_true",
                   help="answer from the local docs and help topics without starting Codex")
    a.set_defaults(handler=cmd_assistant)

    m = csub.add_parser("mcp-server", help="run the agent tool server on stdio (started by the Codex plugin)")
    m.set_defaults(handler=cmd_mcp_server)

    for action, text in (("install", "print the command that installs the Codex CLI"),
                         ("upgrade", "print the command that upgrades the Codex CLI"),
                         ("uninstall", "print the command that uninstalls the Codex CLI")):
        pm = csub.add_parser(action, help=text)
        pm.add_argument("--json", action="store_true", help="print every method as JSON")
        pm.set_defaults(handler=cmd_package, package_action=action)

    # hidden compatibility alias: `tunnel-client plugin codex install|uninstall|export`
    hidden = sub.add_parser("plugin", description="Compatibility alias of `tunnel-client codex plugin`.")
    hsub = hidden.add_subparsers(dest="plugin_family", metavar="COMMAND")
    hidden.set_defaults(handler=_help_of(hidden))
    _plugin_commands(hsub.add_parser("codex", help="same as `tunnel-client codex plugin`"))


# ---------------------------------------------------------------------------- plugin


def cmd_install(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.codex.install import install_plugin, install_via_marketplace

    if args.via_marketplace:
        result = install_via_marketplace(io.env, codex_home_flag=args.codex_home, marketplace_dir=args.marketplace_dir)
    else:
        result = install_plugin(io.env, codex_home_flag=args.codex_home, marketplace=args.marketplace,
                                approve_tools=args.approve_tools)
    if args.json:
        _json(io, result)
    else:
        _render_install(io, result)
    return 0


def _render_install(io: IO, r: InstallResult) -> None:
    io.out(f"Installed {r.plugin_key} ({r.version}) into {r.plugin_dir}")
    io.out(f"Codex starts the tool server with: {' '.join(r.mcp_command)}")
    if r.route == "marketplace":
        io.out(f"Marketplace: {r.marketplace_dir} (registered with Codex as {r.marketplace})")
    elif r.config_changed:
        io.out(f"Updated Codex config {r.config_path} (enabled {r.plugin_key}"
               + (f", approvals: {r.approve_tools}" if r.approve_tools != "none" else "") + ")")
    else:
        io.out(f"Codex config {r.config_path} already enables {r.plugin_key} (unchanged)")
    for note in r.config_notes:
        io.out(f"Note: {note}")
    if r.binary_hint_path:
        io.out(f"Persisted binary hint {r.binary_hint_path} -> {r.binary_hint}")
    io.out("Next steps:")
    for step in r.next_steps:
        io.out(f"  {step}")


def cmd_uninstall(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.codex.install import uninstall_plugin, uninstall_via_marketplace

    if args.via_marketplace:
        result = uninstall_via_marketplace(io.env, codex_home_flag=args.codex_home,
                                           marketplace_dir=args.marketplace_dir)
    else:
        result = uninstall_plugin(io.env, codex_home_flag=args.codex_home, marketplace=args.marketplace)
    if args.json:
        _json(io, result)
    else:
        _render_uninstall(io, result)
    return 0


def _render_uninstall(io: IO, r: UninstallResult) -> None:
    if r.removed_plugin_dir:
        io.out(f"Removed {r.plugin_dir}")
    if r.config_changed and r.route == "cache":
        how = "restored byte for byte" if r.config_restored_exactly else "removed the plugin's tables"
        io.out(f"Updated Codex config {r.config_path} ({how})")
    for note in r.notes:
        io.out(note)
    for step in r.next_steps:
        io.out(f"Next: {step}")


def cmd_export(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.codex.install import export_bundle
    from tunnel_core.errors import UsageError

    try:
        result = export_bundle(args.dir)
    except OSError as exc:
        raise UsageError(f"--dir: cannot write the bundle to {args.dir} ({exc.filename or args.dir}: "
                         f"{exc.strerror or exc})") from None
    if args.json:
        _json(io, result)
        return 0
    io.out(f"Exported the tunnel-client plugin bundle to {result.dir} ({len(result.files)} files)")
    io.out(f"Its .mcp.json starts: {' '.join(result.mcp_command)}")
    io.out(f"Binary hint {result.binary_hint_path} -> {result.binary_hint}")
    io.out("Next steps:")
    for step in result.next_steps:
        io.out(f"  {step}")
    return 0


# ---------------------------------------------------------------------------- status / diagnose


def cmd_status(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.codex.status import codex_status

    status = codex_status(io.env, codex_home_flag=args.codex_home, probe=not args.no_probe)
    if args.json:
        _json(io, status)
    else:
        _render_status(io, status)
    return 0


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _render_status(io: IO, s: CodexStatus) -> None:
    io.out(f"State: {s.state}")
    io.out("Codex")
    io.out(f"  found:            {_yes(s.detected)}" + (f" ({s.path})" if s.path else ""))
    if s.detected:
        io.out(f"  version:          {s.version or 'unknown'}")
        io.out(f"  app-server:       {_yes(s.app_server_supported)}"
               + (f" ({s.app_server_support_error})" if s.app_server_support_error else ""))
    io.out(f"  home:             {s.codex_home}")
    io.out("Tunnel Client plugin")
    io.out(f"  installed:        {_yes(s.plugin_installed)}" + (f" ({s.plugin_key} {s.plugin_version})"
                                                                   if s.plugin_installed else ""))
    if s.plugin_installed:
        io.out(f"  enabled:          {_yes(s.plugin_enabled)}")
        io.out(f"  directory:        {s.plugin_dir}")
        io.out(f"  starts:           {' '.join(s.plugin_mcp_command) or 'unknown'}")
        io.out(f"  this installation:{' yes' if s.plugin_matches_current_binary else ' no (reinstall: ' + s.plugin_reinstall_command + ')'}")
    for entry in s.stale_plugin_config_entries:
        io.out(f"  stale entry:      {entry.key} ({entry.reason})")
    for key in s.legacy_plugin_keys:
        io.out(f"  legacy plugin:    {key} (the reference implementation's)")
    if s.config_error:
        io.out(f"  config problem:   {s.config_error}")
    io.out("Codex app-bridge (codex assistant)")
    io.out(f"  ready:            {_yes(s.bridge_ready)}" + (f" ({s.bridge_error})" if s.bridge_error else ""))
    io.out(f"  assistant:        {s.assistant_state}")
    io.out("Commands")
    for command in s.recommended_commands:
        io.out(f"  {command}")
    io.out(f"Docs: {s.docs_url}")


def cmd_diagnose(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.codex.diagnose import codex_diagnose

    diag = codex_diagnose(io.env, codex_home_flag=args.codex_home, alias=args.alias or args.alias_arg,
                          plugin_root=args.plugin_root, health_url=args.health_url)
    if args.json:
        _json(io, diag)
    else:
        _render_diagnose(io, diag)
    return 0


def _render_diagnose(io: IO, d: CodexDiagnosis) -> None:
    io.out(f"Codex home:        {d.codex_home}")
    io.out(f"Plugin:            {d.plugin_key or 'not installed'}" + (f" at {d.loaded_plugin_source}"
                                                                       if d.loaded_plugin_source else ""))
    if d.plugin_installed:
        io.out(f"Plugin starts:     {' '.join(d.plugin_mcp_command)} ({'this installation' if d.plugin_points_here else 'another installation'})")
    io.out(f"tunnel-client:     {d.resolved_tunnel_client_binary} {d.binary_version}")
    io.out(f"State root:        {d.state_root or d.state_root_error}")
    io.out(f"Profile directory: {d.profile_dir or d.profile_dir_error}")
    io.out(f"Keys in env:       {', '.join(n for n in d.forwarded_env_present if 'KEY' in n) or 'none'}")
    if d.runtime_status is not None:
        rs = d.runtime_status
        io.out(f"Runtime:           {rs.get('alias')} {rs.get('runtime_state')} process_running="
               f"{rs.get('process_running')} healthy={rs.get('healthy')} ready={rs.get('ready')}")
    elif d.runtime_status_error:
        io.out(f"Runtime:           {d.runtime_status_error}")
    if d.health_probe is not None:
        io.out(f"Health probe:      {d.health_probe.url} healthz={d.health_probe.healthz_ok} "
               f"readyz={d.health_probe.readyz_ok}")
    io.out(f"Codex CLI:         {d.codex_bridge.path or 'not found'} {d.codex_bridge.version}")
    if d.problems:
        io.out("Problems:")
        for p in d.problems:
            io.out(f"  {p}")
    else:
        io.out("Problems:          none found")
    for step in d.next_steps:
        io.out(f"Next: {step}")


# ---------------------------------------------------------------------------- assistant, server, packages


def _duration(value: str, flag: str) -> float:
    from tunnel_core.config.durations import parse_duration
    from tunnel_core.errors import UsageError

    try:
        seconds = parse_duration(value)
    except ValueError:
        raise UsageError(f"{flag}: invalid duration {value!r}; use forms like 30s or 2m") from None
    if seconds <= 0:
        raise UsageError(f"{flag} must be positive")
    return seconds


def cmd_assistant(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.codex.assistant import AssistantOptions, run_assistant

    opts = AssistantOptions(
        cwd=args.cwd, model=args.model, model_provider=args.model_provider, approval_policy=args.approval_policy,
        sandbox=args.sandbox_type, developer_instructions=args.developer_instructions, effort=args.effort,
        summary=args.summary, login_timeout=_duration(args.login_timeout, "--login-timeout"),
        idle_timeout=_duration(args.idle_timeout, "--idle-timeout"), codex_home=args.codex_home,
        offline=args.offline,
    )
    stdin = getattr(io, "stdin", None) or sys.stdin
    return run_assistant(args.prompt, opts, env=io.env, stdin=stdin, stdout=io.stdout, stderr=io.stderr)


def cmd_mcp_server(args: argparse.Namespace, io: IO) -> int:
    from agent_tools.front import main

    return main()


def cmd_package(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.codex.packages import package_commands

    result = package_commands(args.package_action, io.env)
    if args.json:
        _json(io, result)
        return 0
    io.out(result.command)
    others = [getattr(m, f"{result.action}_command") for m in result.methods if m.name != result.preferred_method]
    for other in others:
        io.out(f"# or: {other}")
    io.out(f"# docs: {result.docs_url}")
    return 0
