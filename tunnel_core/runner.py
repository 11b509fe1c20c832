"""Composition root: build the relay from settings and run it until asked to stop.

Everything is started in one task group, dependencies are plain arguments:
control-plane client -> targets -> dispatcher -> poller, plus the operator listener.
Stopping is two-phase: first stop polling and let held commands finish within a grace
period, then cancel what is left and close the listener.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import field
from pathlib import Path
from typing import Any

import anyio

from tunnel_core import __version__, logs, tracing
from tunnel_core.config.durations import format_duration
from tunnel_core.config.settings import Settings
from tunnel_core.controlplane.client import ControlPlaneClient, ControlPlaneError
from tunnel_core.fileutil import remove_quietly, write_setting_file
from tunnel_core.httpio import NetworkOrDecodeErrors, describe_network_error
from tunnel_core.netconfig import (
    TLSContexts,
    control_plane_base_url,
    control_plane_pool,
    mcp_pool,
    route_summary,
)
from tunnel_core.netserve import bind, bind_unix, serve_lean
from tunnel_core.oauth.assemble import build_oauth, startup_discovery
from tunnel_core.opsserver.app import build_ops_app
from tunnel_core.opsserver.context import OpsContext, iso
from tunnel_core.proxyhealth import ProxyHealth, routes_of
from tunnel_core.records import record
from tunnel_core.relay.dispatcher import Dispatcher
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.poller import Poller
from tunnel_core.relay.responder import Responder
from tunnel_core.relay.slots import Slots
from tunnel_core.relay.state import RuntimeState
from tunnel_core.relay.traffic import TrafficRecorder
from tunnel_core.targets.base import ProbeResult, Target
from tunnel_core.targets.harpoon import ChannelTable
from tunnel_core.targets.harpoon_calls import HarpoonMetrics
from tunnel_core.targets.headers import StaticHeaders
from tunnel_core.targets.http import HTTPTarget
from tunnel_core.wire.messages import MCPServerInfo, ServerInfoChannel

log = logging.getLogger("tunnel_client.runner")

SHUTDOWN_GRACE = 5.0
RAW_HTTP_WARNING = ("raw HTTP logging is on (--log.http-raw-unsafe): MCP request and response bodies are "
                    "written to the log at debug level; known secrets are masked, other private data is not")


@record(slots=True)
class RunHandle:
    """What a caller (CLI, dev proxy, tests) can observe and control of a running relay."""

    stop: anyio.Event = field(default_factory=anyio.Event)
    ready_url: anyio.Event = field(default_factory=anyio.Event)
    health_url: str = ""
    state: RuntimeState | None = None
    metrics: RelayMetrics | None = None
    ops: OpsContext | None = None  # what the operator listener shows (set before ready_url)


def build_targets(settings: Settings, *, max_concurrent: int, tls: TLSContexts | None = None) -> dict[str, Target]:
    tls = tls or TLSContexts(settings.network)
    net = settings.network
    targets: dict[str, Target] = {}
    for b in settings.bindings:
        if b.kind == "http":
            static = None
            if net.mcp_extra_headers or net.mcp_discovery_extra_headers:
                static = StaticHeaders(b.url, net.mcp_extra_headers, net.mcp_discovery_extra_headers)
            targets[b.channel] = HTTPTarget(
                b.channel, b.url, mcp_pool(settings, b, tls, max_connections=max(max_concurrent * 2, 16)),
                connection_ttl=settings.connection_max_ttl, static=static,
            )
        else:
            from tunnel_core.targets.stdio import StdioTarget

            targets[b.channel] = StdioTarget(b.channel, b.argv, connection_ttl=settings.connection_max_ttl,
                                             secret_values=(settings.api_key,))
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
        "mcp_resource_metadata_urls": state.oauth.result.candidates if state.oauth and state.oauth.result else [],
        **{k: v for k, v in route_summary(settings).items() if k != "ca_bundle"},
        "channels": channels,
        "tunnel_metadata": state.metadata.as_dict() if state.metadata else None,
        "tunnel_metadata_error": state.metadata_error,
        "last_poll_success": iso(state.last_poll_success),
        "last_poll_error": state.last_poll_error,
        "ready": ready,
        "ready_reason": reason,
        "raw_http_logging_enabled": settings.http_raw_unsafe,
        "warnings": [RAW_HTTP_WARNING] if settings.http_raw_unsafe else [],
        "process": _process_facts(),
    }


def _runtime_snapshot(settings: Settings) -> dict[str, Any]:
    """The support bundle's runtime section (loaded with the bundle code, on first use)."""
    from tunnel_core.opsserver.bundle import runtime_snapshot

    return dict(runtime_snapshot(settings, sys.argv, os.environ))


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
    instance_id = os.urandom(16).hex()  # secrets.token_hex(16), without loading hmac/hashlib/random
    state = RuntimeState(tunnel_id=settings.tunnel_id, instance_id=instance_id)
    metrics = RelayMetrics()
    handle.state, handle.metrics = state, metrics
    traffic = TrafficRecorder()
    logs.set_context(client_instance_id=instance_id, tunnel_id=settings.tunnel_id)
    logs.add_secret_value(settings.api_key)
    tls = TLSContexts(settings.network)
    targets = build_targets(settings, max_concurrent=settings.max_concurrent, tls=tls)
    oauth = build_oauth(settings, targets, tls, state)
    channels = ChannelTable(targets, oauth.harpoon, settings.poll_channels)
    proxies = ProxyHealth(routes_of(settings, lambda: oauth.registry), settings.proxy_check_interval,
                          tls=lambda: tls.base, registry=metrics.registry)
    if oauth.harpoon is not None:
        oauth.harpoon.metrics = HarpoonMetrics(metrics.registry)
    metrics.watch_stdio(targets)
    cp_http = control_plane_pool(settings, tls, max_connections=max(32, 2 * settings.max_inflight + 5))
    cp = ControlPlaneClient(
        http=cp_http, base_url=control_plane_base_url(settings), tunnel_id=settings.tunnel_id,
        api_key=settings.api_key, instance_id=instance_id, server_info=channels.server_info,
        organization_id=settings.organization_id, extra_headers=settings.network.control_plane_extra_headers,
    )
    slots = Slots(settings.max_inflight)
    dispatcher = Dispatcher(
        tunnel_id=settings.tunnel_id, targets=channels, responder=Responder(cp, metrics), metrics=metrics,
        max_concurrent=settings.max_concurrent, slots=slots, traffic=traffic, oauth=oauth.discovery.handle,
    )
    poller = Poller(
        cp=cp, dispatcher=dispatcher, state=state, metrics=metrics, slots=slots,
        poll_timeout=settings.poll_timeout, poll_guardrail=settings.poll_guardrail,
        poll_channels=settings.poll_channels,
    )
    for channel, target in targets.items():
        state.probes[channel] = ProbeResult("pending")
        if hasattr(target, "on_state"):
            target.on_state = lambda result, ch=channel: state.set_probe(ch, result)
    if settings.health_unix_socket:
        ops_sock = bind_unix(settings.health_unix_socket, what="--health.unix-socket / HEALTH_UNIX_SOCKET")
    else:
        ops_sock = bind(settings.health_listen_addr, what="--health.listen-addr / HEALTH_LISTEN_ADDR", empty_host="")
        _warn_if_exposed(ops_sock.getsockname()[0], settings)
    url_file = Path(settings.health_url_file) if settings.health_url_file else None
    pid_file = Path(settings.pid_file) if settings.pid_file else None
    log_buffer = logs.install_buffer(settings.log_buffer_events)
    if settings.http_raw_unsafe:
        log.warning(RAW_HTTP_WARNING, extra={"log_level": settings.log_level})
    owns_tracing = tracing.configure_from_env(os.environ)
    try:
        async with anyio.create_task_group() as outer:
            handle.ops = OpsContext(
                state=state, metrics=metrics, status=lambda: status_payload(settings, state, targets),
                allow_remote_ui=settings.allow_remote_ui, logs=log_buffer, traffic=traffic,
                runtime=lambda: _runtime_snapshot(settings),
                oauth=oauth.discovery.state.snapshot, harpoon=oauth.harpoon,
                system_extra=lambda: {**route_summary(settings), "proxy_identity_map": proxies.identity_map(),
                                      "proxy_health": proxies.health()},
                proxy_routes=proxies.route_views,
            )
            ops = serve_lean(build_ops_app(handle.ops), ops_sock, outer)
            handle.health_url = ops.url
            if url_file:
                write_setting_file("--health.url-file / HEALTH_URL_FILE", url_file, ops.url + "\n", mode=0o600)
            if pid_file:
                write_setting_file("--pid.file / PID_FILE", pid_file, f"{os.getpid()}\n", mode=0o644)
            log.info(
                "tunnel-client started",
                extra={"tunnel_id": settings.tunnel_id, "version": __version__, "health_url": ops.url,
                       "ui_url": ops.url + "/ui", "metrics_url": ops.url + "/metrics",
                       "config_source": settings.config_source,
                       "mcp_targets": ",".join(f"{b.channel}={b.kind}" for b in settings.bindings),
                       "mcp_target_value": next((b.target for b in settings.bindings if b.channel == "main"), ""),
                       "tracing": tracing.description()},
            )
            if announce:
                announce(ops.url)
            if settings.open_browser:
                _open_web_ui(ops.url)
            handle.ready_url.set()
            async with anyio.create_task_group() as work:
                for t in targets.values():
                    start = getattr(t, "start", None)
                    if start is not None:
                        await start(work)
                work.start_soon(_fetch_metadata, cp, state)
                work.start_soon(proxies.run)
                work.start_soon(startup_discovery, oauth, settings, state)
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
                poller.abandon()
                work.cancel_scope.cancel()
            log_buffer.close()  # ends /api/logs/stream responses so the listener can stop promptly
            ops.stop()
    finally:
        poller.abandon()  # when the task groups ended early (a failure), commands still running stop too
        with anyio.CancelScope(shield=True):
            for t in targets.values():
                await t.aclose()
            await oauth.aclose()
            await cp_http.aclose()
        if url_file:
            remove_quietly(url_file)
        if pid_file:
            remove_quietly(pid_file)
        if settings.health_unix_socket:
            remove_quietly(Path(settings.health_unix_socket))
        log.info("tunnel-client stopped")
        logs.remove_buffer(log_buffer)
        if owns_tracing:
            tracing.shutdown()


def _warn_if_exposed(bound: str, settings: Settings) -> None:
    from tunnel_core.listen import is_loopback_bind

    if not is_loopback_bind(bound):
        log.warning(
            "operator listener is reachable from other machines: /healthz, /readyz and /metrics answer anyone; "
            + ("/ui and /api/* too (--allow-remote-ui)" if settings.allow_remote_ui
               else "/ui and /api/* stay loopback-only"),
            extra={"listen_addr": settings.health_listen_addr, "bound_address": bound},
        )


def _open_web_ui(base_url: str) -> None:
    if base_url.startswith("http+unix://"):
        log.warning("--open-web-ui: the operator listener is a Unix socket, which a browser cannot open")
        return
    from tunnel_core.opsserver.browser import open_ui

    open_ui(base_url + "/ui", os.environ)


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
        state.metadata_error = describe_network_error(exc, cp.url())
        log.warning("tunnel metadata unavailable",
                    extra={"error": state.metadata_error, "error_type": type(exc).__name__})


PROBE_RETRY_MAX = 15.0


async def _probe(target: Target, state: RuntimeState, first_done: anyio.Event | None = None) -> None:
    """Probe the target; while it fails, probe again with backoff so a late server becomes ready.

    (The reference probes once: a target that starts after the client stays "not ready".)
    """
    delay = 1.0
    while True:
        result = await target.probe()
        state.set_probe(target.channel, result)
        log.log(logging.INFO if result.status != "failed" else logging.WARNING, "mcp startup probe",
                extra={"channel": target.channel, "probe_status": result.status, "probe_error": result.error})
        if first_done is not None:
            first_done.set()
        if result.status != "failed" or target.kind != "http":
            return
        await anyio.sleep(delay)
        delay = min(delay * 2, PROBE_RETRY_MAX)


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
            # The first poll waits for each target's first probe; retries of a failed one go on alone.
            settled = [anyio.Event() for _ in targets]
            for t, done in zip(targets.values(), settled, strict=True):
                work.start_soon(_probe, t, state, done)
            for done in settled:
                await done.wait()
        else:
            for t in targets.values():
                work.start_soon(_probe, t, state)
        await poller.run()
