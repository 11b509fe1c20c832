"""The state root and its layout.

Root precedence: ``TUNNEL_CLIENT_STATE_DIR`` > the first existing legacy directory
(``$CODEX_HOME/tunnel-mcp``, ``~/.codex/tunnel-mcp``, ``~/.tunnel-client``, kept so state
written by the reference implementation is found) > ``$XDG_STATE_HOME/tunnel-client`` >
the platform user state directory (platformdirs; ``~/.local/state/tunnel-client`` on Linux).
Everything is resolved from the injected environment, never from ``os.environ`` directly.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tunnel_core.errors import ConfigError

APP_NAME = "tunnel-client"


@dataclass(frozen=True, slots=True)
class StateRoot:
    """Paths of one state root; nothing is created until ``ensure_dirs``."""

    path: Path

    @property
    def aliases_path(self) -> Path:
        return self.path / "aliases.yaml"

    @property
    def processes_path(self) -> Path:
        return self.path / "processes.yaml"

    @property
    def admin_profiles_path(self) -> Path:
        return self.path / "admin_profiles.yaml"

    @property
    def history_path(self) -> Path:
        return self.path / "history.md"

    @property
    def lock_path(self) -> Path:
        return self.path / ".state.lock"

    @property
    def configs_dir(self) -> Path:
        return self.path / "configs"

    @property
    def health_dir(self) -> Path:
        return self.path / "health"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    @property
    def supervisors_dir(self) -> Path:
        return self.path / "supervisors"

    def health_url_file(self, alias: str) -> Path:
        return self.health_dir / f"{alias}.url"

    def log_path(self, alias: str) -> Path:
        return self.logs_dir / f"{alias}.log"

    def supervisor_path(self, alias: str) -> Path:
        return self.supervisors_dir / f"{alias}.json"

    def ensure_dirs(self) -> None:
        """Create the root and its subdirectories (0700: they hold logs and health URLs)."""
        for d in (self.path, self.configs_dir, self.health_dir, self.logs_dir, self.supervisors_dir):
            try:
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"state directory {d}: cannot create it ({exc.strerror}); set TUNNEL_CLIENT_STATE_DIR to a "
                    "writable directory"
                ) from None

    def owns(self, path: Path | str, directory: Path) -> bool:
        """True when ``path`` is a plain file name directly inside ``directory`` of this root."""
        p = Path(path)
        return p.parent == directory and p.name not in ("", ".", "..")


def _user_state_dir(home: str) -> Path:
    """platformdirs' user state directory, re-anchored on the injected HOME when it differs."""
    import platformdirs

    default = Path(platformdirs.user_state_dir(APP_NAME, appauthor=False))
    real_home = Path(os.path.expanduser("~"))
    if home and Path(home) != real_home:
        try:
            return Path(home) / default.relative_to(real_home)
        except ValueError:
            return default
    return default


def resolve_state_root(env: Mapping[str, str]) -> StateRoot:
    """The state root for this environment (see the module docstring for the order)."""
    explicit = env.get("TUNNEL_CLIENT_STATE_DIR", "").strip()
    if explicit:
        return StateRoot(Path(os.path.abspath(os.path.expanduser(explicit))))
    home = env.get("HOME", "").strip()
    legacy: list[Path] = []
    codex_home = env.get("CODEX_HOME", "").strip()
    if codex_home:
        legacy.append(Path(codex_home) / "tunnel-mcp")
    if home:
        legacy += [Path(home) / ".codex" / "tunnel-mcp", Path(home) / ".tunnel-client"]
    for candidate in legacy:
        if candidate.is_dir():
            return StateRoot(candidate)
    xdg = env.get("XDG_STATE_HOME", "").strip()
    if xdg:
        return StateRoot(Path(xdg) / APP_NAME)
    return StateRoot(_user_state_dir(home))


def utc_now() -> str:
    """Current UTC time as RFC 3339 with second precision (``2025-01-02T03:04:05Z``)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
