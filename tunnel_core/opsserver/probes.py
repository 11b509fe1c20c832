"""The machine endpoints of the operator listener (/healthz, /readyz, /metrics), with no web framework.

Probes and scrapes are most of what the listener ever serves, so they are answered here
directly; the UI and the JSON APIs (Starlette) are loaded on the first request for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tunnel_core.opsserver.context import OpsContext

PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
TEXT = "text/plain; charset=utf-8"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_text(ctx: OpsContext) -> bytes:
    ready, _ = ctx.state.readiness()
    ctx.metrics.readiness.set(1 if ready else 0)
    ctx.metrics.liveness.set(1)
    return ctx.metrics.render()


def answer(ctx: OpsContext, path: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of one of PATHS."""
    if path == "/healthz":
        ctx.metrics.liveness.set(1)
        return 200, TEXT, b"live"
    if path == "/readyz":
        ready, text = ctx.state.readiness()
        ctx.metrics.readiness.set(1 if ready else 0)
        return (200 if ready else 503), TEXT, text.encode()
    return 200, METRICS_TYPE, metrics_text(ctx)
