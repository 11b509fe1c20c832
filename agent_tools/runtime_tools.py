"""Runtime tools: connect, status, list, stop, remove, cleanup, plus the reference plugin's tool names.

Every tool calls ``tunnel_core.runtimes.manager`` in-process; the only process started is the
detached runtime itself. Results are the payloads of ``tunnel-client runtimes ... --json``.
"""

from __future__ import annotations

import os
import sys

from pydantic import BaseModel, Field

from agent_tools.common import check_tunnel_client_bin, key_next_step, require_reference, trusted_base_url
from agent_tools.toolkit import Env, Outcome, ToolFailure, ToolInput, ToolSpec
from tunnel_core import __version__
from tunnel_core.codex.bundle import BINARY_HINT_FILE, current_entry_point
from tunnel_core.errors import TunnelClientError
from tunnel_core.runtimes import manager
from tunnel_core.runtimes.models import (
    CleanupPayload,
    ConnectPayload,
    CreatePayload,
    ListPayload,
    RemovePayload,
    StatusPayload,
    StopPayload,
)
from tunnel_core.runtimes.profile import DEFAULT_RUNTIME_KEY_REF

ALIAS = "runtime alias (normalised: lowercase, _ becomes -)"
BIN = "accepted for compatibility with the reference plugin; must be this installation's tunnel-client if given"


class AdminFields(ToolInput):
    """The admin connection inputs shared by the runtime tools (saved in the admin profile when changed)."""

    reference_fields = ("admin_key", "runtime_api_key")

    admin_profile: str = Field("", description="admin profile to use (default: the alias's, else the active one)")
    admin_key: str = Field("", description="admin key reference, env:NAME or file:/path (default env:OPENAI_ADMIN_KEY)")
    control_plane_base_url: str = Field("", description="control-plane base URL; only the official endpoint or the "
                                                        "configured CONTROL_PLANE_BASE_URL is accepted")
    control_plane_url_path: str = Field("", description="optional path prefix before /v1")


class ConnectInput(AdminFields):
    alias: str = Field(description=ALIAS)
    mcp_command: str = Field("", description="stdio MCP server command line (give this or mcp_server_url)")
    mcp_server_url: str = Field("", description="Streamable HTTP MCP server URL (give this or mcp_command)")
    tunnel_id: str = Field("", description="attach to this existing tunnel (no admin key needed)")
    organization_id: str = Field("", description="find or create the tunnel in this organization")
    workspace_id: str = Field("", description="find or create the tunnel in this workspace")
    name: str = Field("", description="remote tunnel name to find or create (default: the alias)")
    description: str = Field("", description="description of a newly created tunnel")
    runtime_api_key: str = Field("", description="runtime key reference stored in the profile, env:NAME or "
                                                 "file:/path (default env:CONTROL_PLANE_API_KEY)")
    profile: str = Field("", description="profile name to write and run (default: the alias)")
    profile_dir: str = Field("", description="directory for the generated runtime profile")
    restart: str = Field("", pattern="^(|no|on-failure)$", description="on-failure: restart a crashed runtime with "
                                                                        "backoff (default: keep the current policy)")
    health_timeout_seconds: float = Field(20.0, gt=0, le=90, description="how long to wait for /healthz")
    tunnel_client_bin: str = Field("", description=BIN)


class ConnectStdioInput(AdminFields):
    alias: str = Field(description=ALIAS)
    mcp_command: str = Field(description="stdio MCP server command line")
    runtime_api_key: str = Field("", description="runtime key reference, env:NAME or file:/path "
                                                 "(default env:CONTROL_PLANE_API_KEY)")
    tunnel_id: str = Field("", description="attach to this existing tunnel")
    organization_id: str = Field("", description="find or create the tunnel in this organization")
    workspace_id: str = Field("", description="find or create the tunnel in this workspace")
    name: str = Field("", description="remote tunnel name (default: the alias)")
    description: str = Field("", description="description of a newly created tunnel")
    tunnel_client_bin: str = Field("", description=BIN)


class CreateInput(AdminFields):
    alias: str = Field(description=ALIAS)
    organization_id: str = Field("", description="organization of the tunnel (give this or workspace_id)")
    workspace_id: str = Field("", description="workspace of the tunnel (give this or organization_id)")
    name: str = Field("", description="remote tunnel name (default: the alias)")
    description: str = Field("", description="remote tunnel description")
    tunnel_client_bin: str = Field("", description=BIN)


class AliasInput(ToolInput):
    alias: str = Field(description=ALIAS)
    tunnel_client_bin: str = Field("", description=BIN)


class RemoveInput(ToolInput):
    alias: str = Field(description=ALIAS)


class ListInput(AdminFields):
    organization_id: str = Field("", description="also list the remote tunnels of this organization")
    workspace_id: str = Field("", description="also list the remote tunnels of this workspace")
    tenant_id: str = Field("", description="also list the remote tunnels of this tenant")
    tunnel_client_bin: str = Field("", description=BIN)


class CleanupInput(ToolInput):
    apply: bool = Field(False, description="remove the entries classified stale_alias (default: report only)")


class SelectInput(ToolInput):
    tunnel_client_bin: str = Field("", description="a tunnel-client to select; must be this installation")
    persist_hint: bool = Field(True, description="accepted for compatibility; the installer writes the hint")
    allow_path_lookup: bool = Field(False, description="accepted for compatibility; PATH is never searched")


class Selection(BaseModel):
    """Which tunnel-client the tools drive: always the installation the plugin was installed from."""

    ok: bool
    tunnel_client_bin: str
    python: str
    version: str
    selection_source: str
    requested_tunnel_client_bin: str
    binary_hint_path: str
    binary_hint: str
    note: str


def _admin(inp: AdminFields, env: Env) -> manager.AdminOptions:
    return manager.AdminOptions(admin_profile=inp.admin_profile.strip(), admin_key=inp.admin_key.strip(),
                                base_url=trusted_base_url(inp.control_plane_base_url, env),
                                url_path=inp.control_plane_url_path.strip())


def _ids(value: str) -> tuple[str, ...]:
    return (value.strip(),) if value.strip() else ()


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _connect(inp: ConnectInput | ConnectStdioInput, env: Env, *, mcp_server_url: str, restart: str,
             health_timeout: float, profile: str, profile_dir: str) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    if inp.organization_id.strip() and inp.workspace_id.strip():
        raise ToolFailure("give organization_id or workspace_id, not both",
                          "call again with one scope, or with tunnel_id to attach an existing tunnel")
    admin = _admin(inp, env)
    key_ref = inp.runtime_api_key.strip() or DEFAULT_RUNTIME_KEY_REF
    require_reference(key_ref, env, "runtime_api_key")
    opts = manager.ConnectOptions(
        alias=inp.alias, admin=admin, name=inp.name, description=inp.description,
        organization_ids=_ids(inp.organization_id), workspace_ids=_ids(inp.workspace_id), tunnel_id=inp.tunnel_id,
        profile=profile, profile_dir=profile_dir, mcp_server_url=mcp_server_url, mcp_command=inp.mcp_command,
        runtime_api_key=key_ref, restart=restart, health_timeout=health_timeout,
    )
    payload, code = manager.connect(env, opts)
    head = (f"Runtime {payload.alias} for tunnel {payload.tunnel.id}: "
            f"{'launched' if payload.launched else 'already running' if payload.already_running else 'not started'}, "
            f"process_running={_yes(payload.process_running)} healthy={_yes(payload.healthy)} "
            f"ready={_yes(payload.ready)}.")
    if code == 0:
        return Outcome(payload, f"{head} Next: call runtime_status with alias {payload.alias} before reporting "
                                "success.")
    diag = payload.launch_diagnostics
    tail = (diag.log_tail.splitlines()[-1] if diag and diag.log_tail else "")
    return Outcome(payload, f"{head} NOT healthy: /healthz did not answer (exit code "
                            f"{diag.exit_code if diag else None}; last log line: {tail or '-'}). Next: read "
                            f"launch_diagnostics, then doctor with profile {payload.profile_name}.")


def connect_runtime(inp: ConnectInput, env: Env) -> Outcome:
    return _connect(inp, env, mcp_server_url=inp.mcp_server_url, restart=inp.restart,
                    health_timeout=inp.health_timeout_seconds, profile=inp.profile, profile_dir=inp.profile_dir)


def connect_stdio(inp: ConnectStdioInput, env: Env) -> Outcome:
    return _connect(inp, env, mcp_server_url="", restart="", health_timeout=20.0, profile="", profile_dir="")


def create_runtime(inp: CreateInput, env: Env) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    payload = manager.create(env, alias=inp.alias, admin=_admin(inp, env), name=inp.name, description=inp.description,
                             organization_ids=_ids(inp.organization_id), workspace_ids=_ids(inp.workspace_id))
    return Outcome(payload, f"Alias {payload.alias} -> tunnel {payload.tunnel.id} ({payload.tunnel.name}). Next: "
                            f"connect_runtime with alias {payload.alias} and the MCP target.")


def status_summary(p: StatusPayload) -> str:
    poll = p.control_plane_poll_health
    text = (f"{p.alias}: runtime_state={p.runtime_state} process_running={_yes(p.process_running)} "
            f"healthy={_yes(p.healthy)} ready={_yes(p.ready)} control_plane_poll_health={poll.state}"
            f"{' (' + poll.reason + ')' if poll.reason else ''}; tunnel {p.tunnel_id}")
    if p.ui_url:
        text += f"; UI {p.ui_url}"
    if p.error:
        text += f"; remote lookup: {p.error}"
    if not (p.process_running and p.healthy) and p.next_steps:
        text += f". Next: {p.next_steps[0]}"
    return text


def runtime_status(inp: AliasInput, env: Env) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    payload, _code = manager.status(env, alias=inp.alias, admin=manager.AdminOptions())
    return Outcome(payload, status_summary(payload))


def list_runtimes(inp: ListInput, env: Env) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    scopes = [s for s in (inp.organization_id, inp.workspace_id, inp.tenant_id) if s.strip()]
    if len(scopes) > 1:
        raise ToolFailure("give at most one of organization_id, workspace_id or tenant_id",
                          "call again with a single scope, or none for local aliases only")
    payload = manager.list_runtimes(env, admin=_admin(inp, env), organization_id=inp.organization_id.strip(),
                                    workspace_id=inp.workspace_id.strip(), tenant_id=inp.tenant_id.strip())
    names = ", ".join(f"{a.alias} ({a.tunnel_id})" for a in payload.aliases) or "none"
    remote = f"; {len(payload.remote_tunnels)} remote tunnels in scope" if payload.remote_tunnels is not None else ""
    # as `runtimes list --json`: remote_tunnels only when a scope was listed
    data = payload.model_dump(mode="json", exclude={"remote_tunnels"} if payload.remote_tunnels is None else None)
    return Outcome(data, f"Aliases in {payload.state_root}: {names}{remote}")


def stop_runtime(inp: AliasInput, env: Env) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    payload, code = manager.stop(env, alias=inp.alias, admin=manager.AdminOptions())
    if code != 0:
        raise ToolFailure(f"could not stop {payload.alias}: {payload.stop_error}",
                          f"call runtime_status with alias {payload.alias}; the process may need to be stopped by hand")
    state = "was already stopped" if payload.already_stopped else "stopped"
    return Outcome(payload, f"{payload.alias} {state}; the alias and its profile are kept")


def remove_runtime(inp: RemoveInput, env: Env) -> Outcome:
    payload = manager.remove(env, alias=inp.alias)
    return Outcome(payload, f"Forgot {payload.alias} locally ({len(payload.removed_paths)} files removed); tunnel "
                            f"{payload.tunnel_id or '-'} still exists remotely")


def cleanup_runtimes(inp: CleanupInput, env: Env) -> Outcome:
    payload = manager.cleanup(env, apply=inp.apply)
    stale = [e.alias for e in payload.entries if e.classification == "stale_alias"]
    verb = "removed" if inp.apply else "would remove (apply=true)"
    return Outcome(payload, f"{len(payload.entries)} aliases; stale: {', '.join(stale) or 'none'}; {verb}: "
                            f"{', '.join(payload.removed if inp.apply else stale) or 'nothing'}")


def select_client(inp: SelectInput, env: Env) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    entry = current_entry_point()
    hint_path = os.path.join(os.getcwd(), BINARY_HINT_FILE)
    try:
        with open(hint_path, encoding="utf-8") as f:
            hint = f.read().strip()
    except OSError:
        hint_path, hint = "", ""
    selection = Selection(
        ok=True, tunnel_client_bin=entry or sys.executable, python=sys.executable, version=__version__,
        selection_source="this_installation", requested_tunnel_client_bin=inp.tunnel_client_bin,
        binary_hint_path=hint_path, binary_hint=hint,
        note="the tools run inside this tunnel-client installation; to use another one, run its "
             "`tunnel-client codex plugin install`",
    )
    return Outcome(selection, f"Using tunnel-client {__version__} at {selection.tunnel_client_bin}")


def _alias_step(exc: TunnelClientError) -> str:
    if "is not known" in str(exc):
        return "call list_runtimes to see the known aliases, or connect_runtime to create this one"
    if "still has a managed runtime" in str(exc):
        return "call stop_runtime for this alias first"
    return key_next_step(exc)


def _connect_step(exc: TunnelClientError) -> str:
    text = str(exc)
    if "requires --organization-id or --workspace-id" in text:
        return "give tunnel_id to attach an existing tunnel, or organization_id / workspace_id to create one"
    if "not both" in text and "mcp" in text:
        return "give exactly one of mcp_command or mcp_server_url"
    return key_next_step(exc)


SPECS = (
    ToolSpec("connect_runtime", "Connect a runtime",
             "Create or reuse a tunnel for an alias and start (or reuse) a supervised background runtime that relays "
             "it to an MCP server: mcp_command (stdio) or mcp_server_url (HTTP). Attach an existing tunnel with "
             "tunnel_id, or give organization_id/workspace_id to find or create one (admin key). Waits for /healthz. "
             "Then call runtime_status before reporting success.",
             ConnectInput, ConnectPayload, connect_runtime, read_only=False, destructive=False, idempotent=False,
             open_world=True,
             next_step="fix the input named in the message, then call connect_runtime again",
             next_step_for=_connect_step),
    ToolSpec("runtime_status", "Runtime status",
             "Status of one runtime alias: process_running, healthy (/healthz), ready (/readyz), "
             "control_plane_poll_health, UI URL, repair actions and next steps (read-only remote lookup).",
             AliasInput, StatusPayload, runtime_status, read_only=True, destructive=False, idempotent=True,
             open_world=True, next_step="call list_runtimes to see the known aliases", next_step_for=_alias_step),
    ToolSpec("list_runtimes", "List runtimes",
             "Local runtime aliases and their tunnels; with one scope (organization_id, workspace_id or tenant_id) "
             "also the remote tunnels of that scope, matched to local aliases.",
             ListInput, ListPayload, list_runtimes, read_only=True, destructive=False, idempotent=True,
             open_world=True, next_step="call again without a scope for local aliases only",
             next_step_for=key_next_step),
    ToolSpec("stop_runtime", "Stop a runtime",
             "Stop an alias's runtime (SIGTERM, grace period, then SIGKILL). Idempotent; keeps the alias and profile.",
             AliasInput, StopPayload, stop_runtime, read_only=False, destructive=False, idempotent=True,
             open_world=False, next_step="call runtime_status for this alias", next_step_for=_alias_step),
    ToolSpec("remove_runtime", "Remove a runtime alias",
             "Forget an alias locally: its records, generated profile, health file and log. Refuses while the "
             "runtime runs. Never deletes the remote tunnel. Only when the user asked for it.",
             RemoveInput, RemovePayload, remove_runtime, read_only=False, destructive=True, idempotent=False,
             open_world=False, next_step="call list_runtimes to see the known aliases", next_step_for=_alias_step),
    ToolSpec("cleanup_runtimes", "Clean up stale aliases",
             "Classify every alias (live_runtime, valid_profile, missing_profile, stale_alias); with apply=true "
             "remove only the stale_alias entries (local metadata only).",
             CleanupInput, CleanupPayload, cleanup_runtimes, read_only=False, destructive=True, idempotent=True,
             open_world=False, next_step="call list_runtimes"),
    ToolSpec("install_or_select_tunnel_client", "Select tunnel-client",
             "Report the tunnel-client installation these tools drive (always the one the plugin was installed "
             "from). Compatible with the reference plugin's tool of the same name.",
             SelectInput, Selection, select_client, read_only=True, destructive=False, idempotent=True,
             open_world=False, next_step="omit tunnel_client_bin"),
    ToolSpec("create_tunnel_runtime", "Create a tunnel alias",
             "Create (or reuse, by name) the remote tunnel for an alias in one organization or workspace and record "
             "the alias, without starting a runtime. Needs an admin key.",
             CreateInput, CreatePayload, create_runtime, read_only=False, destructive=False, idempotent=False,
             open_world=True,
             next_step="give exactly one of organization_id or workspace_id", next_step_for=key_next_step),
    ToolSpec("connect_stdio_mcp", "Connect a stdio MCP server",
             "Reference-plugin name for connect_runtime with a stdio command: create or reuse the alias's tunnel "
             "and start a supervised runtime for mcp_command. Then call runtime_status.",
             ConnectStdioInput, ConnectPayload, connect_stdio, read_only=False, destructive=False, idempotent=False,
             open_world=True,
             next_step="fix the input named in the message, then call connect_stdio_mcp again",
             next_step_for=_connect_step),
    ToolSpec("list_runtime_aliases", "List runtime aliases",
             "Reference-plugin name for list_runtimes: local aliases, plus remote tunnels for one scope.",
             ListInput, ListPayload, list_runtimes, read_only=True, destructive=False, idempotent=True,
             open_world=True, next_step="call again without a scope for local aliases only",
             next_step_for=key_next_step),
)
