"""The queue backends under test: both of them (inmem, and redis on a real redis-server), and a broker on one."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.redis_helpers import RedisServer
from tunnel_core.devservice.backends.base import QueueBackend
from tunnel_core.devservice.backends.inmem import InMemoryBackend
from tunnel_core.devservice.broker import Broker


def backend_factory(request: pytest.FixtureRequest) -> Callable[..., QueueBackend]:
    """A factory of the backend named by ``request.param``; redis starts from an empty database."""
    if request.param == "inmem":
        return lambda **kw: InMemoryBackend(**kw)
    server: RedisServer = request.getfixturevalue("redis_server")
    server.client().flushall()
    from tunnel_core.devservice.backends.redis import RedisBackend

    return lambda **kw: RedisBackend(server.url, **kw)


@contextlib.asynccontextmanager
async def broker_on(make: Callable[..., QueueBackend], tunnel_id: str, **kw: Any) -> AsyncIterator[Broker]:
    """A running broker serving ``tunnel_id`` on a backend from ``make(**kw)``."""
    broker = Broker(make(**kw))
    broker.add_tunnel(tunnel_id)
    async with broker.running():
        yield broker
