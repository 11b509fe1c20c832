"""Hostile clients against real ``tunnel-client serve`` processes (and a real redis-server): bounds.

Junk channels create no state (Redis DBSIZE and service RSS stay flat over 10,000 requests);
oversized and numerous headers get 431 without being buffered; slow heads, slow bodies and
silent connections are closed; ``--max-connections`` never starves ``/healthz``; deep JSON gets
400; a caller that disconnects withdraws its queued command (both backends); answers in flight
survive a Redis restart, and callers' credentials never reach Redis's files in clear text; the
per-caller rate limit. Every wait is capped; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil
import pytest

from tests.support import frontdoor as fd
from tests.support.faulty import Session, result_text
from tests.support.proc import TUNNEL_CLIENT, WAIT, Proc, base_env
from tests.support.redis_helpers import RedisServer, metric, running_redis, wait_for
from tests.support.targets import MCPTarget
from tests.support.tunnel import ClientRun, new_tunnel_id, start_client

QUEUE_KEY = "qk_" + "k" * 40
CALLER = "ct_" + "c" * 40  # the front door's caller token in these tests (the attacks come from a valid caller)
TOKEN = {"X-Tunnel-Caller-Token": CALLER}
JUNK = 10_000


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis(tmp_path_factory.mktemp("redis"), appendonly=True) as server:
        yield server


@dataclass
class Serve:
    proc: Proc
    base: str
    tunnel: str

    @property
    def hostport(self) -> tuple[str, int]:
        host, port = self.base.split("://", 1)[1].rsplit(":", 1)
        return host, int(port)

    def mcp_url(self, channel: str = "") -> str:
        return f"{self.base}/v1/mcp/{self.tunnel}" + (f"?channel={channel}" if channel else "")

    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def metrics(self) -> str:
        return httpx2.get(self.base + "/metrics", timeout=WAIT, trust_env=False).text


@contextlib.contextmanager
def serving(home: Path, runtime_key: str, *args: str, redis: RedisServer | None = None,
            env: dict[str, str] | None = None) -> Iterator[Serve]:
    tunnel = new_tunnel_id()
    engine = ["--engine-queue-backend", "redis", "--engine-redis-url", redis.url] if redis else []
    auth = [] if any(a.startswith("--front-door-auth") or a == "--caller-token" for a in args) else [
        "--caller-token", f"{tunnel}=env:CALLER_TOKEN"]
    proc = Proc([TUNNEL_CLIENT, "serve", "--listen", "127.0.0.1:0", "--tunnel-id", tunnel, *auth, *engine,
                 *[a.replace("{tunnel}", tunnel) for a in args]],
                base_env(home, CONTROL_PLANE_API_KEY=runtime_key, TUNNEL_ENGINE_ENCRYPTION_KEY=QUEUE_KEY,
                         CALLER_TOKEN=CALLER, **(env or {})))
    try:
        base = proc.wait_stdout(r"Tunnel service: (\S+)").group(1)
        yield Serve(proc, base, tunnel)
    finally:
        proc.kill()
    out = proc.output()
    assert runtime_key not in out and QUEUE_KEY not in out and CALLER not in out


@contextlib.contextmanager
def relay(svc: Serve, runtime_key: str, home: Path, mcp_target: MCPTarget) -> Iterator[ClientRun]:
    run = start_client(service_url=svc.base, tunnel_id=svc.tunnel, runtime_key=runtime_key, home=home,
                       args=["--mcp.server-url", mcp_target.url])
    try:
        run.wait_readyz()
        yield run
    finally:
        run.proc.kill()


# ---- raw sockets ----------------------------------------------------------------------------------


def connect(svc: Serve) -> socket.socket:
    s = socket.create_connection(svc.hostport, timeout=WAIT)
    return s


def answer_of(s: socket.socket, cap: float = WAIT) -> bytes:
    """Everything the server sends until it closes (or until an answer head and ``cap`` pass)."""
    s.settimeout(cap)
    got = b""
    with contextlib.suppress(OSError):  # a reset after the answer is fine: the answer is what counts
        while chunk := s.recv(65536):
            got += chunk
    return got


def send_until_answered(s: socket.socket, data: bytes) -> bytes:
    """Send ``data`` in chunks, stopping as soon as the server answers; then the answer."""
    for i in range(0, len(data), 65536):
        if select.select([s], [], [], 0)[0]:
            break
        try:
            s.sendall(data[i:i + 65536])
        except OSError:
            break
    return answer_of(s)


def request_bytes(path: str, body: bytes = b"", headers: list[tuple[str, str]] | None = None,
                  method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: hostile", f"Content-Length: {len(body)}",
             "Content-Type: application/json", "Accept: application/json", f"X-Tunnel-Caller-Token: {CALLER}",
             *[f"{k}: {v}" for k, v in headers or []]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def closed_within(s: socket.socket, cap: float) -> float | None:
    """Seconds until the server closed ``s`` (reading and dropping what it sends), None if not within ``cap``."""
    t0 = time.monotonic()
    s.settimeout(cap)
    try:
        while s.recv(4096):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - t0


CALL = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": "echo", "arguments": {"text": "x"}}}).encode()


# ---- 1. junk channels ----------------------------------------------------------------------------


async def _junk(url: str, n: int) -> Counter[str]:
    import aiohttp

    codes: Counter[str] = Counter()
    headers = {"Content-Type": "application/json", "Accept": "application/json", **TOKEN}
    async with aiohttp.ClientSession() as http:

        async def worker(k: int) -> None:
            for i in range(k, n, 32):
                async with http.post(f"{url}?channel=junk-{i}", data=CALL, headers=headers) as r:
                    body = await r.json()
                    codes[f"{r.status} {body['error']['code']}"] += 1

        with anyio.fail_after(240):
            await asyncio.gather(*(worker(k) for k in range(32)))
    return codes


@pytest.mark.parametrize("backend", ["inmem", "redis"])
def test_junk_channels_create_no_state(backend: str, redis_server: RedisServer, runtime_key: str,
                                       mcp_target: MCPTarget, tmp_path: Path) -> None:
    redis_server.client().flushall()
    r = redis_server.client()
    with serving(tmp_path, runtime_key, redis=redis_server if backend == "redis" else None) as svc, \
            relay(svc, runtime_key, tmp_path, mcp_target):
        s = Session(svc.mcp_url())
        s.client.headers.update(TOKEN)
        s.initialize()
        assert result_text(s.call("echo", {"text": "hello"})) == "hello"  # lanes, limiter and liveness keys exist now
        warm = asyncio.run(_junk(svc.mcp_url(), 500))  # the allocator's steady state, before measuring
        keys_before, rss_before = set(r.keys("*")), svc.rss()
        codes = asyncio.run(_junk(svc.mcp_url(), JUNK))
        keys_after, rss_after = set(r.keys("*")), svc.rss()
        malformed = httpx2.post(svc.mcp_url("..%2F..%2Fx"), content=CALL, trust_env=False, timeout=WAIT,
                                headers={"Content-Type": "application/json", **TOKEN})
        unknown_tunnel = httpx2.post(f"{svc.base}/v1/mcp/{new_tunnel_id()}", content=CALL, trust_env=False,
                                     timeout=WAIT, headers={"Content-Type": "application/json", **TOKEN})
        assert result_text(s.call("echo", {"text": "still"})) == "still"
        pending = metric(svc.metrics(), "tunnel_service_pending_callers")
    assert warm == Counter({"400 unknown_channel": 500})
    assert codes == Counter({"400 unknown_channel": JUNK})
    assert (malformed.status_code, malformed.json()["error"]["code"]) == (400, "invalid_channel")
    assert unknown_tunnel.status_code in (401, 404)  # the token opens only its own tunnel
    assert not {k for k in keys_after - keys_before if "junk" in k or ":q:" in k or "req:" in k}, \
        "junk requests left keys in Redis"
    assert len(keys_after) <= len(keys_before) + 1  # +1: a liveness key may be refreshed under a new TTL
    assert pending == 0
    # Before: 10,000 junk channels took the service from 69 to 129 MiB and Redis to 10,295 keys.
    assert rss_after - rss_before < 16 * 2**20, f"RSS grew by {(rss_after - rss_before) >> 20} MiB"


def test_unknown_tunnels_get_no_rate_limiter_state(redis_server: RedisServer, runtime_key: str,
                                                    tmp_path: Path) -> None:
    redis_server.client().flushall()
    # A slow rate with a large burst: each limiter key lives ~100 s, so any key created is still there.
    with serving(tmp_path, runtime_key, "--rate-limit", "0.01", "--rate-limit-burst", "1000",
                 redis=redis_server) as svc:
        http = httpx2.Client(timeout=WAIT, trust_env=False, headers={"Content-Type": "application/json", **TOKEN})
        codes = Counter(http.post(f"{svc.base}/v1/mcp/{new_tunnel_id()}", content=CALL).status_code
                        for _ in range(200))
        limited = http.post(svc.mcp_url("nope"), content=CALL)  # a served tunnel is charged, junk channel or not
        keys = redis_server.client().keys("tc:rl:*")
    assert set(codes) <= {401, 404} and sum(codes.values()) == 200
    assert limited.status_code == 400
    assert keys == [f"tc:rl:front_door:{svc.tunnel}"]


# ---- 2. oversized and numerous headers -----------------------------------------------------------


def test_oversized_and_numerous_headers_get_431_without_being_buffered(runtime_key: str, tmp_path: Path) -> None:
    with serving(tmp_path, runtime_key, "--max-header-size", "16KiB", "--max-headers", "50") as svc:
        path = f"/v1/mcp/{svc.tunnel}"
        rss_before = svc.rss()
        huge = send_until_answered(connect(svc), request_bytes(path, CALL, [("X-Big", "a" * (8 << 20))]))
        many = send_until_answered(connect(svc), request_bytes(path, CALL, [(f"X-H{i}", "v") for i in range(20_000)]))
        just_over = send_until_answered(connect(svc), request_bytes(path, CALL, [(f"X-H{i}", "v") for i in range(51)]))
        rss_after = svc.rss()
        # Within the limits a request passes the guard (and reaches the app).
        within = answer_of(_sent(connect(svc), request_bytes("/healthz", method="GET", headers=[
            ("X-Pad", "p" * 12_000), *[(f"X-H{i}", "v") for i in range(40)], ("Connection", "close")])))
        text = svc.metrics()
    assert status_of(huge) == 431 and status_of(many) == 431 and status_of(just_over) == 431
    assert status_of(within) == 200
    assert rss_after - rss_before < 8 * 2**20, "an 8 MiB header was buffered"
    assert metric(text, 'tunnel_service_connections_refused_total{reason="head_too_large"}') >= 1
    assert metric(text, 'tunnel_service_connections_refused_total{reason="too_many_headers"}') >= 2


def _sent(s: socket.socket, data: bytes) -> socket.socket:
    s.sendall(data)
    return s


# ---- 3. slow heads, slow bodies, silent and idle connections --------------------------------------


def test_slow_heads_slow_bodies_silent_and_idle_connections_are_closed(runtime_key: str, tmp_path: Path) -> None:
    with serving(tmp_path, runtime_key, "--header-timeout", "1s", "--body-timeout", "1s",
                 "--idle-timeout", "1s") as svc:
        path = f"/v1/mcp/{svc.tunnel}"
        heads = [_sent(connect(svc), f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode()) for _ in range(40)]
        bodies = [_sent(connect(svc), request_bytes(path).replace(b"Content-Length: 0", b"Content-Length: 1000")
                        + b'{"jsonrpc"') for _ in range(20)]
        silent = [connect(svc) for _ in range(20)]
        idle = _sent(connect(svc), request_bytes("/healthz", method="GET"))
        # A slowloris drips: a byte now and then must not keep the connection open.
        for s in heads[:5] + bodies[:5]:
            s.sendall(b"a")
        # Every one of them is closed by the server (the cap is far above the 1 s timeouts).
        slow_head = [closed_within(s, WAIT) for s in heads]
        slow_body = [closed_within(s, WAIT) for s in bodies]
        quiet = [closed_within(s, WAIT) for s in silent]
        idle_answer = answer_of(idle)
        text = svc.metrics()
    assert None not in slow_head and None not in slow_body and None not in quiet
    assert status_of(idle_answer) == 200, "a kept-alive connection is answered, then closed when idle"
    assert metric(text, 'tunnel_service_connections_refused_total{reason="head_timeout"}') >= 60
    assert metric(text, 'tunnel_service_connections_refused_total{reason="body_timeout"}') >= 20


def test_a_partial_head_gets_408_before_the_connection_closes(runtime_key: str, tmp_path: Path) -> None:
    with serving(tmp_path, runtime_key, "--header-timeout", "1s") as svc:
        got = answer_of(_sent(connect(svc), b"GET /healthz HTTP/1.1\r\nHost: x\r\n"))
    assert status_of(got) == 408


# ---- 4. --max-connections never starves /healthz --------------------------------------------------


def test_max_connections_spares_health_endpoints_and_refuses_only_connections_beyond_it(
    runtime_key: str, tmp_path: Path,
) -> None:
    with serving(tmp_path, runtime_key, "--max-connections", "5", "--header-timeout", "60s") as svc:
        first = _sent(connect(svc), request_bytes("/readyz", method="GET"))  # within the limit, kept alive
        assert status_of(answer_of_head(first)) == 200
        # An attacker's idle connections fill the limit (accepted in order, before the requests below).
        idle = [connect(svc) for _ in range(8)]
        health = httpx2.get(svc.base + "/healthz", timeout=WAIT, trust_env=False)
        ready = httpx2.get(svc.base + "/readyz", timeout=WAIT, trust_env=False)
        refused = httpx2.post(svc.mcp_url(), content=CALL, timeout=WAIT, trust_env=False,
                              headers={"Content-Type": "application/json", **TOKEN})
        # The connection accepted before the flood keeps being served.
        first.sendall(request_bytes("/readyz", method="GET"))
        still = answer_of_head(first)
        # Beyond the health reserve (5 + 16) a connection is closed at once: with 9 open, the last 8 of 20.
        flood = [connect(svc) for _ in range(20)]
        cut = [closed_within(s, WAIT) for s in flood[-5:]]
        for s in [first, *idle, *flood]:
            s.close()
    assert health.status_code == 200 and ready.status_code == 200
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "too_many_connections"
    assert refused.headers["connection"] == "close" and refused.headers["retry-after"] == "1"
    assert status_of(still) == 200
    assert None not in cut


def answer_of_head(s: socket.socket) -> bytes:
    """One whole answer on a kept-alive connection (head, then a Content-Length body)."""
    s.settimeout(WAIT)
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = s.recv(4096)
        if not chunk:
            return got
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


# ---- 5. deep JSON ----------------------------------------------------------------------------------


def test_deep_json_gets_400_not_500(runtime_key: str, tmp_path: Path) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    params_deep = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' + b'{"a":' * 65 + b"1" + \
        b"}" * 65 + b"}"
    with serving(tmp_path, runtime_key, "--response-timeout", "1s") as svc:
        http = httpx2.Client(timeout=WAIT, trust_env=False, headers={"Content-Type": "application/json", **TOKEN})
        answers = [http.post(svc.mcp_url(), content=body) for body in (deep, params_deep)]
        runtime = http.post(f"{svc.base}/v1/tunnels/{svc.tunnel}/response", content=deep,
                            headers={"Authorization": f"Bearer {runtime_key}", "X-Tunnel-Shard-Token": "x"})
        shallow = http.post(svc.mcp_url(), content=params_deep.replace(b'{"a":' * 65, b'{"a":' * 60)
                            .replace(b"}" * 65, b"}" * 60))
    for a in answers:
        assert (a.status_code, a.json()["error"]["code"]) == (400, "invalid_json_payload"), a.text
    assert "deeper than 64" in answers[1].json()["error"]["message"]
    assert (runtime.status_code, runtime.json()["error"]["code"]) == (400, "invalid_json_payload")
    assert shallow.status_code == 504  # accepted and queued; no client polls this tunnel


# ---- 6. a caller that disconnects withdraws its command ---------------------------------------------


def _poll(svc: Serve, key: str) -> httpx2.Response:
    return httpx2.get(f"{svc.base}/v1/tunnels/{svc.tunnel}/poll?limit=25&timeout_ms=300", timeout=WAIT,
                      trust_env=False, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("backend", ["inmem", "redis"])
def test_a_caller_that_leaves_withdraws_its_command_but_a_taken_command_keeps_its_deadline(
    backend: str, redis_server: RedisServer, runtime_key: str, tmp_path: Path,
) -> None:
    redis_server.client().flushall()
    with serving(tmp_path, runtime_key, redis=redis_server if backend == "redis" else None) as svc:
        def depth() -> float:
            return metric(svc.metrics(), "tunnel_service_queue_depth")

        caller = _sent(connect(svc), request_bytes(f"/v1/mcp/{svc.tunnel}", CALL))
        wait_for(lambda: depth() == 1, "the call to be queued")
        caller.close()  # the caller gives up before any client polled
        wait_for(lambda: depth() == 0, "the command to be withdrawn")
        after_leaving = _poll(svc, runtime_key)

        caller = _sent(connect(svc), request_bytes(f"/v1/mcp/{svc.tunnel}", CALL))
        wait_for(lambda: depth() == 1, "the second call to be queued")
        taken = _poll(svc, runtime_key)  # a client takes it: from now on its deadline stands
        caller.close()
        wait_for(lambda: metric(svc.metrics(), "tunnel_service_pending_callers") == 0, "the caller to be gone")
        (cmd,) = taken.json()["commands"]
        answer = httpx2.post(f"{svc.base}/v1/tunnels/{svc.tunnel}/response", timeout=WAIT, trust_env=False,
                             headers={"Authorization": f"Bearer {runtime_key}",
                                      "X-Tunnel-Shard-Token": cmd["shard_token"]},
                             json={"request_id": cmd["request_id"], "resp_type": "jsonrpc_response",
                                   "resp_code": 200, "resp_json": {"jsonrpc": "2.0", "id": 1, "result": {}}})
    assert after_leaving.status_code == 204, "a withdrawn command was handed out"
    assert cmd["jsonrpc"]["method"] == "tools/call"
    assert (answer.status_code, answer.json()["error"]["code"]) == (404, "pending_request_not_found")


# ---- 7. answers survive a Redis restart; credentials never on disk in clear -------------------------


def test_calls_in_flight_across_a_redis_restart_are_each_answered_once(
    redis_server: RedisServer, runtime_key: str, mcp_target: MCPTarget, tmp_path: Path,
) -> None:
    redis_server.client().flushall()
    secret = "caller-token-" + "t" * 24
    gate = "redis-restart"
    n = 8
    with serving(tmp_path, runtime_key, redis=redis_server) as svc, \
            relay(svc, runtime_key, tmp_path, mcp_target) as run:
        url = svc.mcp_url()
        finals: dict[int, list[Any]] = {}
        during: list[httpx2.Response] = []

        async def one(client: httpx2.AsyncClient, i: int, headers: dict[str, str], in_tool: anyio.Event) -> None:
            call = fd.request("tools/call", {"name": "progress", "arguments": {"steps": 1, "gate": gate},
                                             "_meta": {"progressToken": f"t{i}"}}, rpc_id=i)
            async with client.stream("POST", url, json=call, headers=headers) as resp:
                assert resp.status_code == 200
                async for event in httpx2.EventSource(resp):
                    msg = event.json()
                    if msg.get("method") == "notifications/progress":
                        in_tool.set()
                    else:
                        finals.setdefault(i, []).append(msg)

        async def scenario() -> None:
            async with fd.http_client() as client:
                client.headers.update(TOKEN)
                session = await fd.open_session(client, url)
                headers = {"Content-Type": "application/json", "Accept": fd.ACCEPT_BOTH,
                           "Authorization": f"Bearer {secret}", **session}
                with anyio.fail_after(60):
                    async with anyio.create_task_group() as tg:
                        parked = [anyio.Event() for _ in range(n)]
                        for i in range(n):
                            tg.start_soon(one, client, i, headers, parked[i])
                        for e in parked:
                            await e.wait()  # every call is inside the tool: taken, its answer not yet posted
                        await anyio.to_thread.run_sync(redis_server.kill)
                        mcp_target.open_gate(gate)  # the tools finish while Redis is down
                        await anyio.to_thread.run_sync(lambda: wait_for(
                            lambda: retried(run) >= n, "every answer to fail at least once", timeout=WAIT))
                        during.append(await client.post(url, json=fd.request("tools/call", {
                            "name": "echo", "arguments": {"text": "while down"}}), headers=headers))
                        await anyio.to_thread.run_sync(redis_server.start)

        asyncio.run(scenario())
        aof = b"".join(p.read_bytes() for p in redis_server.workdir.rglob("*") if p.is_file())
    assert sorted(finals) == list(range(n)), "a call was not answered"
    assert all(len(v) == 1 and v[0]["id"] == i and "done after 1 steps" in str(v[0]["result"])
               for i, v in finals.items()), finals
    assert during[0].status_code == 503
    assert during[0].json()["error"]["code"] == "tunnel_transport_unavailable"
    assert b"req_" in aof, "the commands were not in Redis's append-only file at all"
    assert secret.encode() not in aof, "a caller's credential reached Redis's files in clear text"


def retried(run: ClientRun) -> int:
    return sum(1 for x in run.proc.log_records() if x.get("msg") == "retrying response post")


# ---- 8. per-caller rate limit ------------------------------------------------------------------------


def test_the_caller_rate_limit_charges_each_valid_token_or_else_each_address(
    runtime_key: str, tmp_path: Path,
) -> None:
    other = "ct_" + "o" * 40
    limit = ("--caller-rate-limit", "0.5", "--caller-rate-limit-burst", "3", "--response-timeout", "1s")
    with serving(tmp_path, runtime_key, *limit, "--caller-token", "{tunnel}=env:CALLER_TOKEN",
                 "--caller-token", "{tunnel}=env:OTHER", env={"OTHER": other}) as svc:
        http = httpx2.Client(timeout=WAIT, trust_env=False, headers={"Content-Type": "application/json"})

        def with_token(token: str) -> int:
            return http.post(svc.mcp_url(), content=b"[]", headers={"X-Tunnel-Caller-Token": token}).status_code

        a = [with_token(CALLER) for _ in range(5)]
        b = [with_token(other) for _ in range(3)]  # same address, its own token: its own budget
        made_up = [with_token(f"ct_made_up_{i}") for i in range(3)]  # invalid tokens: charged to the address
        health = [http.get(svc.base + "/healthz").status_code for _ in range(5)]
        polls = [http.get(f"{svc.base}/v1/tunnels/{svc.tunnel}/poll?timeout_ms=1",
                          headers={"Authorization": f"Bearer {runtime_key}"}).status_code for _ in range(5)]
    with serving(tmp_path, runtime_key, *limit, "--front-door-auth", "none",
                 "--forwarded-allow-ips", "127.0.0.1") as svc:
        http = httpx2.Client(timeout=WAIT, trust_env=False, headers={"Content-Type": "application/json"})

        def from_(addr: str) -> int:
            return http.post(svc.mcp_url(), content=b"[]", headers={"X-Forwarded-For": addr}).status_code

        x = [from_("203.0.113.1") for _ in range(5)]
        y = [from_("203.0.113.2") for _ in range(3)]
    assert a == [400, 400, 400, 429, 429]  # the burst of 3 passes (to a 400: not an MCP message), then 429
    assert b == [400, 400, 400]
    assert made_up == [401, 401, 401]  # the address's own burst, then
    assert set(health) == {200} and set(polls) == {204}
    assert x == [400, 400, 400, 429, 429] and y == [400, 400, 400]
