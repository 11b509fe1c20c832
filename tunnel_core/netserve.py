"""Serving ASGI apps on pre-bound sockets inside our own task group.

Sockets are bound and listening before the server task starts, so the port is known
at once (``:0`` works) and early connections wait in the backlog instead of failing.
Signal handling stays with the caller: uvicorn's own handlers are disabled.
:func:`serve` runs uvicorn (the dev proxy's demo MCP server, the MCP stub) or, for an app that
says it needs nothing more (``lean_http = True``: the tunnel service), the service's own server of
``svcserver.py`` (:func:`serve_service`); :func:`serve_lean` runs the small server of
``asgiserver.py`` that the relay's operator listener uses.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
from collections.abc import Generator
from typing import Any

from anyio.abc import TaskGroup

from tunnel_core.config.settings import parse_listen_addr
from tunnel_core.listen import bind_host, display_host, dual_stack
from tunnel_core.records import record


@record(slots=True)
class Served:
    host: str
    port: int
    server: Any  # uvicorn.Server or asgiserver.LeanServer: both stop when should_exit is set
    scheme: str = "http"
    unix_path: str = ""

    @property
    def url(self) -> str:
        if self.unix_path:
            # The reference's form for a Unix-socket listener: http+unix://<base64url(path)>.
            encoded = base64.urlsafe_b64encode(self.unix_path.encode()).decode("ascii").rstrip("=")
            return f"http+unix://{encoded}"
        shown = display_host(self.host)
        host = f"[{shown}]" if ":" in shown else shown
        return f"{self.scheme}://{host}:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True


def bind(addr: str, *, what: str = "listen address", empty_host: str = "127.0.0.1") -> socket.socket:
    """A listening TCP socket for HOST:PORT; an empty host means ``empty_host`` ("" = all interfaces)."""
    host, port = parse_listen_addr(addr, what=what, empty_host=empty_host)
    host = bind_host(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto says TCP, and without it Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    dual_stack(sock, host)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from tunnel_core.errors import ConfigError

        raise ConfigError(
            f"{what}: cannot listen on {addr}: {exc.strerror}; choose another port (or :0 for any free port)"
        ) from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def bind_unix(path: str, *, what: str = "unix socket") -> socket.socket:
    """A listening Unix socket at ``path`` (0600); a stale socket nobody accepts on is replaced."""
    from tunnel_core.errors import ConfigError

    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # stale: left behind by a process that is gone
        else:
            raise ConfigError(f"{what}: {path} is in use by a running process; stop it or choose another path")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        os.chmod(path, 0o600)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"{what}: cannot listen on {path}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


class _LifespanGuard:
    """Keep an abandoned shutdown quiet.

    uvicorn runs the ASGI lifespan in a task of its own, outside our task group. When a second
    signal abandons the drain, the event loop cancels that task on the way out and the app reports
    "shutdown failed" with a CancelledError traceback, which uvicorn logs at ERROR. Nothing failed:
    the user asked to stop now. Any other lifespan error is still reported.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] != "lifespan":
            return self.app(scope, receive, send)  # the app's own coroutine: no extra frame per request
        return self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Any, receive: Any, send: Any) -> None:
        async def quiet_send(message: Any) -> None:
            if message.get("type", "").endswith(".failed") and "CancelledError" in str(message.get("message", "")):
                return
            await send(message)

        try:
            await self.app(scope, receive, quiet_send)
        except asyncio.CancelledError:
            return  # uvicorn's own task, cancelled at loop shutdown: end it quietly


def serve(app: Any, sock: socket.socket, tg: TaskGroup, *, graceful: float = 5.0,
          options: dict[str, Any] | None = None) -> Served:
    """Start serving ``app`` on ``sock`` in ``tg``; call ``Served.stop()`` to shut it down.

    ``options`` are extra uvicorn.Config arguments (TLS: ``ssl_certfile``/``ssl_keyfile``; limits; an
    ``http`` protocol class; ``timeout_keep_alive``). An app with ``lean_http = True`` and no ``options``
    is served by :func:`serve_service` with its default bounds, trusting ``X-Forwarded-*`` from the peers
    in ``$FORWARDED_ALLOW_IPS`` (default 127.0.0.1), as uvicorn would.
    """
    if getattr(app, "lean_http", False) and not options:
        return serve_service(app, sock, tg, graceful=graceful,
                             forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"))
    import uvicorn  # not at the top: the relay's operator listener does without it

    class _QuietServer(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    http_impl: Any
    try:
        from tunnel_core.httpproto import FastHttpProtocol  # httptools: one write per response

        http_impl = FastHttpProtocol
    except ImportError:  # pragma: no cover - optional speed-up
        http_impl = "h11"
    settings: dict[str, Any] = {"timeout_keep_alive": 30, "http": http_impl, **(options or {})}
    config = uvicorn.Config(
        _LifespanGuard(app),
        log_config=None,
        access_log=False,
        lifespan="auto",
        interface="asgi3",  # _LifespanGuard.__call__ is not a coroutine function, so uvicorn cannot tell
        timeout_graceful_shutdown=int(graceful) or 1,
        ws="none",
        **settings,
    )
    server = _QuietServer(config)
    if sock.family == socket.AF_UNIX:
        tg.start_soon(server.serve, [sock])
        return Served("", 0, server, unix_path=str(sock.getsockname()))
    host, port = sock.getsockname()[:2]
    tg.start_soon(server.serve, [sock])
    return Served(host, port, server, "https" if config.ssl_certfile else "http")


def serve_service(app: Any, sock: socket.socket, tg: TaskGroup, *, limits: Any = None, ssl_context: Any = None,
                  forwarded_allow_ips: str | None = None, graceful: float = 5.0) -> Served:
    """Serve the tunnel service's ``app`` with ``svcserver.ServiceServer`` (bounded by ``limits``, a
    ``svcserver.Limits``; TLS with ``ssl_context``; ``X-Forwarded-*`` trusted from ``forwarded_allow_ips``)."""
    from tunnel_core.svcserver import ServiceServer

    server = ServiceServer(app, sock, limits=limits, ssl_context=ssl_context, forwarded_allow_ips=forwarded_allow_ips,
                           graceful=graceful)
    tg.start_soon(server.serve)
    if sock.family == socket.AF_UNIX:
        return Served("", 0, server, unix_path=str(sock.getsockname()))
    host, port = sock.getsockname()[:2]
    return Served(host, port, server, server.scheme)


def serve_lean(app: Any, sock: socket.socket, tg: TaskGroup, *, graceful: float = 5.0) -> Served:
    """Like :func:`serve`, with the small server of ``asgiserver.py`` (HTTP only, no lifespan, no TLS)."""
    from tunnel_core.asgiserver import LeanServer

    server = LeanServer(app, sock, graceful=graceful)
    tg.start_soon(server.serve)
    if sock.family == socket.AF_UNIX:
        return Served("", 0, server, unix_path=str(sock.getsockname()))
    host, port = sock.getsockname()[:2]
    return Served(host, port, server)
