"""The one-word truth about a runtime: ``state`` with the reason, decided from every signal at once.

``runtime_state`` (the reference's field) only says what the local process and its health
endpoints show. A runtime whose polls the control plane rejects (401, 403, 404) still answers
``/healthz``, yet serves nobody; one whose process died without ``stop`` is not "stopped".
``decide`` folds the local view, the runtime's own control-plane outcome (from its operator
API) and the read-only remote lookup into:

ready     /healthz and /readyz answer and nothing rejects the tunnel
healthy   /healthz answers, /readyz not yet (``reason`` says why: OAuth or MCP checks, first poll)
starting  the process runs but /healthz does not answer yet, a supervisor is restarting it, or a
          tunnel created moments ago is not active yet
stopped   no process, and none is expected (never started, or stopped on purpose)
failed    the control plane rejects the tunnel or its key, the runtime exited before /healthz
          answered, or its process is gone although nobody stopped it
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

State = Literal["ready", "healthy", "starting", "stopped", "failed"]
REJECTING = {401: "unauthorized", 403: "forbidden", 404: "tunnel_not_found"}
OFFICIAL_HOSTS = ("api.openai.com", "mtls.api.openai.com")
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")


@dataclass(frozen=True, slots=True)
class Verdict:
    state: State
    reason: str = ""
    cause: str = ""  # "" | unauthorized | forbidden | tunnel_not_found | tunnel_activating | launch_failed | exited
    status_code: int = 0  # the control plane's answer when it rejected the tunnel


@dataclass(frozen=True, slots=True)
class Signals:
    """Everything ``decide`` looks at (plain values, so it is tested without processes)."""

    tunnel_id: str
    process_running: bool
    supervisor_restarting: bool = False
    stopped_on_purpose: bool = True  # no process record, or the record says stopped
    healthz_ok: bool = False
    readyz_ok: bool = False
    readyz_body: str = ""
    runtime_control_plane_error: str = ""  # the runtime's last poll / metadata error, e.g. "HTTP 404 tunnel_not_found"
    lookup_status: int = 0  # HTTP status of a failed read-only remote lookup (0: none failed)
    lookup_error: str = ""
    launch_exit_code: int | None = None  # connect: the runtime exited before /healthz answered
    launch_log_line: str = ""
    tunnel_just_created: bool = False


def http_status(text: str) -> int:
    """The HTTP status named in an error text ("HTTP 404 ..."), or 0."""
    match = _HTTP_STATUS.search(text or "")
    return int(match.group(1)) if match else 0


def _rejection(s: Signals) -> tuple[int, str]:
    code = http_status(s.runtime_control_plane_error)
    if code in REJECTING:
        return code, f"the runtime's control-plane calls are rejected: {s.runtime_control_plane_error}"
    # a failed lookup with a runtime key may only mean the key cannot read tunnels; 404 is definite
    if s.lookup_status == 404:
        return 404, f"the control plane has no tunnel {s.tunnel_id}: {s.lookup_error or 'HTTP 404'}"
    return 0, ""


def decide(s: Signals) -> Verdict:
    """The state of one runtime from its signals (see the module docstring for the rules)."""
    code, why = _rejection(s)
    if code:
        if code == 404 and s.tunnel_just_created:
            return Verdict("starting", f"tunnel {s.tunnel_id} was created moments ago and is not active yet "
                                       "(new tunnels can take 25-30 seconds)", "tunnel_activating", code)
        return Verdict("failed", why, REJECTING[code], code)
    if s.launch_exit_code is not None and not s.process_running:
        tail = f"; last log line: {s.launch_log_line}" if s.launch_log_line else ""
        return Verdict("failed", f"the runtime exited with code {s.launch_exit_code} before /healthz answered{tail}",
                       "launch_failed")
    if not s.process_running:
        if s.supervisor_restarting:
            return Verdict("starting", "the supervisor is restarting the runtime")
        if s.stopped_on_purpose:
            return Verdict("stopped", "no runtime is running for this alias")
        return Verdict("failed", "the runtime process is gone although it was not stopped (it exited or was killed)",
                       "exited")
    if not s.healthz_ok:
        return Verdict("starting", "/healthz does not answer yet")
    if not s.readyz_ok:
        return Verdict("healthy", f"not ready: {s.readyz_body or 'the readiness checks have not passed yet'}")
    return Verdict("ready")


def mcp_url(base_url: str, url_path: str, tunnel_id: str) -> str:
    """The tunnel's MCP front door when this control plane serves one at a known place, else "".

    A self-hosted or local tunnel service (``tunnel-client dev tunnel-service``, ``serve``) answers
    ``POST {base}{path}/v1/mcp/{tunnel_id}``. The hosted service reaches a tunnel through the
    product's connector settings instead, so no URL is claimed for it.
    """
    base = base_url.strip().rstrip("/")
    if not base or not tunnel_id:
        return ""
    host = base.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    if host in OFFICIAL_HOSTS:
        return ""
    return f"{base}{url_path.rstrip('/')}/v1/mcp/{tunnel_id}"
