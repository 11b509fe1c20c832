"""What the operator listener reads (:class:`OpsContext`), in a module of its own.

``app.py`` builds the listener from it and ``api.py`` / ``ui.py`` render it; none of them
imports another to reach this type, so the package has no circle.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any

from tunnel_core.logs import LogBuffer
from tunnel_core.records import record
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.state import RuntimeState
from tunnel_core.relay.traffic import TrafficRecorder

if TYPE_CHECKING:
    from tunnel_core.targets.harpoon import HarpoonServer

# Returns the /api/oauth body (reference shape: discovery_urls, metadata, error, pending,
# www_authenticate_probe, metadata_source, authorization_server_count, ...) or None while
# OAuth discovery is not configured. Called on every request: keep it a cheap snapshot.
OAuthStatusProvider = Callable[[], Mapping[str, Any] | None]


@record(slots=True)
class OpsContext:
    """What the operator listener shows. Only ``state``, ``metrics`` and ``status`` are required."""

    state: RuntimeState
    metrics: RelayMetrics
    status: Callable[[], Mapping[str, Any]]
    allow_remote_ui: bool = False
    logs: LogBuffer | None = None
    traffic: TrafficRecorder | None = None
    # Plug-in point for OAuth discovery: set it to a provider and the OAuth tab fills in.
    oauth: OAuthStatusProvider | None = None
    # The support bundle's runtime section (argv, environment, config); see bundle.runtime_snapshot.
    runtime: Callable[[], Mapping[str, Any]] | None = None
    # Extra /api/system members (e.g. CA bundle or proxy health once those exist).
    system_extra: Callable[[], Mapping[str, Any]] | None = None
    # The harpoon channel's server (targets, recent calls, /harpoon/mcp); None when it is not polled.
    harpoon: HarpoonServer | None = None
    # Outbound routes with their proxy health ({kind, name, ..., health_state}); see proxyhealth.py.
    proxy_routes: Callable[[], list[dict[str, Any]]] | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    sse_ping_seconds: float = 15.0


def iso(ts: float) -> str:
    """A UNIX time as UTC RFC 3339 (seconds), or "" for 0 (never happened)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)) if ts else ""
