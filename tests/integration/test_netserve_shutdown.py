"""Abandoning a server (a second Ctrl-C) ends it without a traceback in the log."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
import pytest
from starlette.applications import Starlette

from tunnel_core.netserve import bind, serve


def test_abandoned_server_with_a_lifespan_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    started = anyio.Event()

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        started.set()
        yield

    async def main() -> None:
        sock = bind("127.0.0.1:0")
        async with anyio.create_task_group() as tg:
            serve(Starlette(lifespan=lifespan), sock, tg)
            with anyio.fail_after(10):
                await started.wait()
            tg.cancel_scope.cancel()  # abandon: no drain, no lifespan shutdown

    with caplog.at_level(logging.INFO):
        anyio.run(main, backend="asyncio")  # the loop's teardown cancels uvicorn's own lifespan task
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert not any("Traceback" in r.getMessage() for r in caplog.records)
