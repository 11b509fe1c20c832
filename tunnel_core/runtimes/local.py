"""Local-first view of one alias: process, health URL file, probes, logs, supervisor, repairs."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from tunnel_core.runtimes.launch import log_tail
from tunnel_core.runtimes.models import (
    EffectiveHealth,
    HealthDetails,
    LiveAdminUI,
    LocalDetails,
    LogDetails,
    PathDetails,
    ProfileDetails,
    RepairAction,
    SupervisorInfo,
    TmuxInfo,
)
from tunnel_core.runtimes.probe import (
    fetch_status,
    find_live_admin_ui,
    poll_health,
    probe_health,
    read_health_url,
    ui_url,
)
from tunnel_core.runtimes.process import is_ours
from tunnel_core.runtimes.tmux import session_running
from tunnel_core.state.jsonfile import load_json
from tunnel_core.state.records import AliasRecord, ProcessRecord
from tunnel_core.state.root import StateRoot

LOG_TAIL_LINES = 20


def _first(*values: str) -> str:
    return next((v for v in values if v and v.strip()), "")


def path_details(path: str) -> PathDetails:
    if not path.strip():
        return PathDetails()
    try:
        st = Path(path).stat()
    except OSError:
        return PathDetails(path=path)
    return PathDetails(path=path, exists=True, size_bytes=0 if Path(path).is_dir() else st.st_size)


def _supervisor(root: StateRoot, alias: str, process: ProcessRecord) -> tuple[SupervisorInfo, int, bool]:
    """(supervisor info, runtime child pid, runtime child running) for a supervised runtime."""
    info = SupervisorInfo(enabled=True, pid=process.pid, running=is_ours(process.pid, process.pid_start_time))
    try:
        raw: Any = load_json(root.supervisor_path(alias)) or {}
    except Exception:
        raw = {}
    if not isinstance(raw, dict) or raw.get("supervisor_pid") != process.pid:
        return info, 0, False
    info.state = str(raw.get("state") or "")
    info.restarts = int(raw.get("restarts") or 0)
    code = raw.get("last_exit_code")
    info.last_exit_code = code if isinstance(code, int) else None
    info.last_exit_at = str(raw.get("last_exit_at") or "")
    child_pid = int(raw.get("child_pid") or 0)
    child_running = is_ours(child_pid, str(raw.get("child_start_time") or ""))
    info.child_pid = child_pid if child_running else 0
    return info, info.child_pid, child_running


def runtime_pid_and_state(root: StateRoot, alias: str, process: ProcessRecord) -> tuple[int, bool, SupervisorInfo]:
    """(pid of the runtime itself, whether it runs, supervisor info) from the process record."""
    if process.mode == "tmux":
        return 0, session_running(alias, process.session_name), SupervisorInfo()
    if process.mode != "process" or process.pid <= 0:
        return 0, False, SupervisorInfo()
    if process.restart_policy == "on-failure":
        info, child_pid, running = _supervisor(root, alias, process)
        return child_pid, running, info
    running = is_ours(process.pid, process.pid_start_time)
    return (process.pid if running else 0), running, SupervisorInfo()


def local_details(root: StateRoot, alias: str, record: AliasRecord, process: ProcessRecord | None) -> LocalDetails:
    proc = process or ProcessRecord(alias=alias)
    health_url_file = _first(proc.health_url_file, record.health_url_file)
    tunnel_id = _first(record.tunnel_id, proc.tunnel_id)

    hd = path_details(health_url_file)
    raw_url = read_health_url(health_url_file)
    probe = probe_health(raw_url)
    health = HealthDetails(path=hd.path, exists=hd.exists, size_bytes=hd.size_bytes, raw_url=raw_url,
                           base_url=probe.base_url, url=probe.healthz.url, ui=ui_url(probe.base_url),
                           healthz=probe.healthz, readyz=probe.readyz)
    live = find_live_admin_ui(root, tunnel_id, probe.base_url) if tunnel_id else LiveAdminUI()
    effective_probe = probe
    if not probe.healthz.ok and live.found:
        effective_probe = probe_health(live.base_url)
    effective = EffectiveHealth(base_url=effective_probe.base_url, url=effective_probe.healthz.url,
                                ui=ui_url(effective_probe.base_url), healthz=effective_probe.healthz,
                                readyz=effective_probe.readyz)
    status = live.status if live.found else (fetch_status(effective_probe.base_url)
                                             if effective_probe.healthz.ok else None)
    poll = poll_health(status)

    pd = path_details(_first(proc.profile_path, record.profile_path))
    profile = ProfileDetails(path=pd.path, exists=pd.exists, size_bytes=pd.size_bytes,
                             name=_first(proc.profile_name, record.profile_name),
                             dir=_first(proc.profile_dir, record.profile_dir),
                             config_path=_first(proc.config_path, record.config_path))
    ld = path_details(proc.log_path)
    log = LogDetails(path=ld.path, exists=ld.exists, size_bytes=ld.size_bytes,
                     tail=log_tail(proc.log_path, LOG_TAIL_LINES) if ld.exists else "")

    _pid, running, supervisor = runtime_pid_and_state(root, alias, proc)
    state = runtime_state(running or live.found, supervisor.running, effective)
    issues = local_issues(proc, running, supervisor, profile, health, log, live, poll.state)
    return LocalDetails(runtime_state=state, issues=issues, profile=profile, health=health, effective_health=effective,
                        live_admin_ui=live, control_plane_poll_health=poll, log=log,
                        tmux=TmuxInfo(session_name=proc.session_name, running=running and proc.mode == "tmux"),
                        process_running=running, supervisor=supervisor)


def runtime_state(running: bool, supervisor_running: bool, health: EffectiveHealth) -> str:
    """stopped | starting | healthy | ready."""
    if not running:
        return "starting" if supervisor_running else "stopped"
    if health.healthz.ok:
        return "ready" if health.readyz.ok else "healthy"
    return "starting"


def _why(probe_status: int, error: str, body: str = "") -> str:
    if probe_status:
        return f" (HTTP {probe_status})"
    if error:
        return f" ({error})"
    return f" ({body})" if body else ""


def local_issues(proc: ProcessRecord, running: bool, supervisor: SupervisorInfo, profile: ProfileDetails,
                 health: HealthDetails, log: LogDetails, live: LiveAdminUI, poll_state: str) -> list[str]:
    issues: list[str] = []
    if proc.mode == "tmux" and proc.session_name and not running:
        issues.append("recorded tmux session is not running")
    if proc.mode == "process" and proc.pid > 0 and not (running or supervisor.running):
        issues.append("recorded process pid is not running")
    if proc.mode == "process" and proc.pid > 0 and not proc.pid_start_time:
        issues.append("recorded process identity is missing; refusing to reuse or signal a bare PID")
    if supervisor.enabled and supervisor.running and not running:
        issues.append(f"supervisor is restarting the runtime (restarts={supervisor.restarts})")
    if proc.profile_path and not profile.exists:
        issues.append("recorded runtime profile is missing")
    if proc.health_url_file and proc.active and not health.raw_url:
        issues.append("health URL file has not been populated")
    if proc.active and health.url and not health.healthz.ok:
        issues.append("health endpoint is not healthy at " + health.url
                      + _why(health.healthz.status, health.healthz.error))
    if proc.active and health.readyz.url and not health.readyz.ok:
        issues.append("ready endpoint is not ready at " + health.readyz.url
                      + _why(health.readyz.status, health.readyz.error, health.readyz.body))
    if proc.log_path and not running and log.exists and proc.active:
        issues.append("runtime log exists but no active runtime is running")
    if live.found and not health.healthz.ok:
        issues.append("recorded health URL looks stale; live admin UI was found at " + live.base_url)
    if poll_state == "unhealthy":
        issues.append("control-plane poll route health is unhealthy")
    return issues


def doctor_command(profile_name: str, profile_dir: str, config_path: str) -> str:
    parts = ["tunnel-client", "doctor"]
    if profile_name:
        parts += ["--profile", profile_name] + (["--profile-dir", profile_dir] if profile_dir else [])
    elif config_path:
        parts += ["--config", config_path]
    return " ".join(shlex.quote(p) for p in [*parts, "--explain"])


def repair_command(alias: str, record: AliasRecord, proc: ProcessRecord | None) -> str:
    p = proc or ProcessRecord(alias=alias)
    parts = ["tunnel-client", "runtimes", "connect", "--alias", alias]
    if record.admin_profile:
        parts += ["--admin-profile", record.admin_profile]
    if record.profile_name:
        parts += ["--profile", record.profile_name]
    if _first(p.profile_dir, record.profile_dir):
        parts += ["--profile-dir", _first(p.profile_dir, record.profile_dir)]
    if record.tunnel_id and not (record.organization_ids or record.workspace_ids):
        parts += ["--tunnel-id", record.tunnel_id]
    elif record.organization_ids:
        parts += ["--organization-id", record.organization_ids[0]]
    elif record.workspace_ids:
        parts += ["--workspace-id", record.workspace_ids[0]]
    if p.restart_policy == "on-failure":
        parts += ["--restart", "on-failure"]
    quoted = " ".join(shlex.quote(x) for x in parts)
    if p.target_kind == "server_url":
        return f"{quoted} --mcp-server-url {shlex.quote(p.target_value)}"
    if p.target_kind == "command":
        return f"{quoted} --mcp-command {shlex.quote(p.target_value)}"
    return f"{quoted} <add --mcp-server-url or --mcp-command>"


def repair_actions(alias: str, record: AliasRecord, proc: ProcessRecord | None, local: LocalDetails,
                   remote_error: str) -> list[RepairAction]:
    actions: list[RepairAction] = []
    reconnect = repair_command(alias, record, proc)
    if not local.profile.exists:
        actions.append(RepairAction(id="reconnect_missing_profile", command=reconnect,
                                    reason="the recorded runtime profile is missing, so reconnecting rewrites the "
                                    "profile and relaunches the managed runtime"))
    if proc is None or local.runtime_state == "stopped":
        actions.append(RepairAction(id="start_runtime", command=reconnect,
                                    reason="no managed runtime is currently running for this alias"))
    if local.live_admin_ui.found and not local.health.healthz.ok:
        actions.append(RepairAction(id="refresh_stale_health_url", command=f"tunnel-client runtimes connect --alias {alias}",
                                    reason="the recorded health URL is stale but a live admin UI for the same tunnel "
                                    "was found"))
    if local.control_plane_poll_health.state == "unhealthy":
        actions.append(RepairAction(id="repair_control_plane_proxy",
                                    command=doctor_command(local.profile.name, local.profile.dir,
                                                           local.profile.config_path),
                                    reason="local /healthz and /readyz can be green while control-plane polling fails"))
    if remote_error.strip():
        actions.append(RepairAction(id="check_remote_tunnel", command=f"tunnel-client runtimes status {alias} --json",
                                    reason="the remote tunnel lookup returned an error and should be rechecked with "
                                    "the current runtime/admin credentials"))
    if not actions:
        actions.append(RepairAction(id="inspect", command=f"tunnel-client runtimes status {alias} --json",
                                    reason="no immediate local repair was detected; rerun status for the freshest "
                                    "structured state"))
    return actions


def next_steps(actions: list[RepairAction], *extra: str) -> list[str]:
    out: list[str] = []
    for cmd in [a.command for a in actions] + list(extra):
        if cmd.strip() and cmd not in out:
            out.append(cmd)
    return out


def process_view(proc: ProcessRecord | None) -> dict[str, Any] | None:
    if proc is None:
        return None
    data = proc.model_dump(mode="json")
    if not proc.pid:
        data.pop("pid", None)
    return data
