"""``doctor``: check a configuration the way ``run`` would load it, before starting the daemon.

Check ids and their order follow the reference implementation, so scripts that read
``CHECK <id> <STATUS>`` lines or the ``--json`` report keep working. The result is
``fail`` when any check is FAIL (WARN and SKIP do not fail). Every problem is reported in
one run: each invalid setting fails the check it belongs to, and the checks that do not
depend on it still run. Without ``online`` no request goes to the control plane and a stdio
server is not started; the HTTP MCP target and its OAuth metadata are probed. With
``online``, the tunnel is looked up with the runtime key and the main MCP target gets the
same ``initialize`` probe ``run`` makes.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from tunnel_core.config.settings import (
    MCP_TARGET,
    PROFILE_NAME_RE,
    ConfigErrors,
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


# Which check a setting belongs to; settings not listed fail the config_validation check.
_CHECK_OF_SETTING = {
    "control_plane.tunnel_id": "tunnel_id",
    "control_plane.api_key": "control_plane_api_key",
    "control_plane.base_url": "control_plane_base_url",
    "control_plane.url_path": "control_plane_base_url",
    MCP_TARGET: "mcp_target",
    "health.listen_addr": "health_listener",
    "health.unix_socket": "health_listener",
}


def _file_error_check(message: str, source: _Source, path: str) -> DoctorCheck:
    """The selected file itself does not load (syntax, unknown keys)."""
    return DoctorCheck(
        id="profile_load", status="FAIL", summary=message, evidence=[path, message],
        why="the selected file must load cleanly (every key known, every value valid) before anything else "
        "can be checked.",
        next=[f"fix {path} (tunnel-client profiles edit <name> validates before saving)",
              f"rerun: {source.command('doctor')} --explain"],
    )


def _setting_checks(errors: list[ConfigError], source: _Source) -> dict[str, DoctorCheck]:
    """One FAIL row per check id for the invalid settings, with why/next guidance."""
    grouped: dict[str, list[str]] = {}
    for exc in errors:
        grouped.setdefault(_CHECK_OF_SETTING.get(exc.setting, "config_validation"), []).append(str(exc))
    return {check_id: _setting_check(check_id, messages, source) for check_id, messages in grouped.items()}


def _setting_check(check_id: str, messages: list[str], source: _Source) -> DoctorCheck:
    explain = f"rerun: {source.command('doctor')} --explain"
    summary = messages[0] + (f" (and {len(messages) - 1} more, see evidence)" if len(messages) > 1 else "")
    why, steps = _GUIDANCE.get(check_id, _GUIDANCE["config_validation"])
    steps = [step.format(run=source.command("run")) for step in steps]
    return DoctorCheck(id=check_id, status="FAIL", summary=summary, evidence=messages, why=why,
                       next=[*steps, explain])


_GUIDANCE: dict[str, tuple[str, list[str]]] = {
    "tunnel_id": (
        "the daemon polls the control plane for one tunnel; without a valid tunnel id it cannot start.",
        [f"copy the tunnel id (tunnel_ + 32 lowercase letters or digits) from {TUNNELS_PAGE.url}",
         "put it in the profile: tunnel-client init --profile my-server --tunnel-id tunnel_... "
         "--mcp-server-url http://127.0.0.1:3001/mcp --force",
         "or set --control-plane.tunnel-id / CONTROL_PLANE_TUNNEL_ID",
         f"to create tunnels you need an admin key from {ADMIN_KEYS_PAGE.url}; the daemon never needs it",
         "the whole first-use path: tunnel-client help quickstart"],
    ),
    "control_plane_api_key": (
        "the daemon authenticates every poll with the runtime API key; without it nothing reaches the tunnel.",
        [f"create or look up a runtime key at {RUNTIME_KEYS_PAGE.url}",
         "export CONTROL_PLANE_API_KEY=<runtime key>  (or point --control-plane.api-key at env:NAME or file:/path)",
         "an admin key is not needed for doctor or run",
         "if it passes: {run}"],
    ),
    "control_plane_base_url": (
        "the daemon needs a valid control-plane address to poll.",
        ["set --control-plane.base-url / CONTROL_PLANE_BASE_URL to an https:// host root "
         "(default https://api.openai.com); --control-plane.url-path takes only a path"],
    ),
    "mcp_target": (
        "the daemon forwards every call to the main MCP target; one must be configured.",
        ["for an HTTP server: tunnel-client init --profile my-server --tunnel-id tunnel_... "
         "--mcp-server-url http://127.0.0.1:3001/mcp",
         "for a local command: tunnel-client init --profile my-server --tunnel-id tunnel_... "
         "--mcp-command \"python /path/to/server.py\"",
         "or set --mcp.server-url / --mcp.command directly"],
    ),
    "health_listener": (
        "the daemon serves /healthz, /readyz, /metrics and /ui on this address and stops at startup if it is "
        "invalid.",
        ["give HOST:PORT, e.g. 127.0.0.1:8080, or 127.0.0.1:0 for a free port (add --health.url-file FILE to "
         "publish it)"],
    ),
    "config_validation": (
        "these settings stop the daemon from starting.",
        ["correct each setting named in the evidence (flag, environment variable or profile key)"],
    ),
}


def _api_key_check(settings: Settings, raw_in_file: bool) -> DoctorCheck:
    source = settings.api_key_source
    if source == "control_plane.api_key" or raw_in_file:
        where = settings.profile_path or "config file"
        also = "" if source == "control_plane.api_key" else f"; {source} is used, but the file still holds a key"
        return DoctorCheck(
            id="control_plane_api_key", status="WARN",
            summary=f"control_plane.api_key in {where} is the key itself, not a reference{also}",
            why="a key stored in a profile file leaks with every copy, backup or screen share of the file.",
            evidence=[where],
            next=["delete the key from the file (and rotate it if the file was shared)",
                  "write api_key: env:CONTROL_PLANE_API_KEY and export the key in the environment"],
        )
    return DoctorCheck(id="control_plane_api_key", status="PASS", summary=source)


def _raw_key_in_file(path: str) -> bool:
    """True when the selected file holds control_plane.api_key as a literal value."""
    if not path:
        return False
    from tunnel_core.config.refs import is_reference
    from tunnel_core.config.yamlfile import load_config_file, yaml_value

    try:
        value = yaml_value(load_config_file(Path(path)), "control_plane.api_key")
    except (ConfigError, OSError):
        return False
    return isinstance(value, str) and bool(value.strip()) and not is_reference(value.strip())


def _blocked(check_id: str, by: str, why: str) -> DoctorCheck:
    return DoctorCheck(id=check_id, status="SKIP", summary=f"blocked by the {by} check", why=why,
                       next=[f"fix the {by} check first"])


def _unknowable(by: str) -> list[DoctorCheck]:
    """The rows that need the settings, when the file that holds them cannot be read: SKIP, in order."""
    why = "its value comes from the selected file, which could not be loaded."
    return [_blocked(check_id, by, why) for check_id in ("tunnel_id", "control_plane_api_key")] + _page_checks() + [
        _blocked(check_id, by, why)
        for check_id in ("mcp_target", "mcp_server_reachable", "oauth_metadata", "health_listener", "ui")]


def run_doctor(flags: Mapping[str, Any], env: Mapping[str, str], *, online: bool = False) -> DoctorReport:
    """Run every check in the reference order and report every failure at once; never raises for
    a configuration problem."""
    out: list[DoctorCheck] = []
    kind, value = _selector(flags, env)
    source = _Source(kind, value, flags)
    rerun = f"rerun: {source.command('doctor')}" + (" --online" if online else "")
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
            return _finish([*out, *_page_checks(), checks.codex_plugin(env)], source)
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
        return _finish([*out, *_unknowable("profile_load"), checks.codex_plugin(env)], source)

    failed: dict[str, DoctorCheck] = {}
    try:
        settings = load_settings(flags, env)
    except ConfigErrors as many:
        settings, failed = many.partial, _setting_checks(many.errors, source)
    except ConfigError as exc:  # the file itself: nothing in it can be trusted
        out.append(_file_error_check(str(exc), source, path))
        return _finish([*out, *_unknowable("profile_load"), checks.codex_plugin(env)], source)
    out.append(DoctorCheck(id="profile_load", status="PASS", summary=path or "flags/environment only"))

    out.append(failed.get("tunnel_id") or DoctorCheck(id="tunnel_id", status="PASS", summary=settings.tunnel_id))
    out.append(failed.get("control_plane_api_key") or _api_key_check(settings, _raw_key_in_file(path)))
    if "control_plane_base_url" in failed:
        out.append(failed["control_plane_base_url"])
    out.extend(_page_checks())
    main = settings.binding("main")
    if "mcp_target" in failed or main is None:
        out.append(failed.get("mcp_target") or DoctorCheck(
            id="mcp_target", status="SKIP", summary="no main channel (the polled channels exclude it)"))
        why = "there is no usable main MCP target to probe."
        out.append(_blocked("mcp_server_reachable", "mcp_target", why))
        out.append(_blocked("oauth_metadata", "mcp_target", why))
    else:
        out.append(DoctorCheck(id="mcp_target", status="PASS", summary=main.target))
        if main.kind == "http":
            with checks.http_client() as client:
                reachable = checks.mcp_server_reachable(main.url, client, rerun=rerun)
                out.append(reachable)
                if reachable.status == "PASS":
                    out.append(checks.oauth_metadata(main.url, client))
                else:
                    out.append(_blocked("oauth_metadata", "mcp_server_reachable",
                                        "OAuth metadata is fetched from the MCP server's origin, which cannot be "
                                        "reached."))
        else:
            out.append(checks.mcp_command_executable(main.command, env, rerun=rerun))
            out.append(DoctorCheck(id="mcp_server_reachable", status="SKIP",
                                   summary="stdio targets are not probed over the network",
                                   why="a stdio server is a child process of the daemon; see mcp_command_executable."))
            out.append(DoctorCheck(id="oauth_metadata", status="SKIP",
                                   summary="stdio targets publish no OAuth metadata",
                                   why="OAuth discovery applies to HTTP MCP servers only."))
    listener = failed.get("health_listener") or checks.health_listener(settings.health_listen_addr, rerun=rerun)
    out.append(listener)
    out.append(checks.ui(settings.health_listen_addr, listener.status))
    out.append(checks.codex_plugin(env))
    if "config_validation" in failed:
        out.append(failed["config_validation"])
    if online:
        blockers = [c for c in ("tunnel_id", "control_plane_api_key", "control_plane_base_url") if c in failed]
        if blockers:
            out.append(_blocked("control_plane_online", blockers[0], "the control plane cannot be asked about a "
                                "tunnel without a valid tunnel id, runtime key and address."))
        else:
            out.append(checks.control_plane_online(settings, rerun=rerun))
        if "mcp_target" in failed or main is None:
            out.append(_blocked("mcp_initialize", "mcp_target", "there is no usable main MCP target to start."))
        else:
            out.append(checks.mcp_initialize(settings, main, rerun=rerun))
    return _finish(out, source)
