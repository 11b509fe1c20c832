"""Tunnel-service scale benchmark: front-door throughput with 1 vs 2 service instances and 1 vs 2 clients.

Starts, on 127.0.0.1 only: a redis-server (appendonly, fsync every second, as
docs/self-hosting.md recommends), N ``tunnel-client serve`` instances on the Redis queue,
M ``tunnel-client run`` clients (client i polls instance i mod N), and a minimal upstream MCP
server (a raw ASGI JSON-RPC echo, so the upstream is not what is measured). Callers (aiohttp,
one session each, caller j on instance j mod N) drive ``tools/call`` through the front doors at a
fixed concurrency. The service runs with authentication as shipped: the runtime key bound to the
tunnel and every front-door call carrying the tunnel's caller token (``X-Tunnel-Caller-Token``);
``--auth off`` runs the same code with an unbound key and ``--front-door-auth none`` (no token
sent), so the difference is what authentication costs.
Reports throughput, latency and CPU per 1,000 calls by role, plus the
in-memory queue with one instance and one client as the baseline. Prints a table and writes JSON.

    .venv/bin/python bench/service_scale_bench.py                    # 3 repetitions
    .venv/bin/python bench/service_scale_bench.py --reps 5 --calls 4000 --concurrency 64

Not a test: nothing here asserts; the numbers are reported in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "tunnel-client"
TUNNEL_ID = "tunnel_" + "e" * 32
CONFIGS = [("inmem", 1, 1), ("redis", 1, 1), ("redis", 1, 2), ("redis", 2, 1), ("redis", 2, 2)]
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


# ---- the upstream: a minimal MCP JSON-RPC echo (runs as a subprocess: --serve-upstream PORT_FILE) ----


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
    if scope["method"] != "POST":  # no OAuth metadata, no GET stream: plain 404/405
        status = 405 if scope["path"] == "/mcp" else 404
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    msg = json.loads(body) if body else {}
    if "id" not in msg:
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})
        return
    if msg.get("method") == "initialize":
        result: dict[str, Any] = {"protocolVersion": msg["params"]["protocolVersion"], "capabilities": {"tools": {}},
                                  "serverInfo": {"name": "bench-upstream", "version": "1"}}
    else:
        text = str(((msg.get("params") or {}).get("arguments") or {}).get("input", ""))
        result = {"content": [{"type": "text", "text": text}], "isError": False}
    data = json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


def serve_upstream(port_file: str) -> None:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    config = uvicorn.Config(_upstream, log_config=None, access_log=False, http="httptools", loop="uvloop")
    uvicorn.Server(config).run(sockets=[sock])


# ---- processes ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait(check: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # not up yet
            value = None
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError(what)


@dataclass
class Procs:
    items: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, role: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.items.append((role, p))
        return p

    def cpu(self) -> dict[str, float]:
        import psutil

        out: dict[str, float] = {}
        for role, p in self.items:
            try:
                t = psutil.Process(p.pid).cpu_times()
            except psutil.Error:
                continue
            out[role] = out.get(role, 0.0) + t.user + t.system
        return out

    def stop(self) -> None:
        for _, p in reversed(self.items):
            p.terminate()
        for _, p in self.items:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.items.clear()


def start_redis(procs: Procs, tmp: Path) -> str:
    port = _free_port()
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server)")
    procs.start("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                          "--appendfsync", "everysec", "--dir", str(tmp)], dict(os.environ))
    import redis

    _wait(lambda: redis.Redis(port=port).ping(), "redis-server")
    return f"redis://127.0.0.1:{port}/0"


def start_fleet(procs: Procs, tmp: Path, env: dict[str, str], kind: str, n_services: int, n_clients: int,
                redis_url: str, upstream: str, auth: bool = True) -> list[str]:
    services = []
    for i in range(n_services):
        url_file = tmp / f"svc{i}.json"
        credentials = (["--runtime-api-key", f"{TUNNEL_ID}=env:CONTROL_PLANE_API_KEY",
                        "--caller-token", f"{TUNNEL_ID}=env:BENCH_CALLER_TOKEN"] if auth else
                       ["--tunnel-id", TUNNEL_ID, "--runtime-api-key", "env:CONTROL_PLANE_API_KEY",
                        "--front-door-auth", "none"])
        procs.start("service", [str(BIN), "serve", "--listen", "127.0.0.1:0", *credentials,
                                "--engine-queue-backend", kind,
                                *(["--engine-redis-url", redis_url] if kind == "redis" else []),
                                "--url-file", str(url_file), "--log.level", "warn"], env)
        services.append(_wait(lambda f=url_file: json.loads(f.read_text())["control_plane_base_url"],  # type: ignore[misc]
                              "service url file"))
    for i in range(n_clients):
        health_file = tmp / f"client{i}.url"
        procs.start("client", [str(BIN), "run", "--control-plane.base-url", services[i % n_services],
                               "--control-plane.tunnel-id", TUNNEL_ID, "--health.listen-addr", "127.0.0.1:0",
                               "--health.url-file", str(health_file), "--log.level", "warn",
                               "--control-plane.max-inflight", "200", "--mcp.max-concurrent-requests", "128",
                               "--mcp.server-url", upstream], env)
        import urllib.request

        health = _wait(lambda f=health_file: f.read_text().strip(), "client health url")  # type: ignore[misc]
        _wait(lambda h=health: urllib.request.urlopen(h + "/readyz", timeout=1).status == 200,  # type: ignore[misc]
              "client ready")
    return services


# ---- load ---------------------------------------------------------------------------------------


async def drive(front_doors: list[str], concurrency: int, calls: int, warmup: int,
                caller_token: str) -> dict[str, float]:
    import aiohttp

    conn = aiohttp.TCPConnector(limit=concurrency + 8, force_close=False)
    async with aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=60)) as http:
        sessions: list[tuple[str, dict[str, str]]] = []
        token = {"X-Tunnel-Caller-Token": caller_token} if caller_token else {}
        for j in range(concurrency):
            url = front_doors[j % len(front_doors)]
            async with http.post(url, headers={**HEADERS, **token}, json={
                    "jsonrpc": "2.0", "id": 0, "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "bench", "version": "1"}}}) as r:
                r.raise_for_status()
                h = {**HEADERS, **token}
                if sid := r.headers.get("mcp-session-id"):
                    h["Mcp-Session-Id"] = sid
            sessions.append((url, h))
        latencies: list[float] = []
        failures = 0

        async def worker(url: str, headers: dict[str, str], n: int, record: bool) -> None:
            nonlocal failures
            for i in range(n):
                t = time.perf_counter()
                async with http.post(url, headers=headers, json={
                        "jsonrpc": "2.0", "id": i + 1, "method": "tools/call",
                        "params": {"name": "echo", "arguments": {"input": "hello"}}}) as r:
                    body = await r.read()
                if r.status != 200 or b'"result"' not in body:
                    failures += 1
                if record:
                    latencies.append((time.perf_counter() - t) * 1000)

        per = max(1, warmup // concurrency)
        await asyncio.gather(*(worker(u, h, per, False) for u, h in sessions))
        per = max(1, calls // concurrency)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(u, h, per, True) for u, h in sessions))
        elapsed = time.perf_counter() - t0
    lat = sorted(latencies)
    return {"tput": len(lat) / elapsed, "p50_ms": statistics.median(lat),
            "p99_ms": lat[min(len(lat) - 1, round(0.99 * (len(lat) - 1)))], "failures": float(failures)}


def run_once(kind: str, n_services: int, n_clients: int, calls: int, concurrency: int,
             auth: bool = True) -> dict[str, float]:
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="tc-scale-"))
    env = {**os.environ, "CONTROL_PLANE_API_KEY": secrets.token_urlsafe(24),
           "BENCH_CALLER_TOKEN": secrets.token_urlsafe(32), "TUNNEL_ENGINE_ENCRYPTION_KEY": secrets.token_urlsafe(32)}
    try:
        redis_url = start_redis(procs, tmp) if kind == "redis" else ""
        port_file = tmp / "upstream.port"
        procs.start("upstream", [sys.executable, __file__, "--serve-upstream", str(port_file)], env)
        upstream = f"http://127.0.0.1:{_wait(lambda: int(port_file.read_text()), 'upstream')}/mcp"
        services = start_fleet(procs, tmp, env, kind, n_services, n_clients, redis_url, upstream, auth)
        doors = [f"{s}/v1/mcp/{TUNNEL_ID}" for s in services]
        time.sleep(0.5)  # let start-up CPU settle before sampling
        cpu0 = procs.cpu()
        load0 = os.getloadavg()[0]
        res = asyncio.run(drive(doors, concurrency, calls, warmup=max(200, calls // 10),
                                caller_token=env["BENCH_CALLER_TOKEN"] if auth else ""))
        cpu1 = procs.cpu()
        # Load from outside the bench (other jobs on a shared machine) shows up here: compare runs with care.
        res["loadavg_1m"] = max(load0, os.getloadavg()[0])
        per_k = calls / 1000
        for role in ("service", "client", "redis", "upstream"):
            res[f"cpu_s_per_1000_{role}"] = (cpu1.get(role, 0.0) - cpu0.get(role, 0.0)) / per_k
        return res
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--calls", type=int, default=3000, help="measured calls per run")
    ap.add_argument("--concurrency", type=int, default=32, help="callers in flight at once")
    ap.add_argument("--configs", default=",".join(f"{k}:{n}:{m}" for k, n, m in CONFIGS),
                    help="BACKEND:SERVICES:CLIENTS,... (default: all five)")
    ap.add_argument("--auth", choices=["on", "off"], default="on",
                    help="on: bound runtime key + caller tokens (as shipped); off: --front-door-auth none")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "service_scale_bench.json"))
    ap.add_argument("--serve-upstream", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve_upstream:
        serve_upstream(a.serve_upstream)
        return
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "reps": a.reps, "calls": a.calls, "concurrency": a.concurrency, "configs": {},
    }
    configs = [(k, int(n), int(m)) for k, n, m in (c.split(":") for c in a.configs.split(","))]
    for kind, n_s, n_c in configs:
        name = f"{kind} {n_s}svc x {n_c}cli"
        runs = []
        for i in range(a.reps):
            print(f"[{name}] repetition {i + 1}/{a.reps}", file=sys.stderr)
            runs.append(run_once(kind, n_s, n_c, a.calls, a.concurrency, a.auth == "on"))
        report["configs"][name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"machine: {report['machine']['cores']} cores, Python {report['machine']['python']}; medians of "
          f"{a.reps} repetitions; {a.calls} calls at concurrency {a.concurrency}")
    keys = ["tput", "p50_ms", "p99_ms", "failures", "cpu_s_per_1000_service", "cpu_s_per_1000_client",
            "cpu_s_per_1000_redis", "cpu_s_per_1000_upstream", "loadavg_1m"]
    names = list(report["configs"])
    print(f"{'metric':<26}" + "".join(f"{n:>22}" for n in names))
    for k in keys:
        print(f"{k:<26}" + "".join(f"{report['configs'][n][k]:>22.3f}" for n in names))
    print(f"JSON: {a.out}")


if __name__ == "__main__":
    main()
