"""Tunnel administration tools (``admin tunnels ...``) and admin profiles (``admin-profiles ...``).

The connection is: a saved admin profile when ``admin_profile`` is given, then the explicit
inputs, then ``OPENAI_ADMIN_KEY`` / ``CONTROL_PLANE_BASE_URL`` / ``CONTROL_PLANE_URL_PATH``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from agent_tools.common import key_next_step, trusted_base_url
from agent_tools.toolkit import Env, Outcome, ToolFailure, ToolInput, ToolSpec
from tunnel_core.config.refs import resolve_api_key
from tunnel_core.controlplane.admin import (
    AdminClient,
    AdminTunnel,
    AdminTunnelList,
    clean_ids,
    connection_from_flags,
    read_only_key,
    resolve_admin_key,
    update_changes,
)
from tunnel_core.errors import TunnelClientError
from tunnel_core.state.admin_profiles import (
    AdminProfile,
    AdminProfileList,
    AdminProfileSaved,
    list_admin_profiles,
    load_admin_profiles,
    set_admin_profile,
)
from tunnel_core.state.root import resolve_state_root

CREATE_NOTE = "a newly created tunnel can take 25-30 seconds to become active"


class ConnectionFields(ToolInput):
    reference_fields = ("admin_key",)

    admin_profile: str = Field("", description="saved admin profile to take the connection from")
    admin_key: str = Field("", description="admin key reference, env:NAME or file:/path (default env:OPENAI_ADMIN_KEY)")
    control_plane_base_url: str = Field("", description="control-plane base URL; only the official endpoint or the "
                                                        "configured CONTROL_PLANE_BASE_URL is accepted")
    control_plane_url_path: str = Field("", description="optional path prefix before /v1")


class ListInput(ConnectionFields):
    organization_id: str = Field("", description="list the tunnels of this organization")
    workspace_id: str = Field("", description="list the tunnels of this workspace")
    tenant_id: str = Field("", description="list the tunnels of this tenant")


class GetInput(ConnectionFields):
    tunnel_id: str = Field(description="tunnel id")


class CreateInput(ConnectionFields):
    name: str = Field(min_length=1, description="tunnel name")
    description: str = Field(min_length=1, description="tunnel description")
    organization_ids: list[str] = Field(default_factory=list, description="organizations to attach")
    workspace_ids: list[str] = Field(default_factory=list, description="workspaces to attach")


class UpdateInput(ConnectionFields):
    tunnel_id: str = Field(description="tunnel id")
    name: str | None = Field(None, description="new name")
    description: str | None = Field(None, description="new description")
    organization_ids: list[str] | None = Field(None, description="replaces the attached organizations")
    workspace_ids: list[str] | None = Field(None, description="replaces the attached workspaces")


class DeleteInput(ConnectionFields):
    tunnel_id: str = Field(description="tunnel id")
    confirm: Literal[True] = Field(description="must be true: deleting a tunnel cannot be undone")


class NoInput(ToolInput):
    pass


class ProfileSetInput(ToolInput):
    reference_fields = ("admin_key",)

    name: str = Field(description="admin profile name")
    control_plane_base_url: str = Field("", description="control-plane base URL; only the official endpoint or the "
                                                        "configured CONTROL_PLANE_BASE_URL is accepted")
    control_plane_url_path: str = Field("", description="optional path prefix before /v1")
    admin_key: str = Field("", description="admin key reference to store, env:NAME or file:/path "
                                           "(default env:OPENAI_ADMIN_KEY)")
    activate: bool = Field(True, description="make it the active admin profile")


class TunnelOut(BaseModel):
    """The JSON of ``tunnel-client admin --json tunnels get|create|update|delete``."""

    id: str
    name: str = ""
    description: str = ""
    creator: str | None = None
    tenant_ids: list[str] | None = None
    workspace_ids: list[str] | None = None
    organization_ids: list[str] | None = None
    request_id: str | None = None


class TunnelListOut(BaseModel):
    """The JSON of ``tunnel-client admin --json tunnels list``."""

    tunnels: list[TunnelOut]
    request_id: str | None = None


def _profile(inp: ConnectionFields, env: Env) -> AdminProfile | None:
    name = inp.admin_profile.strip()
    if not name:
        return None
    data = load_admin_profiles(resolve_state_root(env))
    found = data.profiles.get(name)
    if found is None:
        raise ToolFailure(f"admin profile {name!r} does not exist",
                          "call admin_profiles_list, or admin_profile_set to create it")
    return found


def _client(inp: ConnectionFields, env: Env, *, read_only: bool = False) -> AdminClient:
    base = trusted_base_url(inp.control_plane_base_url, env)
    saved = _profile(inp, env)
    key_ref = inp.admin_key.strip() or (saved.admin_key if saved else "")
    if saved is not None and key_ref:
        key = resolve_api_key(key_ref, setting=f"admin profile {saved.name} admin_key", env=env)
    elif read_only:
        key = read_only_key(key_ref, env)
    else:
        key = resolve_admin_key(key_ref, env)
    base = base or (saved.control_plane_base_url if saved else "")
    path = inp.control_plane_url_path.strip() or (saved.control_plane_url_path if saved else "") or None
    return AdminClient(connection_from_flags(env, base_url=base or None, url_path=path, ca_bundle=None, key=key))


def _tunnel(t: AdminTunnel) -> TunnelOut:
    return TunnelOut.model_validate(t.output())


def _describe(t: TunnelOut) -> str:
    scope = ", ".join((t.organization_ids or []) + (t.workspace_ids or [])) or "-"
    return f"tunnel {t.id} ({t.name}; attached to {scope})"


def tunnels_list(inp: ListInput, env: Env) -> Outcome:
    scopes = [s.strip() for s in (inp.organization_id, inp.workspace_id, inp.tenant_id) if s.strip()]
    if len(scopes) != 1:
        raise ToolFailure("give exactly one of organization_id, workspace_id or tenant_id",
                          "call admin_tunnels_list again with a single scope")
    with _client(inp, env) as client:
        found: AdminTunnelList = client.list(organization_id=inp.organization_id.strip(),
                                             workspace_id=inp.workspace_id.strip(), tenant_id=inp.tenant_id.strip())
    out = TunnelListOut.model_validate(found.output())
    return Outcome(out, f"{len(out.tunnels)} tunnels: " + (", ".join(f"{t.id} ({t.name})" for t in out.tunnels)
                                                           or "none"))


def tunnels_get(inp: GetInput, env: Env) -> Outcome:
    with _client(inp, env, read_only=True) as client:
        t = _tunnel(client.get(inp.tunnel_id.strip()))
    return Outcome(t, "Found " + _describe(t))


def tunnels_create(inp: CreateInput, env: Env) -> Outcome:
    orgs = clean_ids(inp.organization_ids, "organization_ids")
    wss = clean_ids(inp.workspace_ids, "workspace_ids")
    if not (orgs or wss):
        raise ToolFailure("at least one organization or workspace id is required",
                          "call admin_tunnels_create again with organization_ids or workspace_ids")
    with _client(inp, env) as client:
        t = _tunnel(client.create(name=inp.name.strip(), description=inp.description, organization_ids=orgs,
                                  workspace_ids=wss))
    return Outcome(t, f"Created {_describe(t)}; {CREATE_NOTE}")


def tunnels_update(inp: UpdateInput, env: Env) -> Outcome:
    changes = update_changes(name=inp.name, description=inp.description,
                             organization_ids=inp.organization_ids, workspace_ids=inp.workspace_ids)
    if not changes:
        raise ToolFailure("nothing to update", "give at least one of name, description, organization_ids, "
                                               "workspace_ids")
    with _client(inp, env) as client:
        t = _tunnel(client.update(inp.tunnel_id.strip(), changes))
    return Outcome(t, f"Updated {_describe(t)} ({', '.join(sorted(changes))})")


def tunnels_delete(inp: DeleteInput, env: Env) -> Outcome:
    with _client(inp, env) as client:
        t = _tunnel(client.delete(inp.tunnel_id.strip()))
    return Outcome(t, f"Deleted {_describe(t)}; runtimes attached to it can no longer poll")


def profiles_list(_: NoInput, env: Env) -> Outcome:
    result: AdminProfileList = list_admin_profiles(env)
    names = ", ".join(p.name + (" (active)" if p.active else "") for p in result.profiles) or "none"
    return Outcome(result, f"Admin profiles: {names}")


def profile_set(inp: ProfileSetInput, env: Env) -> Outcome:
    base = trusted_base_url(inp.control_plane_base_url, env)
    result: AdminProfileSaved = set_admin_profile(env, inp.name, base_url=base, url_path=inp.control_plane_url_path,
                                                  admin_key=inp.admin_key, activate=inp.activate)
    p = result.profile
    return Outcome(result, f"Saved admin profile {p.name} ({p.control_plane_base_url}, key {p.admin_key})"
                           + (" and made it active" if p.active else ""))


def _admin_step(exc: TunnelClientError) -> str:
    hint = key_next_step(exc)
    if hint:
        return hint
    if "admin key is required" in str(exc):
        return "pass admin_key as env:NAME or file:/path, or an admin_profile that stores one"
    return ""


def _spec(name: str, title: str, description: str, inp: type[ToolInput], out: type[BaseModel], handler: Any, *,
          read_only: bool, destructive: bool, idempotent: bool, next_step: str) -> ToolSpec:
    return ToolSpec(name, title, description, inp, out, handler, read_only=read_only, destructive=destructive,
                    idempotent=idempotent, open_world=True, next_step=next_step, next_step_for=_admin_step)


SPECS = (
    _spec("admin_tunnels_list", "List tunnels", "List the tunnels of exactly one organization, workspace or tenant "
          "(admin key).", ListInput, TunnelListOut, tunnels_list, read_only=True, destructive=False, idempotent=True,
          next_step="check the scope id and that the admin key can read tunnels there"),
    _spec("admin_tunnels_get", "Get a tunnel", "Fetch one tunnel by id (an admin key, or the runtime key "
          "CONTROL_PLANE_API_KEY, is enough).", GetInput, TunnelOut, tunnels_get, read_only=True, destructive=False,
          idempotent=True, next_step="check the tunnel id; admin_tunnels_list shows the tunnels of a scope"),
    _spec("admin_tunnels_create", "Create a tunnel", "Create a tunnel attached to organizations and/or workspaces "
          "(admin key). It can take 25-30 seconds to become active.", CreateInput, TunnelOut, tunnels_create,
          read_only=False, destructive=False, idempotent=False,
          next_step="check name, description and the ids; the admin key needs Tunnels Manage for them"),
    _spec("admin_tunnels_update", "Update a tunnel", "Change a tunnel's name, description or attachments (lists "
          "replace the stored ones).", UpdateInput, TunnelOut, tunnels_update, read_only=False, destructive=False,
          idempotent=True, next_step="check the tunnel id and the fields to change"),
    _spec("admin_tunnels_delete", "Delete a tunnel", "Delete a tunnel by id (admin key; confirm must be true). Cannot "
          "be undone; only when the user asked for it.", DeleteInput, TunnelOut, tunnels_delete, read_only=False,
          destructive=True, idempotent=False, next_step="check the tunnel id with admin_tunnels_get"),
    ToolSpec("admin_profiles_list", "List admin profiles", "Saved admin connections (base URL, URL path, admin key "
             "reference) and which one is active.", NoInput, AdminProfileList, profiles_list, read_only=True,
             destructive=False, idempotent=True, open_world=False, next_step="check TUNNEL_CLIENT_STATE_DIR"),
    ToolSpec("admin_profile_set", "Save an admin profile", "Create or update a saved admin connection (the key is "
             "stored as a reference) and make it active.", ProfileSetInput, AdminProfileSaved, profile_set,
             read_only=False, destructive=False, idempotent=True, open_world=False,
             next_step="fix the input named in the message"),
)
