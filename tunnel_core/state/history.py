"""``history.md``: one line per state change, for humans and support bundles.

``- <UTC RFC 3339> action=<action> alias=<alias> tunnel_id=<id or -> [detail=<one line>]``
"""

from __future__ import annotations

import logging
import os

from tunnel_core.state.root import StateRoot, utc_now

log = logging.getLogger("tunnel_client.state")


def history_line(action: str, alias: str, tunnel_id: str, detail: str = "") -> str:
    line = f"- {utc_now()} action={action} alias={alias} tunnel_id={tunnel_id.strip() or '-'}"
    clean = " ".join(detail.split())
    return f"{line} detail={clean}" if clean else line


def append_history(root: StateRoot, action: str, alias: str, tunnel_id: str, detail: str = "") -> None:
    """Append one line; a failure is logged, never raised (history is advisory)."""
    line = history_line(action, alias, tunnel_id, detail)
    try:
        root.ensure_dirs()
        fd = os.open(root.history_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)
    except Exception as exc:
        log.warning("cannot append to history", extra={"path": str(root.history_path), "error_type": type(exc).__name__})
