"""State files: JSON (which is also valid YAML, hence the ``.yaml`` names), atomic, 0600."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunnel_core.errors import ConfigError
from tunnel_core.fileutil import atomic_write


def load_json(path: Path) -> Any:
    """The decoded content of ``path``; None when the file does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"state file {path}: cannot read it ({exc.strerror}); check its permissions") from None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError(f"state file {path} is not valid JSON-compatible YAML; repair or remove it") from None


def load_json_object(path: Path) -> dict[str, Any]:
    """Like ``load_json`` but the top level must be an object; absent or empty is ``{}``."""
    data = load_json(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"state file {path} must contain a JSON object; repair or remove it")
    return data


def save_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON atomically with mode 0600."""
    try:
        atomic_write(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n", mode=0o600)
    except OSError as exc:
        raise ConfigError(f"state file {path}: cannot write it ({exc.strerror}); check the state directory") from None
