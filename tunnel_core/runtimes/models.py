"""JSON payloads of the ``runtimes`` commands (the ``--json`` output; field names follow the reference)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class TunnelInfo(BaseModel):
    id: str
    name: str = ""
    description: str = ""
    organization_ids: list[str] = []
    workspace_ids: list[str] = []
    tenant_ids: list[str] = []


class EndpointProbe(BaseModel):
    url: str = ""
    ok: bool = False
    status: int = 0
    body: str = ""
    error: str = ""


class HealthProbe(BaseModel):
    base_url: str = ""
    healthz: EndpointProbe = EndpointProbe()
    readyz: EndpointProbe = EndpointProbe()


class PathDetails(BaseModel):
    path: str = ""
    exists: bool = False
    size_bytes: int = 0


class ProfileDetails(PathDetails):
    name: str = ""
    dir: str = ""
    config_path: str = ""


class HealthDetails(PathDetails):
    raw_url: str = ""
    base_url: str = ""
    url: str = ""
    ui: str = ""
    healthz: EndpointProbe = EndpointProbe()
    readyz: EndpointProbe = EndpointProbe()


class EffectiveHealth(BaseModel):
    base_url: str = ""
    url: str = ""
    ui: str = ""
    healthz: EndpointProbe = EndpointProbe()
    readyz: EndpointProbe = EndpointProbe()


class LiveAdminUI(BaseModel):
    found: bool = False
    base_url: str = ""
    ui_url: str = ""
    source_health_url_file: str = ""
    match_reason: str = ""
    status: dict[str, Any] | None = None
    system: dict[str, Any] | None = None


class PollHealth(BaseModel):
    """How the runtime's control-plane polling fares, read from its operator API."""

    state: str = "unknown"  # healthy | unhealthy | unknown
    reason: str = ""
    last_success: str = ""
    last_error: str = ""
    status_code: int = 0  # the HTTP status of the last failed control-plane call (poll or tunnel metadata), or 0


class LogDetails(PathDetails):
    tail: str = ""


class TmuxInfo(BaseModel):
    session_name: str = ""
    running: bool = False


class SupervisorInfo(BaseModel):
    """The ``--restart on-failure`` supervisor, when the runtime has one."""

    enabled: bool = False
    pid: int = 0
    running: bool = False
    state: str = ""
    restarts: int = 0
    child_pid: int = 0
    last_exit_code: int | None = None
    last_exit_at: str = ""


class LocalDetails(BaseModel):
    runtime_state: str
    issues: list[str]
    profile: ProfileDetails
    health: HealthDetails
    effective_health: EffectiveHealth
    live_admin_ui: LiveAdminUI
    control_plane_poll_health: PollHealth
    log: LogDetails
    tmux: TmuxInfo
    process_running: bool
    supervisor: SupervisorInfo


class RepairAction(BaseModel):
    id: str
    command: str
    reason: str


class StatusPayload(BaseModel):
    alias: str
    tunnel_id: str
    admin_profile: str
    admin_profile_path: str
    remote: TunnelInfo | None = None
    stale: bool = False
    error: str = ""
    remote_error: str = ""
    repair_command: str = ""
    repair_actions: list[RepairAction] = []
    config_path: str = ""
    profile_name: str = ""
    profile_dir: str = ""
    profile_path: str = ""
    profile_exists: bool = False
    health_url_file: str = ""
    health_url: str = ""
    ui_url: str = ""
    runtime_state: str = "stopped"
    healthy: bool = False
    ready: bool = False
    control_plane_poll_health: PollHealth = PollHealth()
    remote_lookup_attempted: bool = False
    remote_lookup_auth_kind: str = ""
    remote_lookup_auth_ref: str = ""
    remote_skipped_reason: str = ""
    tmux: TmuxInfo = TmuxInfo()
    process_running: bool = False
    process: dict[str, Any] | None = None
    pid: int | None = None
    log_path: str = ""
    log_tail: str = ""
    restarts: int = 0
    local: LocalDetails | None = None
    next_steps: list[str] = []
    state: str = "stopped"  # the verdict (runtimes.verdict): ready | healthy | starting | stopped | failed
    reason: str = ""
    cause: str = ""
    mcp_url: str = ""


class StopPayload(StatusPayload):
    already_stopped: bool = False
    stopped: bool = False
    stop_error: str = ""


class LaunchDiagnostics(BaseModel):
    exit_code: int | None = None
    log_path: str = ""
    log_tail: str = ""


class ConnectPayload(BaseModel):
    alias: str
    tunnel: TunnelInfo
    admin_profile: str
    admin_profile_path: str
    profile_name: str
    profile_dir: str
    profile_path: str
    profile_exists: bool
    config_path: str
    health_url_file: str
    health_url: str
    ui_url: str
    runtime_state: str
    healthy: bool
    ready: bool
    launched: bool
    mode: str
    command: str
    session_name: str = ""
    log_path: str
    launch_diagnostics: LaunchDiagnostics | None = None
    started: bool
    running: bool
    already_running: bool
    remote_error: str = ""
    tmux: TmuxInfo
    process_running: bool
    process: dict[str, Any] | None
    local: LocalDetails
    repair_actions: list[RepairAction]
    next_steps: list[str]
    pid: int | None = None
    exit_code: int | None = None
    restart_policy: str = "no"
    state: str = "stopped"  # the verdict (runtimes.verdict): ready | healthy | starting | stopped | failed
    reason: str = ""
    cause: str = ""
    mcp_url: str = ""
    tunnel_created: bool = False


class CreatePayload(BaseModel):
    alias: str
    tunnel: TunnelInfo
    admin_profile: str
    admin_profile_path: str
    state_root: str
    created: bool = False  # False: an existing tunnel of that name was reused
    mcp_url: str = ""


class AliasView(BaseModel):
    alias: str
    tunnel_id: str
    name: str
    admin_profile: str
    description: str
    organization_ids: list[str]
    workspace_ids: list[str]
    tenant_ids: list[str]
    config_path: str
    profile_name: str
    profile_dir: str
    profile_path: str
    health_url_file: str
    updated_at: str


class RemoteTunnelView(TunnelInfo):
    local_alias: str = ""
    local_admin_profile: str = ""


class ListPayload(BaseModel):
    aliases: list[AliasView]
    admin_profile: str
    admin_profile_path: str
    state_root: str
    remote_tunnels: list[RemoteTunnelView] | None = None


class RemovePayload(BaseModel):
    alias: str
    removed: bool
    removed_paths: list[str]
    state_root: str
    tunnel_id: str


class CleanupEntry(BaseModel):
    alias: str
    tunnel_id: str
    classification: str  # live_runtime | valid_profile | missing_profile | stale_alias
    profile: ProfileDetails
    runtime_state: str
    live_runtime: LiveAdminUI
    cleanup_safe: bool
    cleanup_command: str


class CleanupPayload(BaseModel):
    state_root: str
    apply: bool
    entries: list[CleanupEntry]
    removed: list[str]
    next_steps: list[str]
