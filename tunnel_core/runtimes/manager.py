"""The runtimes operations: create, connect, list, status, stop, remove, cleanup.

Each takes plain arguments and the environment mapping and returns a payload model (the
``--json`` output). Commands that change aliases or processes hold the state lock; status
only reads. Remote calls use key references resolved at call time; secrets are never
written to state, profiles, argv or history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tunnel_core.config.settings import profile_dir as resolve_profile_dir
from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.fileutil import remove_quietly
from tunnel_core.runtimes import launch as launcher
from tunnel_core.runtimes.local import (
    doctor_command,
    local_details,
    next_steps,
    process_view,
    repair_actions,
    repair_command,
    runtime_pid_and_state,
)
from tunnel_core.runtimes.models import (
    AliasView,
    CleanupEntry,
    CleanupPayload,
    ConnectPayload,
    CreatePayload,
    LaunchDiagnostics,
    ListPayload,
    LocalDetails,
    RemoteTunnelView,
    RemovePayload,
    StatusPayload,
    StopPayload,
    TunnelInfo,
)
from tunnel_core.runtimes.process import is_ours, terminate
from tunnel_core.runtimes.profile import (
    DEFAULT_RUNTIME_KEY_REF,
    Target,
    api_key_ref_from_profile,
    normalize_profile_name,
    profile_control_plane,
    runtime_profile,
    target_from_options,
    write_runtime_profile,
)
from tunnel_core.runtimes.remote import RemoteError, remote_create, remote_get, remote_list
from tunnel_core.runtimes.tmux import kill_session
from tunnel_core.runtimes.verdict import Signals, decide, mcp_url
from tunnel_core.state.admin_profiles import EffectiveAdminProfile, resolve_admin_profile
from tunnel_core.state.history import append_history
from tunnel_core.state.jsonfile import load_json
from tunnel_core.state.lock import state_lock
from tunnel_core.state.records import (
    AliasRecord,
    ProcessRecord,
    load_aliases,
    load_processes,
    save_aliases,
    save_processes,
    stamp,
)
from tunnel_core.state.refs import normalize_alias, reference_available, validate_secret_reference
from tunnel_core.state.root import StateRoot, resolve_state_root, utc_now
from tunnel_core.wire.models import TUNNEL_ID_RE

STATUS_REMOTE_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class AdminOptions:
    """The admin connection flags shared by every runtimes command.

    ``must_exist``: a named ``admin_profile`` that is not saved is an error rather than a new
    profile (the agent tools); the CLI keeps the reference's create-on-first-use.
    """

    admin_profile: str = ""
    admin_key: str = ""
    base_url: str = ""
    url_path: str = ""
    must_exist: bool = False


class RuntimeConflict(UsageError):
    """``connect`` would disturb a running runtime and was not allowed to.

    ``kind`` is ``replace`` (this alias already runs another tunnel, target or restart policy;
    ``changes`` names what differs) or ``shared_tunnel`` (``other_alias`` already runs this tunnel).
    Nothing was written.
    """

    def __init__(self, message: str, *, kind: Literal["replace", "shared_tunnel"], alias: str, tunnel_id: str,
                 other_alias: str = "", changes: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.alias = alias
        self.tunnel_id = tunnel_id
        self.other_alias = other_alias
        self.changes = tuple(changes)


class TunnelRejected(ConfigError):
    """The control plane answered 404 for the tunnel to attach; nothing was written or launched."""

    def __init__(self, message: str, *, tunnel_id: str, status_code: int) -> None:
        super().__init__(message)
        self.tunnel_id = tunnel_id
        self.status_code = status_code


@dataclass(frozen=True, slots=True)
class ConnectOptions:
    alias: str
    admin: AdminOptions = field(default_factory=AdminOptions)
    name: str = ""
    description: str = ""
    organization_ids: Sequence[str] = ()
    workspace_ids: Sequence[str] = ()
    tunnel_id: str = ""
    profile: str = ""
    profile_dir: str = ""
    mcp_server_url: str = ""
    mcp_command: str = ""
    runtime_api_key: str = ""
    tunnel_client_bin: str = ""
    restart: str = ""  # "" keeps a running runtime's policy ("no" for a new one)
    health_timeout: float = launcher.HEALTH_TIMEOUT
    # A running runtime of this alias with another tunnel, target or restart policy is replaced
    # (the CLI: the user asked for the new one); False raises RuntimeConflict (the agent tools).
    replace: bool = True
    # Another alias's running runtime on the same tunnel is tolerated (the reference's CLI);
    # False raises RuntimeConflict: two pollers on one tunnel split its traffic between targets.
    allow_shared_tunnel: bool = True


def _scope_check(verb: str, orgs: Sequence[str], workspaces: Sequence[str]) -> None:
    if orgs and workspaces:
        raise UsageError(f"{verb} accepts --organization-id or --workspace-id, not both")
    if len(orgs) > 1 or len(workspaces) > 1:
        raise UsageError(f"{verb} accepts one --organization-id or one --workspace-id")


def _default_description(alias: str, description: str, current: str = "") -> str:
    return description.strip() or current or f"MCP tunnel for {alias}"


def _find_or_create_tunnel(root: StateRoot, env: Mapping[str, str], alias: str, admin: EffectiveAdminProfile, *,
                           name: str, description: str, orgs: Sequence[str],
                           workspaces: Sequence[str]) -> tuple[TunnelInfo, bool]:
    """Existing alias's tunnel > a scoped tunnel named ``name or alias`` > a newly created one (then True)."""
    aliases = load_aliases(root)
    existing = aliases.get(alias)
    if existing is not None and existing.tunnel_id:
        previous_admin = resolve_admin_profile(root, env, fallback_name=existing.admin_profile)
        try:
            return remote_get(existing.tunnel_id, previous_admin, previous_admin.admin_key, env), False
        except RemoteError as exc:
            if not exc.not_found:
                raise
            append_history(root, "stale-alias", alias, existing.tunnel_id, str(exc))
            del aliases[alias]
            save_aliases(root, aliases)
    if orgs or workspaces:
        wanted = name.strip() or alias
        try:
            for t in remote_list(admin, env, organization_id=orgs[0] if orgs else "",
                                 workspace_id=workspaces[0] if workspaces else ""):
                if t.name == wanted:
                    return t, False
        except RemoteError as exc:
            if not exc.not_found:
                raise
    if not (orgs or workspaces):
        raise UsageError("creating a tunnel requires --organization-id or --workspace-id (or attach with --tunnel-id)")
    return remote_create(admin, env, name=name.strip() or alias, description=_default_description(alias, description),
                         organization_ids=orgs, workspace_ids=workspaces), True


def _remote_failure(exc: RemoteError | ConfigError) -> ConfigError:
    return ConfigError(str(exc))


def create(env: Mapping[str, str], *, alias: str, admin: AdminOptions, name: str = "", description: str = "",
           organization_ids: Sequence[str] = (), workspace_ids: Sequence[str] = ()) -> CreatePayload:
    """Create (or reuse) the remote tunnel for ``alias`` and record the alias."""
    alias = normalize_alias(alias)
    _scope_check("create", organization_ids, workspace_ids)
    root = resolve_state_root(env)
    root.ensure_dirs()
    with state_lock(root):
        previous = load_aliases(root).get(alias)
        profile = resolve_admin_profile(root, env, requested=admin.admin_profile, admin_key=admin.admin_key,
                                        base_url=admin.base_url, url_path=admin.url_path,
                                        fallback_name=previous.admin_profile if previous else "",
                                        must_exist=admin.must_exist)
        try:
            tunnel, created = _find_or_create_tunnel(root, env, alias, profile, name=name, description=description,
                                                     orgs=organization_ids, workspaces=workspace_ids)
        except RemoteError as exc:
            raise _remote_failure(exc) from None
        aliases = load_aliases(root)
        aliases[alias] = stamp(AliasRecord(
            alias=alias, tunnel_id=tunnel.id, name=tunnel.name, admin_profile=profile.name,
            description=tunnel.description, organization_ids=tunnel.organization_ids,
            workspace_ids=tunnel.workspace_ids, tenant_ids=tunnel.tenant_ids,
        ))
        save_aliases(root, aliases)
        append_history(root, "create", alias, tunnel.id, f"name={tunnel.name} admin_profile={profile.name}")
    return CreatePayload(alias=alias, tunnel=tunnel, admin_profile=profile.name, admin_profile_path=profile.path,
                         state_root=str(root.path), created=created,
                         mcp_url=mcp_url(profile.base_url, profile.url_path, tunnel.id))


def _target(opts: ConnectOptions, root: StateRoot, alias: str) -> Target:
    """The MCP target given, else the one this alias last ran (a reconnect), else a UsageError."""
    if opts.mcp_server_url.strip() or opts.mcp_command.strip():
        return target_from_options(opts.mcp_server_url, opts.mcp_command)
    recorded = load_processes(root).get(alias) if root.processes_path.exists() else None
    if recorded is not None and recorded.target_kind in ("server_url", "command") and recorded.target_value:
        return target_from_options(recorded.target_value if recorded.target_kind == "server_url" else "",
                                   recorded.target_value if recorded.target_kind == "command" else "")
    return target_from_options("", "")  # raises: connect requires --mcp-server-url or --mcp-command


def _changes(existing: ProcessRecord, tunnel_id: str, target: Target, restart: str) -> list[str]:
    """What a connect would change about a running runtime (empty: reuse it as it is)."""
    out: list[str] = []
    if existing.tunnel_id and existing.tunnel_id != tunnel_id:
        out.append(f"tunnel {existing.tunnel_id} -> {tunnel_id}")
    if existing.target_kind and (existing.target_kind, existing.target_value) != (target.kind, target.value):
        out.append("MCP target " + ("URL" if target.kind == "server_url" else "command") + " changed")
    if restart and restart != existing.restart_policy:
        out.append(f"restart policy {existing.restart_policy} -> {restart}")
    return out


def _check_conflicts(root: StateRoot, alias: str, opts: ConnectOptions, tunnel_id: str, target: Target,
                     processes: Mapping[str, ProcessRecord]) -> bool:
    """Raise RuntimeConflict when connect may not proceed; return whether the running runtime is replaced."""
    existing = processes.get(alias)
    replace = False
    if existing is not None and _runtime_alive(root, alias, existing):
        changes = _changes(existing, tunnel_id, target, opts.restart)
        if changes and not opts.replace:
            raise RuntimeConflict(
                f"alias {alias} already runs ({'; '.join(changes)}); connect again with replace to restart it "
                "with the new settings, or use another alias", kind="replace", alias=alias, tunnel_id=tunnel_id,
                changes=changes)
        replace = bool(changes)
    if not opts.allow_shared_tunnel:
        for other, proc in sorted(processes.items()):
            if other != alias and proc.tunnel_id == tunnel_id and _runtime_alive(root, other, proc):
                raise RuntimeConflict(
                    f"tunnel {tunnel_id} is already served by the running alias {other}; two runtimes on one tunnel "
                    "split its calls between their MCP servers", kind="shared_tunnel", alias=alias,
                    tunnel_id=tunnel_id, other_alias=other)
    return replace


def connect(env: Mapping[str, str], opts: ConnectOptions) -> tuple[ConnectPayload, int]:
    """Create/reuse the alias, write its profile, start (or reuse) the detached runtime, wait for /healthz.

    Returns the payload and the exit code: 0 when the runtime answered /healthz and nothing
    rejects it, 2 otherwise (``state`` and ``reason`` say why). Raises before writing anything
    when the input is bad, the tunnel does not exist (TunnelRejected) or a running runtime
    would be disturbed without permission (RuntimeConflict).
    """
    alias = normalize_alias(opts.alias)
    _scope_check("connect", opts.organization_ids, opts.workspace_ids)
    if opts.restart not in ("", "no", "on-failure"):
        raise UsageError(f"--restart: {opts.restart!r} is not a policy; use no or on-failure")
    root = resolve_state_root(env)
    profile_name = normalize_profile_name(opts.profile, alias)
    profile_dir = resolve_profile_dir({"profile_dir": opts.profile_dir.strip() or None}, env)
    target = _target(opts, root, alias)
    key_ref = validate_secret_reference(opts.runtime_api_key.strip() or DEFAULT_RUNTIME_KEY_REF,
                                        "--runtime-api-key")
    run_argv = launcher.runtime_argv(str(profile_dir), profile_name, opts.tunnel_client_bin)
    root.ensure_dirs()

    with state_lock(root):
        aliases = load_aliases(root)
        previous = aliases.get(alias)
        admin = resolve_admin_profile(root, env, requested=opts.admin.admin_profile, admin_key=opts.admin.admin_key,
                                      base_url=opts.admin.base_url, url_path=opts.admin.url_path,
                                      fallback_name=previous.admin_profile if previous else "",
                                      must_exist=opts.admin.must_exist)
        remote_error, lookup_status, created = "", 0, False
        if opts.tunnel_id.strip():
            tunnel_id = opts.tunnel_id.strip()
            if not TUNNEL_ID_RE.match(tunnel_id):
                raise UsageError(f"--tunnel-id: {tunnel_id!r} is not tunnel_ followed by 32 lowercase letters or digits")
            try:
                tunnel = remote_get(tunnel_id, admin, key_ref, env)
            except (RemoteError, ConfigError) as exc:
                if isinstance(exc, RemoteError) and exc.not_found:
                    raise TunnelRejected(
                        f"the control plane answered HTTP 404 for tunnel {tunnel_id} at {admin.base_url}: it does not "
                        "exist there (mistyped, deleted, or another control plane); nothing was started",
                        tunnel_id=tunnel_id, status_code=404) from None
                remote_error = str(exc)
                lookup_status = exc.status_code if isinstance(exc, RemoteError) else 0
                tunnel = TunnelInfo(id=tunnel_id, name=opts.name.strip() or alias,
                                    description=_default_description(alias, opts.description))
        else:
            try:
                tunnel, created = _find_or_create_tunnel(root, env, alias, admin, name=opts.name,
                                                         description=opts.description, orgs=opts.organization_ids,
                                                         workspaces=opts.workspace_ids)
            except RemoteError as exc:
                if not (exc.not_found and previous is not None and previous.tunnel_id):
                    raise _remote_failure(exc) from None
                remote_error, lookup_status = str(exc), exc.status_code
                tunnel = TunnelInfo(id=previous.tunnel_id, name=previous.name, description=previous.description,
                                    organization_ids=previous.organization_ids,
                                    workspace_ids=previous.workspace_ids, tenant_ids=previous.tenant_ids)
        processes = load_processes(root)
        replace = _check_conflicts(root, alias, opts, tunnel.id, target, processes)

        config_path = profile_dir / f"{profile_name}.yaml"
        health_url_file = root.health_url_file(alias)
        log_path = root.log_path(alias)
        write_runtime_profile(config_path, runtime_profile(
            tunnel_id=tunnel.id, base_url=admin.base_url, url_path=admin.url_path, api_key_ref=key_ref,
            target=target, health_url_file=health_url_file, log_path=log_path,
        ))
        aliases = load_aliases(root)
        record = stamp(AliasRecord(
            alias=alias, tunnel_id=tunnel.id, name=tunnel.name, admin_profile=admin.name,
            description=_default_description(alias, opts.description, tunnel.description),
            organization_ids=tunnel.organization_ids, workspace_ids=tunnel.workspace_ids,
            tenant_ids=tunnel.tenant_ids, config_path=str(config_path), profile_name=profile_name,
            profile_dir=str(profile_dir), profile_path=str(config_path), health_url_file=str(health_url_file),
        ))
        aliases[alias] = record
        save_aliases(root, aliases)

        existing = processes.get(alias)
        if replace and existing is not None:
            append_history(root, "stale-process", alias, existing.tunnel_id, f"replacing with tunnel_id={tunnel.id}")
        policy: Literal["no", "on-failure"] = "on-failure" if opts.restart == "on-failure" else "no"
        if not opts.restart and existing is not None and existing.active:
            policy = existing.restart_policy  # no --restart given: keep the running runtime's policy
        argv = run_argv
        if policy == "on-failure":
            remove_quietly(root.supervisor_path(alias))
            argv = launcher.supervised_argv(root.supervisor_path(alias), run_argv)
        result = launcher.start_or_reuse(
            argv=argv, env=launcher.child_env(env, key_ref, admin.admin_key), runtime_key_ref=key_ref,
            log_path=log_path, health_url_file=health_url_file, existing=existing, replace=replace,
            health_timeout=opts.health_timeout,
        )
        proc = ProcessRecord(
            alias=alias, tunnel_id=tunnel.id, config_path=str(config_path), health_url_file=str(health_url_file),
            target_kind=target.kind, target_value=target.value, command=result.command,
            started_at=(existing.started_at if (result.already_running and existing) else utc_now()),
            admin_profile=admin.name, profile_name=profile_name, profile_dir=str(profile_dir),
            profile_path=str(config_path), mode="tmux" if result.mode == "tmux" else "process",
            session_name=result.session_name, pid=result.pid, pid_start_time=result.pid_start_time,
            pid_executable=result.pid_executable,
            restart_policy=(existing.restart_policy if (result.already_running and existing) else policy),
            log_path=str(log_path),
        )
        processes = load_processes(root)
        processes[alias] = proc
        try:
            save_processes(root, processes)
        except ConfigError:
            if result.launched:
                terminate(result.pid, result.pid_start_time, grace=launcher.STOP_GRACE)
            raise
        append_history(root, "connect", alias, tunnel.id,
                       f"mode={result.mode} pid={result.pid} started={str(result.started).lower()} "
                       f"healthy={str(result.healthy).lower()} ready={str(result.ready).lower()} "
                       f"restart={proc.restart_policy}")

    local = local_details(root, alias, record, proc)
    actions = repair_actions(alias, record, proc, local, remote_error)
    runtime_pid, _running, _sup = runtime_pid_and_state(root, alias, proc)
    tail = result.log_tail.splitlines()[-1] if result.log_tail else ""
    verdict = decide(_signals(tunnel.id, proc, local, lookup_status=lookup_status, lookup_error=remote_error,
                              launch_exit_code=None if result.healthy else result.exit_code, launch_log_line=tail,
                              tunnel_just_created=created))
    payload = ConnectPayload(
        alias=alias, tunnel=tunnel, admin_profile=admin.name, admin_profile_path=admin.path,
        profile_name=profile_name, profile_dir=str(profile_dir), profile_path=str(config_path),
        profile_exists=local.profile.exists, config_path=str(config_path), health_url_file=str(health_url_file),
        health_url=local.health.url, ui_url=local.health.ui, runtime_state=local.runtime_state,
        healthy=local.effective_health.healthz.ok, ready=local.effective_health.readyz.ok,
        launched=result.launched, mode=result.mode, command=result.command, session_name=result.session_name,
        log_path=str(log_path),
        launch_diagnostics=(LaunchDiagnostics(exit_code=result.exit_code, log_path=str(log_path),
                                              log_tail=result.log_tail) if not result.healthy else None),
        started=result.started, running=result.running, already_running=result.already_running,
        remote_error=remote_error, tmux=local.tmux, process_running=local.process_running,
        process=process_view(proc), local=local, repair_actions=actions,
        next_steps=[doctor_command(profile_name, str(profile_dir), str(config_path)),
                    f"tunnel-client runtimes status {alias} --json"],
        pid=runtime_pid or (result.pid or None), exit_code=result.exit_code, restart_policy=proc.restart_policy,
        state=verdict.state, reason=verdict.reason, cause=verdict.cause,
        mcp_url=mcp_url(admin.base_url, admin.url_path, tunnel.id), tunnel_created=created,
    )
    return payload, 0 if (result.healthy and verdict.state != "failed") else 2


def _signals(tunnel_id: str, proc: ProcessRecord | None, local: LocalDetails, *, lookup_status: int = 0,
             lookup_error: str = "", launch_exit_code: int | None = None, launch_log_line: str = "",
             tunnel_just_created: bool = False) -> Signals:
    health = local.effective_health
    return Signals(
        # a live operator UI found for the same tunnel counts only for a runtime this alias launched
        # (its recorded health URL went stale), not for another alias's runtime on a shared tunnel
        tunnel_id=tunnel_id,
        process_running=local.process_running or (local.live_admin_ui.found and proc is not None and proc.active),
        supervisor_restarting=local.supervisor.running and not local.process_running,
        stopped_on_purpose=proc is None or not proc.active, healthz_ok=health.healthz.ok,
        readyz_ok=health.readyz.ok, readyz_body=health.readyz.body,
        runtime_control_plane_error=local.control_plane_poll_health.last_error, lookup_status=lookup_status,
        lookup_error=lookup_error, launch_exit_code=launch_exit_code, launch_log_line=launch_log_line,
        tunnel_just_created=tunnel_just_created)


def _alias_view(r: AliasRecord) -> AliasView:
    return AliasView(**r.model_dump())


def list_runtimes(env: Mapping[str, str], *, admin: AdminOptions, organization_id: str = "", workspace_id: str = "",
                  tenant_id: str = "", persist: bool = True) -> ListPayload:
    """Local aliases; with a scope, also the remote tunnels of that scope matched to local aliases.

    ``persist=False`` writes nothing (not even the state directories or a changed admin profile).
    """
    root = resolve_state_root(env)
    if persist:
        root.ensure_dirs()
    profile = resolve_admin_profile(root, env, requested=admin.admin_profile, admin_key=admin.admin_key,
                                    base_url=admin.base_url, url_path=admin.url_path, must_exist=admin.must_exist,
                                    persist=persist)
    aliases = load_aliases(root)
    payload = ListPayload(aliases=[_alias_view(aliases[a]) for a in sorted(aliases)], admin_profile=profile.name,
                          admin_profile_path=profile.path, state_root=str(root.path))
    if organization_id or workspace_id or tenant_id:
        try:
            remote = remote_list(profile, env, organization_id=organization_id, workspace_id=workspace_id,
                                 tenant_id=tenant_id)
        except RemoteError as exc:
            raise _remote_failure(exc) from None
        by_tunnel = {r.tunnel_id: r for r in aliases.values()}
        payload.remote_tunnels = [
            RemoteTunnelView(**t.model_dump(), local_alias=by_tunnel[t.id].alias if t.id in by_tunnel else "",
                                local_admin_profile=by_tunnel[t.id].admin_profile if t.id in by_tunnel else "")
            for t in remote
        ]
    return payload


def _known_alias(root: StateRoot, alias: str) -> tuple[AliasRecord, ProcessRecord | None]:
    record = load_aliases(root).get(alias)
    if record is None:
        raise UsageError(f"alias {alias} is not known; run 'tunnel-client runtimes connect --alias {alias} ...' first")
    return record, load_processes(root).get(alias)


def _read_only_key(record: AliasRecord, proc: ProcessRecord | None, admin: EffectiveAdminProfile,
                   env: Mapping[str, str]) -> tuple[str, str, str]:
    """(key ref, auth kind, skipped reason) for the read-only remote lookup of ``status``."""
    candidates: list[tuple[str, str]] = []
    for path in (proc.profile_path if proc else "", record.profile_path, proc.config_path if proc else "",
                 record.config_path):
        ref = api_key_ref_from_profile(path)
        if ref:
            candidates.append((ref, "runtime"))
    candidates += [(DEFAULT_RUNTIME_KEY_REF, "runtime"), ("env:OPENAI_API_KEY", "runtime"), (admin.admin_key, "admin")]
    reasons: list[str] = []
    for ref, kind in candidates:
        ok, reason = reference_available(ref, env)
        if ok:
            return ref, kind, ""
        if reason and reason not in reasons:
            reasons.append(reason)
    return "", "", reasons[-1] if reasons else "no runtime or admin key reference is available for read-only lookup"


def _status_payload(root: StateRoot, alias: str, record: AliasRecord, proc: ProcessRecord | None,
                    admin: EffectiveAdminProfile, *, remote: TunnelInfo | None = None, stale: bool = False,
                    error: str = "", attempted: bool = False, auth_kind: str = "", auth_ref: str = "",
                    skipped: str = "", model: type[StatusPayload] = StatusPayload,
                    lookup_status: int = 0) -> StatusPayload:
    local = local_details(root, alias, record, proc)
    verdict = decide(_signals(record.tunnel_id, proc, local, lookup_status=lookup_status, lookup_error=error))
    base_url, url_path = profile_control_plane(record.profile_path or record.config_path)
    actions = repair_actions(alias, record, proc, local, error)
    runtime_pid, _running, supervisor = runtime_pid_and_state(root, alias, proc) if proc else (0, False, None)
    failing = not local.effective_health.healthz.ok
    return model(
        alias=alias, tunnel_id=record.tunnel_id, admin_profile=admin.name, admin_profile_path=admin.path,
        remote=remote, stale=stale, error=error, remote_error=error, repair_command=repair_command(alias, record, proc),
        repair_actions=actions, config_path=record.config_path, profile_name=record.profile_name,
        profile_dir=record.profile_dir, profile_path=record.profile_path, profile_exists=local.profile.exists,
        health_url_file=record.health_url_file, health_url=local.health.url, ui_url=local.health.ui,
        runtime_state=local.runtime_state, healthy=local.effective_health.healthz.ok,
        ready=local.effective_health.readyz.ok, control_plane_poll_health=local.control_plane_poll_health,
        remote_lookup_attempted=attempted, remote_lookup_auth_kind=auth_kind, remote_lookup_auth_ref=auth_ref,
        remote_skipped_reason=skipped, tmux=local.tmux, process_running=local.process_running,
        process=process_view(proc), pid=runtime_pid or None, log_path=local.log.path,
        log_tail=local.log.tail if (failing and proc is not None and proc.active) else "",
        restarts=supervisor.restarts if supervisor else 0, local=local,
        next_steps=next_steps(actions, doctor_command(record.profile_name, record.profile_dir, record.config_path),
                              f"tunnel-client runtimes status {alias}"),
        state=verdict.state, reason=verdict.reason, cause=verdict.cause,
        mcp_url=mcp_url(base_url or admin.base_url, url_path if base_url else admin.url_path, record.tunnel_id),
    )


def status(env: Mapping[str, str], *, alias: str, admin: AdminOptions, persist: bool = True) -> tuple[StatusPayload, int]:
    """Local state first, then a read-only remote lookup; exit 2 when the tunnel is gone and nothing runs.

    ``persist=False`` writes nothing, not even an admin profile the flags changed.
    """
    alias = normalize_alias(alias)
    root = resolve_state_root(env)
    record, proc = _known_alias(root, alias)
    profile = resolve_admin_profile(root, env, requested=admin.admin_profile, admin_key=admin.admin_key,
                                    base_url=admin.base_url, url_path=admin.url_path, fallback_name=record.admin_profile,
                                    must_exist=admin.must_exist, persist=persist)
    key_ref, kind, skipped = _read_only_key(record, proc, profile, env)
    remote: TunnelInfo | None = None
    stale, error, code = False, "", 0
    if key_ref:
        try:
            remote = remote_get(record.tunnel_id, profile, key_ref, env, timeout=STATUS_REMOTE_TIMEOUT)
        except (RemoteError, ConfigError) as exc:
            error = str(exc)
            stale = isinstance(exc, RemoteError) and exc.not_found
            code = exc.status_code if isinstance(exc, RemoteError) else 0
    payload = _status_payload(root, alias, record, proc, profile, remote=remote, stale=stale, error=error,
                              attempted=bool(key_ref), auth_kind=kind, auth_ref=key_ref, skipped=skipped,
                              lookup_status=code)
    return payload, 2 if (stale and proc is None) else 0


@dataclass(frozen=True, slots=True)
class TunnelLookup:
    """A tunnel looked up by id (read-only), and the local aliases attached to it."""

    tunnel_id: str
    tunnel: TunnelInfo | None
    error: str
    status_code: int
    aliases: list[str]
    mcp_url: str


def lookup_tunnel(env: Mapping[str, str], *, tunnel_id: str, admin: AdminOptions) -> TunnelLookup:
    """GET the tunnel with the runtime key (else the admin key) and list the aliases that use it; writes nothing."""
    tunnel_id = tunnel_id.strip()
    if not TUNNEL_ID_RE.match(tunnel_id):
        raise UsageError(f"tunnel_id: {tunnel_id!r} is not tunnel_ followed by 32 lowercase letters or digits")
    root = resolve_state_root(env)
    profile = resolve_admin_profile(root, env, requested=admin.admin_profile, must_exist=admin.must_exist,
                                    persist=False)
    aliases = sorted(a.alias for a in load_aliases(root).values() if a.tunnel_id == tunnel_id)
    tunnel, error, code = None, "", 0
    for ref in (DEFAULT_RUNTIME_KEY_REF, "env:OPENAI_API_KEY", profile.admin_key):
        if not reference_available(ref, env)[0]:
            continue
        try:
            tunnel = remote_get(tunnel_id, profile, ref, env, timeout=STATUS_REMOTE_TIMEOUT)
            error, code = "", 0
            break
        except (RemoteError, ConfigError) as exc:
            error, code = str(exc), exc.status_code if isinstance(exc, RemoteError) else 0
            if code == 404:
                break
    else:
        if not error:
            error = "no runtime or admin key reference is available for the lookup"
    return TunnelLookup(tunnel_id=tunnel_id, tunnel=tunnel, error=error, status_code=code, aliases=aliases,
                        mcp_url=mcp_url(profile.base_url, profile.url_path, tunnel_id))


def stop(env: Mapping[str, str], *, alias: str, admin: AdminOptions) -> tuple[StopPayload, int]:
    """Stop the runtime (SIGTERM, grace, SIGKILL); idempotent. Exit 2 only when it could not be stopped."""
    alias = normalize_alias(alias)
    root = resolve_state_root(env)
    with state_lock(root):
        record, proc = _known_alias(root, alias)
        profile = resolve_admin_profile(root, env, requested=admin.admin_profile, admin_key=admin.admin_key,
                                        base_url=admin.base_url, url_path=admin.url_path,
                                        fallback_name=record.admin_profile)
        previous_mode = proc.mode if proc else ""
        already_stopped, stop_error = True, ""
        if proc is not None and proc.mode == "tmux" and proc.session_name:
            was_running, stop_error = kill_session(alias, proc.session_name)
            already_stopped = not was_running
        elif proc is not None and proc.mode == "process" and proc.pid > 0:
            child_pid, _child_running, supervisor = runtime_pid_and_state(root, alias, proc)
            child_start = _child_start_time(root, alias, proc) if supervisor.enabled else ""
            outcome = terminate(proc.pid, proc.pid_start_time, grace=launcher.STOP_GRACE + 2.0)
            already_stopped = not outcome.signaled
            stop_error = outcome.error
            if not stop_error and supervisor.enabled and child_pid and is_ours(child_pid, child_start):
                # the supervisor is gone (or was killed) but its runtime survived: stop that too
                child = terminate(child_pid, child_start, grace=launcher.STOP_GRACE)
                already_stopped = already_stopped and not child.signaled
                stop_error = child.error
        if not stop_error:
            remove_quietly(Path(proc.health_url_file) if proc and proc.health_url_file else root.health_url_file(alias))
            if proc is not None:
                proc = proc.model_copy(update={"mode": "stopped", "session_name": "", "pid": 0, "pid_start_time": "",
                                               "pid_executable": ""})
                processes = load_processes(root)
                processes[alias] = proc
                save_processes(root, processes)
        detail = f"previous_mode={previous_mode or '-'} already_stopped={str(already_stopped).lower()}"
        append_history(root, "stop", alias, record.tunnel_id, detail + (f" error={stop_error}" if stop_error else ""))
    payload = _status_payload(root, alias, record, proc, profile, skipped="stop is a local-only operation",
                              error=stop_error, model=StopPayload)
    assert isinstance(payload, StopPayload)
    payload.already_stopped, payload.stopped, payload.stop_error = already_stopped, not stop_error, stop_error
    return payload, 2 if stop_error else 0


def _child_start_time(root: StateRoot, alias: str, proc: ProcessRecord) -> str:
    try:
        raw = load_json(root.supervisor_path(alias))
    except ConfigError:
        return ""
    if isinstance(raw, dict) and raw.get("supervisor_pid") == proc.pid:
        return str(raw.get("child_start_time") or "")
    return ""


def _runtime_alive(root: StateRoot, alias: str, proc: ProcessRecord | None) -> bool:
    if proc is None or proc.mode not in ("process", "tmux"):
        return False
    _pid, running, supervisor = runtime_pid_and_state(root, alias, proc)
    return running or supervisor.running


def _managed_file(root: StateRoot, path: str) -> bool:
    """Files rm may delete outright: inside the state root's health/logs/supervisors, or a profile we recorded."""
    p = Path(path)
    return any(root.owns(p, d) for d in (root.health_dir, root.logs_dir, root.supervisors_dir))


def remove(env: Mapping[str, str], *, alias: str) -> RemovePayload:
    """Forget an alias locally (records, profile, health, log); refuses while its runtime runs; never deletes the tunnel."""
    alias = normalize_alias(alias)
    root = resolve_state_root(env)
    with state_lock(root):
        aliases, processes = load_aliases(root), load_processes(root)
        record, proc = aliases.get(alias), processes.get(alias)
        if record is None and proc is None:
            raise UsageError(f"alias {alias} is not known")
        if _runtime_alive(root, alias, proc):
            raise UsageError(f"alias {alias} still has a managed runtime; run 'tunnel-client runtimes stop {alias}' "
                             "first")
        paths: list[str] = []
        for value in (record.config_path if record else "", record.profile_path if record else "",
                      record.health_url_file if record else "", proc.config_path if proc else "",
                      proc.profile_path if proc else "", proc.health_url_file if proc else "",
                      proc.log_path if proc else "", str(root.supervisor_path(alias))):
            if value.strip() and value not in paths:
                paths.append(value)
        removed: list[str] = []
        for value in paths:
            p = Path(value)
            recorded_profile = value in ((record.profile_path, record.config_path) if record else ()) or value in (
                (proc.profile_path, proc.config_path) if proc else ())
            if not (_managed_file(root, value) or recorded_profile):
                continue
            try:
                p.unlink()
            except FileNotFoundError:
                if value == str(root.supervisor_path(alias)):
                    continue
            except OSError as exc:
                raise ConfigError(f"remove local state path {value}: {exc.strerror}") from None
            removed.append(value)
        aliases.pop(alias, None)
        processes.pop(alias, None)
        save_aliases(root, aliases)
        save_processes(root, processes)
        tunnel_id = (record.tunnel_id if record else "") or (proc.tunnel_id if proc else "")
        append_history(root, "rm", alias, tunnel_id, f"removed_paths={len(removed)}")
    return RemovePayload(alias=alias, removed=True, removed_paths=removed, state_root=str(root.path),
                         tunnel_id=tunnel_id)


def _classify(local_running: bool, live: bool, profile_exists: bool, profile_path: str, profile_name: str) -> str:
    if live or local_running:
        return "live_runtime"
    if profile_exists:
        return "valid_profile"
    if profile_path or profile_name:
        return "missing_profile"
    return "stale_alias"


def _entries(root: StateRoot, aliases: Mapping[str, AliasRecord],
             processes: Mapping[str, ProcessRecord]) -> list[CleanupEntry]:
    entries: list[CleanupEntry] = []
    for name in sorted(set(aliases) | set(processes)):
        record = aliases.get(name) or AliasRecord(alias=name, tunnel_id=processes[name].tunnel_id)
        proc = processes.get(name)
        local = local_details(root, name, record, proc)
        classification = _classify(local.process_running or local.supervisor.running, local.live_admin_ui.found,
                                   local.profile.exists, local.profile.path, local.profile.name)
        entries.append(CleanupEntry(
            alias=name, tunnel_id=record.tunnel_id or (proc.tunnel_id if proc else ""), classification=classification,
            profile=local.profile, runtime_state=local.runtime_state, live_runtime=local.live_admin_ui,
            cleanup_safe=classification == "stale_alias", cleanup_command="tunnel-client runtimes cleanup --apply",
        ))
    return entries


def classify(env: Mapping[str, str]) -> list[CleanupEntry]:
    """Every alias with its cleanup classification, read-only (no lock taken, nothing written)."""
    root = resolve_state_root(env)
    return _entries(root, load_aliases(root), load_processes(root))


def cleanup(env: Mapping[str, str], *, apply: bool) -> CleanupPayload:
    """Classify every alias; with ``apply`` remove only the ``stale_alias`` ones (local metadata only)."""
    root = resolve_state_root(env)
    root.ensure_dirs()
    with state_lock(root):
        aliases, processes = load_aliases(root), load_processes(root)
        entries = _entries(root, aliases, processes)
        removed: list[str] = []
        for entry in entries:
            if apply and entry.classification == "stale_alias":
                aliases.pop(entry.alias, None)
                processes.pop(entry.alias, None)
                removed.append(entry.alias)
                append_history(root, "cleanup", entry.alias, entry.tunnel_id,
                               "removed stale local alias/process metadata")
        if apply:
            save_aliases(root, aliases)
            save_processes(root, processes)
    return CleanupPayload(
        state_root=str(root.path), apply=apply, entries=entries, removed=removed,
        next_steps=["Review entries with classification=stale_alias, then run `tunnel-client runtimes cleanup "
                    "--apply` to remove only stale local alias/process metadata."],
    )
