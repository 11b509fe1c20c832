"""Probing runtimes from the outside: health URL files, /healthz + /readyz, the operator status API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2

from tunnel_core import USER_AGENT
from tunnel_core.ops.health import normalize_base_url
from tunnel_core.runtimes.models import EndpointProbe, HealthProbe, LiveAdminUI, PollHealth
from tunnel_core.runtimes.verdict import REJECTING, http_status
from tunnel_core.state.root import StateRoot

PROBE_TIMEOUT = 1.0
MAX_BODY = 4096


def _client() -> httpx2.Client:
    return httpx2.Client(timeout=PROBE_TIMEOUT, trust_env=False, follow_redirects=False,
                         headers={"User-Agent": USER_AGENT})


def read_health_url(path: str | Path) -> str:
    """The URL a runtime wrote to its health URL file, or "" (absent, unreadable or empty)."""
    if not str(path).strip():
        return ""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def ui_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/ui" if base_url else ""


def _endpoint(client: httpx2.Client, base: str, path: str) -> EndpointProbe:
    probe = EndpointProbe(url=base + path)
    try:
        resp = client.get(probe.url)
    except httpx2.HTTPError as exc:
        probe.error = "timed out" if isinstance(exc, httpx2.TimeoutException) else (str(exc) or type(exc).__name__)
        return probe
    probe.status = resp.status_code
    probe.ok = 200 <= resp.status_code < 300
    probe.body = resp.content[:MAX_BODY].decode("utf-8", "replace").strip()
    return probe


def probe_health(raw_url: str) -> HealthProbe:
    """Probe ``/healthz`` and ``/readyz`` under the base URL in ``raw_url`` (empty result when there is none)."""
    base = normalize_base_url(raw_url) if raw_url.strip() else ""
    if not base.startswith(("http://", "https://")):
        return HealthProbe()
    with _client() as client:
        return HealthProbe(base_url=base, healthz=_endpoint(client, base, "/healthz"),
                           readyz=_endpoint(client, base, "/readyz"))


def probe_healthz(raw_url: str) -> bool:
    base = normalize_base_url(raw_url) if raw_url.strip() else ""
    if not base.startswith(("http://", "https://")):
        return False
    with _client() as client:
        return _endpoint(client, base, "/healthz").ok


def fetch_status(base_url: str) -> dict[str, Any] | None:
    """The runtime's ``/api/status`` JSON, or None."""
    try:
        with _client() as client:
            resp = client.get(base_url.rstrip("/") + "/api/status")
        data = resp.json() if resp.status_code == 200 else None
    except (httpx2.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def control_plane_rejection(base_url: str) -> int:
    """The HTTP status (401, 403, 404) with which the control plane rejects this runtime's tunnel, or 0."""
    code = poll_health(fetch_status(base_url)).status_code if base_url else 0
    return code if code in REJECTING else 0


def find_live_admin_ui(root: StateRoot, tunnel_id: str, skip_base_url: str) -> LiveAdminUI:
    """A live operator UI (from any health URL file of this root) serving ``tunnel_id``."""
    try:
        files = sorted(p for p in root.health_dir.iterdir() if p.suffix == ".url" and p.is_file())
    except OSError:
        return LiveAdminUI()
    for path in files:
        base = normalize_base_url(read_health_url(path))
        if not base.startswith(("http://", "https://")) or base == skip_base_url:
            continue
        status = fetch_status(base)
        if status is None or (tunnel_id and status.get("control_plane_tunnel_id") != tunnel_id):
            continue
        return LiveAdminUI(found=True, base_url=base, ui_url=ui_url(base), source_health_url_file=str(path),
                           match_reason="control_plane_tunnel_id", status=status, system=None)
    return LiveAdminUI()


def poll_health(status: dict[str, Any] | None) -> PollHealth:
    """Control-plane polling state from a runtime's ``/api/status`` (no proxies here, so it is reached directly)."""
    if not status:
        return PollHealth(state="unknown", reason="no live operator status snapshot")
    last_success = str(status.get("last_poll_success") or "")
    last_error = str(status.get("last_poll_error") or "")
    if last_error:
        return PollHealth(state="unhealthy", reason="the last control-plane poll failed", last_success=last_success,
                          last_error=last_error, status_code=http_status(last_error))
    metadata_error = str(status.get("tunnel_metadata_error") or "")
    if http_status(metadata_error) in REJECTING:
        return PollHealth(state="unhealthy", reason="the control plane refused the tunnel metadata request",
                          last_success=last_success, last_error=metadata_error,
                          status_code=http_status(metadata_error))
    if last_success:
        return PollHealth(state="healthy", last_success=last_success)
    if status.get("tunnel_metadata"):
        return PollHealth(state="healthy", reason="the control plane answered; the first long poll is still open")
    return PollHealth(state="unknown", reason="no control-plane poll has completed yet")
