"""Bounds of the tunnel service's queue and of the client's answers, on both backends (redis on a real
redis-server): known channels only, no state from refused commands, empty lanes collected, commands
sealed at rest, the JSON depth check, and a terminal answer retried until its command's deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import anyio
import pytest

from tests.support.backends import broker_on as shared_broker_on
from tests.support.redis_helpers import RedisServer
from tunnel_core.controlplane.client import ControlPlaneError
from tunnel_core.devservice.backends.base import MAX_CHANNELS, DeliveryError, Poller, QueueBackend
from tunnel_core.devservice.backends.sealing import Sealer
from tunnel_core.devservice.broker import Broker
from tunnel_core.devservice.jsonbody import JSONBodyError, depth_exceeds, parse_json
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.responder import MAX_ATTEMPTS, Responder
from tunnel_core.wire.messages import ResponsePayload

pytestmark = pytest.mark.anyio

CLIENT = Poller("client-1", frozenset(), frozenset({"main", "tools"}))
KEY_A, KEY_B = "a" * 40, "b" * 40


T = "tunnel_" + "b" * 32


def broker_on(make: Callable[..., QueueBackend], **kw: Any) -> AbstractAsyncContextManager[Broker]:
    return shared_broker_on(make, T, **kw)


def rpc(channel: str = "main", secret: str = "") -> dict[str, Any]:
    headers = {"Authorization": [f"Bearer {secret}"]} if secret else {}
    return {"command_type": "jsonrpc", "channel": channel, "response_timeout": "30s", "headers": headers,
            "jsonrpc": {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}}


def redis_keys(make: Callable[..., QueueBackend]) -> set[str] | None:
    url = getattr(make(), "url", None)
    if url is None:
        return None
    import redis

    return set(redis.Redis.from_url(url, decode_responses=True).keys("*"))


# ---- known channels -------------------------------------------------------------------------------


async def test_a_channel_no_client_named_is_refused_without_storing_anything(
    make_backend: Callable[..., QueueBackend],
) -> None:
    async with broker_on(make_backend, known_channels_only=True) as b:
        await b.submit(T, rpc("main"))  # main is always a channel of the tunnel
        before = redis_keys(make_backend)
        for i in range(50):
            with pytest.raises(DeliveryError) as refused:
                await b.submit(T, rpc(f"junk{i}"))
            assert (refused.value.status, refused.value.code) == (400, "unknown_channel")
        assert redis_keys(make_backend) == before, "a refused command left keys in Redis"
        assert len(b.tunnels[T].pending) == 1, "a refused command left a pending caller"


async def test_channels_named_by_a_poll_become_known(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend, known_channels_only=True) as b:
        with pytest.raises(DeliveryError):
            await b.submit(T, rpc("tools"))
        assert await b.poll(T, 5, 0.0, None, poller=CLIENT) == []  # declares main and tools
        await b.poll(T, 5, 0.0, {"filtered"}, poller=Poller("client-2"))  # a channel parameter
        await b.submit(T, rpc("tools"))
        await b.submit(T, rpc("filtered"))
        got = await b.poll(T, 5, 1.0, None, poller=CLIENT)  # no filter: every channel
    assert sorted(c["channel"] for c in got) == ["filtered", "tools"]


async def test_at_most_max_channels_are_remembered(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend, known_channels_only=True) as b:
        for i in range(MAX_CHANNELS + 10):
            await b.poll(T, 1, 0.0, {f"ch{i}"}, poller=Poller("c"))
        with pytest.raises(DeliveryError):
            await b.submit(T, rpc("ch0"))  # the least recently named went first
        await b.submit(T, rpc(f"ch{MAX_CHANNELS + 9}"))
    keys = redis_keys(make_backend)
    if keys is not None:
        import redis

        r = redis.Redis.from_url(make_backend().url, decode_responses=True)  # type: ignore[attr-defined]
        assert r.zcard(f"tc:t:{T}:chans") <= MAX_CHANNELS


async def test_dev_mode_still_queues_any_well_formed_channel(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend) as b:
        await b.submit(T, rpc("nope"))
        got = await b.poll(T, 5, 1.0, None, poller=Poller("c"))
    assert [c["channel"] for c in got] == ["nope"]


# ---- redis: lanes collected, commands sealed --------------------------------------------------------


async def test_an_empty_shared_lane_is_collected_by_the_sweep(redis_server: RedisServer) -> None:
    from tunnel_core.devservice.backends.redis import RedisBackend

    redis_server.client().flushall()
    backend = RedisBackend(redis_server.url, reclaim_after=0.05)
    b = Broker(backend)
    b.add_tunnel(T)
    r = redis_server.client()
    async with b.running():
        await b.submit(T, rpc())
        assert r.exists(f"tc:t:{T}:q:main") == 1
        assert len(await b.poll(T, 5, 1.0, None, poller=CLIENT)) == 1
        with anyio.fail_after(5):
            while r.exists(f"tc:t:{T}:q:main"):
                await backend.sweep()
                await anyio.sleep(0.05)
        assert f"tc:t:{T}:q:main" not in r.smembers("tc:lanes")
        await b.submit(T, rpc())  # a lane comes back with the next command
        assert len(await b.poll(T, 5, 1.0, None, poller=CLIENT)) == 1


async def test_queued_commands_are_sealed_at_rest_and_open_with_a_rotated_key(redis_server: RedisServer) -> None:
    from tunnel_core.devservice.backends.redis import RedisBackend

    redis_server.client().flushall()
    secret = "caller-bearer-" + "s" * 20
    writer = Broker(RedisBackend(redis_server.url, instance_id="w", sealer=Sealer([KEY_A])))
    reader = Broker(RedisBackend(redis_server.url, instance_id="r", sealer=Sealer([KEY_B, KEY_A])))
    stranger = Broker(RedisBackend(redis_server.url, instance_id="s", sealer=Sealer([KEY_B])))
    for b in (writer, reader, stranger):
        b.add_tunnel(T)
    r = redis_server.client()
    async with writer.running(), reader.running(), stranger.running():
        p = await writer.submit(T, rpc(secret=secret))
        stored = r.xrange(f"tc:t:{T}:q:main")[0][1]["c"]
        assert stored.startswith("e1.") and secret not in stored
        assert await stranger.poll(T, 5, 0.2, None, poller=CLIENT) == []  # cannot open it: dropped, not leaked
        q = await writer.submit(T, rpc(secret=secret))
        (got,) = await reader.poll(T, 5, 1.0, None, poller=CLIENT)
    assert got["request_id"] == q.request_id != p.request_id
    assert got["headers"] == {"Authorization": [f"Bearer {secret}"]}
    dump = b"".join(r.dump(k) or b"" for k in r.keys("*"))
    assert secret.encode() not in dump


def test_a_sealed_command_is_bound_to_its_request() -> None:
    s = Sealer([KEY_A])
    box = s.seal("req_1", {"a": 1})
    assert s.open("req_1", box) == {"a": 1}
    with pytest.raises(ValueError):
        s.open("req_2", box)
    assert Sealer([]).open("req_1", '{"plain":true}') == {"plain": True}
    with pytest.raises(Exception, match="at least 32"):
        Sealer(["short"])


# ---- JSON depth -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "limit", "deeper"), [
    (b'{"a":[1,2,{"b":3}]}', 3, False),
    (b'{"a":[1,2,{"b":3}]}', 2, True),
    (b"[" * 65 + b"]" * 65, 64, True),
    (b"[" * 64 + b"]" * 64, 64, False),
    (b'["' + b"[" * 500 + b'"]', 4, False),  # brackets inside a string do not nest
    (b'["\\"[[[[[", [[1]]]', 3, False),  # nor after an escaped quote
    (b"[{}]" * 1000, 2, False),  # many brackets, shallow
])
def test_depth_is_measured_outside_strings(body: bytes, limit: int, deeper: bool) -> None:
    assert depth_exceeds(body, limit) is deeper


def test_a_deep_body_is_a_json_body_error_not_a_recursion_error() -> None:
    with pytest.raises(JSONBodyError, match="deeper than 64"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(JSONBodyError, match="too deeply"):
        parse_json(b"[" * 100_000 + b"]" * 100_000, 0)  # no explicit limit: the parser's own
    assert parse_json(b'{"a": 1}') == {"a": 1}


# ---- the client's answer: retried until the deadline ------------------------------------------------


class FlakyControlPlane:
    """Answers the first ``failures`` response POSTs with ``status`` (Retry-After 0), then 200."""

    def __init__(self, failures: int, status: int = 503) -> None:
        self.failures = failures
        self.status = status
        self.attempts = 0

    async def post_response(self, payload: Any, **_: Any) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ControlPlaneError(self.status, code="tunnel_transport_unavailable")


def terminal() -> ResponsePayload:
    return ResponsePayload(request_id="req_1", channel="main", resp_json={"jsonrpc": "2.0", "id": 1, "result": {}},
                           resp_headers=None, resp_code=200, resp_type="jsonrpc_response")


async def test_a_terminal_answer_is_retried_past_the_attempt_cap_until_accepted() -> None:
    cp = FlakyControlPlane(MAX_ATTEMPTS + 1)
    responder = Responder(cp, RelayMetrics())  # type: ignore[arg-type]
    with anyio.CancelScope(deadline=anyio.current_time() + 30):
        status = await responder.post(terminal(), shard_token="s")
    assert (status, cp.attempts) == (200, MAX_ATTEMPTS + 2)


async def test_a_terminal_answer_gives_up_before_its_deadline() -> None:
    cp = FlakyControlPlane(math.inf)  # type: ignore[arg-type]
    responder = Responder(cp, RelayMetrics())  # type: ignore[arg-type]
    deadline = anyio.current_time() + 1.5
    with anyio.CancelScope(deadline=deadline) as scope:
        status = await responder.post(terminal(), shard_token="s")
    assert status is None and not scope.cancelled_caught  # it stopped by itself, before the deadline
    assert cp.attempts >= 2


async def test_without_a_deadline_the_attempt_cap_applies() -> None:
    cp = FlakyControlPlane(MAX_ATTEMPTS + 5)
    assert await Responder(cp, RelayMetrics()).post(terminal(), shard_token="s") is None  # type: ignore[arg-type]
    assert cp.attempts == MAX_ATTEMPTS
