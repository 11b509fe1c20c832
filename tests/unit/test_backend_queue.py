"""The queue-backend contract, run against both backends: inmem, and redis on a real redis-server.

Limit and channels, each command handed out once under racing pollers, response routing and
404/401 refusals, withdrawal, session affinity (pinning, minted session ids, gone clients,
termination), wake-ups, and the GCRA rate limiter.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support.backends import broker_on as shared_broker_on
from tunnel_core.devservice.backends.base import DeliveryError, Poller, QueueBackend
from tunnel_core.devservice.broker import Broker

pytestmark = pytest.mark.anyio

T = "tunnel_" + "c" * 32
X = Poller("client-x", frozenset({"main"}))  # main is a stdio (proc_affinity) channel for X
Y = Poller("client-y", frozenset({"main"}))
PLAIN = Poller("client-p")  # declares no proc_affinity channel
WAIT = 5.0


def broker_on(make: Callable[..., QueueBackend], **kw: Any) -> AbstractAsyncContextManager[Broker]:
    return shared_broker_on(make, T, **kw)


def rpc(method: str = "tools/call", *, channel: str = "main", session: str = "", rpc_id: Any = 1,
        timeout: str = "30s") -> dict[str, Any]:
    headers: dict[str, list[str]] = {"Mcp-Session-Id": [session]} if session else {}
    return {"command_type": "jsonrpc", "channel": channel, "response_timeout": timeout, "headers": headers,
            "jsonrpc": {"jsonrpc": "2.0", "id": rpc_id, "method": method}}


def answer(cmd: dict[str, Any], *, resp_type: str = "jsonrpc_response", code: int = 200,
           headers: dict[str, list[str]] | None = None, body: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"request_id": cmd["request_id"], "resp_type": resp_type, "resp_code": code,
                           "resp_json": body if body is not None else {"jsonrpc": "2.0", "id": 1, "result": {}}}
    if headers:
        out["resp_headers"] = headers
    return out


async def received(p: Any) -> list[dict[str, Any]]:
    with anyio.fail_after(WAIT):
        return [m async for m in p.receive]


async def test_limit_is_honoured_across_channels(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend) as b:
        for ch in ("main", "main", "main", "web", "web", "web"):
            await b.submit(T, rpc(channel=ch))
        first = await b.poll(T, 4, 0.5, None, poller=PLAIN)
        second = await b.poll(T, 4, 0.5, None, poller=PLAIN)
        third = await b.poll(T, 4, 0.1, None, poller=PLAIN)
    assert (len(first), len(second), third) == (4, 2, [])
    assert len({c["request_id"] for c in first + second}) == 6


async def test_channel_filter_returns_only_those_channels(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend) as b:
        await b.submit(T, rpc(channel="main"))
        await b.submit(T, rpc(channel="web"))
        got = await b.poll(T, 10, 0.5, {"web"}, poller=PLAIN)
        rest = await b.poll(T, 10, 0.5, {"main"}, poller=PLAIN)
    assert [c["channel"] for c in got] == ["web"]
    assert [c["channel"] for c in rest] == ["main"]


async def test_racing_pollers_get_each_command_exactly_once(make_backend: Callable[..., QueueBackend]) -> None:
    total = 150
    seen: Counter[str] = Counter()
    async with broker_on(make_backend) as b:
        ids = [(await b.submit(T, rpc(rpc_id=i))).request_id for i in range(total)]

        async def poller(n: int) -> None:
            while sum(seen.values()) < total:
                for c in await b.poll(T, 7, 0.2, None, poller=Poller(f"p{n}")):
                    seen[c["request_id"]] += 1

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for n in range(8):
                    tg.start_soon(poller, n)
    assert sorted(seen) == sorted(ids)
    assert set(seen.values()) == {1}, "a command was handed out twice"


async def test_notifications_then_terminal_reach_the_caller_and_a_second_terminal_is_404(
    make_backend: Callable[..., QueueBackend],
) -> None:
    async with broker_on(make_backend) as b:
        p = await b.submit(T, rpc())
        (cmd,) = await b.poll(T, 1, WAIT, None, poller=PLAIN)
        with pytest.raises(DeliveryError) as wrong:
            await b.respond(T, cmd["shard_token"] + "x", answer(cmd))
        await b.respond(T, cmd["shard_token"], answer(cmd, resp_type="jsonrpc_notify", body={"n": 1}))
        await b.respond(T, cmd["shard_token"], answer(cmd, resp_type="jsonrpc_notify", body={"n": 2}))
        await b.respond(T, cmd["shard_token"], answer(cmd, body={"done": True}))
        got = await received(p)
        with pytest.raises(DeliveryError) as again:
            await b.respond(T, cmd["shard_token"], answer(cmd))
    assert wrong.value.status in (401, 404)
    assert [m["resp_json"] for m in got] == [{"n": 1}, {"n": 2}, {"done": True}]
    assert (again.value.status, again.value.code) == (404, "pending_request_not_found")


async def test_response_for_an_unpolled_request_is_404(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend) as b:
        p = await b.submit(T, rpc())
        with pytest.raises(DeliveryError) as err:
            await b.respond(T, p.shard_token, answer(p.command))
    assert err.value.status == 404


async def test_withdrawn_command_is_never_handed_out(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend) as b:
        gone = await b.submit(T, rpc(rpc_id="gone"))
        b.forget(T, gone.request_id)
        await b.backend.flush()
        kept = await b.submit(T, rpc(rpc_id="kept"))
        got = await b.poll(T, 10, 0.5, None, poller=PLAIN)
        got += await b.poll(T, 10, 0.2, None, poller=PLAIN)
    assert [c["request_id"] for c in got] == [kept.request_id]


async def test_a_waiting_poll_wakes_when_a_command_arrives(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend) as b:
        got: list[dict[str, Any]] = []
        started = anyio.Event()

        async def wait() -> None:
            started.set()
            got.extend(await b.poll(T, 5, 10.0, None, poller=PLAIN))

        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            tg.start_soon(wait)
            await started.wait()
            await b.submit(T, rpc())
        elapsed = time.monotonic() - t0
    assert len(got) == 1
    assert elapsed < 1.5, f"the poll waited {elapsed:.2f}s for a command that was already queued"


async def initialize_on(b: Broker, who: Poller, *, own_session: str = "") -> tuple[str, dict[str, Any]]:
    """Run an initialize through ``who``; returns the session id the caller saw and the caller's answer."""
    p = await b.submit(T, rpc("initialize", rpc_id=0))
    (cmd,) = await b.poll(T, 1, WAIT, None, poller=who)
    headers = {"Mcp-Session-Id": [own_session]} if own_session else None
    await b.respond(T, cmd["shard_token"], answer(cmd, headers=headers))
    (final,) = await received(p)
    sid = (final.get("resp_headers") or {}).get("Mcp-Session-Id", [""])[0]
    return sid, final


async def test_stdio_session_is_minted_and_pinned_to_the_client_that_initialized_it(
    make_backend: Callable[..., QueueBackend],
) -> None:
    async with broker_on(make_backend) as b:
        sid, _ = await initialize_on(b, X)
        assert sid.startswith("tsess_")
        for i in range(3):
            await b.submit(T, rpc(session=sid, rpc_id=i))
        await b.submit(T, rpc(rpc_id="free"))  # no session: anyone may take it
        by_y = await b.poll(T, 10, 0.3, None, poller=Y)
        by_x = await b.poll(T, 10, 0.5, None, poller=X)
        by_x += await b.poll(T, 10, 0.2, None, poller=X)
    assert [c["jsonrpc"]["id"] for c in by_y] == ["free"]
    assert sorted(c["jsonrpc"]["id"] for c in by_x) == [0, 1, 2]


async def test_a_target_session_id_is_pinned_as_is(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend) as b:
        sid, _ = await initialize_on(b, X, own_session="target-own-1")
        await b.submit(T, rpc(session="target-own-1"))
        assert await b.poll(T, 10, 0.3, None, poller=Y) == []
        assert len(await b.poll(T, 10, WAIT, None, poller=X)) == 1
    assert sid == "target-own-1"


async def test_http_channel_sessions_are_not_pinned(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend) as b:
        sid, _ = await initialize_on(b, PLAIN, own_session="http-session")
        await b.submit(T, rpc(session="http-session"))
        got = await b.poll(T, 10, WAIT, None, poller=Y)
    assert sid == "http-session" and len(got) == 1


async def test_a_session_of_a_gone_client_is_refused_with_404(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend, client_grace=0.3) as b:
        sid, _ = await initialize_on(b, X)
        deadline = time.monotonic() + WAIT
        while True:  # X stops polling; once its grace has passed, its sessions are refused
            try:
                p = await b.submit(T, rpc(session=sid))
            except DeliveryError as exc:
                assert (exc.status, exc.code) == (404, "session_not_found")
                break
            b.forget(T, p.request_id)
            assert time.monotonic() < deadline, "the session of a silent client was never refused"
            await anyio.sleep(0.05)


async def test_session_termination_releases_the_pin(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend) as b:
        sid, _ = await initialize_on(b, X)
        p = await b.submit(T, {"command_type": "session_termination", "channel": "main",
                               "response_timeout": "30s", "headers": {"Mcp-Session-Id": [sid]}})
        assert await b.poll(T, 1, 0.3, None, poller=Y) == []
        (cmd,) = await b.poll(T, 1, WAIT, None, poller=X)
        await b.respond(T, cmd["shard_token"], {"request_id": cmd["request_id"],
                                                "resp_type": "session_termination_response", "resp_code": 405})
        await received(p)
        await b.submit(T, rpc(session=sid))
        got = await b.poll(T, 1, WAIT, None, poller=Y)
    assert len(got) == 1, "after termination the old session id is no longer pinned"


async def test_queue_cap_refuses_with_503(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend, max_queued=2) as b:
        await b.submit(T, rpc())
        await b.submit(T, rpc())
        with pytest.raises(DeliveryError) as err:
            await b.submit(T, rpc())
    assert (err.value.status, err.value.code) == (503, "tunnel_queue_full")


async def test_rate_limiter_admits_a_burst_then_asks_to_wait(make_backend: Callable[..., QueueBackend]) -> None:
    async with broker_on(make_backend) as b:
        waits = [await b.backend.admit("fd:" + T, 1.0, 3) for _ in range(4)]
        other = await b.backend.admit("fd:other", 1.0, 3)
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0.5 < waits[3] <= 1.0
    assert other == 0.0


def test_sync_enqueue_and_deliver_still_work_on_inmem(tmp_path: Path) -> None:
    async def scenario() -> list[dict[str, Any]]:
        b = Broker()
        b.add_tunnel(T)
        p = b.enqueue(T, rpc())
        (cmd,) = await b.poll(T, 1, 1.0, None)
        b.deliver(T, cmd["shard_token"], answer(cmd))
        return await received(p)

    got = anyio.run(scenario)
    assert got[0]["resp_code"] == 200
