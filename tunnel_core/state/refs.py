"""Names and secrets in runtime state: alias normalisation, key references, inline-secret detection."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from tunnel_core.config.refs import ENV_NAME_RE
from tunnel_core.errors import ConfigError, UsageError

_NOT_ALIAS_CHARS = re.compile(r"[^a-z0-9-]+")
_DASHES = re.compile(r"-{2,}")

# Shapes that mean a literal credential was pasted into an MCP URL or command line.
_SECRET_SHAPES = (
    re.compile(r"sk-[A-Za-z0-9_-]{12,}"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{12,}"),
    re.compile(r"(?i)\bauthorization\s*:"),
    re.compile(r"(?i)(api[_-]?key|access[_-]?token|refresh[_-]?token|id[_-]?token|password|secret)=\S+"),
    re.compile(r"(?i)\b(OPENAI_ADMIN_KEY|OPENAI_API_KEY|CONTROL_PLANE_API_KEY)="),
    re.compile(r"://[^/\s:@]+:[^/\s:@]+@"),
)
_SECRET_FLAG = re.compile(r"(?i)^-{1,2}[a-z0-9_-]*(api[_-]?key|token|password|secret)[a-z0-9_-]*$")
# Flags that name *where* a secret is (a file, a variable) rather than carrying it.
_LOCATOR_FLAG = re.compile(r"(?i)[_-](file|path|env|var|ref|dir)$")
_REFERENCE = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+|\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*\})$")


def normalize_alias(alias: str) -> str:
    """Lowercase, ``_`` to ``-``, other characters outside ``[a-z0-9-]`` to ``-``, dashes collapsed and trimmed."""
    value = alias.strip().lower().replace("_", "-")
    value = _DASHES.sub("-", _NOT_ALIAS_CHARS.sub("-", value)).strip("-")
    if not value:
        raise UsageError("alias must contain at least one ASCII letter or number")
    return value


def validate_secret_reference(value: str, field: str) -> str:
    """Return ``value`` when it is an ``env:NAME`` / ``file:/path`` reference; raise ConfigError otherwise."""
    if value.startswith("env:"):
        if not ENV_NAME_RE.match(value[4:]):
            raise ConfigError(f"{field}: {value!r} is not a valid env reference; use env:NAME")
        return value
    if value.startswith("file:") and len(value) > 5:
        return value
    raise ConfigError(f"{field} must be an env:NAME or file:/path reference, not the key itself")


def is_secret_reference(value: str) -> bool:
    return bool(_REFERENCE.match(value))


def reject_inline_secret_material(value: str, field: str) -> None:
    """Raise UsageError when ``value`` looks like it carries a literal credential."""
    message = f"{field} appears to contain inline secret material; use env or file references instead"
    if any(p.search(value) for p in _SECRET_SHAPES):
        raise UsageError(message)
    tokens = value.split()
    for i, token in enumerate(tokens):
        if "=" in token or not _SECRET_FLAG.match(token) or _LOCATOR_FLAG.search(token):
            continue
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if nxt and not nxt.startswith("-") and not is_secret_reference(nxt):
            raise UsageError(message)


def reference_available(ref: str, env: Mapping[str, str]) -> tuple[bool, str]:
    """Whether a reference resolves to something non-empty, and why not (never the value)."""
    ref = ref.strip()
    if not ref:
        return False, "secret reference is empty"
    if ref.startswith("env:"):
        name = ref[4:]
        if env.get(name, "").strip():
            return True, ""
        return False, f"environment variable {name} is not set"
    if ref.startswith("file:"):
        path = Path(os.path.expanduser(ref[5:]))
        try:
            size = path.stat().st_size
        except OSError:
            return False, f"secret file {path} does not exist"
        if size == 0:
            return False, f"secret file {path} is empty"
        return True, ""
    return False, "not an env:NAME or file:/path reference"


def reference_env_name(ref: str) -> str:
    """The variable name of an ``env:`` reference, else ""."""
    return ref[4:] if ref.startswith("env:") else ""
