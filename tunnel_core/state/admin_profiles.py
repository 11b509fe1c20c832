"""Admin profiles: named control-plane connections (base URL, URL path, admin key *reference*).

``admin_profiles.yaml`` is ``{"active_profile": NAME, "profiles": {NAME: {...}}}``. The key is
always an ``env:NAME`` / ``file:/path`` reference; a literal key is refused before anything is
written. The ``runtimes`` commands resolve the profile to use as: explicit ``--admin-profile`` >
the alias's previous profile > ``TUNNEL_MCP_ADMIN_PROFILE`` > ``default``, and persist (and
activate) it when a flag changed it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.state.jsonfile import load_json_object, save_json
from tunnel_core.state.lock import state_lock
from tunnel_core.state.records import load_aliases, load_processes
from tunnel_core.state.refs import normalize_alias, validate_secret_reference
from tunnel_core.state.root import StateRoot, resolve_state_root, utc_now

DEFAULT_PROFILE = "default"
DEFAULT_ADMIN_KEY_REF = "env:OPENAI_ADMIN_KEY"
DEFAULT_BASE_URL = "https://api.openai.com"


class AdminProfile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str
    control_plane_base_url: str = ""
    control_plane_url_path: str = ""
    admin_key: str = ""
    updated_at: str = ""


class AdminProfilesFile(BaseModel):
    active_profile: str = ""
    profiles: dict[str, AdminProfile] = {}


class AdminProfileResult(BaseModel):
    name: str
    control_plane_base_url: str
    control_plane_url_path: str
    admin_key: str
    updated_at: str
    path: str
    active: bool


class AdminProfileList(BaseModel):
    profiles: list[AdminProfileResult]
    active_profile: str
    path: str
    state_root: str


class AdminProfileSaved(BaseModel):
    profile: AdminProfileResult
    active_profile: str
    path: str
    state_root: str


class AdminProfileDeleted(BaseModel):
    deleted_profile: str
    active_profile: str
    path: str
    state_root: str


@dataclass(frozen=True, slots=True)
class EffectiveAdminProfile:
    """The admin connection a runtimes command uses (the key is still a reference)."""

    name: str
    base_url: str
    url_path: str
    admin_key: str
    path: str


def load_admin_profiles(root: StateRoot) -> AdminProfilesFile:
    raw = load_json_object(root.admin_profiles_path)
    active = raw.get("active_profile", "")
    if not isinstance(active, str):
        raise ConfigError(f"state file {root.admin_profiles_path} must contain a string active_profile")
    profiles_raw = raw.get("profiles")
    if profiles_raw is None:  # older flat layout: {NAME: {...}, "active_profile": NAME}
        profiles_raw = {k: v for k, v in raw.items() if k != "active_profile"}
    if not isinstance(profiles_raw, dict):
        raise ConfigError(f"state file {root.admin_profiles_path} must contain a profiles object")
    profiles: dict[str, AdminProfile] = {}
    for key, value in profiles_raw.items():
        if not isinstance(value, dict):
            raise ConfigError(f"state file {root.admin_profiles_path}: profile {key!r} is not an object")
        try:
            profiles[key] = AdminProfile.model_validate({"name": key, **value})
        except ValidationError:
            raise ConfigError(f"state file {root.admin_profiles_path}: profile {key!r} is malformed") from None
    return AdminProfilesFile(active_profile=active, profiles=profiles)


def save_admin_profiles(root: StateRoot, data: AdminProfilesFile) -> None:
    save_json(root.admin_profiles_path, {
        "active_profile": data.active_profile,
        "profiles": {k: data.profiles[k].model_dump() for k in sorted(data.profiles)},
    })


def check_base_url(value: str, field: str = "--control-plane-base-url") -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"{field}: {value!r} is not an absolute http(s) URL; use e.g. https://api.openai.com")
    return value.rstrip("/")


def check_url_path(value: str, field: str = "--control-plane-url-path") -> str:
    if value in ("", "/"):
        return ""
    parts = urlsplit(value)
    if not value.startswith("/") or parts.scheme or parts.netloc or parts.query or parts.fragment:
        raise UsageError(f"{field}: {value!r} must be a path starting with / (no scheme, host or query)")
    return value.rstrip("/")


def _first(*values: str) -> str:
    return next((v.strip() for v in values if v and v.strip()), "")


def _result(root: StateRoot, p: AdminProfile, active: str) -> AdminProfileResult:
    return AdminProfileResult(
        name=p.name, control_plane_base_url=p.control_plane_base_url, control_plane_url_path=p.control_plane_url_path,
        admin_key=p.admin_key, updated_at=p.updated_at, path=str(root.admin_profiles_path), active=p.name == active,
    )


class UnknownAdminProfile(UsageError):
    """An admin profile was named that does not exist (``name`` is the normalised name)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"admin profile {name} is not known; create it with 'tunnel-client admin-profiles set {name}'")
        self.name = name


def _known(data: AdminProfilesFile, name: str) -> AdminProfile:
    profile = data.profiles.get(name)
    if profile is None:
        raise UnknownAdminProfile(name)
    return profile


def list_admin_profiles(env: Mapping[str, str]) -> AdminProfileList:
    """Every saved admin profile, sorted by name, with the active one marked."""
    root = resolve_state_root(env)
    data = load_admin_profiles(root)
    return AdminProfileList(
        profiles=[_result(root, data.profiles[n], data.active_profile) for n in sorted(data.profiles)],
        active_profile=data.active_profile, path=str(root.admin_profiles_path), state_root=str(root.path),
    )


def set_admin_profile(
    env: Mapping[str, str], name: str, *, base_url: str = "", url_path: str = "", admin_key: str = "",
    activate: bool = True,
) -> AdminProfileSaved:
    """Create or update a profile; unset fields keep their stored value, then env, then defaults."""
    root = resolve_state_root(env)
    name = normalize_alias(name)
    with state_lock(root):
        data = load_admin_profiles(root)
        existing = data.profiles.get(name) or AdminProfile(name=name)
        resolved_key = _first(admin_key, existing.admin_key, DEFAULT_ADMIN_KEY_REF)
        validate_secret_reference(resolved_key, f"admin profile {name} admin_key (--admin-key)")
        profile = AdminProfile(
            name=name,
            control_plane_base_url=check_base_url(_first(base_url, existing.control_plane_base_url,
                                                         env.get("CONTROL_PLANE_BASE_URL", ""), DEFAULT_BASE_URL)),
            control_plane_url_path=check_url_path(_first(url_path, existing.control_plane_url_path,
                                                         env.get("CONTROL_PLANE_URL_PATH", ""))),
            admin_key=resolved_key,
            updated_at=utc_now(),
        )
        data.profiles[name] = profile
        if activate or not data.active_profile:
            data.active_profile = name
        save_admin_profiles(root, data)
    return AdminProfileSaved(profile=_result(root, profile, data.active_profile), active_profile=data.active_profile,
                             path=str(root.admin_profiles_path), state_root=str(root.path))


def activate_admin_profile(env: Mapping[str, str], name: str) -> AdminProfileSaved:
    root = resolve_state_root(env)
    name = normalize_alias(name)
    with state_lock(root):
        data = load_admin_profiles(root)
        profile = _known(data, name)
        data.active_profile = name
        save_admin_profiles(root, data)
    return AdminProfileSaved(profile=_result(root, profile, name), active_profile=name,
                             path=str(root.admin_profiles_path), state_root=str(root.path))


def delete_admin_profile(env: Mapping[str, str], name: str) -> AdminProfileDeleted:
    """Delete a profile no alias and no running runtime refers to."""
    root = resolve_state_root(env)
    name = normalize_alias(name)
    with state_lock(root):
        data = load_admin_profiles(root)
        _known(data, name)
        for record in load_aliases(root).values():
            if record.admin_profile == name:
                raise UsageError(f"admin profile {name} is still referenced by alias {record.alias}; "
                                 f"remove the alias first with 'tunnel-client runtimes rm {record.alias}'")
        for proc in load_processes(root).values():
            if proc.admin_profile == name and proc.active:
                raise UsageError(f"admin profile {name} is still referenced by active runtime {proc.alias}")
        del data.profiles[name]
        if data.active_profile == name:
            data.active_profile = min(data.profiles) if data.profiles else ""
        save_admin_profiles(root, data)
    return AdminProfileDeleted(deleted_profile=name, active_profile=data.active_profile,
                               path=str(root.admin_profiles_path), state_root=str(root.path))


def resolve_admin_profile(
    root: StateRoot, env: Mapping[str, str], *, requested: str = "", admin_key: str = "", base_url: str = "",
    url_path: str = "", fallback_name: str = "", must_exist: bool = False, persist: bool = True,
) -> EffectiveAdminProfile:
    """The profile a runtimes command uses; saved (and activated) when new or changed. Caller holds the lock.

    ``must_exist``: an explicitly ``requested`` name that is not saved raises UnknownAdminProfile
    instead of being created (the agent tools: a mistyped name must not become a new profile).
    ``persist=False`` never writes (read-only commands).
    """
    name = _first(requested, fallback_name, env.get("TUNNEL_MCP_ADMIN_PROFILE", ""), DEFAULT_PROFILE)
    name = normalize_alias(name)
    data = load_admin_profiles(root)
    existing = data.profiles.get(name)
    if existing is None and must_exist and requested.strip():
        raise UnknownAdminProfile(name)
    stored = existing or AdminProfile(name=name)
    resolved = AdminProfile(
        name=name,
        control_plane_base_url=check_base_url(_first(base_url, stored.control_plane_base_url,
                                                     env.get("CONTROL_PLANE_BASE_URL", ""), DEFAULT_BASE_URL)),
        control_plane_url_path=check_url_path(_first(url_path, stored.control_plane_url_path,
                                                     env.get("CONTROL_PLANE_URL_PATH", ""))),
        admin_key=validate_secret_reference(_first(admin_key, stored.admin_key, DEFAULT_ADMIN_KEY_REF),
                                            f"admin profile {name} admin_key (--admin-key)"),
        updated_at=stored.updated_at,
    )
    changed = existing is None or (
        existing.control_plane_base_url, existing.control_plane_url_path, existing.admin_key
    ) != (resolved.control_plane_base_url, resolved.control_plane_url_path, resolved.admin_key)
    if changed and persist:
        data.profiles[name] = resolved.model_copy(update={"updated_at": utc_now()})
        data.active_profile = name
        root.ensure_dirs()
        save_admin_profiles(root, data)
    return EffectiveAdminProfile(name=name, base_url=resolved.control_plane_base_url,
                                 url_path=resolved.control_plane_url_path, admin_key=resolved.admin_key,
                                 path=str(root.admin_profiles_path))
