"""Hostile-client probe of ``tunnel-client serve``: each attack of issue 14 (bounds part), with figures.

Starts, on 127.0.0.1 only: a redis-server (appendonly, fsync every second), ``tunnel-client serve``
instances, one ``tunnel-client run`` client, and a minimal upstream MCP server (a raw ASGI
JSON-RPC echo that can sleep and records every ``tools/call`` it executed). Then, per attack:

  junk        10,000 front-door requests on junk ``?channel=`` values (callers give up after 5 s; the
              figures in docs/self-hosting.md for the old code used 1 s, as each junk call waited 11 s):
              Redis DBSIZE, service RSS and calls/s before and after
  headers     one 8 MiB header, then 20,000 headers: status and service RSS
  slowloris   400 connections sending headers a byte every 2 s, 50 sending a body the same way:
              how many are still open over time
  idle        60 idle connections on an instance with --max-connections 50: /healthz status
  deepjson    a 100,000-deep JSON body: status
  disconnect  a caller that gives up after 1 s with no client polling: is the command handed out
              to a poll 2 s later (inmem and redis)
  restart     200 calls in flight (tool takes 1.5 s) across a Redis restart: calls answered,
              failed with a clear status, and lost (504 although the tool ran)

    .venv/bin/python bench/hostile_probe.py                 # every attack
    .venv/bin/python bench/hostile_probe.py --attacks junk,restart

Not a test: nothing here asserts; the figures are reported in docs/self-hosting.md and issue notes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_scale_bench import _free_port, _wait

BIN = Path(sys.executable).parent / "tunnel-client"
TUNNEL_ID = "tunnel_" + "d" * 32
CALLER = "ct_probe_" + secrets.token_urlsafe(24)  # the attacks come from a caller holding a valid caller token
JSON_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
                "X-Tunnel-Caller-Token": CALLER}
ATTACKS = ("junk", "headers", "slowloris", "idle", "deepjson", "disconnect", "restart")


# ---- the upstream: JSON-RPC echo; "sleep_ms" delays a call; every executed call is appended to a file ----

_RAN: Any = None  # the file every executed call is appended to


async def _upstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    more = True
    while more:
        m = await receive()
        body += m.get("body", b"")
        more = m.get("more_body", False)
    msg = json.loads(body) if body and scope["method"] == "POST" else {}
    if "id" not in msg:
        status = 202 if msg else 405 if scope["path"] == "/mcp" else 404  # no OAuth metadata here
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    if msg.get("method") == "initialize":
        result: dict[str, Any] = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                                  "serverInfo": {"name": "probe-upstream", "version": "1"}}
    else:
        args = (msg.get("params") or {}).get("arguments") or {}
        await asyncio.sleep(float(args.get("sleep_ms", 0)) / 1000)
        text = str(args.get("input", ""))
        _RAN.write(text + "\n")
        _RAN.flush()
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    data = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def serve_upstream(port_file: str, ran_file: str) -> None:
    import uvicorn

    global _RAN
    _RAN = open(ran_file, "a")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    uvicorn.Server(uvicorn.Config(_upstream, log_config=None, access_log=False, http="httptools")).run(
        sockets=[sock])


# ---- processes ------------------------------------------------------------------------------------


class Lab:
    """The processes of one probe run; everything is stopped by ``close``."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="tc-hostile-"))
        self.key = secrets.token_urlsafe(24)
        self.env = {**os.environ, "CONTROL_PLANE_API_KEY": self.key,
                    "TUNNEL_ENGINE_ENCRYPTION_KEY": secrets.token_urlsafe(32), "PROBE_CALLER_TOKEN": CALLER}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.redis_port = 0
        self.redis_proc: subprocess.Popen[bytes] | None = None
        self.upstream = ""
        self.ran = self.tmp / "ran.txt"
        self.extra_serve: list[str] = []

    def _start(self, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"p{len(self.procs)}.log", "wb")
        p = subprocess.Popen(argv, env=self.env, stdout=log, stderr=log)
        self.procs.append(p)
        return p

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def start_redis(self) -> None:
        import redis

        self.redis_port = self.redis_port or _free_port()
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
        self.redis_proc = self._start([binary, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                                       "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.tmp)])
        _wait(lambda: redis.Redis(port=self.redis_port).ping(), "redis-server")

    def restart_redis(self) -> None:
        """A graceful restart: SHUTDOWN (the AOF is flushed), then the same port and directory."""
        import redis

        assert self.redis_proc is not None
        try:
            redis.Redis(port=self.redis_port).shutdown()
        except redis.RedisError:
            pass  # the connection closes as it shuts down
        self.redis_proc.wait(10)
        self.start_redis()

    def redis(self) -> Any:
        import redis

        return redis.Redis(port=self.redis_port)

    def start_upstream(self) -> None:
        port_file = self.tmp / "upstream.port"
        self._start([sys.executable, __file__, "--serve-upstream", str(port_file), str(self.ran)])
        self.upstream = f"http://127.0.0.1:{_wait(lambda: int(port_file.read_text()), 'upstream')}/mcp"

    def start_serve(self, backend: str, *extra: str) -> tuple[str, subprocess.Popen[bytes]]:
        url_file = self.tmp / f"svc{len(self.procs)}.json"
        p = self._start([str(BIN), "serve", "--listen", "127.0.0.1:0", "--tunnel-id", TUNNEL_ID,
                         "--runtime-api-key", "env:CONTROL_PLANE_API_KEY", "--engine-queue-backend", backend,
                         "--caller-token", f"{TUNNEL_ID}=env:PROBE_CALLER_TOKEN",
                         *(["--engine-redis-url", self.redis_url] if backend == "redis" else []),
                         "--url-file", str(url_file), "--log.level", "warn", *self.extra_serve, *extra])
        base = _wait(lambda: json.loads(url_file.read_text())["control_plane_base_url"], "serve url file")
        return base, p

    def start_client(self, base: str) -> subprocess.Popen[bytes]:
        import urllib.request

        health_file = self.tmp / f"client{len(self.procs)}.url"
        p = self._start([str(BIN), "run", "--control-plane.base-url", base, "--control-plane.tunnel-id", TUNNEL_ID,
                         "--health.listen-addr", "127.0.0.1:0", "--health.url-file", str(health_file),
                         "--log.level", "warn", "--control-plane.max-inflight", "200",
                         "--mcp.max-concurrent-requests", "200", "--mcp.server-url", self.upstream])
        health = _wait(lambda: health_file.read_text().strip(), "client health url")
        _wait(lambda: urllib.request.urlopen(health + "/readyz", timeout=1).status == 200, "client ready")
        return p

    def close(self) -> None:
        if os.environ.get("PROBE_KEEP"):
            print(f"kept {self.tmp}", file=sys.stderr)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if not os.environ.get("PROBE_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)


def rss_mib(p: subprocess.Popen[bytes]) -> float:
    import psutil

    return round(psutil.Process(p.pid).memory_info().rss / 2**20, 1)


# ---- traffic --------------------------------------------------------------------------------------


async def calls_per_second(base: str, n: int = 300, concurrency: int = 16) -> dict[str, float]:
    import aiohttp

    url = f"{base}/v1/mcp/{TUNNEL_ID}"
    lat: list[float] = []
    fails = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:

        async def worker(k: int) -> None:
            nonlocal fails
            for i in range(n // concurrency):
                t = time.perf_counter()
                async with http.post(url, headers=JSON_HEADERS, json={
                        "jsonrpc": "2.0", "id": i, "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"input": f"w{k}-{i}"}}}) as r:
                    await r.read()
                fails += r.status != 200
                lat.append((time.perf_counter() - t) * 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.perf_counter() - t0
    lat.sort()
    return {"calls_per_s": round(len(lat) / elapsed, 1), "p50_ms": round(lat[len(lat) // 2], 1),
            "failures": fails}


async def raw_request(host: str, port: int, data: bytes, read_timeout: float = 10.0) -> str:
    """Send raw bytes; the status line of the answer, or what happened to the connection."""
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        return f"connect failed: {exc}"
    try:
        writer.write(data)
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), read_timeout)
        return line.decode(errors="replace").strip() or "closed without an answer"
    except (ConnectionError, OSError) as exc:
        return f"connection error: {type(exc).__name__}"
    except TimeoutError:
        return f"no answer within {read_timeout:g}s"
    finally:
        writer.close()


def _hostport(base: str) -> tuple[str, int]:
    host, port = base.split("://", 1)[1].rsplit(":", 1)
    return host, int(port)


def _post(path: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: probe", f"Content-Length: {len(body)}",
             "Content-Type: application/json", f"X-Tunnel-Caller-Token: {CALLER}", *[f"{k}: {v}" for k, v in headers]]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


# ---- the attacks ----------------------------------------------------------------------------------


def attack_junk(lab: Lab, a_junk_timeout: float = 5.0) -> dict[str, Any]:
    import aiohttp

    base, svc = lab.start_serve("redis", "--response-timeout", "10s")
    client = lab.start_client(base)
    r = lab.redis()
    out: dict[str, Any] = {"before": asyncio.run(calls_per_second(base)), "dbsize_before": r.dbsize(),
                           "service_rss_mib_before": rss_mib(svc)}

    async def junk() -> Counter[str]:
        statuses: Counter[str] = Counter()
        sem = asyncio.Semaphore(200)
        async with aiohttp.ClientSession() as http:

            async def one(i: int) -> None:
                async with sem:
                    try:
                        async with http.post(f"{base}/v1/mcp/{TUNNEL_ID}?channel=junk{i}",
                                             timeout=aiohttp.ClientTimeout(total=a_junk_timeout),
                                             headers=JSON_HEADERS,
                                             json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}) as resp:
                            statuses[str(resp.status)] += 1
                    except (TimeoutError, aiohttp.ClientError):
                        statuses["caller gave up"] += 1

            await asyncio.gather(*(one(i) for i in range(10_000)))
        return statuses

    t0 = time.perf_counter()
    out["junk_answers"] = dict(asyncio.run(junk()))
    out["junk_seconds"] = round(time.perf_counter() - t0, 1)
    out["dbsize_after"] = r.dbsize()
    out["service_rss_mib_after"] = rss_mib(svc)
    _wait_idle(base)  # callers that gave up leave work behind: measure once the service has caught up
    out["after"] = asyncio.run(calls_per_second(base))
    client.terminate()
    svc.terminate()
    return out


def _wait_idle(base: str) -> None:
    """Until the service's request counter stops moving for a second (capped at 60 s)."""
    import urllib.request

    def count() -> float:
        text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("tunnel_service_http_requests_total{"))

    last, t0 = -1.0, time.monotonic()
    while time.monotonic() - t0 < 60:
        now = count()
        if now == last:
            return
        last = now
        time.sleep(1.0)


def attack_headers(lab: Lab) -> dict[str, Any]:
    base, svc = lab.start_serve("inmem", "--response-timeout", "2s")
    host, port = _hostport(base)
    body = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()
    path = f"/v1/mcp/{TUNNEL_ID}"
    out: dict[str, Any] = {"service_rss_mib_before": rss_mib(svc)}
    out["8MiB_header"] = asyncio.run(raw_request(host, port, _post(path, [("X-Big", "a" * (8 << 20))], body)))
    out["service_rss_mib_after_8MiB"] = rss_mib(svc)
    many = [(f"X-H{i}", "v") for i in range(20_000)]
    out["20000_headers"] = asyncio.run(raw_request(host, port, _post(path, many, body)))
    out["service_rss_mib_after_20000"] = rss_mib(svc)
    svc.terminate()
    return out


async def _hold(host: str, port: int, first: bytes, drip: bytes, every: float, stop: float) -> float:
    """Open a connection, send ``first``, then one byte of ``drip`` every ``every`` s; seconds it stayed open."""
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return 0.0
    try:
        writer.write(first)
        await writer.drain()
        i = 0
        while time.monotonic() - t0 < stop:
            try:
                if await asyncio.wait_for(reader.read(1024), every) == b"":
                    return time.monotonic() - t0  # the server closed the connection
                continue  # the server answered something; it closes next
            except TimeoutError:
                pass
            writer.write(drip[i % len(drip):i % len(drip) + 1])
            i += 1
            await writer.drain()
    except (ConnectionError, OSError):
        return time.monotonic() - t0
    finally:
        writer.close()
    return stop


def attack_slowloris(lab: Lab) -> dict[str, Any]:
    base, svc = lab.start_serve("inmem", "--response-timeout", "2s")
    host, port = _hostport(base)
    cap = 40.0

    async def go() -> tuple[list[float], list[float]]:
        heads = [_hold(host, port, f"POST /v1/mcp/{TUNNEL_ID} HTTP/1.1\r\nHost: x\r\n".encode(), b"X-a: b\r\n",
                       2.0, cap) for _ in range(400)]
        bodies = [_hold(host, port, _post(f"/v1/mcp/{TUNNEL_ID}", [], b"")
                        .replace(b"Content-Length: 0", b"Content-Length: 100000"), b"{" * 100, 2.0, cap)
                  for _ in range(50)]
        got = await asyncio.gather(*heads, *bodies)
        return list(got[:400]), list(got[400:])

    heads, bodies = asyncio.run(go())

    def summary(xs: list[float]) -> dict[str, Any]:
        still = sum(1 for x in xs if x >= cap)
        closed = sorted(x for x in xs if x < cap)
        return {"connections": len(xs), f"open_after_{cap:g}s": still,
                "closed_after_s_max": round(closed[-1], 1) if closed else None}

    svc.terminate()
    return {"slow_headers": summary(heads), "slow_bodies": summary(bodies)}


def attack_idle(lab: Lab) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    base, svc = lab.start_serve("inmem", "--max-connections", "50")
    host, port = _hostport(base)
    socks = []
    for _ in range(60):
        s = socket.create_connection((host, port))
        socks.append(s)
    time.sleep(0.5)

    def get(path: str) -> str:
        try:
            return str(urllib.request.urlopen(base + path, timeout=5).status)
        except urllib.error.HTTPError as exc:
            return str(exc.code)
        except OSError as exc:
            return f"error: {exc}"

    out = {"healthz_with_60_idle": get("/healthz"), "readyz_with_60_idle": get("/readyz")}
    front = asyncio.run(raw_request(host, port, _post(f"/v1/mcp/{TUNNEL_ID}", [], b"[]")))
    out["front_door_on_a_new_connection"] = front
    t0 = time.monotonic()
    while time.monotonic() - t0 < 40 and get("/healthz") != "200":
        time.sleep(0.5)
    out["healthz_200_after_s"] = str(round(time.monotonic() - t0, 1))
    # How long the idle connections stay open (the server closes them, or 40 s pass).
    closed_at: dict[int, float] = {}
    while len(closed_at) < len(socks) and time.monotonic() - t0 < 40:
        ready, _, _ = select.select([s for s in socks if s.fileno() not in closed_at], [], [], 0.5)
        for s in ready:
            try:
                gone = s.recv(4096) == b""
            except OSError:
                gone = True
            if gone:
                closed_at[s.fileno()] = time.monotonic() - t0
    out["idle_closed"] = str(len(closed_at))
    out["idle_closed_after_s_max"] = str(round(max(closed_at.values()), 1)) if closed_at else "-"
    for s in socks:
        s.close()
    svc.terminate()
    return out


def attack_deepjson(lab: Lab) -> dict[str, Any]:
    base, svc = lab.start_serve("inmem", "--response-timeout", "2s")
    host, port = _hostport(base)
    deep = b"[" * 100_000 + b"]" * 100_000
    nested = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":' + b'{"a":' * 100_000 + b"1" + \
        b"}" * 100_000 + b"}"
    path = f"/v1/mcp/{TUNNEL_ID}"
    out = {"array_100k_deep": asyncio.run(raw_request(host, port, _post(path, [], deep))),
           "params_100k_deep": asyncio.run(raw_request(host, port, _post(path, [], nested)))}
    rt = f"/v1/tunnels/{TUNNEL_ID}/response"
    out["response_post_100k_deep"] = asyncio.run(raw_request(host, port, _post(
        rt, [("Authorization", f"Bearer {lab.key}"), ("X-Tunnel-Shard-Token", "x")], deep)))
    svc.terminate()
    return out


def attack_disconnect(lab: Lab) -> dict[str, Any]:
    import aiohttp

    out: dict[str, Any] = {}
    for backend in ("inmem", "redis"):
        base, svc = lab.start_serve(backend, "--response-timeout", "10s")

        async def go(base: str = base) -> str:
            async with aiohttp.ClientSession() as http:
                try:
                    async with http.post(f"{base}/v1/mcp/{TUNNEL_ID}", headers=JSON_HEADERS,
                                         timeout=aiohttp.ClientTimeout(total=1.0),
                                         json={"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                                               "params": {"name": "delete_everything", "arguments": {}}}) as r:
                        return f"caller answered {r.status}"
                except TimeoutError:
                    pass
                await asyncio.sleep(2.0)
                async with http.get(f"{base}/v1/tunnels/{TUNNEL_ID}/poll?limit=25&timeout_ms=1000",
                                    headers={"Authorization": f"Bearer {lab.key}"}) as r:
                    if r.status == 204:
                        return "not handed out (poll 2 s after the caller left: 204)"
                    body = await r.json()
                    return f"HANDED OUT to a poll 2 s after the caller left ({len(body['commands'])} command)"

        out[backend] = asyncio.run(go())
        svc.terminate()
    return out


def attack_restart(lab: Lab) -> dict[str, Any]:
    import aiohttp

    base, svc = lab.start_serve("redis", "--response-timeout", "10s")
    client = lab.start_client(base)
    lab.ran.write_text("")
    n = 200

    async def go() -> dict[str, Any]:
        outcomes: dict[str, str] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

            async def one(i: int) -> None:
                await asyncio.sleep(i * 0.03)  # spread over 6 s: some before, during and after the restart
                t = time.monotonic()
                try:
                    async with http.post(f"{base}/v1/mcp/{TUNNEL_ID}", headers=JSON_HEADERS, json={
                            "jsonrpc": "2.0", "id": i, "method": "tools/call",
                            "params": {"name": "echo", "arguments": {"input": f"call-{i}", "sleep_ms": 1500}}}) as r:
                        body = await r.read()
                        ok = r.status == 200 and f"call-{i}".encode() in body
                        outcomes[f"call-{i}"] = "answered" if ok else f"{r.status} after {time.monotonic() - t:.0f}s"
                except (TimeoutError, aiohttp.ClientError) as exc:
                    outcomes[f"call-{i}"] = f"error {type(exc).__name__}"

            async def restart() -> None:
                await asyncio.sleep(1.2)
                await asyncio.to_thread(lab.restart_redis)

            await asyncio.gather(restart(), *(one(i) for i in range(n)))
        return outcomes

    outcomes = asyncio.run(go())
    ran = set(lab.ran.read_text().split())
    lost = [k for k, v in outcomes.items() if v != "answered" and k in ran]
    kinds = Counter(v if v == "answered" else v.split(" after")[0] for v in outcomes.values())
    client.terminate()
    svc.terminate()
    return {"calls": n, "outcomes": dict(kinds), "tool_ran_but_caller_not_answered": len(lost),
            "examples_lost": [outcomes[k] for k in lost[:3]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--attacks", default=",".join(ATTACKS))
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="extra argument for every serve instance (e.g. --serve-arg=--queue-encryption-key=...)")
    ap.add_argument("--serve-upstream", nargs=2, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve_upstream:
        serve_upstream(*a.serve_upstream)
        return
    report: dict[str, Any] = {}
    for name in a.attacks.split(","):
        lab = Lab()
        lab.extra_serve = list(a.serve_arg)
        try:
            if name in ("junk", "restart", "disconnect"):
                lab.start_redis()
            if name in ("junk", "restart"):
                lab.start_upstream()
            print(f"[{name}] ...", file=sys.stderr)
            report[name] = globals()[f"attack_{name}"](lab)
        finally:
            lab.close()
        print(json.dumps({name: report[name]}, indent=1), flush=True)


if __name__ == "__main__":
    main()
