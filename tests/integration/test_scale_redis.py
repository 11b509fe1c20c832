"""Several tunnel-service instances on one Redis, several clients per tunnel: real processes only.

Every instance is a ``tunnel-client dev tunnel-service --engine-queue-backend redis`` subprocess,
every client a ``tunnel-client run`` subprocess, and Redis a real ``redis-server`` on a free
loopback port started by the fixture.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from tests.support import frontdoor as fd
from tests.support.faulty import STDIO_COMMAND, Session, result_text
from tests.support.redis_helpers import (
    RedisServer,
    ServiceProc,
    jsonl,
    metric,
    running_redis,
    start_service,
    wait_for,
)
from tests.support.targets import MCPTarget
from tests.support.tunnel import ClientRun, new_tunnel_id, start_client
from tunnel_core.devservice.backends.redis import UP_TTL

WAIT = 15.0


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


class Fleet:
    """Service instances and clients of one test; all stopped at teardown."""

    def __init__(self, redis: RedisServer, runtime_key: str, home: Path) -> None:
        self.redis, self.key, self.home = redis, runtime_key, home
        self.tunnel = new_tunnel_id()
        self.services: list[ServiceProc] = []
        self.clients: list[ClientRun] = []

    def service(self, response_timeout: str = "10s") -> ServiceProc:
        svc = start_service(redis_url=self.redis.url, tunnels=[self.tunnel], runtime_key=self.key, home=self.home,
                            response_timeout=response_timeout)
        self.services.append(svc)
        return svc

    def client(self, svc: ServiceProc, *args: str, env: dict[str, str] | None = None) -> ClientRun:
        run = start_client(service_url=svc.base_url, tunnel_id=self.tunnel, runtime_key=self.key,
                           home=self.home, args=list(args), extra_env=env)
        self.clients.append(run)
        return run

    def stop(self) -> None:
        for run in self.clients:
            run.proc.kill()
        for svc in self.services:
            svc.proc.kill()
        for p in [*self.clients, *self.services]:
            assert self.key not in p.proc.output(), "the runtime key appeared in a process's output"


@pytest.fixture
def fleet(redis_server: RedisServer, runtime_key: str, tmp_path: Path) -> Iterator[Fleet]:
    redis_server.client().flushall()
    f = Fleet(redis_server, runtime_key, tmp_path)
    yield f
    f.stop()


def stdio_args(log: Path) -> tuple[list[str], dict[str, str]]:
    return ["--mcp.command", STDIO_COMMAND], {"STDIO_TEST_LOG": str(log)}


def executed_calls(log: Path) -> list[Any]:
    """The tools/call messages a stdio child received (its STDIO_TEST_LOG)."""
    return [m for m in jsonl(log) if m.get("method") == "tools/call"]


def child_pid(run: ClientRun) -> int:
    status = run.get("/api/status").json()
    details = {d["key"]: d["value"] for d in status["channels"][0]["details"]}
    return int(details["pid"])


# ---- 1 + 2: a call on instance A answered through a client polling instance B ---------------------


def test_call_on_one_instance_is_answered_by_a_client_on_another_with_sse_progress_relayed_live(
    fleet: Fleet, mcp_target: MCPTarget,
) -> None:
    a, b = fleet.service(), fleet.service()
    run = fleet.client(b, "--mcp.server-url", mcp_target.url)
    run.wait_readyz()
    url = a.mcp_url(fleet.tunnel)
    gate = "gate-" + secrets.token_hex(4)
    call = fd.request("tools/call", {"name": "progress", "arguments": {"steps": 2, "gate": gate},
                                     "_meta": {"progressToken": "tok-ab"}})
    received: list[Any] = []

    async def scenario() -> None:
        async with fd.http_client() as client:
            with anyio.fail_after(WAIT):
                session = await fd.open_session(client, url)
                headers = {"Content-Type": "application/json", "Accept": fd.ACCEPT_BOTH, **session}
                async with client.stream("POST", url, json=call, headers=headers) as resp:
                    assert resp.status_code == 200
                    assert resp.headers["content-type"].startswith("text/event-stream")
                    async for event in httpx2.EventSource(resp):
                        received.append(event.json())
                        if len(received) == 1:
                            # Parked at the gate: the notification crossed B -> Redis -> A while the tool ran.
                            assert received[0]["method"] == "notifications/progress"
                            mcp_target.open_gate(gate)

    asyncio.run(scenario())
    assert [m.get("method", "result") for m in received] == [
        "notifications/progress", "notifications/progress", "result"]
    assert [m["params"]["progressToken"] for m in received[:2]] == ["tok-ab", "tok-ab"]
    assert received[-1]["id"] == call["id"] and "done after 2 steps" in str(received[-1]["result"])
    # The caller only talked to A and the client only to B: the answer crossed instances.
    assert not a.records("poll") and not a.records("response")
    assert not b.records("front_door")
    assert len(b.records("response")) >= 3  # two notifications and the terminal answer


def test_two_clients_on_two_instances_share_the_work_and_each_call_is_answered_exactly_once(
    fleet: Fleet, mcp_target: MCPTarget,
) -> None:
    a, b = fleet.service(), fleet.service()
    c1 = fleet.client(a, "--mcp.server-url", mcp_target.url)
    c2 = fleet.client(b, "--mcp.server-url", mcp_target.url)
    c1.wait_readyz()
    c2.wait_readyz()
    s = Session(a.mcp_url(fleet.tunnel))
    s.initialize()
    total = 120

    async def scenario() -> list[Any]:
        async with httpx2.AsyncClient(timeout=30, trust_env=False) as c:
            async def call(i: int) -> Any:
                door = (a if i % 2 else b).mcp_url(fleet.tunnel)  # callers on both instances
                r = await c.post(door, json={"jsonrpc": "2.0", "id": 5000 + i, "method": "tools/call",
                                             "params": {"name": "echo", "arguments": {"text": f"x{i}"}}},
                                 headers=s.headers)
                return r.status_code, r.json()

            return await asyncio.gather(*(call(i) for i in range(total)))

    answers = asyncio.run(scenario())
    assert all(code == 200 for code, _ in answers)
    assert [body["id"] for _, body in answers] == [5000 + i for i in range(total)]
    assert [body["result"]["content"][0]["text"] for _, body in answers] == [f"x{i}" for i in range(total)]
    handled = [metric(run.get("/metrics").text, "commands_enqueued_total") for run in (c1, c2)]
    assert all(h > 0 for h in handled), f"both clients should take work, got {handled}"
    terminal = Counter(
        r["body"]["resp_json"]["id"] for svc in (a, b) for r in svc.records("response")
        if r["body"]["resp_type"] == "jsonrpc_response" and isinstance(r["body"]["resp_json"].get("id"), int)
        and r["body"]["resp_json"]["id"] >= 5000)
    assert sorted(terminal) == [5000 + i for i in range(total)], "a call was never answered"
    assert set(terminal.values()) == {1}, "a call was answered (so executed) twice"


# ---- 3: stdio session affinity ---------------------------------------------------------------------


def test_stdio_session_work_stays_on_the_client_process_that_initialized_it(fleet: Fleet) -> None:
    a, b = fleet.service(), fleet.service()
    one = ["--control-plane.max-inflight", "1"]  # one command at a time: idle clients take the rest
    c1 = fleet.client(a, "--mcp.command", STDIO_COMMAND, *one)
    c2 = fleet.client(b, "--mcp.command", STDIO_COMMAND, *one)
    c1.wait_readyz()
    c2.wait_readyz()
    pids = {child_pid(c1), child_pid(c2)}
    assert len(pids) == 2

    def pid_calls(headers: dict[str, str], n: int) -> list[int]:
        async def scenario() -> list[int]:
            async with httpx2.AsyncClient(timeout=30, trust_env=False) as c:
                async def call(i: int) -> int:
                    door = (a if i % 2 else b).mcp_url(fleet.tunnel)
                    r = await c.post(door, json={"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                                 "params": {"name": "pid", "arguments": {}}}, headers=headers)
                    assert r.status_code == 200, r.text
                    return int(r.json()["result"]["content"][0]["text"])

                return await asyncio.gather(*(call(i) for i in range(n)))

        return asyncio.run(scenario())

    plain = {"Accept": "application/json", "Content-Type": "application/json"}
    # Without a session both clients take work, so the pinning below is not luck.
    wait_for(lambda: set(pid_calls(plain, 30)) == pids, "sessionless work on both clients")
    s = Session(b.mcp_url(fleet.tunnel), sse=False)
    s.initialize()
    sid = s.headers.get("Mcp-Session-Id", "")
    assert sid.startswith("tsess_"), "a stdio initialize gets a session id minted by the service"
    owner_pids = pid_calls({**plain, "Mcp-Session-Id": sid}, 40)
    assert len(set(owner_pids)) == 1 and owner_pids[0] in pids, f"session work spread over {set(owner_pids)}"
    again = s.client.delete(a.mcp_url(fleet.tunnel), headers={"Mcp-Session-Id": sid})
    assert again.status_code == 405  # stdio has no session to end; it reached the owner all the same


# ---- 1: restart mid-queue, response_timeout --------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_instance_stopped_mid_queue_loses_no_command(fleet: Fleet, sig: signal.Signals) -> None:
    a, b = fleet.service(), fleet.service()
    texts = [f"queued-{sig.name}-{i}" for i in range(6)]
    lane = f"tc:t:{fleet.tunnel}:q:main"
    r = fleet.redis.client()

    def call(text: str) -> str:
        try:
            resp = httpx2.post(a.mcp_url(fleet.tunnel, response_timeout="60s"), timeout=WAIT, trust_env=False,
                               json={"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                     "params": {"name": "echo", "arguments": {"text": text}}},
                               headers={"Accept": "application/json"})
        except httpx2.HTTPError as exc:
            return type(exc).__name__
        return f"HTTP {resp.status_code}"

    with ThreadPoolExecutor(len(texts)) as pool:
        callers = [pool.submit(call, t) for t in texts]
        wait_for(lambda: r.xlen(lane) == len(texts), "every command to be queued in Redis")
        os.killpg(a.proc.pid, sig)  # no client polls yet: all six are queued
        a.proc.wait(WAIT)
        outcomes = [c.result(timeout=WAIT) for c in callers]
    # The callers were connected to A: they lose their connection (SIGKILL) or get no answer (SIGTERM).
    assert not any(o == "HTTP 200" for o in outcomes), outcomes
    log = fleet.home / "stdio-restart.log"
    args, env = stdio_args(log)
    run = fleet.client(b, *args, env=env)
    run.wait_readyz()
    wait_for(lambda: len(executed_calls(log)) >= len(texts), "the queued commands to be executed")
    got = Counter(m["params"]["arguments"]["text"] for m in executed_calls(log))
    assert got == Counter(texts), "every queued command executed exactly once"
    # Their callers are gone: the answers are refused with 404 and the client drops them. After a SIGKILL
    # the instance counts as re-subscribing until its liveness key lapses (UP_TTL): 503, retried, then 404.
    def refused() -> list[dict[str, Any]]:
        return [x for x in run.proc.log_records()
                if x.get("msg") == "response not accepted: request already fulfilled or unknown"]

    wait_for(lambda: len(refused()) >= len(texts), "the answers to be refused", timeout=WAIT + UP_TTL)
    assert {x.get("status_code") for x in refused()} == {404}
    # The tunnel keeps serving through the surviving instance.
    fresh = Session(b.mcp_url(fleet.tunnel), sse=False)
    assert result_text(fresh.call("echo", {"text": "after restart"})) == "after restart"


def test_response_timeout_is_enforced_while_queued_across_instances(fleet: Fleet) -> None:
    a, b = fleet.service(), fleet.service()
    r = httpx2.post(a.mcp_url(fleet.tunnel, response_timeout="1s"), timeout=WAIT, trust_env=False,
                    json={"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {"text": "too-late"}}},
                    headers={"Accept": "application/json"})
    assert r.status_code == 504 and r.json()["id"] == 9  # nobody polled within 1 s (+1 s slack)
    log = fleet.home / "stdio-timeout.log"
    args, env = stdio_args(log)
    run = fleet.client(b, *args, env=env)
    run.wait_readyz()
    s = Session(a.mcp_url(fleet.tunnel), sse=False)
    assert result_text(s.call("echo", {"text": "in-time"})) == "in-time"
    assert [m["params"]["arguments"]["text"] for m in executed_calls(log)] == ["in-time"], \
        "an expired command was handed to the client"
