"""Signal handling for long-running commands: first SIGINT/SIGTERM drains, the second abandons."""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from tunnel_core.errors import TunnelClientError


async def _watch_signals(stop: anyio.Event, tg: TaskGroup) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            if not stop.is_set():
                stop.set()
            else:
                tg.cancel_scope.cancel()
                return


async def run_until_signal(main: Callable[[anyio.Event], Awaitable[None]], *, duration: float | None = None) -> None:
    """Run ``main(stop)``; ``stop`` is set on the first signal or after ``duration`` seconds."""
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_signals, stop, tg)
        if duration:
            async def _timer() -> None:
                await anyio.sleep(duration)
                stop.set()

            tg.start_soon(_timer)
        await main(stop)
        tg.cancel_scope.cancel()


def run_async(main: Callable[[anyio.Event], Awaitable[None]], *, duration: float | None = None) -> None:
    """Run on asyncio, with uvloop when it is installed (it roughly halves per-request CPU)."""
    try:
        import uvloop  # noqa: F401

        options = {"use_uvloop": True}
    except ImportError:
        options = {}
    try:
        anyio.run(lambda: run_until_signal(main, duration=duration), backend="asyncio", backend_options=options)
    except BaseExceptionGroup as group:
        # A configuration error raised inside the task group is still one plain error line for the user.
        leaf = _only_leaf(group)
        if isinstance(leaf, TunnelClientError):
            raise leaf from None
        raise


def _only_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single exception inside (possibly nested) groups, or None when there are several."""
    if len(group.exceptions) != 1:
        return None
    inner = group.exceptions[0]
    return _only_leaf(inner) if isinstance(inner, BaseExceptionGroup) else inner
