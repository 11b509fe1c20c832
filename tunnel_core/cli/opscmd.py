"""``help``, ``init``, ``doctor`` and ``health``: parse, call one operation, render text or ``--json``.

Only argparse-level work happens at import time; operations load inside the handlers so
``tunnel-client --help`` stays fast.
"""

from __future__ import annotations

import argparse

from tunnel_core.cli.commands import HELP
from tunnel_core.cli.console import IO

TYPE_CHECKING = False  # not from typing: `help TOPIC` imports this module and should not pay for typing
if TYPE_CHECKING:
    from typing import Any

    from pydantic import BaseModel

    from tunnel_core.ops.doctor import DoctorReport
    from tunnel_core.ops.health import EndpointProbe, HealthReport
    from tunnel_core.ops.init_profile import InitResult


def emit_json(io: IO, model: BaseModel) -> None:
    io.out(model.model_dump_json(indent=2))


def register(sub: Any, root: argparse.ArgumentParser) -> None:
    register_init(sub, root)
    register_doctor(sub, root)
    register_health(sub, root)
    register_help(sub, root)


# ---------------------------------------------------------------------------- help


def register_help(sub: Any, root: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "help", help=HELP["help"],
        description="Show a task page shipped with tunnel-client, or the --help of a command.",
    )
    p.add_argument("topic", nargs="*", metavar="TOPIC|COMMAND")
    p.add_argument("--json", action="store_true", help="print the topic as JSON {name, title, text}")
    p.set_defaults(handler=lambda args, io: cmd_help(args, io, sub, root))


def _find_command(sub: Any, words: list[str]) -> argparse.ArgumentParser | None:
    parser: argparse.ArgumentParser | None = None
    choices: dict[str, argparse.ArgumentParser] = dict(sub.choices)
    for word in words:
        nxt = choices.get(word)
        if nxt is None:
            return parser if parser is not None and word.startswith("-") else None
        parser = nxt
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        choices = dict(nested[0].choices) if nested else {}
    return parser


def cmd_help(args: argparse.Namespace, io: IO, sub: Any, root: argparse.ArgumentParser) -> int:
    from tunnel_core.ops.topic_files import topic_names, topic_text

    words: list[str] = [w.strip() for w in args.topic if w.strip()]
    if not words:
        root.print_help(io.stdout)
        return 0
    if words[0] in topic_names():
        if args.json:
            from tunnel_core.ops.help_topics import get_topic  # the JSON model (pydantic) only for --json

            emit_json(io, get_topic(words[0]))
        else:
            text = topic_text(words[0]) or ""
            io.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    parser = _find_command(sub, words)
    if parser is None:
        from tunnel_core.ops.help_topics import unknown_topic_error

        raise unknown_topic_error(" ".join(words))
    parser.print_help(io.stdout)
    return 0


# ---------------------------------------------------------------------------- init


def register_init(sub: Any, root: argparse.ArgumentParser | None = None) -> None:
    p = sub.add_parser(
        "init", help=HELP["init"],
        description="Create <profile dir>/<profile>.yaml from a built-in sample. Every input is checked and the "
        "result must load before anything is written; an existing profile is kept unless --force. The runtime "
        "key is stored as a reference (env:NAME or file:/path), never as a value.",
    )
    p.add_argument("--profile", default="sample_mcp_with_dcr", metavar="NAME", help="profile name (default %(default)s)")
    p.add_argument("--sample", default="", metavar="NAME",
                   help="built-in sample (default: sample_mcp_stdio_local for --mcp-command alone, "
                   "else sample_mcp_with_dcr); see tunnel-client profiles samples list")
    p.add_argument("--profile-dir", default=None, metavar="DIR", help="profile directory (TUNNEL_CLIENT_PROFILE_DIR)")
    p.add_argument("--force", action="store_true", help="replace an existing profile")
    p.add_argument("--tunnel-id", default="", metavar="ID", help="tunnel id from the Tunnels page (required)")
    p.add_argument("--control-plane-base-url", default="https://api.openai.com", metavar="URL",
                   help="control-plane base URL (default %(default)s)")
    p.add_argument("--control-plane-url-path", default="", metavar="PATH", help="optional path prefix before /v1")
    p.add_argument("--control-plane-api-key-ref", default="env:CONTROL_PLANE_API_KEY", metavar="REF",
                   help="where run reads the runtime key: env:NAME or file:/path (default %(default)s)")
    p.add_argument("--mcp-server-url", default="", metavar="URL", help="HTTP MCP server URL")
    p.add_argument("--mcp-command", default="", metavar="CMD", help="stdio MCP server command (checked before writing)")
    p.add_argument("--health-listen-addr", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="operator address for /healthz, /readyz and /ui (default %(default)s; :0 = pick a free port)")
    p.add_argument("--open-web-ui", action="store_true", help="open /ui in a browser when run starts")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(handler=cmd_init)


def cmd_init(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.ops.init_profile import init_profile
    from tunnel_core.ops.samples import SampleRequest

    request = SampleRequest(
        tunnel_id=args.tunnel_id, base_url=args.control_plane_base_url, url_path=args.control_plane_url_path,
        api_key_ref=args.control_plane_api_key_ref, health_listen_addr=args.health_listen_addr,
        open_browser=args.open_web_ui, mcp_server_url=args.mcp_server_url, mcp_command=args.mcp_command,
    )
    result = init_profile(request, env=io.env, profile=args.profile, sample=args.sample,
                          profile_dir=args.profile_dir, force=args.force)
    if args.json:
        emit_json(io, result)
    else:
        _render_init(io, result)
    return 0


def _render_init(io: IO, r: InitResult) -> None:
    from tunnel_core.config.settings import parse_listen_addr

    io.out(f"Created profile {r.profile} at {r.path}" + (" (replaced the previous file)" if r.replaced else ""))
    io.out(f"Sample: {r.sample}")
    io.out("Wrote:")
    io.out(f"  tunnel id      {r.tunnel_id}")
    io.out(f"  control plane  {r.control_plane_base_url}")
    io.out(f"  runtime key    {r.api_key_ref} (a reference: run reads the key from there; the key is not stored)")
    target = r.mcp_target + (f"  [{r.mcp_command_resolved}]" if r.mcp_command_resolved else "")
    io.out(f"  MCP target     {target} ({r.mcp_target_kind})")
    host, port = parse_listen_addr(r.health_listen_addr, what="health listen address")
    shown = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    io.out("  operator UI    " + (f"http://{shown}:{port}/ui" if port else "on a free port chosen at startup (see the log)"))
    io.out("Next:")
    for command in r.next:
        io.out(f"  {command}")
    io.out("Setup pages:")
    for page in r.setup_pages:
        io.out(f"  {page.label}: {page.url}")
    io.out("Connector note:")
    io.out(f"  {r.connector_note}")


# ---------------------------------------------------------------------------- doctor


def register_doctor(sub: Any, root: argparse.ArgumentParser | None = None) -> None:
    from tunnel_core.cli.flags import add_runtime_flags

    p = sub.add_parser(
        "doctor", help=HELP["doctor"],
        description="Load the configuration exactly as run would and check it: selection, profile, tunnel id, "
        "runtime key reference, MCP target (reachability, OAuth metadata or stdio command), operator listener, "
        "UI and Codex plugin. Prints CHECK <id> <STATUS> <summary> lines and RESULT ok|fail. Exit 0 ok, 2 fail.",
    )
    add_runtime_flags(p)
    g = p.add_argument_group("doctor")
    g.add_argument("--explain", action="store_true", help="explain every check that did not pass")
    g.add_argument("--json", action="store_true", help="print the report as JSON")
    g.add_argument("--online", action="store_true",
                   help="also ask the control plane for the tunnel with the runtime key (finds a wrong key, "
                   "missing permission or unknown tunnel)")
    p.set_defaults(handler=cmd_doctor)


def cmd_doctor(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.cli.flags import merge_aliases
    from tunnel_core.cli.progress import progress
    from tunnel_core.ops.doctor import run_doctor

    with progress(io.stderr, "running checks"):
        report = run_doctor(merge_aliases(args), io.env, online=args.online)
    if args.json:
        emit_json(io, report)
    else:
        render_doctor(io, report, explain=args.explain)
    return 0 if report.result == "ok" else 2


def render_doctor(io: IO, report: DoctorReport, *, explain: bool) -> None:
    for c in report.checks:
        io.out(f"CHECK {c.id:<24} {c.status:<4} {c.summary}")
    io.out()
    if report.result == "ok":
        io.out("RESULT ok")
        if report.next:
            io.out(f"NEXT   {report.next}")
    else:
        io.out("RESULT fail")
        io.out(f"FAILED_CHECKS {','.join(report.failed_checks)}")
        io.out("EXIT_CODE 2")
    if not explain:
        return
    for c in report.checks:
        if c.status == "PASS":
            continue
        io.out()
        io.out(f"CHECK {c.id}   {c.status}")
        if c.why:
            io.out("Why this matters:")
            io.out(f"  {c.why}")
        if c.evidence:
            io.out()
            io.out("Evidence:")
            for line in c.evidence:
                io.out(f"  - {line}")
        if c.next:
            io.out()
            io.out("What to do next:")
            for i, line in enumerate(c.next, 1):
                io.out(f"  {i}. {line}")


# ---------------------------------------------------------------------------- health


def register_health(sub: Any, root: argparse.ArgumentParser | None = None) -> None:
    p = sub.add_parser(
        "health", help=HELP["health"],
        description="Probe a live tunnel-client by its operator base URL, the file --health.url-file wrote, or a "
        "loopback port. Optionally check that a process id is alive and that the daemon has polled the control "
        "plane successfully at least once.",
    )
    g = p.add_argument_group("where the daemon is (exactly one)")
    g.add_argument("--url", default="", metavar="URL", help="operator base URL, or its /healthz or /readyz URL")
    g.add_argument("--url-file", default="", metavar="PATH", help="file holding the base URL (--health.url-file)")
    g.add_argument("--port", default="", metavar="PORT", help="loopback port of the operator listener")
    p.add_argument("--pid", default="", metavar="PID", help="also require this process to be running")
    p.add_argument("--pid-file", default="", metavar="PATH", help="also require the process in this file to be running")
    p.add_argument("--require-control-plane-poll", action="store_true",
                   help="also require metric commands_poll_last_successful_timestamp_seconds > 0 on /metrics")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(handler=cmd_health)


def _whole_number(value: str, flag: str) -> int:
    from tunnel_core.errors import UsageError

    value = value.strip()
    if not value:
        return 0
    if not value.isdigit():
        raise UsageError(f"{flag}: {value!r} is not a number; give a positive whole number")
    return int(value)


def cmd_health(args: argparse.Namespace, io: IO) -> int:
    from tunnel_core.ops.health import inspect_health

    report = inspect_health(
        url=args.url, url_file=args.url_file, port=_whole_number(args.port, "--port"),
        pid=_whole_number(args.pid, "--pid"), pid_file=args.pid_file,
        require_control_plane_poll=args.require_control_plane_poll,
    )
    if args.json:
        emit_json(io, report)
    else:
        render_health(io, report)
    return 0 if report.result == "ok" else 2


def _endpoint_line(p: EndpointProbe) -> str:
    parts = ["PASS" if p.ok else "FAIL"]
    if p.url:
        parts.append(p.url)
    if p.status:
        parts.append(f"HTTP {p.status}")
    if p.error:
        parts.append(p.error)
    elif p.body:
        parts.append(p.body.splitlines()[0])
    return " | ".join(parts)


def render_health(io: IO, r: HealthReport) -> None:
    loc = r.locator
    where = {"url": f"url={loc.url}", "url_file": f"url_file={loc.url_file}", "port": f"port={loc.port}"}[loc.kind]
    io.out(f"Locator: {where}")
    if loc.error:
        io.out(f"Locator error: {loc.error}")
    if r.base_url:
        io.out(f"Base URL: {r.base_url}")
        io.out(f"UI URL: {r.ui_url}")
    io.out(f"Healthz: {_endpoint_line(r.healthz)}")
    io.out(f"Readyz: {_endpoint_line(r.readyz)}")
    if r.control_plane_poll is not None:
        m = r.control_plane_poll
        parts = ["PASS" if m.ok else "FAIL"] + ([m.url] if m.url else [])
        parts.append(f"last_success_unix_seconds={m.value:.0f}" if m.ok else m.error)
        io.out(f"Control-plane poll: {' | '.join(p for p in parts if p)}")
    if r.process is not None:
        p = r.process
        parts = ["PASS" if p.running and not p.error else "FAIL"]
        if p.pid:
            parts.append(f"pid={p.pid}")
        if p.pid_file:
            parts.append(f"pid_file={p.pid_file}")
        if p.error:
            parts.append(p.error)
        io.out(f"Process: {' | '.join(parts)}")
    if r.hint:
        io.out(f"Cause: {r.hint}")
    io.out(f"Result: {r.result.upper()}")

