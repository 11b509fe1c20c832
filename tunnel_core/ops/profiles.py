"""Profiles: named YAML files in the profile directory (``<dir>/<name>.yaml``).

Directory precedence (``config.settings.profile_dir``): ``--profile-dir`` >
``TUNNEL_CLIENT_PROFILE_DIR`` > ``$XDG_CONFIG_HOME/tunnel-client`` > ``~/.config/tunnel-client``.
A profile is written only after it loads with the strict loader, atomically and 0600;
an existing one is replaced only when asked (``force``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tunnel_core.config.refs import API_KEY_RE, is_reference
from tunnel_core.config.settings import PROFILE_NAME_RE, load_settings, profile_dir
from tunnel_core.config.yamlfile import ConfigFile, parse_config_text
from tunnel_core.errors import ConfigError, UsageError
from tunnel_core.ops.samples import DEFAULT_SAMPLE, SampleRequest, check_key_ref, render_sample

_VALIDATION_KEY_ENV = "TUNNEL_CLIENT_PROFILE_VALIDATION_KEY"
EDIT_SEED_TUNNEL_ID = "tunnel_" + "0" * 32
EDIT_SEED_MCP_URL = "http://127.0.0.1:3001/mcp"


class ProfileEntry(BaseModel):
    name: str
    path: str


class ProfileWritten(BaseModel):
    """What ``profiles add`` / ``profiles edit`` / ``init`` wrote."""

    name: str
    path: str
    replaced: bool = False
    changed: bool = True


def resolve_dir(profile_dir_flag: str | None, env: Mapping[str, str]) -> Path:
    return profile_dir({"profile_dir": profile_dir_flag}, env)


def check_profile_name(name: str) -> str:
    name = name.strip()
    if not PROFILE_NAME_RE.match(name):
        raise UsageError(
            f"profile name {name!r} is invalid; use up to 128 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def profile_path(name: str, directory: Path) -> Path:
    return directory / f"{check_profile_name(name)}.yaml"


def list_profiles(directory: Path) -> list[ProfileEntry]:
    """``*.yaml`` files with valid profile names, sorted; an absent directory has none."""
    try:
        entries = list(directory.iterdir())
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ConfigError(f"profile directory {directory}: cannot read it ({exc.strerror}); check --profile-dir") from None
    out = [
        ProfileEntry(name=p.stem, path=str(p))
        for p in entries
        if p.suffix == ".yaml" and PROFILE_NAME_RE.match(p.stem) and not p.is_dir()
    ]
    return sorted(out, key=lambda e: e.name)


# ---------------------------------------------------------------------------- validation


def validate_profile_text(text: str, *, source: str) -> ConfigFile:
    """Load ``text`` as ``run`` would (strict keys, every value checked) without reading any secret.

    The API key reference is checked for syntax only: it is swapped for a stand-in so the
    environment variable or key file need not exist yet. A profile must name its tunnel
    and its main MCP target; it may leave the key to CONTROL_PLANE_API_KEY at run time.
    """
    cfg = parse_config_text(text, source=source)
    data: dict[str, Any] = cfg.model_dump(exclude_none=True)
    cp = data.setdefault("control_plane", {})
    key = cp.get("api_key")
    if key:
        if is_reference(key):
            try:
                check_key_ref(key, flag="control_plane.api_key")
            except ConfigError as exc:
                raise ConfigError(f"{source}: {exc}") from None
        elif not API_KEY_RE.match(key.strip()):
            raise ConfigError(f"{source}: control_plane.api_key has characters outside [0-9A-Za-z_-]")
    cp["api_key"] = f"env:{_VALIDATION_KEY_ENV}"
    with tempfile.TemporaryDirectory(prefix="tunnel-client-validate-") as tmp:
        stand_in = Path(tmp) / "profile.yaml"
        stand_in.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        try:
            load_settings({"config": str(stand_in)}, {_VALIDATION_KEY_ENV: "validation_stand_in"})
        except ConfigError as exc:
            raise ConfigError(f"{source}: {str(exc).replace(str(stand_in), source)}") from None
    return cfg


# ---------------------------------------------------------------------------- writing


def _unwritable(directory: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"profile directory {directory} is not writable ({exc.strerror or exc}); "
        "choose another with --profile-dir or TUNNEL_CLIENT_PROFILE_DIR, or fix its permissions"
    )


def _exists(name: str, path: Path) -> ConfigError:
    return ConfigError(f"profile {name!r} already exists at {path}; pass --force to replace it")


def write_profile_file(path: Path, text: str, *, force: bool) -> bool:
    """Write ``text`` to ``path`` (0600) atomically; True when an existing file was replaced.

    Without ``force`` an existing file is never touched, even if it appears concurrently
    (the new file is hard-linked into place, which fails if the name is taken). On any
    failure no partial or temporary file is left behind.
    """
    name, directory = path.stem, path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    existed = path.exists()
    if existed and not force:
        raise _exists(name, path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise _exists(name, path) from None
            except OSError:
                # Filesystems without hard links: fall back to a checked rename.
                if path.exists():
                    raise _exists(name, path) from None
                os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write profile {path}: {exc.strerror or exc}; check the directory") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return existed


def add_profile(
    name: str,
    directory: Path,
    *,
    from_file: str = "",
    sample: str = "",
    request: SampleRequest | None = None,
    force: bool = False,
) -> ProfileWritten:
    """``profiles add``: copy a YAML file or render a sample into ``<directory>/<name>.yaml``."""
    path = profile_path(name, directory)
    if bool(from_file.strip()) == bool(sample.strip()):
        raise UsageError("profiles add: give exactly one of --from-file PATH or --sample NAME")
    if from_file.strip():
        src = Path(os.path.expanduser(from_file.strip()))
        try:
            text = src.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--from-file: cannot read {src} ({exc.strerror}); check the path") from None
    else:
        text = render_sample(sample, request or SampleRequest())
    validate_profile_text(text, source=str(path))
    replaced = write_profile_file(path, text, force=force)
    return ProfileWritten(name=path.stem, path=str(path), replaced=replaced)


def edit_seed() -> str:
    """Starting content of ``profiles edit`` for a profile that does not exist yet."""
    return render_sample(DEFAULT_SAMPLE, SampleRequest(tunnel_id=EDIT_SEED_TUNNEL_ID, mcp_server_url=EDIT_SEED_MCP_URL))


def editor_argv(env: Mapping[str, str]) -> list[str]:
    raw = (env.get("VISUAL") or "").strip() or (env.get("EDITOR") or "").strip()
    if not raw:
        raise UsageError("set VISUAL or EDITOR to the editor to use, e.g. export EDITOR=nano")
    try:
        argv = shlex.split(raw)
    except ValueError as exc:
        raise UsageError(f"VISUAL/EDITOR {raw!r} cannot be split ({exc}); check its quotes") from None
    if not argv:
        raise UsageError("set VISUAL or EDITOR to the editor to use, e.g. export EDITOR=nano")
    return argv


def edit_profile(name: str, directory: Path, env: Mapping[str, str]) -> ProfileWritten:
    """``profiles edit``: edit a temporary copy, then replace the profile only if the copy loads.

    The editor gets the terminal. If it fails, or the edited text does not load, the
    profile is left exactly as it was and the temporary copy is removed.
    """
    path = profile_path(name, directory)
    argv = editor_argv(env)
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    existed = path.exists()
    try:
        original = path.read_text(encoding="utf-8") if existed else edit_seed()
    except OSError as exc:
        raise ConfigError(f"cannot read profile {path} ({exc.strerror}); check its permissions") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".yaml", dir=directory)
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(original)
        try:
            code = subprocess.call([*argv, tmp], env=dict(env))
        except OSError as exc:
            raise UsageError(f"cannot start editor {argv[0]!r} ({exc.strerror}); check VISUAL/EDITOR") from None
        if code != 0:
            raise UsageError(f"editor {argv[0]!r} exited with status {code}; profile {path} left unchanged")
        edited = Path(tmp).read_text(encoding="utf-8")
        if existed and edited == original:
            return ProfileWritten(name=path.stem, path=str(path), replaced=False, changed=False)
        try:
            validate_profile_text(edited, source=str(path))
        except ConfigError as exc:
            raise ConfigError(f"{exc} (not saved; profile {path} left unchanged)") from None
        write_profile_file(path, edited, force=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return ProfileWritten(name=path.stem, path=str(path), replaced=existed)
