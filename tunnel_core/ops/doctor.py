"""``doctor``: check a configuration the way ``run`` would load it, before starting the daemon.

Check ids and their order follow the reference implementation, so scripts that read
``CHECK <id> <STATUS>`` lines or the ``--json`` report keep working. The result is
``fail`` when any check is FAIL (WARN and SKIP do not fail). Without ``online`` no
request goes to the control plane; the MCP target and its OAuth metadata are probed.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from tunnel_core.config.settings import (
    PROFILE_NAME_RE,
    ConfigSelection,
    Settings,
    load_settings,
    profile_dir,
    select_config_file,
)
from tunnel_core.errors import ConfigError
from tunnel_core.ops import doctor_checks as checks
from tunnel_core.ops.doctor_checks import DoctorCheck
from tunnel_core.ops.pages import ADMIN_KEYS_PAGE, RUNTIME_KEYS_PAGE, SETUP_PAGES, TUNNELS_PAGE

__all__ = ["DoctorCheck", "DoctorReport", "run_doctor"]


class DoctorReport(BaseModel):
    result: Literal["ok", "fail"]
    failed_checks: list[str] = Field(default_factory=list)
    next: str = ""
    checks: list[DoctorCheck]


def _page_checks() -> list[DoctorCheck]:
    return [DoctorCheck(id=p.check_id, status="PASS", summary=p.url) for p in SETUP_PAGES]


_SELECTORS = (("config", "config", "TUNNEL_CLIENT_CONFIG"), ("profile", "profile", "TUNNEL_CLIENT_PROFILE"),
              ("profile-file", "profile_file", "TUNNEL_CLIENT_PROFILE_FILE"))


def _selector(flags: Mapping[str, Any], env: Mapping[str, str]) -> tuple[str, str]:
    """(kind, value) of the file selection, flags before env; kind is config / profile / profile-file / ""."""
    for kind, flag, _ in _SELECTORS:
        if flags.get(flag):
            return kind, str(flags[flag])
    for kind, _, var in _SELECTORS:
        if env.get(var):
            return kind, env[var]
    return "", ""


class _Source:
    """What doctor reports about the selected configuration and the command to run next."""

    def __init__(self, kind: str, value: str, flags: Mapping[str, Any]) -> None:
        self.kind, self.value = kind, value
        self.dir_flag = str(flags.get("profile_dir") or "")

    @property
    def summary(self) -> str:
        if self.kind == "profile":
            return f"profile: {self.value}"
        if self.kind == "profile-file":
            return f"profile file: {self.value}"
        if self.kind == "config":
            return self.value
        return "flags/environment only"

    def command(self, verb: str) -> str:
        if not self.kind:
            return f"tunnel-client {verb}"
        arg = f"--{self.kind} {shlex.quote(self.value)}"
        if self.kind == "profile" and self.dir_flag:
            arg += f" --profile-dir {shlex.quote(self.dir_flag)}"
        return f"tunnel-client {verb} {arg}"


def _finish(report_checks: list[DoctorCheck], source: _Source | None) -> DoctorReport:
    failed = [c.id for c in report_checks if c.status == "FAIL"]
    return DoctorReport(
        result="fail" if failed else "ok",
        failed_checks=failed,
        next="" if failed or source is None else source.command("run"),
        checks=report_checks,
    )


def _config_error_check(message: str, source: _Source, path: str) -> DoctorCheck:
    """Map a configuration error to the check it belongs to, with why/next guidance."""
    explain = source.command("doctor") + " --explain"
    low = message.lower()
    # Errors about the file itself (syntax, unknown keys) start with its path.
    if path and message.startswith((path, f"config file {path}")):
        return DoctorCheck(
            id="profile_load", status="FAIL", summary=message, evidence=[path, message],
            why="the selected file must load cleanly (every key known, every value valid) before anything else "
            "can be checked.",
            next=[f"fix {path} (tunnel-client profiles edit <name> validates before saving)", f"rerun: {explain}"],
        )
    if "tunnel id" in low:
        return DoctorCheck(
            id="tunnel_id", status="FAIL", summary=message, evidence=[message],
            why="the daemon polls the control plane for one tunnel; without a valid tunnel id it cannot start.",
            next=[f"copy the tunnel id (tunnel_ + 32 lowercase letters or digits) from {TUNNELS_PAGE.url}",
                  "put it in the profile: tunnel-client init --profile my-server --tunnel-id tunnel_... "
                  "--mcp-server-url http://127.0.0.1:3001/mcp --force",
                  "or set --control-plane.tunnel-id / CONTROL_PLANE_TUNNEL_ID",
                  f"to create tunnels you need an admin key from {ADMIN_KEYS_PAGE.url}; the daemon never needs it",
                  f"rerun: {explain}", "the whole first-use path: tunnel-client help quickstart"],
        )
    if any(k in message for k in ("control plane API key", "CONTROL_PLANE_API_KEY", "OPENAI_API_KEY",
                                  "api-key", "api_key")):
        return DoctorCheck(
            id="control_plane_api_key", status="FAIL", summary=message, evidence=[message],
            why="the daemon authenticates every poll with the runtime API key; without it nothing reaches the tunnel.",
            next=[f"create or look up a runtime key at {RUNTIME_KEYS_PAGE.url}",
                  "export CONTROL_PLANE_API_KEY=<runtime key>  (or point --control-plane.api-key at env:NAME or "
                  "file:/path)",
                  "an admin key is not needed for doctor or run",
                  f"rerun: {explain}", f"if it passes: {source.command('run')}"],
        )
    if "control-plane.base-url" in message or "url-path" in message:
        return DoctorCheck(
            id="control_plane_base_url", status="FAIL", summary=message, evidence=[message],
            why="the daemon needs a valid control-plane address to poll.",
            next=["set --control-plane.base-url / CONTROL_PLANE_BASE_URL to an https:// host root "
                  "(default https://api.openai.com)", f"rerun: {explain}"],
        )
    if "main channel is required" in message or "mcp." in low or "mcp binding" in low:
        return DoctorCheck(
            id="mcp_target", status="FAIL", summary=message, evidence=[message],
            why="the daemon forwards every call to the main MCP target; one must be configured.",
            next=["for an HTTP server: tunnel-client init --profile my-server --tunnel-id tunnel_... "
                  "--mcp-server-url http://127.0.0.1:3001/mcp",
                  "for a local command: tunnel-client init --profile my-server --tunnel-id tunnel_... "
                  "--mcp-command \"python /path/to/server.py\"",
                  "or set --mcp.server-url / --mcp.command directly", f"rerun: {explain}"],
        )
    return DoctorCheck(
        id="config_validation", status="FAIL", summary=message, evidence=[message],
        why="this setting stops the daemon from starting.",
        next=["correct the setting named in the message (flag, environment variable or profile key)",
              f"rerun: {explain}"],
    )


def _api_key_check(settings: Settings) -> DoctorCheck:
    source = settings.api_key_source
    if source == "control_plane.api_key":
        return DoctorCheck(
            id="control_plane_api_key", status="WARN",
            summary="control_plane.api_key (key written in the profile itself)",
            why="a key stored in a profile file leaks with every copy of the file.",
            evidence=[settings.profile_path or "config file"],
            next=["move the key to an environment variable and write api_key: env:CONTROL_PLANE_API_KEY"],
        )
    return DoctorCheck(id="control_plane_api_key", status="PASS", summary=source)


def run_doctor(flags: Mapping[str, Any], env: Mapping[str, str], *, online: bool = False) -> DoctorReport:
    """Run every check in the reference order; never raises for a configuration problem."""
    out: list[DoctorCheck] = []
    kind, value = _selector(flags, env)
    source = _Source(kind, value, flags)
    try:
        selection: ConfigSelection | None = select_config_file(flags, env)
    except ConfigError as exc:
        message = str(exc)
        if kind == "profile" and PROFILE_NAME_RE.match(value) and "not found" in message:
            selection = None  # reported as profile_load below, like an unreadable file
        else:
            out.append(DoctorCheck(
                id="config_source", status="FAIL", summary=message, evidence=[message],
                why="doctor must know which profile or config file `run` would read before it can check anything.",
                next=["pass one of --profile NAME, --profile-file PATH or --config PATH (or one of "
                      "TUNNEL_CLIENT_PROFILE / TUNNEL_CLIENT_PROFILE_FILE / TUNNEL_CLIENT_CONFIG), not several"],
            ))
            return _finish(out + _page_checks(), source)
    out.append(DoctorCheck(id="config_source", status="PASS", summary=source.summary))

    path = ""
    if selection is None:
        path = str(profile_dir(flags, env) / f"{value}.yaml")
        problem: str | None = "no such file"
    elif selection.path is not None:
        path = str(selection.path)
        try:
            selection.path.read_bytes()
            problem = None
        except OSError as exc:
            problem = exc.strerror or str(exc)
    else:
        problem = None
    if problem:
        if kind == "profile":
            where = f" --profile-dir {shlex.quote(source.dir_flag)}" if source.dir_flag else ""
            fix = f"create it: tunnel-client init --profile {shlex.quote(value)}{where} --tunnel-id tunnel_... " \
                "--mcp-server-url URL"
        else:
            fix = f"check that {path} exists and is readable"
        out.append(DoctorCheck(
            id="profile_load", status="FAIL", summary=f"{path}: {problem}", evidence=[path, problem],
            why="the selected profile or config file must exist and be readable.",
            next=[fix, "list existing profiles: tunnel-client profiles list"],
        ))
        return _finish(out + _page_checks(), source)
    out.append(DoctorCheck(id="profile_load", status="PASS", summary=path or "flags/environment only"))

    try:
        settings = load_settings(flags, env)
    except ConfigError as exc:
        out.append(_config_error_check(str(exc), source, path))
        return _finish([*out, *_page_checks(), checks.codex_plugin(env)], source)

    out.append(DoctorCheck(id="tunnel_id", status="PASS", summary=settings.tunnel_id))
    out.append(_api_key_check(settings))
    out.extend(_page_checks())
    main = settings.binding("main")
    if main is not None:
        out.append(DoctorCheck(id="mcp_target", status="PASS", summary=main.target))
        if main.kind == "http":
            with checks.http_client() as client:
                reachable = checks.mcp_server_reachable(main.url, client)
                out.append(reachable)
                if reachable.status == "PASS":
                    out.append(checks.oauth_metadata(main.url, client))
                else:
                    out.append(DoctorCheck(
                        id="oauth_metadata", status="SKIP", summary="blocked by the mcp_server_reachable check",
                        why="OAuth metadata is fetched from the MCP server's origin, which cannot be reached.",
                        next=["fix the mcp_server_reachable check first"],
                    ))
        else:
            out.append(checks.mcp_command_executable(main.command, env))
            out.append(DoctorCheck(id="mcp_server_reachable", status="SKIP",
                                   summary="stdio targets are not probed over the network",
                                   why="a stdio server is a child process of the daemon; see mcp_command_executable."))
            out.append(DoctorCheck(id="oauth_metadata", status="SKIP",
                                   summary="stdio targets publish no OAuth metadata",
                                   why="OAuth discovery applies to HTTP MCP servers only."))
    listener = checks.health_listener(settings.health_listen_addr)
    out.append(listener)
    out.append(checks.ui(settings.health_listen_addr, listener.status))
    out.append(checks.codex_plugin(env))
    if online:
        out.append(checks.control_plane_online(settings))
    return _finish(out, source)

