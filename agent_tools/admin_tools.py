"""Tunnel administration beyond the runtime tools: update and delete a tunnel, save an admin profile.

Listing tunnels is ``list_runtime_aliases`` with a scope, fetching one is ``runtime_status``
with ``tunnel_id``, creating one is ``create_tunnel_runtime``. The admin connection is the
saved ``admin_profile`` (which must exist), else the active one, else ``OPENAI_ADMIN_KEY`` and
``CONTROL_PLANE_BASE_URL``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from agent_tools.common import key_fix, trusted_base_url
from agent_tools.toolkit import Env, Outcome, ToolFailure, ToolInput, ToolSpec, next_call
from tunnel_core.config.refs import resolve_api_key
from tunnel_core.controlplane.admin import AdminClient, AdminTunnel, connection_from_flags, update_changes
from tunnel_core.errors import TunnelClientError
from tunnel_core.state.admin_profiles import DEFAULT_ADMIN_KEY_REF, load_admin_profiles, set_admin_profile
from tunnel_core.state.refs import normalize_alias
from tunnel_core.state.root import resolve_state_root


class UpdateInput(ToolInput):
    at_least_one = (("name", "description", "organization_ids", "workspace_ids"),)

    tunnel_id: str
    name: str | None = None
    description: str | None = None
    organization_ids: list[str] | None = Field(None, description="replaces the stored list")
    workspace_ids: list[str] | None = Field(None, description="replaces the stored list")
    admin_profile: str = ""


class DeleteInput(ToolInput):
    tunnel_id: str
    confirm: Literal[True]
    admin_profile: str = ""


class ProfileSetInput(ToolInput):
    reference_fields = ("admin_key",)

    name: str
    admin_key: str = Field("", description="env:NAME or file:/path (default env:OPENAI_ADMIN_KEY)")
    control_plane_base_url: str = ""
    control_plane_url_path: str = ""
    activate: bool = True


def _client(profile_name: str, env: Env) -> AdminClient:
    root = resolve_state_root(env)
    data = load_admin_profiles(root)
    name = normalize_alias(profile_name) if profile_name.strip() else data.active_profile
    saved = data.profiles.get(name) if name else None
    if profile_name.strip() and saved is None:
        raise ToolFailure(f"admin profile {name!r} does not exist", field="admin_profile", next=[
            next_call("install_or_select_tunnel_client", "lists the saved admin profiles"),
            next_call("set_admin_profile", "create it (only if the user asked for a new profile)", name=name)])
    key_ref = (saved.admin_key if saved else "") or DEFAULT_ADMIN_KEY_REF
    key = resolve_api_key(key_ref, setting=f"admin key {key_ref}", env=env)
    base = (saved.control_plane_base_url if saved else "") or None
    path = (saved.control_plane_url_path if saved else "") or None
    return AdminClient(connection_from_flags(env, base_url=base, url_path=path, ca_bundle=None, key=key))


def _view(t: AdminTunnel) -> dict[str, Any]:
    return {"tunnel_id": t.id, "name": t.name, "description": t.description,
            "organization_ids": t.organization_ids or [], "workspace_ids": t.workspace_ids or []}


def update(inp: UpdateInput, env: Env) -> Outcome:
    changes = update_changes(name=inp.name, description=inp.description, organization_ids=inp.organization_ids,
                             workspace_ids=inp.workspace_ids)
    if not changes:
        raise ToolFailure("nothing to update", field="name",
                          fix="give at least one of name, description, organization_ids, workspace_ids")
    with _client(inp.admin_profile, env) as client:
        view = _view(client.update(inp.tunnel_id.strip(), changes))
    view["changed"] = sorted(changes)
    return Outcome(view, f"Updated tunnel {view['tunnel_id']} ({', '.join(view['changed'])})")


def delete(inp: DeleteInput, env: Env) -> Outcome:
    with _client(inp.admin_profile, env) as client:
        view = _view(client.delete(inp.tunnel_id.strip()))
    view["deleted"] = True
    view["next"] = [next_call("list_runtime_aliases", "runtimes attached to it can no longer poll; stop and remove "
                                                      "them")]
    return Outcome(view, f"Deleted tunnel {view['tunnel_id']}")


def profile_set(inp: ProfileSetInput, env: Env) -> Outcome:
    base = trusted_base_url(inp.control_plane_base_url, env)
    result = set_admin_profile(env, inp.name, base_url=base, url_path=inp.control_plane_url_path,
                               admin_key=inp.admin_key, activate=inp.activate)
    p = result.profile
    view = {"name": p.name, "control_plane_base_url": p.control_plane_base_url,
            "control_plane_url_path": p.control_plane_url_path, "admin_key": p.admin_key, "active": p.active}
    return Outcome(view, f"Saved admin profile {p.name} ({p.control_plane_base_url}, key {p.admin_key})"
                         + (", active" if p.active else ""))


def admin_error(exc: TunnelClientError, inp: Any) -> ToolFailure | None:
    fix = key_fix(exc)
    if fix:
        return ToolFailure(str(exc), fix=fix)
    if "admin key is required" in str(exc):
        return ToolFailure(str(exc), fix="save an admin profile with set_admin_profile, or export OPENAI_ADMIN_KEY "
                                         "before starting Codex")
    if getattr(exc, "status_code", 0) == 404:
        return ToolFailure(str(exc), field="tunnel_id",
                           next=[next_call("runtime_status", "check the tunnel id", tunnel_id=inp.tunnel_id)])
    return None


SPECS = (
    ToolSpec("update_tunnel", "Update a tunnel",
             "Change a tunnel's name, description or attachments. Admin key.",
             UpdateInput, update, read_only=False, destructive=False, idempotent=True, open_world=True,
             fix="check the tunnel id and the fields to change", on_error=admin_error),
    ToolSpec("delete_tunnel", "Delete a tunnel",
             "Delete a remote tunnel for good. Only when the user asked. Admin key.",
             DeleteInput, delete, read_only=False, destructive=True, idempotent=False, open_world=True,
             fix="check the tunnel id with runtime_status", on_error=admin_error),
    ToolSpec("set_admin_profile", "Save an admin profile",
             "Save an admin connection (control plane, admin key reference) and make it active.",
             ProfileSetInput, profile_set, read_only=False, destructive=False, idempotent=True, open_world=False,
             fix="fix the argument named in the error"),
)
