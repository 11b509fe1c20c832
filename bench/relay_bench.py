"""Relay benchmark: latency, throughput, CPU and memory of `tunnel-client run` on this machine.

Starts, on 127.0.0.1 only: the local tunnel service, an upstream MCP server and a
`tunnel-client run` subprocess, then drives MCP `tools/call` through the front door and,
for the floor, directly against the upstream. Prints a table and writes a JSON file.

    .venv/bin/python bench/relay_bench.py                 # defaults: 3 repetitions, both targets
    .venv/bin/python bench/relay_bench.py --reps 5 --target http --calls 500

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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "tunnel-client"
TUNNEL_ID = "tunnel_" + "b" * 32
H = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _wait_file(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        time.sleep(0.01)
    raise TimeoutError(f"{path} not written")


def _wait_ready(url: str, timeout: float = 20.0) -> float:
    start = time.monotonic()
    with httpx2.Client() as c:
        while time.monotonic() - start < timeout:
            try:
                if c.get(url + "/readyz", timeout=1).status_code == 200:
                    return time.monotonic() - start
            except httpx2.HTTPError:
                pass
            time.sleep(0.005)
    raise TimeoutError("not ready")


@dataclass
class Procs:
    items: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.items.append(p)
        return p

    def stop(self) -> None:
        for p in reversed(self.items):
            p.terminate()
        for p in self.items:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


def _http_upstream(procs: Procs, tmp: Path, env: dict[str, str]) -> str:
    out = tmp / "stub.out"
    with out.open("wb") as f:
        p = subprocess.Popen([str(BIN), "dev", "mcp-stub"], env=env, stdout=f, stderr=subprocess.DEVNULL)
    procs.items.append(p)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for line in out.read_text().splitlines():
            if line.startswith("MCP URL: "):
                return line.split(": ", 1)[1]
        time.sleep(0.01)
    raise TimeoutError("stub did not start")


class Session:
    """A handshake-era MCP session over raw HTTP (no SDK overhead on the measuring side)."""

    def __init__(self, client: httpx2.AsyncClient, url: str) -> None:
        self.c, self.url, self.headers = client, url, dict(H)
        self.n = 0

    async def open(self) -> None:
        r = await self.c.post(self.url, headers=self.headers, json={
            "jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}})
        r.raise_for_status()
        if sid := r.headers.get("mcp-session-id"):
            self.headers["Mcp-Session-Id"] = sid
        self.headers["Mcp-Protocol-Version"] = "2025-06-18"
        await self.c.post(self.url, headers=self.headers, json={"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def call(self, tool: str, args: dict[str, Any]) -> None:
        self.n += 1
        r = await self.c.post(self.url, headers=self.headers, json={
            "jsonrpc": "2.0", "id": self.n, "method": "tools/call", "params": {"name": tool, "arguments": args}})
        if r.status_code != 200 or b'"result"' not in r.content:
            raise RuntimeError(f"call failed: {r.status_code} {r.text[:200]}")


class StdioDirect:
    """Direct floor for a stdio server: newline JSON-RPC with our own id matching."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.waiters: dict[int, asyncio.Future[Any]] = {}
        self.n = 0

    async def open(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.reader = asyncio.create_task(self._read())
        await self._rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                       "clientInfo": {"name": "bench", "version": "1"}})
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _send(self, msg: dict[str, Any]) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(json.dumps(msg).encode() + b"\n")

    async def _read(self) -> None:
        assert self.proc.stdout
        while line := await self.proc.stdout.readline():
            msg = json.loads(line)
            fut = self.waiters.pop(msg.get("id"), None)
            if fut and not fut.done():
                fut.set_result(msg)

    async def _rpc(self, method: str, params: dict[str, Any]) -> Any:
        self.n += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters[self.n] = fut
        self._send({"jsonrpc": "2.0", "id": self.n, "method": method, "params": params})
        return await fut

    async def call(self, tool: str, args: dict[str, Any]) -> None:
        await self._rpc("tools/call", {"name": tool, "arguments": args})

    async def close(self) -> None:
        self.proc.terminate()
        await self.proc.wait()
        self.reader.cancel()


async def _latency(caller: Any, tool: str, args: dict[str, Any], n: int) -> list[float]:
    for _ in range(20):
        await caller.call(tool, args)  # warm-up
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await caller.call(tool, args)
        out.append((time.perf_counter() - t) * 1000)
    return out


async def _throughput(callers: list[Any], tool: str, args: dict[str, Any], total: int) -> float:
    per = max(1, total // len(callers))

    async def worker(c: Any) -> None:
        for _ in range(per):
            await c.call(tool, args)

    t = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in callers))
    return per * len(callers) / (time.perf_counter() - t)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


async def _measure(front: str, direct: str | list[str], tool: str, args: dict[str, Any], calls: int,
                   levels: list[int], proc: psutil.Process, service: psutil.Process) -> dict[str, Any]:
    res: dict[str, Any] = {}
    limits = httpx2.Limits(max_connections=max(levels) + 8, max_keepalive_connections=max(levels) + 8)
    async with httpx2.AsyncClient(limits=limits, timeout=60, trust_env=False) as c:
        async def make(url_or_argv: str | list[str]) -> Any:
            if isinstance(url_or_argv, list):
                s: Any = StdioDirect(url_or_argv)
            else:
                s = Session(c, url_or_argv)
            await s.open()
            return s

        relay1, direct1 = await make(front), await make(direct)
        lat_relay = await _latency(relay1, tool, args, calls)
        lat_direct = await _latency(direct1, tool, args, calls)
        res["p50_relay_ms"], res["p99_relay_ms"] = statistics.median(lat_relay), pct(lat_relay, 99)
        res["p50_direct_ms"], res["p99_direct_ms"] = statistics.median(lat_direct), pct(lat_direct, 99)
        res["overhead_p50_ms"] = res["p50_relay_ms"] - res["p50_direct_ms"]
        for level in levels:
            callers = [relay1] + [await make(front) for _ in range(level - 1)]
            cpu0, svc0 = sum(proc.cpu_times()[:2]), sum(service.cpu_times()[:2])
            total = max(level * 10, calls * 2)
            rate = await _throughput(callers, tool, args, total)
            cpu1, svc1 = sum(proc.cpu_times()[:2]), sum(service.cpu_times()[:2])
            res[f"tput_relay_c{level}"] = rate
            res[f"cpu_s_per_1000_c{level}"] = (cpu1 - cpu0) / (total / 1000)
            res[f"service_cpu_s_per_1000_c{level}"] = (svc1 - svc0) / (total / 1000)
            if isinstance(direct, list):
                dcallers = [direct1]  # one stdio pipe: concurrency comes from in-flight ids
                rate_d = await _throughput([direct1] * level, tool, args, total)
            else:
                dcallers = [direct1] + [await make(direct) for _ in range(level - 1)]
                rate_d = await _throughput(dcallers, tool, args, total)
            res[f"tput_direct_c{level}"] = rate_d
            res[f"tput_ratio_c{level}"] = rate / rate_d if rate_d else 0.0
        res["rss_peak_mb"] = proc.memory_info().rss / 2**20
        if isinstance(direct1, StdioDirect):
            await direct1.close()
    return res


def run_once(target: str, calls: int, levels: list[int]) -> dict[str, Any]:
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="tc-bench-"))
    key = secrets.token_urlsafe(24)
    env = {**os.environ, "CONTROL_PLANE_API_KEY": key}
    try:
        svc_file = tmp / "svc.json"
        svc_proc = procs.start([str(BIN), "dev", "tunnel-service", "--listen", "127.0.0.1:0", "--tunnel-id",
                                TUNNEL_ID, "--url-file", str(svc_file), "--log.level", "warn"], env)
        svc = json.loads(_wait_file(svc_file))
        cp_url = svc["control_plane_base_url"]
        if target == "http":
            upstream = _http_upstream(procs, tmp, env)
            target_flags = ["--mcp.server-url", upstream]
            direct: str | list[str] = upstream
            tool, args = "echo", {"input": "hello"}
        else:
            argv = [shutil.which("mcp-server-time", path=str(Path(sys.executable).parent)) or "mcp-server-time",
                    "--local-timezone", "UTC"]
            target_flags = ["--mcp.command", " ".join(argv)]
            direct = argv
            tool, args = "get_current_time", {"timezone": "UTC"}
        url_file = tmp / "health.url"
        t0 = time.monotonic()
        run = procs.start([str(BIN), "run", "--control-plane.base-url", cp_url, "--control-plane.tunnel-id",
                           TUNNEL_ID, "--health.listen-addr", "127.0.0.1:0", "--health.url-file", str(url_file),
                           "--log.level", "warn", "--control-plane.max-inflight", "200",
                           "--mcp.max-concurrent-requests", "128", *target_flags], env)
        health = _wait_file(url_file)
        _wait_ready(health)
        ready_s = time.monotonic() - t0  # process spawn -> /readyz 200
        proc = psutil.Process(run.pid)
        time.sleep(0.5)
        idle_rss = proc.memory_info().rss / 2**20
        res = asyncio.run(_measure(f"{cp_url}/v1/mcp/{TUNNEL_ID}", direct, tool, args, calls, levels, proc,
                                   psutil.Process(svc_proc.pid)))
        res.update({"start_to_ready_s": ready_s, "rss_idle_mb": idle_rss})
        return res
    finally:
        procs.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def help_time(reps: int = 10) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run([str(BIN), "--help"], stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--calls", type=int, default=300, help="calls per latency sample")
    ap.add_argument("--target", choices=["http", "stdio", "both"], default="both")
    ap.add_argument("--levels", default="8,32,128")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "relay_bench.json"))
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    targets = ["http", "stdio"] if a.target == "both" else [a.target]
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "reps": a.reps, "calls": a.calls, "levels": levels, "help_s": help_time(), "targets": {},
    }
    for target in targets:
        runs = []
        for i in range(a.reps):
            print(f"[{target}] repetition {i + 1}/{a.reps}", file=sys.stderr)
            runs.append(run_once(target, a.calls, levels))
        report["targets"][target] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"machine: {report['machine']['cores']} cores, Python {report['machine']['python']}; "
          f"medians of {a.reps} repetitions; --help {report['help_s'] * 1000:.0f} ms")
    keys = ["p50_direct_ms", "p50_relay_ms", "overhead_p50_ms", "p99_relay_ms"]
    keys += [f"{k}_c{lv}" for lv in levels
             for k in ("tput_direct", "tput_relay", "tput_ratio", "cpu_s_per_1000", "service_cpu_s_per_1000")]
    keys += ["rss_idle_mb", "rss_peak_mb", "start_to_ready_s"]
    print(f"{'metric':<28}" + "".join(f"{t:>12}" for t in targets))
    for k in keys:
        print(f"{k:<28}" + "".join(f"{report['targets'][t].get(k, float('nan')):>12.3f}" for t in targets))
    print(f"JSON: {a.out}")


if __name__ == "__main__":
    main()
