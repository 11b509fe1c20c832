"""First-use tools: help (with the agent flow), the installation overview, profiles and doctor."""

from __future__ import annotations

import os
import sys
from typing import Any

from pydantic import Field

from agent_tools.common import check_tunnel_client_bin
from agent_tools.toolkit import Env, Outcome, ToolInput, ToolSpec, next_call
from tunnel_core import __version__
from tunnel_core.codex.bundle import current_entry_point
from tunnel_core.codex.prompts import AGENT_FLOW
from tunnel_core.ops.doctor import DoctorReport, run_doctor
from tunnel_core.ops.help_topics import get_topic, list_topics
from tunnel_core.ops.init_profile import InitResult, init_profile
from tunnel_core.ops.profiles import list_profiles, resolve_dir
from tunnel_core.ops.samples import (
    DEFAULT_BASE_URL,
    DEFAULT_HEALTH_LISTEN_ADDR,
    DEFAULT_KEY_REF,
    SampleRequest,
)
from tunnel_core.state.admin_profiles import load_admin_profiles
from tunnel_core.state.records import load_aliases
from tunnel_core.state.refs import reference_available
from tunnel_core.state.root import resolve_state_root

KEY_VARIABLES = ("CONTROL_PLANE_API_KEY", "OPENAI_API_KEY", "OPENAI_ADMIN_KEY")


class HelpInput(ToolInput):
    topic: str = Field("", description="e.g. quickstart, plugin, troubleshooting")


class SelectInput(ToolInput):
    tunnel_client_bin: str = ""
    persist_hint: bool = Field(True, description="ignored")
    allow_path_lookup: bool = Field(False, description="ignored")
    profile_dir: str = Field("", description="list the profiles of another directory")


class InitInput(ToolInput):
    exactly_one = (("mcp_command", "mcp_server_url"),)
    reference_fields = ("api_key_ref",)

    tunnel_id: str
    mcp_command: str | None = None
    mcp_server_url: str | None = None
    profile: str = "default"
    sample: str = Field("", description="see help samples")
    profile_dir: str = ""
    api_key_ref: str = Field(DEFAULT_KEY_REF, description="env:NAME or file:/path")
    force: bool = Field(False, description="overwrite")


class DoctorInput(ToolInput):
    exactly_one = (("profile", "profile_file", "config"),)

    profile: str | None = None
    profile_file: str | None = None
    config: str | None = None
    profile_dir: str = ""
    online: bool = Field(False, description="also look the tunnel up (runtime key)")


# ---------------------------------------------------------------------------- help


def help_topic(inp: HelpInput, env: Env) -> Outcome:
    name = inp.topic.strip()
    if not name:
        topics = [t.model_dump() for t in list_topics()]
        return Outcome({"agent_flow": list(AGENT_FLOW), "topics": topics,
                        "next": [next_call("help", "the first-use guide", topic="quickstart")]},
                       "Help topics: " + ", ".join(t["name"] for t in topics))
    topic = get_topic(name)
    return Outcome({"name": topic.name, "title": topic.title, "text": topic.text}, f"Help topic {topic.name}: "
                   f"{topic.title}")


# ---------------------------------------------------------------------------- the installation


def select_client(inp: SelectInput, env: Env) -> Outcome:
    """What these tools drive and see: this installation, its state, profiles, admin profiles and keys."""
    check_tunnel_client_bin(inp.tunnel_client_bin)
    entry = current_entry_point()
    root = resolve_state_root(env)
    admin = load_admin_profiles(root)
    directory = resolve_dir(inp.profile_dir or None, env)
    aliases = sorted(load_aliases(root))
    active = admin.profiles.get(admin.active_profile)
    view: dict[str, Any] = {
        "ok": True, "tunnel_client_bin": entry or sys.executable, "version": __version__,
        "selection_source": "this_installation", "state_root": str(root.path), "profile_dir": str(directory),
        "control_plane_base_url": (env.get("CONTROL_PLANE_BASE_URL") or (active.control_plane_base_url if active
                                                                         else "") or DEFAULT_BASE_URL),
        "keys_available": {name: reference_available(f"env:{name}", env)[0] for name in KEY_VARIABLES},
        "aliases": aliases, "profiles": [e.name for e in list_profiles(directory)],
        "admin_profiles": [{"name": p.name, "control_plane_base_url": p.control_plane_base_url,
                            "admin_key": p.admin_key, "active": p.name == admin.active_profile}
                           for p in sorted(admin.profiles.values(), key=lambda p: p.name)],
    }
    calls = [next_call("list_runtime_aliases", "state of the runtimes of this machine")] if aliases else \
        [next_call("help", "how to connect a first MCP server", topic="plugin")]
    view["next"] = calls
    if not view["keys_available"]["CONTROL_PLANE_API_KEY"]:
        view["fix"] = ("CONTROL_PLANE_API_KEY is not set for the tool server: export it before starting Codex, or "
                       "pass runtime_api_key as file:/path")
    return Outcome(view, f"tunnel-client {__version__} at {view['tunnel_client_bin']}; {len(aliases)} runtimes, "
                         f"{len(view['profiles'])} profiles, {len(view['admin_profiles'])} admin profiles")


# ---------------------------------------------------------------------------- profiles and doctor


def init(inp: InitInput, env: Env) -> Outcome:
    base = env.get("CONTROL_PLANE_BASE_URL") or DEFAULT_BASE_URL
    request = SampleRequest(tunnel_id=inp.tunnel_id, base_url=base, url_path="", api_key_ref=inp.api_key_ref,
                            health_listen_addr=DEFAULT_HEALTH_LISTEN_ADDR, mcp_server_url=inp.mcp_server_url or "",
                            mcp_command=inp.mcp_command or "")
    result: InitResult = init_profile(request, env=env, profile=inp.profile, sample=inp.sample,
                                      profile_dir=inp.profile_dir or None, force=inp.force)
    view = {"profile": result.profile, "path": result.path, "sample": result.sample,
            "api_key_ref": result.api_key_ref,
            "next": [next_call("doctor", "check it end to end", profile=result.profile,
                               profile_dir=os.path.dirname(result.path))],
            "cli": list(result.next)}
    return Outcome(view, f"Wrote profile {result.profile} at {result.path} (sample {result.sample})")


def _alias_of_profile(env: Env, name: str, directory: str) -> str:
    """The runtime alias whose generated profile this is, or ""."""
    try:
        records = load_aliases(resolve_state_root(env)).values()
    except Exception:  # an unreadable state root only means no alias is known
        return ""
    for r in records:
        if r.profile_name == name and (not directory or os.path.realpath(r.profile_dir) == os.path.realpath(directory)):
            return r.alias
    return ""


def doctor(inp: DoctorInput, env: Env) -> Outcome:
    flags: dict[str, Any] = {"profile": inp.profile, "profile_file": inp.profile_file, "config": inp.config,
                             "profile_dir": inp.profile_dir or None}
    report: DoctorReport = run_doctor(flags, env, online=inp.online)
    # a check's remedies are written for the command line: they go to the humans' field
    failed = [{"id": c.id, "summary": c.summary, "why": c.why, "cli": c.next} for c in report.checks
              if c.status == "FAIL"]
    warned = [{"id": c.id, "summary": c.summary} for c in report.checks if c.status == "WARN"]
    view: dict[str, Any] = {"result": report.result, "failed": failed}
    if warned:
        view["warnings"] = warned
    view["passed"] = [c.id for c in report.checks if c.status == "PASS"]
    alias = _alias_of_profile(env, inp.profile, inp.profile_dir) if inp.profile else ""
    args = {k: v for k, v in {"profile": inp.profile, "profile_file": inp.profile_file, "config": inp.config,
                              "profile_dir": inp.profile_dir}.items() if v}
    if report.result == "fail":
        view["next"] = [next_call("doctor", "check again after fixing what failed", **args)]
    if alias:
        view["runtime_alias"] = alias
        view.setdefault("next", []).append(next_call(
            "runtime_status", f"this profile belongs to the supervised runtime {alias}: manage it with the runtime "
            "tools (connect_stdio_mcp with replace: true restarts it), never with a foreground run", alias=alias))
    explain = ["tunnel-client", "doctor", *(f"--{k.replace('_', '-')}={v}" for k, v in args.items()), "--explain"]
    view["cli"] = [" ".join(explain)] + ([report.next] if report.next and not alias else [])
    summary = "doctor: ok" if report.result == "ok" else (
        f"doctor: FAIL ({', '.join(report.failed_checks)}): {failed[0]['summary'] if failed else ''}")
    return Outcome(view, summary)


SPECS = (
    ToolSpec("help", "Help", "Start here: the order of tool calls and the help topics; with topic, that guide.",
             HelpInput, help_topic, read_only=True, destructive=False, idempotent=True, open_world=False,
             fix="call help without a topic to list the topics"),
    ToolSpec("install_or_select_tunnel_client", "This installation",
             "The tunnel-client these tools drive and what it sees: version, directories, runtimes, profiles, admin "
             "profiles, which key variables are set.",
             SelectInput, select_client, read_only=True, destructive=False, idempotent=True, open_world=False,
             fix="omit tunnel_client_bin"),
    ToolSpec("init_profile", "Write a profile",
             "Write a profile for a foreground `tunnel-client run` (service, container). For a runtime on this "
             "machine use connect_stdio_mcp.",
             InitInput, init, read_only=False, destructive=False, idempotent=False, open_world=False,
             fix="fix the argument named in the error; force: true replaces an existing profile"),
    ToolSpec("doctor", "Doctor",
             "Check a profile or config as run would load it; each failed check says why and how to fix it.",
             DoctorInput, doctor, read_only=True, destructive=False, idempotent=True, open_world=True,
             fix="install_or_select_tunnel_client lists the profiles"),
)
