"""Real ASGI servers on 127.0.0.1:0, served from one background event loop.

A single ``BackgroundLoop`` (an anyio blocking portal in its own thread) hosts every
in-process server of the test session: the local tunnel service and the test MCP
servers. Sockets are bound and listening before the server task starts, so the port is
known at once and early connections wait in the backlog instead of failing.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvicorn
from anyio.from_thread import BlockingPortal, start_blocking_portal

T = TypeVar("T")

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def bind_loopback() -> socket.socket:
    """A TCP socket bound to 127.0.0.1 on an ephemeral port and listening."""
    # proto=IPPROTO_TCP makes asyncio set TCP_NODELAY on accepted sockets (no Nagle/delayed-ACK stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextlib.contextmanager
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


class _QuietServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(slots=True)
class RunningServer:
    """One uvicorn server running on the background loop."""

    port: int
    server: Any  # uvicorn.Server or svcserver.ServiceServer: both stop when should_exit is set
    done: Future[Any] = field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.done.result(timeout=STOP_TIMEOUT)


class BackgroundLoop:
    """An event loop in a thread that serves ASGI apps and runs callables for the tests."""

    def __init__(self, portal: BlockingPortal) -> None:
        self.portal = portal

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a sync or async callable on the background loop and return its result."""
        return self.portal.call(fn, *args)

    def serve(self, app: Any, sock: socket.socket | None = None, **options: Any) -> RunningServer:
        """Serve ``app`` on ``sock`` (default: a fresh 127.0.0.1:0 socket); returns once it accepts.

        ``options`` are extra uvicorn.Config arguments (``http=`` a protocol class, ...)."""
        sock = sock or bind_loopback()
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="auto", ws="none", timeout_graceful_shutdown=0.5,  # type: ignore[arg-type]
            **options,
        )
        server = _QuietServer(config)
        port = sock.getsockname()[1]
        done = self.portal.start_task_soon(server.serve, [sock])
        started = self.portal.start_task_soon(_wait_started, server, done)
        try:
            started.result(timeout=START_TIMEOUT)
        except BaseException:
            server.should_exit = True
            raise
        if done.done():  # startup failed (e.g. lifespan error): surface it
            done.result()
        return RunningServer(port, server, done)


    def serve_service(self, app: Any, sock: socket.socket | None = None, **kwargs: Any) -> RunningServer:
        """Serve ``app`` with the tunnel service's own server (``svcserver.ServiceServer``; ``kwargs``: its
        ``limits``, ``ssl_context``, ``forwarded_allow_ips``); it accepts as soon as this returns."""
        from tunnel_core.svcserver import ServiceServer

        sock = sock or bind_loopback()
        server = ServiceServer(app, sock, graceful=0.5, **kwargs)
        done = self.portal.start_task_soon(server.serve)
        return RunningServer(sock.getsockname()[1], server, done)


async def _wait_started(server: uvicorn.Server, done: Future[Any]) -> None:
    import anyio

    # uvicorn exposes no event for "started"; check its flag each loop turn (the caller bounds the wait).
    while not server.started and not done.done():  # noqa: ASYNC110
        await anyio.sleep(0.01)


@contextlib.contextmanager
def background_loop() -> Iterator[BackgroundLoop]:
    with start_blocking_portal("asyncio", name="test-servers") as portal:
        yield BackgroundLoop(portal)
