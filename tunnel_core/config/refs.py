"""Secret and value references: ``env:NAME`` and ``file:/path``.

Resolved values are returned to the caller and never logged or echoed; errors name the
reference (which is not secret), never the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from tunnel_core.errors import ConfigError

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
API_KEY_RE = re.compile(r"^[0-9A-Za-z_-]+$")


def is_reference(value: str) -> bool:
    return value.startswith("env:") or value.startswith("file:")


def resolve_ref(ref: str, *, setting: str, env: Mapping[str, str], strip_one_newline: bool = False) -> str:
    """Resolve ``env:NAME`` / ``file:/path``; raise ConfigError naming ``setting`` when it cannot be read."""
    if ref.startswith("env:"):
        name = ref[4:]
        if not ENV_NAME_RE.match(name):
            raise ConfigError(f"{setting}: {ref!r} is not a valid env reference; use env:NAME with a variable name")
        value = env.get(name, "")
        if not value.strip():
            raise ConfigError(f"{setting}: environment variable {name} is unset or empty; export it or use file:/path")
        return value.strip()
    if ref.startswith("file:"):
        path = Path(os.path.expanduser(ref[5:]))
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}; check the path and permissions") from None
        if strip_one_newline:
            value = text[:-1] if text.endswith("\n") else text
        else:
            value = text.strip()
        if not value:
            raise ConfigError(f"{setting}: file {path} is empty; put the value in it or use env:NAME")
        return value
    raise ConfigError(f"{setting}: expected an env:NAME or file:/path reference")


def resolve_api_key(ref: str, *, setting: str, env: Mapping[str, str]) -> str:
    """Resolve an API key reference and check its character set without revealing it."""
    key = resolve_ref(ref, setting=setting, env=env)
    if not API_KEY_RE.match(key):
        raise ConfigError(
            f"{setting}: the key from {ref} has characters outside [0-9A-Za-z_-]; check for quotes or whitespace"
        )
    return key
