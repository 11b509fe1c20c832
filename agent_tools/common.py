"""Checks shared by the tools: where keys may be sent, which tunnel-client may be named, key availability."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

from agent_tools.toolkit import Env, ToolFailure
from tunnel_core.codex.bundle import FORWARDED_ENV, current_entry_point
from tunnel_core.errors import TunnelClientError
from tunnel_core.state.refs import reference_available

OFFICIAL_BASE_URLS = ("https://api.openai.com", "https://mtls.api.openai.com")


def _origin(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname.lower()}{port}"


def trusted_base_url(value: str, env: Env, field: str = "control_plane_base_url") -> str:
    """``value`` when it is an official endpoint or the CONTROL_PLANE_BASE_URL this server was given.

    A model must not be able to send a key to an address of its choosing, so any other
    control-plane URL is refused. "" (use the configured default) is always fine.
    """
    value = value.strip().rstrip("/")
    if not value:
        return ""
    allowed = {_origin(u) for u in OFFICIAL_BASE_URLS}
    configured = env.get("CONTROL_PLANE_BASE_URL", "").strip()
    if configured:
        allowed.add(_origin(configured))
    origin = _origin(value)
    if not origin or origin not in allowed:
        raise ToolFailure(
            f"{field} {value!r} is not trusted: keys are only sent to {', '.join(OFFICIAL_BASE_URLS)} or to the "
            "CONTROL_PLANE_BASE_URL the tool server was started with", field=field,
            fix=f"omit {field} to use the configured control plane, or set CONTROL_PLANE_BASE_URL in Codex's "
                "environment and start a new Codex session",
        )
    return value


def check_tunnel_client_bin(value: str) -> None:
    """A named tunnel-client must be this installation: the tools run in-process, not through another binary."""
    value = value.strip()
    if not value:
        return
    mine = {os.path.realpath(sys.executable)}
    entry = current_entry_point()
    if entry:
        mine.add(os.path.realpath(entry))
    if os.path.realpath(os.path.expanduser(value)) not in mine:
        raise ToolFailure(
            f"tunnel_client_bin {value!r} is not the tunnel-client this plugin was installed from "
            f"({entry or sys.executable})", field="tunnel_client_bin",
            fix=f"omit tunnel_client_bin, or install the plugin from that installation: {value} codex plugin install",
        )


FORWARDING_HINT = (
    "Codex forwards only the variables listed in the plugin's .mcp.json to the tool server ("
    + ", ".join(FORWARDED_ENV[:3]) + ", ...): export the key under one of them before starting Codex, or pass "
    "a file:/path reference"
)


def key_fix(exc: TunnelClientError) -> str:
    """The forwarding hint when a key reference names a variable the tool server cannot see, else ""."""
    text = str(exc)
    unset = "environment variable" in text and ("is not set" in text or "is unset" in text)
    return FORWARDING_HINT if unset or "OPENAI_ADMIN_KEY" in text else ""


def require_reference(ref: str, env: Env, field: str) -> None:
    """Fail early, with a useful next step, when a key reference cannot be read by this server."""
    ok, reason = reference_available(ref, env)
    if ok:
        return
    fix = FORWARDING_HINT if ref.startswith("env:") else "write the key to that file (mode 0600) or pass another reference"
    raise ToolFailure(f"{field} {ref}: {reason}", fix=fix, field=field)
