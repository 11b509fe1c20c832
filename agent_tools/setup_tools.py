"""First-use tools: quickstart, help topics, profiles and doctor."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from agent_tools.common import trusted_base_url
from agent_tools.toolkit import Env, Outcome, ToolInput, ToolSpec
from tunnel_core.ops.doctor import DoctorReport, run_doctor
from tunnel_core.ops.help_topics import HelpTopic, HelpTopicSummary, get_topic, list_topics
from tunnel_core.ops.init_profile import InitResult, init_profile
from tunnel_core.ops.profiles import ProfileEntry, list_profiles, resolve_dir
from tunnel_core.ops.samples import (
    DEFAULT_BASE_URL,
    DEFAULT_HEALTH_LISTEN_ADDR,
    DEFAULT_KEY_REF,
    DEFAULT_SAMPLE,
    SampleRequest,
)

AGENT_FLOW = [
    "list_runtimes: see which aliases already exist on this machine",
    "connect_runtime {alias, tunnel_id or organization_id/workspace_id, mcp_command or mcp_server_url}: "
    "start a supervised runtime",
    "runtime_status {alias}: report success only when process_running and healthy are true; report ready and "
    "control_plane_poll_health separately",
    "doctor {profile}: when something fails, check the runtime's profile",
    "stop_runtime / remove_runtime {alias}: stop it, or forget it locally",
]


class Quickstart(BaseModel):
    """The quickstart help topic plus the tool order an agent should follow."""

    title: str
    text: str
    agent_flow: list[str]
    topics: list[HelpTopicSummary]


class HelpResult(BaseModel):
    topics: list[HelpTopicSummary]
    topic: HelpTopic | None = None


class ProfileList(BaseModel):
    profile_dir: str
    profiles: list[ProfileEntry]


class NoInput(ToolInput):
    pass


class HelpInput(ToolInput):
    topic: str = Field("", description="help topic name (quickstart, samples, doctor, oauth, plugin, "
                                       "troubleshooting); empty lists the topics")


class InitInput(ToolInput):
    reference_fields = ("api_key_ref",)

    tunnel_id: str = Field(description="tunnel id: tunnel_ followed by 32 lowercase letters or digits")
    mcp_server_url: str = Field("", description="HTTP MCP server URL (give this or mcp_command)")
    mcp_command: str = Field("", description="stdio MCP server command line (give this or mcp_server_url)")
    profile: str = Field(DEFAULT_SAMPLE, description="profile name to write")
    sample: str = Field("", description="built-in sample to start from (default: chosen from the target kind)")
    profile_dir: str = Field("", description="profile directory (default TUNNEL_CLIENT_PROFILE_DIR or "
                                             "~/.config/tunnel-client)")
    control_plane_base_url: str = Field("", description=f"control-plane base URL (default {DEFAULT_BASE_URL})")
    control_plane_url_path: str = Field("", description="optional path prefix before /v1")
    api_key_ref: str = Field(DEFAULT_KEY_REF, description="where run reads the runtime key: env:NAME or file:/path")
    health_listen_addr: str = Field(DEFAULT_HEALTH_LISTEN_ADDR, description="operator address for /healthz, "
                                    "/readyz and /ui (127.0.0.1:0 picks a free port)")
    force: bool = Field(False, description="replace an existing profile of that name")


class ProfilesInput(ToolInput):
    profile_dir: str = Field("", description="profile directory (default TUNNEL_CLIENT_PROFILE_DIR or "
                                             "~/.config/tunnel-client)")


class DoctorInput(ToolInput):
    profile: str = Field("", description="profile name to check")
    profile_file: str = Field("", description="profile file path to check (instead of profile)")
    config: str = Field("", description="YAML config file to check (instead of profile)")
    profile_dir: str = Field("", description="profile directory for profile")
    online: bool = Field(False, description="also ask the control plane for the tunnel with the runtime key")


def quickstart(_: NoInput, env: Env) -> Outcome:
    topic = get_topic("quickstart")
    result = Quickstart(title=topic.title, text=topic.text, agent_flow=AGENT_FLOW, topics=list_topics())
    return Outcome(result, "Quickstart: " + topic.title + ". Agent flow: list_runtimes, connect_runtime, "
                   "runtime_status (success only when process_running and healthy).")


def help_topic(inp: HelpInput, env: Env) -> Outcome:
    topics = list_topics()
    if not inp.topic.strip():
        return Outcome(HelpResult(topics=topics), "Help topics: " + ", ".join(t.name for t in topics))
    topic = get_topic(inp.topic)
    return Outcome(HelpResult(topics=topics, topic=topic), f"Help topic {topic.name}: {topic.title}")


def init(inp: InitInput, env: Env) -> Outcome:
    base = trusted_base_url(inp.control_plane_base_url, env) or DEFAULT_BASE_URL
    request = SampleRequest(tunnel_id=inp.tunnel_id, base_url=base, url_path=inp.control_plane_url_path,
                            api_key_ref=inp.api_key_ref, health_listen_addr=inp.health_listen_addr,
                            mcp_server_url=inp.mcp_server_url, mcp_command=inp.mcp_command)
    result: InitResult = init_profile(request, env=env, profile=inp.profile, sample=inp.sample,
                                      profile_dir=inp.profile_dir or None, force=inp.force)
    return Outcome(result, f"Wrote profile {result.profile} at {result.path} (sample {result.sample}). "
                   f"Next: {'; '.join(result.next)}")


def profiles(inp: ProfilesInput, env: Env) -> Outcome:
    directory = resolve_dir(inp.profile_dir or None, env)
    entries = list_profiles(directory)
    names = ", ".join(e.name for e in entries) or "none"
    return Outcome(ProfileList(profile_dir=str(directory), profiles=entries), f"Profiles in {directory}: {names}")


def doctor(inp: DoctorInput, env: Env) -> Outcome:
    flags: dict[str, Any] = {"profile": inp.profile or None, "profile_file": inp.profile_file or None,
                             "config": inp.config or None, "profile_dir": inp.profile_dir or None}
    report: DoctorReport = run_doctor(flags, env, online=inp.online)
    if report.result == "ok":
        summary = f"doctor: ok. Next: {report.next}"
    else:
        first = next(c for c in report.checks if c.status == "FAIL")
        hint = first.next[0] if first.next else ""
        summary = f"doctor: FAIL ({', '.join(report.failed_checks)}). {first.id}: {first.summary}. Next: {hint}"
    return Outcome(report, summary)


SPECS = (
    ToolSpec("quickstart", "Quickstart", "Start here: the tunnel-client quickstart guide, the order of tool calls "
             "for an agent, and the list of help topics.", NoInput, Quickstart, quickstart,
             read_only=True, destructive=False, idempotent=True, open_world=False,
             next_step="call help to list the topics"),
    ToolSpec("help", "Help topic", "Read a tunnel-client help topic, or list the topics when no name is given.",
             HelpInput, HelpResult, help_topic, read_only=True, destructive=False, idempotent=True, open_world=False,
             next_step="call help with an empty topic to list the available topics"),
    ToolSpec("init_profile", "Write a profile", "Write a first-use profile for `tunnel-client run` from a sample "
             "(checked end to end before writing; keys stay references). For a supervised background runtime use "
             "connect_runtime instead.", InitInput, InitResult, init,
             read_only=False, destructive=False, idempotent=False, open_world=False,
             next_step="fix the input named in the message; pass force=true to replace an existing profile"),
    ToolSpec("list_profiles", "List profiles", "List the profiles in the profile directory.", ProfilesInput,
             ProfileList, profiles, read_only=True, destructive=False, idempotent=True, open_world=False,
             next_step="check profile_dir"),
    ToolSpec("doctor", "Doctor", "Check a profile or config the way `run` would load it: tunnel id, key reference, "
             "MCP target, OAuth metadata, operator listener, Codex plugin. Each failing check has why and next.",
             DoctorInput, DoctorReport, doctor, read_only=True, destructive=False, idempotent=True, open_world=True,
             next_step="give one of profile, profile_file or config; list_profiles shows the profiles"),
)
