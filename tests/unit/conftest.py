"""Fixtures shared by the queue-backend tests: a redis-server per module, and both backends."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.support.backends import backend_factory
from tests.support.redis_helpers import RedisServer, running_redis
from tunnel_core.devservice.backends.base import QueueBackend


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(params=["inmem", "redis"])
def make_backend(request: pytest.FixtureRequest) -> Callable[..., QueueBackend]:
    """Each test that asks for it runs twice: on the inmem backend and on redis."""
    return backend_factory(request)
