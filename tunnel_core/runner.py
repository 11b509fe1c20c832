"""Composition root: build the relay from settings and run it until asked to stop.

Everything is started in one task group, dependencies are plain arguments:
control-plane client -> targets -> dispatcher -> poller, plus the operator listener.
Stopping is two-phase: first stop polling and let held commands finish within a grace
period, then cancel what is left and close the listener.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from tunnel_core import __version__
from tunnel_core.config.durations import format_duration
from tunnel_core.config.settings import Settings
from tunnel_core.controlplane.client import ControlPlaneClient, ControlPlaneError
from tunnel_core.fileutil import atomic_write, remove_quietly
from tunnel_core.httpio import HTTPPool, NetworkOrDecodeErrors, default_ssl_context
from tunnel_core.netserve import bind, serve
from tunnel_core.opsserver.app import build_ops_app, iso
from tunnel_core.relay.dispatcher import Dispatcher
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.poller import Poller
from tunnel_core.relay.responder import Responder
from tunnel_core.relay.state import RuntimeState
from tunnel_core.targets.base import ProbeResult, Target
from tunnel_core.targets.http import HTTPTarget
from tunnel_core.wire.models import MCPServerInfo, ServerInfoChannel

log = logging.getLogger("tunnel_client.runner")

SHUTDOWN_GRACE = 5.0


@dataclass(slots=True)
class RunHandle:
    """What a caller (CLI, dev proxy, tests) can observe and control of a running relay."""

    stop: anyio.Event = field(default_factory=anyio.Event)
    ready_url: anyio.Event = field(default_factory=anyio.Event)
    health_url: str = ""
    state: RuntimeState | None = None
    metrics: RelayMetrics | None = None


def http_client(*, max_connections: int = 100) -> HTTPPool:
    """A keep-alive pool on the process's one HTTP stack (httpx2's transport layer); no env proxies."""
    return HTTPPool(max_connections=max_connections, ssl_context=default_ssl_context())


def build_targets(settings: Settings, *, max_concurrent: int) -> dict[str, Target]:
    targets: dict[str, Target] = {}
    for b in settings.bindings:
        if b.kind == "http":
            targets[b.channel] = HTTPTarget(
                b.channel, b.url, http_client(max_connections=max(max_concurrent * 2, 16)),
                connection_ttl=settings.connection_max_ttl,
            )
        else:
            from tunnel_core.targets.stdio import StdioTarget

            targets[b.channel] = StdioTarget(b.channel, b.argv, connection_ttl=settings.connection_max_ttl)
    return targets


def server_info_header(targets: dict[str, Target]) -> str:
    channels = [
        ServerInfoChannel(name=name, proc_affinity=True if t.proc_affinity else None)
        for name, t in sorted(targets.items(), key=lambda kv: (kv[0] != "main", kv[0]))
    ]
    return MCPServerInfo(channels=channels).header()


def status_payload(settings: Settings, state: RuntimeState, targets: dict[str, Target]) -> dict[str, Any]:
    channels = []
    for b in settings.bindings:
        probe = state.probes.get(b.channel, ProbeResult("pending"))
        target = targets.get(b.channel)
        details: list[dict[str, str]] = []
        for key in ("pid", "restarts", "last_exit"):
            value = getattr(target, key, None)
            if value is not None:
                details.append({"key": key, "value": str(value)})
        channels.append({
            "name": b.channel, "enabled": True, "server_kind": "external", "transport_kind": b.kind,
            "target": b.url if b.kind == "http" else b.command, "probe_status": probe.status,
            "probe_error": probe.error, "details": details,
        })
    ready, reason = state.readiness()
    return {
        "version": __version__,
        "client_instance_id": state.instance_id,
        "started_at": iso(state.started_at),
        "uptime_seconds": round(time.time() - state.started_at, 3),
        "health_listen_addr": settings.health_listen_addr,
        "control_plane_base_url": settings.control_plane_url,
        "control_plane_tunnel_id": settings.tunnel_id,
        "control_plane_max_inflight": settings.max_inflight,
        "control_plane_poll_timeout": format_duration(settings.poll_timeout),
        "control_plane_poll_deadline_guardrail": format_duration(settings.poll_guardrail),
        "mcp_server_url": next((b.url for b in settings.bindings if b.channel == "main" and b.kind == "http"), ""),
        "channels": channels,
        "tunnel_metadata": state.metadata.model_dump() if state.metadata else None,
        "tunnel_metadata_error": state.metadata_error,
        "last_poll_success": iso(state.last_poll_success),
        "last_poll_error": state.last_poll_error,
        "ready": ready,
        "ready_reason": reason,
        "warnings": [],
        "process": _process_facts(),
    }


def _process_facts() -> dict[str, int]:
    """Resource counters for operators and leak checks (tasks, open descriptors, resident memory)."""
    import asyncio

    import psutil

    proc = psutil.Process()
    return {"asyncio_tasks": len(asyncio.all_tasks()), "open_fds": proc.num_fds(),
            "rss_bytes": proc.memory_info().rss}


async def run_client(
    settings: Settings,
    *,
    handle: RunHandle | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Run the relay until ``handle.stop`` is set (or the task is cancelled)."""
    handle = handle or RunHandle()
    instance_id = secrets.token_hex(16)
    state = RuntimeState(tunnel_id=settings.tunnel_id, instance_id=instance_id)
    metrics = RelayMetrics()
    handle.state, handle.metrics = state, metrics
    targets = build_targets(settings, max_concurrent=settings.max_concurrent)
    info = server_info_header(targets)
    cp_http = http_client(max_connections=max(32, settings.max_inflight + 4))
    cp = ControlPlaneClient(
        http=cp_http, base_url=settings.control_plane_url, tunnel_id=settings.tunnel_id, api_key=settings.api_key,
        instance_id=instance_id, server_info=lambda: info, organization_id=settings.organization_id,
    )
    dispatcher = Dispatcher(
        tunnel_id=settings.tunnel_id, targets=targets, responder=Responder(cp, metrics), metrics=metrics,
        max_concurrent=settings.max_concurrent,
    )
    poller = Poller(
        cp=cp, dispatcher=dispatcher, state=state, metrics=metrics, max_inflight=settings.max_inflight,
        poll_timeout=settings.poll_timeout, poll_guardrail=settings.poll_guardrail,
        poll_channels=settings.poll_channels,
    )
    for channel, target in targets.items():
        state.probes[channel] = ProbeResult("pending")
        if hasattr(target, "on_state"):
            target.on_state = lambda result, ch=channel: state.set_probe(ch, result)
    ops_sock = bind(settings.health_listen_addr, what="--health.listen-addr / HEALTH_LISTEN_ADDR")
    url_file = Path(settings.health_url_file) if settings.health_url_file else None
    pid_file = Path(settings.pid_file) if settings.pid_file else None
    try:
        async with anyio.create_task_group() as outer:
            ops = serve(build_ops_app(state, metrics, lambda: status_payload(settings, state, targets)), ops_sock, outer)
            handle.health_url = ops.url
            if url_file:
                atomic_write(url_file, ops.url + "\n", mode=0o600)
            if pid_file:
                atomic_write(pid_file, f"{os.getpid()}\n", mode=0o644)
            log.info(
                "tunnel-client started",
                extra={"tunnel_id": settings.tunnel_id, "version": __version__, "health_url": ops.url,
                       "ui_url": ops.url + "/ui", "metrics_url": ops.url + "/metrics",
                       "config_source": settings.config_source,
                       "mcp_targets": ",".join(f"{b.channel}={b.kind}" for b in settings.bindings)},
            )
            if announce:
                announce(ops.url)
            handle.ready_url.set()
            async with anyio.create_task_group() as work:
                for t in targets.values():
                    start = getattr(t, "start", None)
                    if start is not None:
                        await start(work)
                work.start_soon(_fetch_metadata, cp, state)
                poll_scope = anyio.CancelScope()
                work.start_soon(_poll_when_ready, poller, work, poll_scope, settings, targets, state)
                await handle.stop.wait()
                log.info("stopping: polling halted, letting held commands finish",
                         extra={"held": poller.held, "grace_seconds": SHUTDOWN_GRACE})
                state.stopping = True
                poll_scope.cancel()
                with anyio.move_on_after(SHUTDOWN_GRACE):
                    await poller.drained()
                if poller.held:
                    log.warning("abandoning unfinished commands at shutdown", extra={"held": poller.held})
                work.cancel_scope.cancel()
            ops.stop()
    finally:
        with anyio.CancelScope(shield=True):
            for t in targets.values():
                await t.aclose()
            await cp_http.aclose()
        if url_file:
            remove_quietly(url_file)
        if pid_file:
            remove_quietly(pid_file)
        log.info("tunnel-client stopped")


async def _fetch_metadata(cp: ControlPlaneClient, state: RuntimeState) -> None:
    try:
        state.metadata = await cp.metadata()
        state.control_plane_ok = True
        state.touch()
    except ControlPlaneError as exc:
        state.metadata_error = str(exc)
        log.warning("tunnel metadata unavailable",
                    extra={"status_code": exc.status, "error_code": exc.code, "mitigation": exc.mitigation})
    except NetworkOrDecodeErrors as exc:
        state.metadata_error = type(exc).__name__
        log.warning("tunnel metadata unavailable", extra={"error_type": type(exc).__name__})


async def _probe(target: Target, state: RuntimeState) -> None:
    result = await target.probe()
    state.set_probe(target.channel, result)
    log.info("mcp startup probe", extra={"channel": target.channel, "probe_status": result.status,
                                         "probe_error": result.error})


async def _poll_when_ready(
    poller: Poller, work: Any, scope: anyio.CancelScope, settings: Settings, targets: dict[str, Target],
    state: RuntimeState,
) -> None:
    with scope:
        if settings.startup_wait_timeout > 0:
            deadline = anyio.current_time() + settings.startup_wait_timeout
            for t in targets.values():
                wait = getattr(t, "wait_accepting", None)
                if wait is not None and not await wait(deadline):
                    state.set_probe(t.channel, ProbeResult("failed", "startup wait expired"))
                    log.warning("mcp startup wait expired", extra={"channel": t.channel})
            async with anyio.create_task_group() as probes:
                for t in targets.values():
                    probes.start_soon(_probe, t, state)
        else:
            for t in targets.values():
                work.start_soon(_probe, t, state)
        await poller.run(work)
