"""Management API calls of the runtimes commands, authenticated by key *references*."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tunnel_core.config.refs import resolve_api_key
from tunnel_core.controlplane.admin import (
    AdminClient,
    AdminError,
    AdminRequestError,
    AdminTunnel,
    connection_from_flags,
)
from tunnel_core.runtimes.models import TunnelInfo
from tunnel_core.state.admin_profiles import EffectiveAdminProfile


class RemoteError(Exception):
    """A management API call failed; ``status_code`` is 0 when no answer arrived."""

    def __init__(self, message: str, status_code: int = 0) -> None:
        super().__init__(message)
        self.status_code = status_code

    @property
    def not_found(self) -> bool:
        return self.status_code == 404


def tunnel_info(t: AdminTunnel) -> TunnelInfo:
    return TunnelInfo(id=t.id, name=t.name, description=t.description, organization_ids=t.organization_ids or [],
                      workspace_ids=t.workspace_ids or [], tenant_ids=t.tenant_ids or [])


def _client(profile: EffectiveAdminProfile, key_ref: str, env: Mapping[str, str], timeout: float) -> AdminClient:
    key = resolve_api_key(key_ref, setting=f"admin profile {profile.name} key {key_ref}", env=env)
    conn = connection_from_flags(env, base_url=profile.base_url, url_path=profile.url_path, ca_bundle=None, key=key)
    return AdminClient(conn, timeout=timeout)


def _wrap(exc: AdminError) -> RemoteError:
    return RemoteError(str(exc), exc.status_code if isinstance(exc, AdminRequestError) else 0)


def remote_get(tunnel_id: str, profile: EffectiveAdminProfile, key_ref: str, env: Mapping[str, str], *,
               timeout: float = 30.0) -> TunnelInfo:
    """GET the tunnel with ``key_ref`` (a runtime or admin key); raises RemoteError or ConfigError."""
    with _client(profile, key_ref or profile.admin_key, env, timeout) as client:
        try:
            return tunnel_info(client.get(tunnel_id))
        except AdminError as exc:
            raise _wrap(exc) from None


def remote_create(profile: EffectiveAdminProfile, env: Mapping[str, str], *, name: str, description: str,
                  organization_ids: Sequence[str], workspace_ids: Sequence[str]) -> TunnelInfo:
    with _client(profile, profile.admin_key, env, 30.0) as client:
        try:
            return tunnel_info(client.create(name=name, description=description, organization_ids=organization_ids,
                                             workspace_ids=workspace_ids))
        except AdminError as exc:
            raise _wrap(exc) from None


def remote_list(profile: EffectiveAdminProfile, env: Mapping[str, str], *, organization_id: str = "",
                workspace_id: str = "", tenant_id: str = "") -> list[TunnelInfo]:
    with _client(profile, profile.admin_key, env, 30.0) as client:
        try:
            found = client.list(organization_id=organization_id, workspace_id=workspace_id, tenant_id=tenant_id)
        except AdminError as exc:
            raise _wrap(exc) from None
    return [tunnel_info(t) for t in found.tunnels]
