"""Fault-injection soak: many commands, random faults, exact accounting, flat resources.

Short form by default (CI); ``SOAK_COMMANDS=50000 pytest -m soak`` for the long form.
Faults injected while traffic flows: poll 503/429 with Retry-After, response POST 503 (retried)
and 404 (treated as done: the caller times out), dropped poll connections, the stdio child
killed mid-stream, and calls slower than their response_timeout.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.support.faulty import STDIO_COMMAND, FaultyService, Session, start_faulty_service
from tests.support.servers import BackgroundLoop
from tests.support.tunnel import start_client

COMMANDS = int(os.environ.get("SOAK_COMMANDS", "1500"))
CONCURRENCY = 24
SEED = int(os.environ.get("SOAK_SEED", "20261125"))

pytestmark = pytest.mark.soak


@pytest.fixture(scope="module")
def soak_service(bg: BackgroundLoop, runtime_key: str) -> Iterator[FaultyService]:
    service = start_faulty_service(bg, runtime_key, response_timeout=6.0)
    yield service
    service.server.stop()


def _facts(health: str) -> dict[str, int]:
    facts: dict[str, int] = httpx2.get(health + "/api/status", timeout=10, trust_env=False).json()["process"]
    return facts


@pytest.mark.timeout(900)
def test_soak_every_command_accounted_for(
    soak_service: FaultyService, mcp_target: Any, runtime_key: str, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    run = start_client(
        service_url=soak_service.base_url, tunnel_id=soak_service.add_tunnel(), runtime_key=runtime_key,
        home=tmp_path, log_level="info",
        args=["--mcp.command", STDIO_COMMAND, "--mcp.server-url", f"channel=web,url={mcp_target.url}",
              "--control-plane.max-inflight", "40", "--mcp.max-concurrent-requests", "16"],
    )
    try:
        run.wait_readyz()
        url = soak_service.mcp_url(run.tunnel_id)
        web_session = Session(soak_service.mcp_url(run.tunnel_id, channel="web"))
        web_session.initialize()

        async def warm_up() -> None:
            # Fill the keep-alive pools at full concurrency so "after" compares like with like.
            async with httpx2.AsyncClient(timeout=30, trust_env=False,
                                          limits=httpx2.Limits(max_connections=CONCURRENCY * 2)) as c:
                async def call(u: str, h: dict[str, str], i: int) -> None:
                    await c.post(u, headers=h, json={"jsonrpc": "2.0", "id": i, "method": "tools/call",
                                                     "params": {"name": "echo", "arguments": {"text": "w"}}})

                plain = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
                await asyncio.gather(*(call(url, plain, i) for i in range(CONCURRENCY * 2)),
                                     *(call(web_session.url, web_session.headers, i) for i in range(CONCURRENCY * 2)))

        asyncio.run(warm_up())
        warm = _facts(run.health_url)

        plan: list[tuple[str, str]] = []  # (kind, channel) per command
        for _ in range(COMMANDS):
            roll = rng.random()
            plan.append(("slow", "main") if roll < 0.02 else ("echo", "web" if roll < 0.5 else "main"))
        outcomes: Counter[str] = Counter()
        wrong: list[str] = []

        async def scenario() -> None:
            limits = httpx2.Limits(max_connections=CONCURRENCY + 4)
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(COMMANDS):
                queue.put_nowait(i)
            async with httpx2.AsyncClient(timeout=30, limits=limits, trust_env=False) as c:
                async def one(i: int) -> None:
                    kind, channel = plan[i]
                    rpc_id = f"soak-{i}"
                    if kind == "slow":
                        target = soak_service.mcp_url(run.tunnel_id, response_timeout="1s")
                        params = {"name": "block", "arguments": {"key": f"never-{i}"}}
                    else:
                        target = url if channel == "main" else web_session.url
                        params = {"name": "echo", "arguments": {"text": f"v{i}"}}
                    headers = web_session.headers if channel == "web" else {
                        "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
                    r = await c.post(target, json={"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call",
                                                   "params": params}, headers=headers)
                    if r.status_code == 200:
                        body = r.json()
                        text = body.get("result", {}).get("content", [{}])[0].get("text")
                        if body.get("id") != rpc_id or text != f"v{i}":
                            wrong.append(f"{rpc_id}: {r.text[:200]}")
                        outcomes["ok"] += 1
                    elif r.status_code == 504:
                        outcomes["timed_out"] += 1
                    elif r.status_code == 502 and r.json()["error"]["data"]["tunnel_failure"]["source"] in (
                            "transport_closed", "connect"):
                        outcomes["child_failure"] += 1
                    else:
                        wrong.append(f"{rpc_id}: HTTP {r.status_code} {r.text[:200]}")

                async def worker() -> None:
                    while not queue.empty():
                        await one(queue.get_nowait())

                async def chaos() -> None:
                    faults = [("poll", 503, "1"), ("poll", 429, "1"), ("response", 503, None),
                              ("response", 404, None), ("poll", 0, None), ("kill", 0, None)]
                    while not queue.empty():
                        route, status, retry = rng.choice(faults)
                        if route == "kill":
                            status_json = (await c.get(run.health_url + "/api/status")).json()
                            main = next(ch for ch in status_json["channels"] if ch["name"] == "main")
                            pid = {d["key"]: d["value"] for d in main["details"]}.get("pid")
                            if pid:
                                os.kill(int(pid), signal.SIGKILL)
                                outcomes["kills"] += 1
                        elif status == 0:
                            soak_service.fault("poll", drop=True)
                        else:
                            soak_service.fault(route, status=status, retry_after=retry)
                        outcomes[f"fault_{route}_{status}"] += 1
                        await asyncio.sleep(rng.uniform(0.5, 2.0))  # pacing of injected faults, not a sync point

                await asyncio.gather(chaos(), *(worker() for _ in range(CONCURRENCY)))
                # Under load the client's backoff consumes faults slower than chaos() adds them; what is
                # left over belongs to no traffic and would only delay the readiness check below.
                soak_service.clear_faults()

        asyncio.run(scenario())
        assert not wrong, wrong[:5]
        assert outcomes["ok"] + outcomes["timed_out"] + outcomes["child_failure"] == COMMANDS
        # Timeouts come from 404-faulted responses, slow calls and poll stalls; most calls still succeed.
        assert outcomes["ok"] >= COMMANDS * 0.6, outcomes
        assert outcomes["kills"] > 0, "the stdio child was never killed: the soak did not cover that fault"
        # No duplicate terminal response: every accepted (unfaulted) terminal POST names a distinct request.
        terminal = Counter(
            r["body"]["request_id"] for r in soak_service.records(run.tunnel_id, "response")
            if "fault" not in r and (r["body"] or {}).get("resp_type") != "jsonrpc_notify"
        )
        duplicates = [k for k, n in terminal.items() if n > 1]
        assert not duplicates, duplicates[:5]
        # Slow calls beyond their deadline never produce a response POST.
        slow_posts = [r for r in soak_service.records(run.tunnel_id, "response")
                      if "never-" in str((r["body"] or {}).get("resp_json"))]
        assert not slow_posts
        # Resources are flat once the traffic is over (bounded growth).
        run.wait_readyz(timeout=30)
        after = _facts(run.health_url)
        assert after["asyncio_tasks"] <= warm["asyncio_tasks"] + 5, (warm, after)
        assert after["open_fds"] <= warm["open_fds"] + 16, (warm, after)
        assert after["rss_bytes"] <= warm["rss_bytes"] + 40 * 2**20, (warm, after)
        print(f"soak: {COMMANDS} commands, outcomes {dict(outcomes)}, resources {warm} -> {after}")
    finally:
        run.proc.kill()
    assert runtime_key not in run.proc.output()
