"""The Redis backend with two service instances in one process sharing a real redis-server.

Answers are routed to the instance holding the caller; an answer for a stopped instance is
404 at once; queued commands outlive the instance that queued them; entries read but never
claimed are re-queued by the recovery sweep and a re-queued copy never reaches a second
client; orphans expire with their response_timeout; a Redis restart with appendonly loses
no queued command and both instances reconnect; the rate limit is shared.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from tests.support.redis_helpers import RedisServer, running_redis
from tunnel_core.devservice.backends.base import DeliveryError, Poller
from tunnel_core.devservice.backends.redis import RedisBackend, redact_url
from tunnel_core.devservice.broker import Broker

pytestmark = pytest.mark.anyio

T = "tunnel_" + "d" * 32
CLIENT = Poller("client-1")
WAIT = 5.0


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis"), appendonly=True) as server:
        yield server


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    redis_server.client().flushall()
    return redis_server.url


def instance(url: str, name: str, **kw: Any) -> Broker:
    b = Broker(RedisBackend(url, instance_id=name, **kw))
    b.add_tunnel(T)
    return b


@contextlib.asynccontextmanager
async def two(url: str, **kw: Any) -> AsyncIterator[tuple[Broker, Broker]]:
    a, b = instance(url, "svc-a", **kw), instance(url, "svc-b", **kw)
    async with a.running(), b.running():
        yield a, b


def rpc(rpc_id: Any = 1, timeout: str = "30s") -> dict[str, Any]:
    return {"command_type": "jsonrpc", "channel": "main", "response_timeout": timeout, "headers": {},
            "jsonrpc": {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call"}}


def answer(cmd: dict[str, Any], resp_type: str = "jsonrpc_response", body: Any = None) -> dict[str, Any]:
    return {"request_id": cmd["request_id"], "resp_type": resp_type, "resp_code": 200,
            "resp_json": body if body is not None else {"ok": True}}


async def test_shard_token_names_the_instance_holding_the_caller_and_routes_back_to_it(url: str) -> None:
    async with two(url) as (a, b):
        p = await a.submit(T, rpc())
        (cmd,) = await b.poll(T, 5, WAIT, None, poller=CLIENT)
        await b.respond(T, cmd["shard_token"], answer(cmd, "jsonrpc_notify", {"progress": 1}))
        await b.respond(T, cmd["shard_token"], answer(cmd, body={"final": True}))
        with anyio.fail_after(WAIT):
            got = [m["resp_json"] async for m in p.receive]
    assert cmd["shard_token"].startswith("svc-a.")
    assert got == [{"progress": 1}, {"final": True}]


async def test_answer_for_a_stopped_instance_is_refused_at_once(url: str) -> None:
    a = instance(url, "svc-a")
    b = instance(url, "svc-b")
    async with b.running():
        async with a.running():
            await a.submit(T, rpc())
            (cmd,) = await b.poll(T, 1, WAIT, None, poller=CLIENT)
        with pytest.raises(DeliveryError) as err:
            await b.respond(T, cmd["shard_token"], answer(cmd))
    assert err.value.status == 404 and "gone" in err.value.message


async def test_queued_commands_outlive_the_instance_that_queued_them(url: str) -> None:
    a = instance(url, "svc-a")
    async with a.running():
        queued = [(await a.submit(T, rpc(i))).request_id for i in range(5)]
        for rid in queued:  # the callers go away while the instance shuts down ...
            a.close()
            a.forget(T, rid)
    b = instance(url, "svc-b")
    async with b.running():  # ... and a client polling another instance still gets every command
        got = await b.poll(T, 25, WAIT, None, poller=CLIENT)
    assert sorted(c["request_id"] for c in got) == sorted(queued)


async def test_entries_read_but_never_claimed_are_requeued_by_the_sweep(url: str) -> None:
    async with two(url, reclaim_after=0.1) as (a, b):
        p = await a.submit(T, rpc())
        backend = a.backend
        assert isinstance(backend, RedisBackend)
        # Step 1 of a poll by an instance that dies before step 2: the entry sits in its pending list.
        read = await backend._read(keys=[], args=[backend.prefix, T, "dead-instance", 5, "", 1000, 0, 1000, 64, 0])
        assert read[2] == p.request_id
        got = await b.poll(T, 5, WAIT, None, poller=CLIENT)  # the sweep re-queues it within ~reclaim_after
    assert [c["request_id"] for c in got] == [p.request_id]


async def test_a_requeued_copy_never_reaches_a_second_client(url: str) -> None:
    async with two(url, reclaim_after=3600) as (a, b):
        p = await a.submit(T, rpc())
        backend = a.backend
        assert isinstance(backend, RedisBackend)
        lane, entry, rid, _ = await backend._read(keys=[], args=[backend.prefix, T, "slow-instance", 5, "", 1000, 0, 1000, 64, 0])
        # The sweep decides the slow instance is dead and re-queues the entry ...
        backend.reclaim_after = 0.0
        assert (await backend.sweep())[0] == 1
        # ... but the slow instance then completes its claim: it hands the command out,
        claimed = await backend._claim(keys=[], args=[backend.prefix, "client-1", 1000, T, lane, entry, rid, ""])
        # and the re-queued copy is dropped when another client reads it.
        second = await b.poll(T, 5, 0.5, None, poller=Poller("client-2"))
    assert claimed == [p.request_id]
    assert second == []


async def test_an_orphan_expires_with_its_response_timeout(url: str, redis_server: RedisServer) -> None:
    a = instance(url, "svc-a")
    async with a.running():
        p = await a.submit(T, rpc(timeout="0s"))  # lives 0 s + 1 s caller slack
    r = redis_server.client()
    deadline = time.monotonic() + WAIT
    while r.exists(f"tc:req:{p.request_id}"):
        assert time.monotonic() < deadline, "the request never expired"
        await anyio.sleep(0.05)
    b = instance(url, "svc-b")
    async with b.running():
        assert await b.poll(T, 5, 0.3, None, poller=CLIENT) == []
        await b.backend.sweep()  # type: ignore[attr-defined]
    assert r.xlen(f"tc:t:{T}:q:main") == 0, "the expired entry was not trimmed"


async def test_redis_restart_with_appendonly_loses_no_queued_command(redis_server: RedisServer, url: str) -> None:
    async with two(url) as (a, b):
        callers = [await a.submit(T, rpc(i)) for i in range(3)]
        redis_server.restart()  # SIGKILL, then start again on the same port and data directory
        with anyio.fail_after(15):
            # Both listeners reconnect; there is no event to wait on for another process's state.
            while await a.backend.check() or await b.backend.check():  # noqa: ASYNC110
                await anyio.sleep(0.05)
        got = await b.poll(T, 25, WAIT, None, poller=CLIENT)
        assert sorted(c["request_id"] for c in got) == sorted(p.request_id for p in callers)
        for cmd in got:  # and answers still reach the callers held by instance a
            await b.respond(T, cmd["shard_token"], answer(cmd))
        with anyio.fail_after(WAIT):
            finals = [[m async for m in p.receive] for p in callers]
    assert all(len(f) == 1 and f[0]["resp_code"] == 200 for f in finals)


async def test_rate_limit_is_shared_between_instances(url: str) -> None:
    async with two(url) as (a, b):
        first = [await a.backend.admit("fd:" + T, 2.0, 2), await b.backend.admit("fd:" + T, 2.0, 2)]
        third = await b.backend.admit("fd:" + T, 2.0, 2)
    assert first == [0.0, 0.0]
    assert 0 < third <= 0.5


async def test_routed_message_is_json_with_the_payload_intact(url: str, redis_server: RedisServer) -> None:
    async with two(url) as (a, b):
        p = await a.submit(T, rpc())
        (cmd,) = await b.poll(T, 1, WAIT, None, poller=CLIENT)
        body = {"text": "é/\u2028\"quoted\"", "n": [1, 2.5, None, True]}
        await b.respond(T, cmd["shard_token"], answer(cmd, body=body))
        with anyio.fail_after(WAIT):
            (final,) = [m async for m in p.receive]
    assert json.dumps(final["resp_json"], sort_keys=True) == json.dumps(body, sort_keys=True)


def test_redis_url_password_is_redacted() -> None:
    assert redact_url("redis://:s3cret@10.0.0.5:6379/0") == "redis://:***@10.0.0.5:6379/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


async def test_redis_down_answers_503_and_readiness_reports_it(tmp_path: Any) -> None:
    with running_redis(tmp_path / "own") as own:
        a = instance(own.url, "svc-a")
        async with a.running():
            assert await a.backend.check() == ""
            own.kill()
            with anyio.fail_after(15):
                with pytest.raises(DeliveryError) as down:
                    await a.submit(T, rpc())
                with pytest.raises(DeliveryError) as poll_down:
                    await a.poll(T, 1, 0.1, None, poller=CLIENT)
                assert await a.backend.check() != ""
            own.start()  # same port: the service recovers without a restart
            with anyio.fail_after(15):
                while await a.backend.check():  # noqa: ASYNC110 - Redis is another process
                    await anyio.sleep(0.05)
            p = await a.submit(T, rpc())
            (cmd,) = await a.poll(T, 1, WAIT, None, poller=CLIENT)
    assert (down.value.status, down.value.code) == (503, "tunnel_transport_unavailable")
    assert poll_down.value.status == 503
    assert cmd["request_id"] == p.request_id


async def test_an_answer_crossing_instances_keeps_the_bytes_the_client_sent(url: str) -> None:
    from tunnel_core.devservice.jsonbody import JSONText

    text = '{ "jsonrpc" : "2.0", "id": 1, "result": {"t": "é\\u00e9", "n": 1.50} }'
    async with two(url) as (a, b):
        p = await a.submit(T, rpc())
        (cmd,) = await b.poll(T, 5, WAIT, None, poller=CLIENT)
        sent = answer(cmd, body=JSONText(json.loads(text), text))
        await b.respond(T, cmd["shard_token"], sent)
        with anyio.fail_after(WAIT):
            (got,) = [m["resp_json"] async for m in p.receive]
    assert isinstance(got, JSONText) and got.text == text and got == json.loads(text)
