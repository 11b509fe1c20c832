"""Runtime tools under the reference plugin's names: connect, create, status, list, stop, remove.

Every tool calls ``tunnel_core.runtimes.manager`` in-process; the only process started is the
detached runtime itself. ``connect_stdio_mcp`` connects stdio and HTTP servers alike (one tool
per job), ``list_runtime_aliases`` also lists and classifies remote tunnels, ``runtime_status``
also looks a tunnel up by id, ``remove_runtime`` also removes every stale alias. Results are
compact views of the CLI's payloads (``runtimes ... --json`` has the full ones): the verdict
first (``state``, ``healthy``, ``ready``, ``reason``), then ids and the MCP URL, then ``next``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agent_tools.common import check_tunnel_client_bin, key_fix, require_reference, trusted_base_url
from agent_tools.toolkit import Env, Outcome, ToolFailure, ToolInput, ToolSpec, next_call
from tunnel_core.errors import TunnelClientError
from tunnel_core.runtimes import manager
from tunnel_core.runtimes.models import ConnectPayload, StatusPayload, StopPayload
from tunnel_core.runtimes.profile import DEFAULT_RUNTIME_KEY_REF
from tunnel_core.state.admin_profiles import UnknownAdminProfile

TUNNEL_ID_PATTERN = "^tunnel_[a-z0-9]{32}$"
LOG_EXCERPT_LINES = 3
MAX_LISTED_NEXT = 5
STATE_ORDER = ("ready", "healthy", "starting", "failed", "stopped")


class ConnectInput(ToolInput):
    at_most_one = (("mcp_command", "mcp_server_url"), ("tunnel_id", "organization_id", "workspace_id"))
    reference_fields = ("runtime_api_key",)

    alias: str
    mcp_command: str | None = Field(None, description="stdio server command line")
    mcp_server_url: str | None = Field(None, description="or HTTP server URL")
    tunnel_id: str | None = Field(None, pattern=TUNNEL_ID_PATTERN)
    organization_id: str | None = None
    workspace_id: str | None = None
    name: str = Field("", description="tunnel name (default alias)")
    description: str = ""
    runtime_api_key: str = Field("", description="env:NAME or file:/path (default env:CONTROL_PLANE_API_KEY)")
    admin_profile: str = ""
    control_plane_base_url: str = ""
    restart: Literal["no", "on-failure"] | None = None
    replace: bool = Field(False, description="restart the alias's running runtime with changed settings")
    allow_shared_tunnel: bool = Field(False, description="allow a 2nd running alias on this tunnel")
    tunnel_client_bin: str = ""


class CreateInput(ToolInput):
    exactly_one = (("organization_id", "workspace_id"),)

    alias: str
    organization_id: str | None = None
    workspace_id: str | None = None
    name: str = Field("", description="default alias; an existing tunnel of that name is reused")
    description: str = ""
    admin_profile: str = ""
    tunnel_client_bin: str = ""


class StatusInput(ToolInput):
    exactly_one = (("alias", "tunnel_id"),)

    alias: str | None = None
    tunnel_id: str | None = Field(None, pattern=TUNNEL_ID_PATTERN)
    details: bool = Field(False, description="add paths, probes, log tail")
    tunnel_client_bin: str = ""


class ListInput(ToolInput):
    at_most_one = (("organization_id", "workspace_id", "tenant_id"),)

    organization_id: str | None = Field(None, description="also list its remote tunnels")
    workspace_id: str | None = None
    tenant_id: str | None = None
    admin_profile: str = ""
    tunnel_client_bin: str = ""


class AliasInput(ToolInput):
    alias: str
    tunnel_client_bin: str = ""


class RemoveInput(ToolInput):
    exactly_one = (("alias", "stale"),)

    alias: str | None = None
    stale: Literal[True] | None = Field(None, description="or every stale_alias")


def _text(value: str | None) -> str:
    return (value or "").strip()


def _admin(profile: str, env: Env, base_url: str = "") -> manager.AdminOptions:
    return manager.AdminOptions(admin_profile=profile.strip(), base_url=trusted_base_url(base_url, env),
                                must_exist=True)


# ---------------------------------------------------------------------------- the runtime view


def _next(p: StatusPayload | ConnectPayload, *, after_connect: bool) -> tuple[list[dict[str, Any]], str]:
    """(``next`` tool calls, a ``fix`` for what no tool can do) for a runtime in state ``p.state``."""
    alias = p.alias
    status = next_call("runtime_status", "check again", alias=alias)
    if p.state in ("ready", "healthy"):
        if after_connect:
            return [next_call("runtime_status", "confirm before reporting success", alias=alias)], ""
        return ([status] if p.state == "healthy" else []), ""
    if p.state == "starting":
        return [status], ""
    if p.state == "stopped":
        return [next_call("connect_stdio_mcp", "start it again with its recorded tunnel and target", alias=alias)], ""
    if p.cause == "tunnel_not_found":
        calls = [next_call("stop_runtime", "it cannot serve a tunnel that does not exist", alias=alias)] \
            if p.process_running else []
        calls.append(next_call("list_runtime_aliases", "find a tunnel that exists (add organization_id to list the "
                               "remote ones), then connect_stdio_mcp with that tunnel_id and replace: true"))
        return calls, ""
    if p.cause in ("unauthorized", "forbidden"):
        return ([next_call("connect_stdio_mcp", "relaunch with the corrected key", alias=alias, replace=True)],
                "give the runtime a key allowed to use this tunnel: runtime_api_key env:NAME or file:/path (Codex "
                "forwards CONTROL_PLANE_API_KEY)")
    if p.cause == "launch_failed":
        return [next_call("doctor", "find why the runtime cannot start", profile=p.profile_name,
                          profile_dir=p.profile_dir)], ""
    return [next_call("runtime_status", "read the log tail", alias=alias, details=True),
            next_call("connect_stdio_mcp", "start it again", alias=alias)], ""


def runtime_view(p: StatusPayload | ConnectPayload, *, details: bool = False) -> dict[str, Any]:
    """The compact result of connect, status and stop (well under 2 KB unless ``details``)."""
    connect = isinstance(p, ConnectPayload)
    view: dict[str, Any] = {"state": p.state}
    if isinstance(p, ConnectPayload):
        view["launched"] = p.launched
    view |= {"healthy": p.healthy, "ready": p.ready}
    if p.reason:
        view["reason"] = p.reason
    if p.cause:
        view["cause"] = p.cause
    if isinstance(p, StopPayload):
        view["stopped"] = p.stopped
        view["already_stopped"] = p.already_stopped
    tunnel_id = p.tunnel.id if isinstance(p, ConnectPayload) else p.tunnel_id
    view |= {"alias": p.alias, "tunnel_id": tunnel_id, "profile": p.profile_name}
    if p.mcp_url:
        view["mcp_url"] = p.mcp_url
    view["process_running"] = p.process_running
    poll = p.local.control_plane_poll_health if p.local else None
    if poll is not None and poll.state != "unknown":
        view["control_plane"] = poll.state + (f" ({poll.last_error})" if poll.last_error else "")
    if p.ui_url and p.process_running:
        view["ui_url"] = p.ui_url
    if isinstance(p, ConnectPayload):
        if p.tunnel_created:
            view["tunnel_created"] = True
        if p.already_running:
            view["already_running"] = True
        if p.state == "failed" and p.launch_diagnostics and p.launch_diagnostics.log_tail:
            view["log_excerpt"] = p.launch_diagnostics.log_tail.splitlines()[-LOG_EXCERPT_LINES:]
    policy = p.restart_policy if isinstance(p, ConnectPayload) else (p.process or {}).get("restart_policy")
    if policy == "on-failure":
        view["restart"] = "on-failure"
        if isinstance(p, StatusPayload) and p.restarts:
            view["restarts"] = p.restarts
    if details:
        view["details"] = _details(p)
    calls, fix = _next(p, after_connect=connect)
    if fix:
        view["fix"] = fix
    if calls and not isinstance(p, StopPayload):
        view["next"] = calls
    view["cli"] = [f"tunnel-client runtimes status {p.alias}"]
    return view


def _details(p: StatusPayload | ConnectPayload) -> dict[str, Any]:
    local = p.local
    out: dict[str, Any] = {"pid": p.pid, "profile_path": p.profile_path, "log_path": p.log_path}
    if local is not None:
        out |= {"healthz": local.effective_health.healthz.model_dump(exclude={"body"}),
                "readyz": local.effective_health.readyz.model_dump(),
                "issues": local.issues, "log_tail": local.log.tail[-4000:]}
        if local.supervisor.enabled:
            out["supervisor"] = local.supervisor.model_dump()
    if isinstance(p, StatusPayload):
        out["remote"] = p.remote.model_dump() if p.remote else None
        if p.remote_error:
            out["remote_error"] = p.remote_error
    return out


def _summary(view: dict[str, Any]) -> str:
    text = (f"{view['alias']}: {view['state']} (healthy={view['healthy']}, ready={view['ready']}) "
            f"tunnel {view['tunnel_id']}")
    if "reason" in view:
        text += f"; {view['reason']}"
    if view.get("next"):
        n = view["next"][0]
        text += f". Next: {n['tool']} {n['arguments']}"
    return text


# ---------------------------------------------------------------------------- handlers


def connect(inp: ConnectInput, env: Env) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    admin = _admin(inp.admin_profile, env, inp.control_plane_base_url)
    key_ref = inp.runtime_api_key.strip() or DEFAULT_RUNTIME_KEY_REF
    require_reference(key_ref, env, "runtime_api_key")
    opts = manager.ConnectOptions(
        alias=inp.alias, admin=admin, name=inp.name,
        description=inp.description, organization_ids=tuple(filter(None, [_text(inp.organization_id)])),
        workspace_ids=tuple(filter(None, [_text(inp.workspace_id)])), tunnel_id=_text(inp.tunnel_id),
        mcp_server_url=_text(inp.mcp_server_url), mcp_command=_text(inp.mcp_command), runtime_api_key=key_ref,
        restart=inp.restart or "", replace=inp.replace, allow_shared_tunnel=inp.allow_shared_tunnel,
    )
    payload, _code = manager.connect(env, opts)
    view = runtime_view(payload)
    return Outcome(view, _summary(view))


def create(inp: CreateInput, env: Env) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    p = manager.create(env, alias=inp.alias, admin=_admin(inp.admin_profile, env),
                       name=inp.name, description=inp.description,
                       organization_ids=tuple(filter(None, [_text(inp.organization_id)])),
                       workspace_ids=tuple(filter(None, [_text(inp.workspace_id)])))
    view: dict[str, Any] = {"alias": p.alias, "tunnel_id": p.tunnel.id, "created": p.created, "name": p.tunnel.name,
                            "organization_ids": p.tunnel.organization_ids, "workspace_ids": p.tunnel.workspace_ids}
    if p.mcp_url:
        view["mcp_url"] = p.mcp_url
    view["next"] = [next_call("connect_stdio_mcp", "start a runtime for it (add mcp_command or mcp_server_url)",
                              alias=p.alias)]
    if p.created:
        view["note"] = "a new tunnel can take 25-30 seconds to become active"
    verb = "Created" if p.created else "Reused"
    return Outcome(view, f"{verb} tunnel {p.tunnel.id} ({p.tunnel.name}) as alias {p.alias}")


def status(inp: StatusInput, env: Env) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    if _text(inp.tunnel_id):
        return _tunnel_status(_text(inp.tunnel_id), env, details=inp.details)
    payload, _code = manager.status(env, alias=_text(inp.alias), admin=manager.AdminOptions(), persist=False)
    view = runtime_view(payload, details=inp.details)
    return Outcome(view, _summary(view))


def _tunnel_status(tunnel_id: str, env: Env, *, details: bool) -> Outcome:
    found = manager.lookup_tunnel(env, tunnel_id=tunnel_id, admin=manager.AdminOptions())
    view: dict[str, Any]
    if found.aliases:  # a local runtime serves it: that runtime's status is the answer
        views = [runtime_view(manager.status(env, alias=a, admin=manager.AdminOptions(), persist=False)[0],
                              details=details) for a in found.aliases[:MAX_LISTED_NEXT]]
        views.sort(key=lambda v: STATE_ORDER.index(v["state"]))  # the one that serves it first
        view = views[0]
        if len(found.aliases) > 1:
            view["aliases"] = [{"alias": v["alias"], "state": v["state"]} for v in views]
        return Outcome(view, _summary(view))
    if found.status_code == 404:
        view = {"state": "failed", "reason": f"the control plane has no tunnel {tunnel_id}",
                                "cause": "tunnel_not_found", "tunnel_id": tunnel_id,
                                "next": [next_call("list_runtime_aliases", "find a tunnel that exists (add "
                                                   "organization_id to list the remote ones)")]}
        return Outcome(view, f"tunnel {tunnel_id}: failed; {view['reason']}")
    view = {"state": "stopped", "reason": "no runtime on this machine serves this tunnel", "tunnel_id": tunnel_id}
    if found.tunnel is not None:
        view["tunnel"] = found.tunnel.model_dump(exclude={"id"})
    elif found.error:
        view["lookup_error"] = found.error
    if found.mcp_url:
        view["mcp_url"] = found.mcp_url
    view["next"] = [next_call("connect_stdio_mcp", "serve it from this machine (add an alias and mcp_command or "
                              "mcp_server_url)", tunnel_id=tunnel_id)]
    return Outcome(view, f"tunnel {tunnel_id}: {view['state']}; {view['reason']}")


def list_aliases(inp: ListInput, env: Env) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    org, ws, tenant = _text(inp.organization_id), _text(inp.workspace_id), _text(inp.tenant_id)
    payload = manager.list_runtimes(env, admin=_admin(inp.admin_profile, env), organization_id=org,
                                    workspace_id=ws, tenant_id=tenant, persist=False)
    entries = {e.alias: e for e in manager.classify(env)}
    aliases = []
    for a in payload.aliases:
        e = entries.get(a.alias)
        aliases.append({"alias": a.alias, "tunnel_id": a.tunnel_id,
                        "runtime_state": e.runtime_state if e else "stopped",
                        "classification": e.classification if e else "stale_alias"})
    view: dict[str, Any] = {"aliases": aliases}
    if payload.remote_tunnels is not None:
        view["remote_tunnels"] = [{"id": t.id, "name": t.name, "local_alias": t.local_alias}
                                  for t in payload.remote_tunnels]
    view["state_root"] = payload.state_root
    calls = [next_call("runtime_status", "health and readiness of this runtime", alias=a["alias"])
             for a in aliases if a["classification"] != "stale_alias"][:MAX_LISTED_NEXT]
    if any(a["classification"] == "stale_alias" for a in aliases):
        calls.append(next_call("remove_runtime", "forget the aliases classified stale_alias (local records only)",
                               stale=True))
    if not aliases:
        calls.append(next_call("help", "how to connect a first MCP server", topic="plugin"))
    view["next"] = calls
    names = ", ".join(f"{a['alias']} ({a['runtime_state']})" for a in aliases) or "none"
    remote = f"; {len(view['remote_tunnels'])} remote tunnels" if "remote_tunnels" in view else ""
    return Outcome(view, f"Runtimes: {names}{remote}")


def stop(inp: AliasInput, env: Env) -> Outcome:
    check_tunnel_client_bin(inp.tunnel_client_bin)
    payload, code = manager.stop(env, alias=inp.alias, admin=manager.AdminOptions())
    if code != 0:
        raise ToolFailure(f"could not stop {payload.alias}: {payload.stop_error}", fix="the process may need to be "
                          "stopped by hand", next=[next_call("runtime_status", "see what still runs",
                                                             alias=payload.alias, details=True)])
    view = runtime_view(payload)
    view["next"] = [next_call("connect_stdio_mcp", "start it again later (same tunnel and target)", alias=payload.alias)]
    state = "was already stopped" if payload.already_stopped else "stopped"
    return Outcome(view, f"{payload.alias} {state}; the alias, its profile and the remote tunnel are kept")


def remove(inp: RemoveInput, env: Env) -> Outcome:
    if inp.stale:
        result = manager.cleanup(env, apply=True)
        kept = [e.alias for e in result.entries if e.alias not in result.removed]
        return Outcome({"removed": result.removed, "kept": kept},
                       f"Removed stale aliases: {', '.join(result.removed) or 'none'}; remote tunnels untouched")
    payload = manager.remove(env, alias=_text(inp.alias))
    view = {"removed": [payload.alias], "tunnel_id": payload.tunnel_id, "files_removed": len(payload.removed_paths)}
    return Outcome(view, f"Forgot alias {payload.alias} on this machine; the remote tunnel was not touched")


# ---------------------------------------------------------------------------- errors


def _alias_of(inp: Any) -> str:
    return _text(getattr(inp, "alias", None))


def runtime_error(exc: TunnelClientError, inp: Any) -> ToolFailure | None:
    """Core errors of the runtime tools as failures with the call that fixes them."""
    text = str(exc)
    alias = _alias_of(inp)
    if isinstance(exc, manager.RuntimeConflict):
        if exc.kind == "replace":
            return ToolFailure(text, field="replace", next=[next_call(
                "connect_stdio_mcp", "restart it with the new settings (only if the user wants that)",
                **{**_connect_args(inp), "replace": True})])
        return ToolFailure(text, field="tunnel_id", next=[
            next_call("runtime_status", "the runtime that already serves this tunnel", alias=exc.other_alias),
            next_call("connect_stdio_mcp", "only if two runtimes on one tunnel are really wanted",
                      **{**_connect_args(inp), "allow_shared_tunnel": True})])
    if isinstance(exc, manager.TunnelRejected):
        return ToolFailure(text, field="tunnel_id", data={"state": "failed", "cause": "tunnel_not_found",
                                                          "launched": False},
                           next=[next_call("list_runtime_aliases", "find a tunnel that exists (add organization_id "
                                                                   "to list the remote ones)")])
    if isinstance(exc, UnknownAdminProfile):
        return ToolFailure(text, field="admin_profile", next=[
            next_call("install_or_select_tunnel_client", "lists the saved admin profiles"),
            next_call("set_admin_profile", "create it (only if the user asked for a new profile)", name=exc.name)])
    if "is not known" in text and alias:
        return ToolFailure(text, field="alias", next=[next_call("list_runtime_aliases", "the known aliases")])
    if "still has a managed runtime" in text:
        return ToolFailure(text, next=[next_call("stop_runtime", "stop it first", alias=alias)])
    if "requires --organization-id or --workspace-id" in text:
        return ToolFailure("a new alias needs a tunnel: give tunnel_id to attach one, or organization_id or "
                           "workspace_id to find or create one", field="tunnel_id")
    if "requires --mcp-server-url or --mcp-command" in text:
        return ToolFailure("a new alias needs an MCP server: give mcp_command (stdio) or mcp_server_url",
                           field="mcp_command")
    fix = key_fix(exc)
    return ToolFailure(text, fix=fix) if fix else None


def _connect_args(inp: Any) -> dict[str, Any]:
    """The caller's connect arguments (unset ones left out), for a corrected call."""
    if not isinstance(inp, ConnectInput):
        return {"alias": _alias_of(inp)}
    data = inp.model_dump(exclude_defaults=True)
    return {k: v for k, v in data.items() if v is not None}


def _spec(name: str, title: str, description: str, model: type[ToolInput], handler: Any, *, read_only: bool,
          destructive: bool = False, idempotent: bool, open_world: bool, fix: str) -> ToolSpec:
    return ToolSpec(name, title, description, model, handler, read_only=read_only, destructive=destructive,
                    idempotent=idempotent, open_world=open_world, fix=fix, on_error=runtime_error)


SPECS = (
    _spec("connect_stdio_mcp", "Connect an MCP server",
          "Start or reuse a supervised background runtime relaying a tunnel to a local MCP server (command or URL; "
          "omit both to reuse the alias's). Tunnel: tunnel_id, or organization_id/workspace_id to find or create "
          "one, or omit for the alias's. Done when state is ready or healthy.",
          ConnectInput, connect, read_only=False, idempotent=False, open_world=True,
          fix="fix the argument named in the error, then call connect_stdio_mcp again"),
    _spec("create_tunnel_runtime", "Create a tunnel",
          "Find by name or create a remote tunnel in one organization or workspace and record it under an alias; "
          "starts nothing. Admin key.",
          CreateInput, create, read_only=False, idempotent=True, open_world=True,
          fix="check the scope id and that the admin key may manage tunnels there"),
    _spec("runtime_status", "Runtime status",
          "State of a runtime (ready, healthy, starting, stopped, failed) with reason and next calls; or of a "
          "tunnel by id.",
          StatusInput, status, read_only=True, idempotent=True, open_world=True,
          fix="call list_runtime_aliases to see the known aliases"),
    _spec("list_runtime_aliases", "List runtimes",
          "This machine's runtimes with state and cleanup class; with one scope also its remote tunnels (admin "
          "key).",
          ListInput, list_aliases, read_only=True, idempotent=True, open_world=True,
          fix="call again without a scope for the local runtimes only"),
    _spec("stop_runtime", "Stop a runtime",
          "Stop an alias's runtime; keeps the alias, its profile and the tunnel.",
          AliasInput, stop, read_only=False, idempotent=True, open_world=False,
          fix="call runtime_status for this alias"),
    _spec("remove_runtime", "Forget an alias",
          "Forget an alias on this machine (records, profile, log), or every stale one. Refuses while it runs; "
          "never deletes a tunnel. Only when asked.",
          RemoveInput, remove, read_only=False, destructive=True, idempotent=False, open_world=False,
          fix="call list_runtime_aliases to see the known aliases"),
)
