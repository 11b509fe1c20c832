"""Shared, observable runtime state of one relay: what /readyz, /api/status and /ui report."""

from __future__ import annotations

import time
from dataclasses import field
from typing import TYPE_CHECKING

import anyio

from tunnel_core.records import record
from tunnel_core.targets.base import ProbeResult
from tunnel_core.wire.messages import TunnelClientMetadata

if TYPE_CHECKING:
    from tunnel_core.oauth.state import DiscoveryState

# A poll failure streak counts against readiness once it lasts this long or this many polls.
POLL_FAILURE_GRACE_SECONDS = 2.0
POLL_FAILURE_GRACE_COUNT = 3


@record(slots=True)
class RuntimeState:
    tunnel_id: str
    instance_id: str
    started_at: float = field(default_factory=time.time)
    metadata: TunnelClientMetadata | None = None
    metadata_error: str = ""
    probes: dict[str, ProbeResult] = field(default_factory=dict)
    control_plane_ok: bool = False
    poll_failures: int = 0
    poll_failing_since: float | None = None
    last_poll_error: str = ""
    last_poll_success: float = 0.0
    stopping: bool = False
    changed: anyio.Event = field(default_factory=anyio.Event)
    oauth: DiscoveryState | None = None  # startup OAuth discovery of an HTTP main channel

    def touch(self) -> None:
        """Wake whoever waits for a readiness-relevant change."""
        self.changed.set()
        self.changed = anyio.Event()

    def set_probe(self, channel: str, result: ProbeResult) -> None:
        self.probes[channel] = result
        self.touch()

    async def wait_ready(self) -> str:
        """Return the readiness text once ready (callers bound the wait)."""
        while True:
            ready, text = self.readiness()
            if ready:
                return text
            await self.changed.wait()

    async def wait_settled(self) -> None:
        """Return once ready, or once a target has failed in a way retrying alone will not fix."""
        while not self.readiness()[0] and not any(
                p.status == "failed" and p.lasting for p in self.probes.values()):
            await self.changed.wait()

    def poll_succeeded(self) -> None:
        was_ok = self.control_plane_ok and self.poll_failing_since is None
        self.control_plane_ok = True
        self.poll_failures = 0
        self.poll_failing_since = None
        self.last_poll_error = ""
        self.last_poll_success = time.time()
        if not was_ok:
            self.touch()

    def poll_failed(self, reason: str) -> None:
        self.poll_failures += 1
        if self.poll_failing_since is None:
            self.poll_failing_since = time.monotonic()
        self.last_poll_error = reason
        self.touch()

    def control_plane_reason(self) -> str | None:
        """None when the control plane is known good, else why not."""
        if self.poll_failing_since is not None and (
            self.poll_failures >= POLL_FAILURE_GRACE_COUNT
            or time.monotonic() - self.poll_failing_since >= POLL_FAILURE_GRACE_SECONDS
        ):
            return f"control plane poll failing: {self.last_poll_error}"
        if not self.control_plane_ok:
            if self.last_poll_error:
                return f"control plane not reached: {self.last_poll_error}"
            return "control plane not yet reached"
        return None

    def readiness(self) -> tuple[bool, str]:
        """(ready, text) for /readyz; OAuth discovery, then MCP probe rules, then the control plane."""
        if self.stopping:
            return False, "shutting down"
        if self.oauth is not None and (oauth_reason := self.oauth.readiness_reason()):
            main = self.probes.get("main")
            # Discovery of an unreachable main server fails too; the probe failure names the cause.
            if self.oauth.pending or not self.oauth.unreachable or main is None or main.status != "failed":
                return False, oauth_reason
        note = ""
        for channel, probe in sorted(self.probes.items()):
            prefix = "" if channel == "main" else f"channel {channel}: "
            if probe.status == "pending":
                return False, f"{prefix}mcp startup probe pending"
            if probe.status == "failed":
                return False, f"{prefix}mcp probe failed: {probe.error}"
            if probe.status == "auth-required" and not note:
                note = f" (mcp initialize requires auth: {probe.error})"
            if probe.status == "timeout" and not note:
                note = f" (mcp startup probe timed out: {probe.error})"
        reason = self.control_plane_reason()
        if reason:
            return False, reason
        return True, "ready" + note
