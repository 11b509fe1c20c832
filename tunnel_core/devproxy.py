"""``dev proxy``: local tunnel service + (demo) MCP target + tunnel client in one process.

A composition root above both sides: it starts the tunnel service (``devservice``) and a
tunnel client (``runner``) together. It lives outside ``devservice/`` so the service never
imports the client.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from pydantic import BaseModel

from tunnel_core.config.settings import load_settings
from tunnel_core.devservice.app import ServiceConfig, build_service_app
from tunnel_core.devservice.backends.base import QueueBackend
from tunnel_core.devservice.broker import Broker
from tunnel_core.errors import TunnelClientError
from tunnel_core.netserve import bind, serve

log = logging.getLogger("tunnel_client.devproxy")


class NotReady(TunnelClientError):
    """The relay did not become ready within --readiness-timeout; the message says why (exit 1)."""

DEFAULT_TUNNEL_ID = "tunnel_" + "2" * 32


class ProxyDescription(BaseModel):
    """What ``--print-json`` / ``--url-file`` describe (reference field names)."""

    tunnel_id: str
    mcp_url: str  # "" when the front door is a Unix socket (--listen-unix-socket)
    mcp_transport: str = "tcp"
    mcp_unix_socket: str = ""
    mcp_url_path: str
    control_plane_base_url: str
    control_plane_transport: str = "tcp"
    health_url: str
    backend: str = "python"


@dataclass(slots=True)
class ProxyOptions:
    listen: str = "127.0.0.1:0"
    tunnel_id: str = DEFAULT_TUNNEL_ID
    mcp_server_urls: list[str] = field(default_factory=list)
    mcp_commands: list[str] = field(default_factory=list)
    health_listen_addr: str = "127.0.0.1:0"
    response_timeout: float = 30.0
    readiness_timeout: float = 10.0
    log_level: str = "info"
    extra_flags: dict[str, object] = field(default_factory=dict)
    backend: QueueBackend | None = None  # queue engine (--engine-queue-backend); None = inmem
    listen_unix_socket: str = ""  # front door on this socket instead of --listen (the client still uses TCP)
    profile: str = ""  # the client's configuration (MCP bindings, ...) from a profile or profile file
    profile_file: str = ""
    profile_dir: str = ""
    client_last_seen_timeout: float = 20.0


async def run_dev_proxy(
    opts: ProxyOptions,
    stop: anyio.Event,
    on_ready: Callable[[ProxyDescription], None],
    env: dict[str, str] | None = None,
) -> None:
    """Serve until ``stop`` is set; ``on_ready`` gets the description once /readyz would say ready."""
    from tunnel_core.runner import RunHandle, run_client

    runtime_key = secrets.token_urlsafe(32)  # in memory only: never printed, logged or written
    broker = Broker(opts.backend)
    broker.add_tunnel(opts.tunnel_id, "dev proxy tunnel", "Local tunnel served by tunnel-client dev proxy")
    service_app = build_service_app(broker, ServiceConfig(runtime_keys={runtime_key},
                                                         response_timeout=opts.response_timeout,
                                                         rewrite_www_authenticate=True,
                                                         client_last_seen_timeout=opts.client_last_seen_timeout))
    # With --listen-unix-socket the front door is that socket; the client polls a loopback port.
    service_sock = bind("127.0.0.1:0" if opts.listen_unix_socket else opts.listen, what="--listen")
    service_url = _url_of(service_sock)
    door_sock = None
    if opts.listen_unix_socket:
        from pathlib import Path

        from tunnel_core.netserve import bind_unix

        Path(opts.listen_unix_socket).parent.mkdir(parents=True, exist_ok=True)
        door_sock = bind_unix(opts.listen_unix_socket, what="--listen-unix-socket")
    urls = list(opts.mcp_server_urls)
    stub_sock = None
    with_profile = bool(opts.profile or opts.profile_file)
    if not urls and not opts.mcp_commands and not with_profile:
        stub_sock = bind("127.0.0.1:0")
        urls = [f"{_url_of(stub_sock)}/mcp"]
    flags: dict[str, object] = {
        "cfg__control_plane__base_url": service_url,
        "cfg__control_plane__tunnel_id": opts.tunnel_id,
        "cfg__mcp__server_urls": urls or None,
        "cfg__mcp__commands": opts.mcp_commands or None,
        "cfg__health__listen_addr": opts.health_listen_addr,
        "cfg__log__level": opts.log_level,
        "cfg__admin_ui__open_browser": "false",  # as the reference: a dev proxy never opens a browser
        "profile": opts.profile or None, "profile_file": opts.profile_file or None,
        "profile_dir": opts.profile_dir or None,
        **opts.extra_flags,
    }
    # Settings are complete before anything starts, so a bad value is one plain error line, and the
    # caller's own tunnel-client variables (MCP_COMMAND, TUNNEL_CLIENT_PROFILE, ...) cannot leak in.
    own_env = {k: v for k, v in (env or {}).items() if not k.startswith(_CLIENT_ENV_PREFIXES)}
    settings = load_settings(flags, {**own_env, "CONTROL_PLANE_API_KEY": runtime_key})
    async with broker.running(), anyio.create_task_group() as tg:
        service = serve(service_app, service_sock, tg)
        door = serve(service_app, door_sock, tg) if door_sock is not None else None
        stub = None
        if stub_sock is not None:
            from tunnel_core.mcpstub import build_stub_app

            stub = serve(build_stub_app(), stub_sock, tg)
        handle = RunHandle(stop=stop)

        announce_scope = anyio.CancelScope()

        async def announce_when_ready() -> None:
            with announce_scope:
                await _announce()

        async def _announce() -> None:
            await handle.ready_url.wait()
            assert handle.state is not None
            with anyio.move_on_after(opts.readiness_timeout):
                await handle.state.wait_settled()
                # and the client is polling, so the first call through the URL is not refused as unseen
                await broker.tunnels[opts.tunnel_id].first_poll.wait()
            ready, reason = handle.state.readiness()
            if ready and not broker.tunnels[opts.tunnel_id].first_poll.is_set():
                ready, reason = False, f"the tunnel-client did not poll within {opts.readiness_timeout:g}s"
            if not ready:
                # A URL that cannot work is worse than no URL: say why and stop.
                raise NotReady(f"the tunnel is not ready: {reason}; fix the MCP target "
                               "(or give a slow server more time with --readiness-timeout)")
            path = f"/v1/mcp/{opts.tunnel_id}"
            on_ready(ProxyDescription(
                tunnel_id=opts.tunnel_id,
                mcp_url="" if door is not None else f"{service.url}{path}",
                mcp_transport="unix" if door is not None else "tcp",
                mcp_unix_socket=opts.listen_unix_socket,
                mcp_url_path=path,
                control_plane_base_url=service.url,
                health_url=handle.health_url,
            ))

        tg.start_soon(announce_when_ready)
        try:
            await run_client(settings, handle=handle)
        finally:
            announce_scope.cancel()
            broker.close()
            service.stop()
            if door is not None:
                door.stop()
                _remove_socket(opts.listen_unix_socket)
            if stub:
                stub.stop()


_CLIENT_ENV_PREFIXES = ("CONTROL_PLANE_", "MCP_", "HEALTH_", "LOG_", "TUNNEL_CLIENT_", "OPENAI_API_KEY", "PID_FILE",
                        "HARPOON_", "CA_BUNDLE", "ADMIN_UI_", "ALLOW_REMOTE_UI", "OPEN_WEB_UI", "PROXY_CHECK_INTERVAL")


def _remove_socket(path: str) -> None:
    from pathlib import Path

    from tunnel_core.fileutil import remove_quietly

    remove_quietly(Path(path))


def _url_of(sock: Any) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{host}:{port}"

