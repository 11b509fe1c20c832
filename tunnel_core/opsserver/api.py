"""The JSON APIs behind the operator UI (reference-compatible shapes where the reference has them).

    GET      /api/status            tunnel, control plane, channels, readiness (reference fields + ours)
    GET      /api/system            TLS trust, proxy routes, main probe, process facts
    GET      /api/oauth             OAuth discovery state ({"configured": false, ...} when none)
    GET      /api/traffic?limit=    recent relayed calls, no payloads
    GET      /api/logs?limit=       {events:[{seq,time,level,message,attrs}]} (default 200, max 5000)
    GET      /api/logs/stream       SSE: "event: log" / "id: <seq>" / "data: <json>", ": ping" every 15 s;
                                    ?after=<seq> (or Last-Event-ID) replays buffered events after seq
    GET|PUT  /api/log-level         {level, supported_levels}; PUT body exactly {"level": "..."}
    GET      /api/logs/export       support bundle (tar.gz), ?minutes=N (default 30, max 1440)
    GET      /api/codex/plugin      Codex plugin install state

Every body passes through :func:`tunnel_core.logs.redact_value` before it leaves.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import shlex
import ssl
import sys
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tunnel_core import logs, tracing
from tunnel_core.opsserver import bundle, codex, harpoon
from tunnel_core.opsserver.context import iso
from tunnel_core.opsserver.probes import metrics_text
from tunnel_core.targets.base import ProbeResult

if TYPE_CHECKING:
    from tunnel_core.opsserver.context import OpsContext

log = logging.getLogger("tunnel_client.adminui")

NO_CACHE = {"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache", "Expires": "0"}
MAX_LOG_EVENTS = 5000
MAX_BODY = 1 << 20

OAUTH_NOT_CONFIGURED: dict[str, Any] = {
    "configured": False,
    "discovery_urls": [],
    "metadata": None,
    "error": "",
    "pending": False,
    "www_authenticate_probe": None,
    "metadata_source": "",
    "auth_server_metadata_mode": "authorization_servers[0] only (source of truth)",
    "authorization_server_count": 0,
    "selected_authorization_server": "",
}


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(logs.redact_value(body), status_code=status, headers=NO_CACHE)


def _limit(request: Request, default: int, maximum: int) -> int:
    try:
        n = int(request.query_params.get("limit", ""))
    except ValueError:
        return default
    return default if n <= 0 else min(n, maximum)


def _command_line(command: str) -> str:
    """A stdio command line with the values of secret-named flags masked."""
    try:
        return shlex.join(bundle.redact_argv(shlex.split(command)))
    except ValueError:
        return logs.redact(command)


def status_body(ctx: OpsContext) -> dict[str, Any]:
    data = dict(ctx.status())
    state = ctx.state
    data["channels"] = [
        {**c, "target": _command_line(c.get("target", ""))} if c.get("transport_kind") == "stdio" else c
        for c in data.get("channels", [])
    ]
    data.setdefault("mcp_resource_metadata_urls", [])
    data.setdefault("control_plane_route", None)
    data.setdefault("mcp_routes", [])
    data.setdefault("raw_http_logging_enabled", False)
    data["control_plane_poll"] = {
        "ok": state.control_plane_ok and state.poll_failing_since is None,
        "last_success": iso(state.last_poll_success),
        "last_error": state.last_poll_error,
        "consecutive_failures": state.poll_failures,
    }
    data["allow_remote_ui"] = ctx.allow_remote_ui
    data["log_level"] = logs.current_level()
    return data


def system_body(ctx: OpsContext) -> dict[str, Any]:
    paths = ssl.get_default_verify_paths()
    sources = [p for p in (paths.cafile, paths.capath) if p and os.path.exists(p)]
    main = ctx.state.probes.get("main", ProbeResult("pending"))
    body: dict[str, Any] = {
        "tls": {
            "system_trust": {"enabled": True, "source": "openssl", "source_paths": sources,
                             "fallback_note": "" if sources else "no system CA file or directory found"},
            "extra_bundle": {"path": "", "cert_count": 0, "parse_errors": [], "certificates": []},
        },
        "proxy_identity_map": [],
        "proxy_health": [],
        "main_channel_probe_status": main.status,
        "main_channel_probe_error": main.error,
        "runtime": {
            "python_version": platform.python_version(),
            "platform": platform.platform(terse=True),
            "pid": os.getpid(),
            "executable": sys.executable,
            "tracing": tracing.description(),
            "log_level": logs.current_level(),
            "log_buffer_capacity": ctx.logs.capacity if ctx.logs else 0,
            "traffic_capacity": ctx.traffic.capacity if ctx.traffic else 0,
        },
    }
    if ctx.system_extra is not None:
        body.update(ctx.system_extra())
    return body


def oauth_body(ctx: OpsContext) -> dict[str, Any]:
    provided = ctx.oauth() if ctx.oauth is not None else None
    if not provided:
        return dict(OAUTH_NOT_CONFIGURED)
    return {**OAUTH_NOT_CONFIGURED, "configured": True, **provided}


def traffic_body(ctx: OpsContext, limit: int = 100) -> dict[str, Any]:
    if ctx.traffic is None:
        return {"calls": [], "capacity": 0, "total": 0, "failed": 0, "payloads_recorded": False}
    return ctx.traffic.snapshot(limit)


def level_body() -> dict[str, Any]:
    return {"level": logs.current_level(), "supported_levels": list(logs.RUNTIME_LEVELS)}


def routes(ctx: OpsContext) -> list[Route]:
    async def api_status(_: Request) -> Response:
        return _json(status_body(ctx))

    async def api_system(_: Request) -> Response:
        return _json(system_body(ctx))

    async def api_oauth(_: Request) -> Response:
        return _json(oauth_body(ctx))

    async def api_traffic(request: Request) -> Response:
        cap = ctx.traffic.capacity if ctx.traffic else 1
        return _json(traffic_body(ctx, _limit(request, 100, cap)))

    async def api_codex(_: Request) -> Response:
        return _json(codex.plugin_state(ctx.env))

    async def api_logs(request: Request) -> Response:
        events = ctx.logs.recent(_limit(request, 200, MAX_LOG_EVENTS)) if ctx.logs else []
        return JSONResponse({"events": events}, headers=NO_CACHE)  # redacted when captured

    async def api_logs_stream(request: Request) -> Response:
        buf = ctx.logs
        if buf is None:
            return PlainTextResponse("log buffer unavailable", status_code=503)
        # Start after ?after=<seq> (the UI passes the last event it fetched from /api/logs) or, on an
        # EventSource reconnect, after Last-Event-ID; otherwise only new events are streamed.
        start = buf.last_seq
        for resume in (request.headers.get("last-event-id", ""), request.query_params.get("after", "")):
            if resume.strip().isdigit():
                start = min(int(resume.strip()), buf.last_seq)
                break

        async def events() -> AsyncIterator[bytes]:
            seq = start
            yield b": stream open\n\n"
            while not buf.closed:
                batch = await buf.wait_after(seq, ctx.sse_ping_seconds)
                if buf.closed:
                    return
                if not batch:
                    yield b": ping\n\n"
                    continue
                chunks = []
                for ev in batch:
                    seq = ev["seq"]
                    chunks.append(b"event: log\nid: %d\ndata: %s\n\n" % (
                        seq, json.dumps(ev, default=str, ensure_ascii=False).encode()))
                yield b"".join(chunks)

        return StreamingResponse(events(), media_type="text/event-stream", headers={
            "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def api_log_level(request: Request) -> Response:
        if request.method == "PUT":
            raw = await request.body()
            if len(raw) > MAX_BODY:
                return PlainTextResponse("decode request: body too large", status_code=400)
            try:
                payload = json.loads(raw)
            except ValueError as exc:
                return PlainTextResponse(f"decode request: {exc}", status_code=400)
            if not isinstance(payload, dict) or set(payload) != {"level"} or not isinstance(payload["level"], str):
                return PlainTextResponse('decode request: body must be exactly {"level": "<level>"}',
                                         status_code=400)
            wanted = payload["level"].strip().lower()
            wanted = "warn" if wanted == "warning" else wanted
            if wanted not in logs.RUNTIME_LEVELS:
                return PlainTextResponse(
                    f"unsupported log level {payload['level']!r}; use one of {', '.join(logs.RUNTIME_LEVELS)}",
                    status_code=400)
            previous = logs.current_level()
            new = logs.set_level(wanted)
            log.log(logs.LEVELS[new], "runtime log level updated",
                    extra={"previous_level": previous, "new_level": new})
        return JSONResponse(level_body(), headers=NO_CACHE)

    async def api_export(request: Request) -> Response:
        now = time.time()
        minutes = bundle.window_minutes(request.query_params.get("minutes"))
        events = ctx.logs.since(now - minutes * 60) if ctx.logs else []
        try:
            runtime = dict(ctx.runtime()) if ctx.runtime else {}
        except Exception as exc:  # a partial bundle beats none when the operator needs it most
            log.warning("support bundle: runtime snapshot failed", extra={"error_type": type(exc).__name__})
            runtime = {"error": f"runtime snapshot failed: {type(exc).__name__}"}
        archive = bundle.build_bundle(
            events=events, now=now, minutes=minutes,
            log_buffer_capacity=ctx.logs.capacity if ctx.logs else 0,
            runtime=runtime,
            metrics_text=metrics_text(ctx),
            admin={"status": status_body(ctx), "system": system_body(ctx), "oauth": oauth_body(ctx),
                   "traffic": traffic_body(ctx, ctx.traffic.capacity if ctx.traffic else 0),
                   "harpoon": {"status": harpoon.status_body(ctx), "targets": harpoon.targets_body(ctx)["targets"],
                               "calls": harpoon.calls_body(ctx)["calls"]}},
        )
        log.info("support bundle exported", extra={"minutes": minutes, "event_count": len(events),
                                                   "bytes": len(archive)})
        return Response(archive, media_type="application/gzip", headers={
            **NO_CACHE, "Content-Disposition": f'attachment; filename="{bundle.bundle_filename(now)}"'})

    return [
        Route("/api/status", api_status, methods=["GET"]),
        Route("/api/system", api_system, methods=["GET"]),
        Route("/api/oauth", api_oauth, methods=["GET"]),
        Route("/api/traffic", api_traffic, methods=["GET"]),
        Route("/api/codex/plugin", api_codex, methods=["GET"]),
        Route("/api/logs", api_logs, methods=["GET"]),
        Route("/api/logs/stream", api_logs_stream, methods=["GET"]),
        Route("/api/logs/export", api_export, methods=["GET"]),
        Route("/api/log-level", api_log_level, methods=["GET", "PUT"]),
    ]
