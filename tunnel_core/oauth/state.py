"""OAuth discovery state of one relay: what /readyz, /api/oauth and the support bundle report.

Readiness reasons are the reference's: ``oauth discovery pending`` until the startup run
finishes, then ``oauth discovery failed: <err>`` unless the failure is optional (nothing
advertised). A later ``oauth_discovery`` command refreshes the state, so a server that
publishes its metadata after startup makes the relay ready without a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import field
from typing import Any

from tunnel_core.oauth.discovery import DiscoveryResult
from tunnel_core.records import record


@record(slots=True)
class DiscoveryState:
    enabled: bool = False  # an HTTP main channel exists and is polled
    pending: bool = False
    result: DiscoveryResult | None = None
    runs: int = 0
    on_change: Callable[[], None] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.result is None:
            self.pending = True
            self._changed()

    def record(self, result: DiscoveryResult) -> None:
        self.result, self.pending = result, False
        self.runs += 1
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def readiness_reason(self) -> str | None:
        """None when discovery does not hold readiness back, else the /readyz text."""
        if not self.enabled:
            return None
        if self.pending:
            return "oauth discovery pending"
        result = self.result
        if result is not None and not result.ok and not result.optional:
            return f"oauth discovery failed: {result.error}"
        return None

    @property
    def unreachable(self) -> bool:
        """The last run failed because the MCP server could not be reached at all."""
        return self.result is not None and self.result.unreachable

    def snapshot(self) -> dict[str, Any] | None:
        """The /api/oauth body, or None while discovery does not apply."""
        if not self.enabled:
            return None
        body: dict[str, Any] = {"pending": self.pending, "runs": self.runs}
        if self.result is not None:
            body.update(self.result.snapshot())
        return body
