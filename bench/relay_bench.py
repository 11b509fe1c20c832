"""Relay benchmark: every speed and memory figure of `tunnel-client run`, in one run.

Starts, on 127.0.0.1 only, each part in its own process: the local tunnel service, an upstream
MCP server and `tunnel-client run`, then drives MCP `tools/call` through the front door and,
for the floor, directly against the upstream. The measuring client is the leanest we can write
(raw HTTP/1.1 over asyncio streams, one keep-alive connection per caller): a heavier client
would hide part of the relay's overhead in the floor.

    .venv/bin/python bench/relay_bench.py                   # everything (about 5 minutes)
    .venv/bin/python bench/relay_bench.py --reps 5 --target http --skip-curves
    .venv/bin/python bench/relay_bench.py --skip-headline --skip-cli --curves size --reps 3   # the size curve
    PYTHONPATH=/tmp/old-checkout .venv/bin/python bench/relay_bench.py --out /tmp/before.json

Figures (medians over ``--reps`` repetitions with fresh processes; see docs/performance.md):
  headline, per target (HTTP: the demo tools on the mcp SDK's server, tests/support/sdk_stub.py;
    stdio: `mcp-server-time`): p50/p99 latency relay
    and direct, overhead, throughput relay/direct at each level, CPU seconds per 1,000 calls of
    the relay and of the tunnel service (at concurrency 1, during the latency calls, and at each level), idle RSS (3 s after ready) and peak RSS, start -> /readyz;
  CLI: `--help` and `help TOPIC` wall time; `dev proxy` idle RSS;
  curves (HTTP target, bench/lean_upstream.py as the MCP server so the relay's own cost shows):
    latency and relay CPU per call vs response size (1 KB -> 4 MiB, JSON and SSE), throughput,
    latency and CPU vs concurrency (1 -> 256), relay RSS vs commands in flight (0 -> 1,000).
The 1-minute load average is recorded beside every phase: latency, throughput and start time
need a quiet machine; RSS and CPU per call hold up under load.

Not a test: nothing here asserts. Writes bench/results/relay_bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent / "tunnel-client"
TUNNEL_ID = "tunnel_" + "b" * 32
PROTOCOL = "2025-06-18"
KB = 1024
MB = 1024 * KB
SIZES = (1 * KB, 16 * KB, 256 * KB, 1024 * KB, 4096 * KB - 4 * KB)  # the service caps bodies at 4 MiB
CONCURRENCY = (1, 2, 4, 8, 16, 32, 64, 128, 256)
IN_FLIGHT = (0, 10, 100, 250, 500, 1000)


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ------------------------------------------------------------------ the lean measuring client


class RawHTTP:
    """One keep-alive HTTP/1.1 connection over asyncio streams (no library in the way)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, body: bytes = b"", headers: str = "",
                      path: str | None = None) -> tuple[int, dict[str, str], bytes]:
        reused = self.writer is not None and not self.writer.is_closing()
        if not reused:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None and self.writer is not None
        self.writer.write(f"{method} {path or self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                          f"{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            if not reused:
                raise
            self.close()  # the server closed a kept-alive connection while it was idle: once more, fresh
            return await self.request(method, body, headers, path)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        hdrs = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if "content-length" in hdrs:
            data = await self.reader.readexactly(int(hdrs["content-length"]))
        elif hdrs.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                parts.append(chunk[:-2])
            data = b"".join(parts)
        elif status in (204, 304) or status < 200:
            data = b""
        else:
            data = await self.reader.read()
            self.close()
        if hdrs.get("connection", "").lower() == "close":
            self.close()
        return status, hdrs, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Session:
    """A handshake-era MCP session over one RawHTTP connection."""

    def __init__(self, url: str) -> None:
        self.http = RawHTTP(url)
        self.headers = "Accept: application/json, text/event-stream\r\nContent-Type: application/json\r\n"
        self.n = 0

    async def open(self) -> Session:
        init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
                "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                           "clientInfo": {"name": "bench", "version": "1"}}}
        status, hdrs, _ = await self.http.request("POST", json.dumps(init).encode(), self.headers)
        if status != 200:
            raise RuntimeError(f"initialize failed: {status}")
        if sid := hdrs.get("mcp-session-id"):
            self.headers += f"Mcp-Session-Id: {sid}\r\n"
        self.headers += f"Mcp-Protocol-Version: {PROTOCOL}\r\n"
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await self.http.request("POST", json.dumps(note).encode(), self.headers)
        return self

    async def call(self, tool: str, args: dict[str, Any]) -> int:
        self.n += 1
        msg = {"jsonrpc": "2.0", "id": self.n, "method": "tools/call", "params": {"name": tool, "arguments": args}}
        status, _, data = await self.http.request("POST", json.dumps(msg).encode(), self.headers)
        if status != 200 or b'"result"' not in data:
            raise RuntimeError(f"call failed: {status} {data[:200]!r}")
        return len(data)

    def close(self) -> None:
        self.http.close()


class StdioDirect:
    """Direct floor for a stdio server: newline JSON-RPC with our own id matching."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.waiters: dict[int, asyncio.Future[Any]] = {}
        self.n = 0

    async def open(self) -> StdioDirect:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, limit=2**24)
        self.reader = asyncio.ensure_future(self._read())
        await self._rpc("initialize", {"protocolVersion": PROTOCOL, "capabilities": {},
                                       "clientInfo": {"name": "bench", "version": "1"}})
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        return self

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

    async def call(self, tool: str, args: dict[str, Any]) -> int:
        await self._rpc("tools/call", {"name": tool, "arguments": args})
        return 0

    def close(self) -> None:
        self.proc.terminate()
        self.reader.cancel()


async def latency(caller: Any, tool: str, args: dict[str, Any], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        await caller.call(tool, args)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await caller.call(tool, args)
        out.append((time.perf_counter() - t) * 1000)
    return out


async def throughput(callers: list[Any], tool: str, args: dict[str, Any], total: int) -> tuple[float, list[float]]:
    """(calls/s, per-call latencies in ms) with each caller making total/len(callers) calls in turn."""
    per = max(1, total // len(callers))
    lat: list[float] = []

    async def worker(c: Any) -> None:
        for _ in range(per):
            t = time.perf_counter()
            await c.call(tool, args)
            lat.append((time.perf_counter() - t) * 1000)

    t = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in callers))
    return per * len(callers) / (time.perf_counter() - t), lat


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def rss_mb(proc: psutil.Process) -> float:
    return proc.memory_info().rss / 2**20


# ------------------------------------------------------------------ processes


@dataclass
class Procs:
    tmp: Path
    env: dict[str, str]
    items: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, argv: list[str], out: Path | None = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        stdout = out.open("wb") if out else subprocess.DEVNULL
        p = subprocess.Popen(argv, env=self.env, stdout=stdout, stderr=subprocess.DEVNULL, cwd=cwd)
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
                p.wait()
        self.items.clear()


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.002) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise TimeoutError(what)


def read_file(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def readyz(health: str) -> bool:
    """One plain-socket GET /readyz (cheap enough to repeat every 2 ms)."""
    parts = urlsplit(health)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=2) as s:
            s.sendall(f"GET /readyz HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start_service(procs: Procs) -> str:
    svc_file = procs.tmp / "svc.json"
    procs.start([str(BIN), "dev", "tunnel-service", "--listen", "127.0.0.1:0", "--tunnel-id", TUNNEL_ID,
                 "--url-file", str(svc_file), "--log.level", "warn"])
    svc = json.loads(wait_for(lambda: read_file(svc_file), "tunnel service did not start"))
    return str(svc["control_plane_base_url"])


def start_stub(procs: Procs) -> str:
    """The headline HTTP upstream: the demo tools on the mcp SDK's server (tests/support/sdk_stub.py).

    It is part of the bench, not of the product, so before/after figures use the same server.
    """
    port_file = procs.tmp / "stub.port"
    procs.start([sys.executable, "-m", "tests.support.sdk_stub", "--port-file", str(port_file)], cwd=ROOT)
    return f"http://127.0.0.1:{wait_for(lambda: read_file(port_file), 'sdk stub did not start')}/mcp"


def start_lean_upstream(procs: Procs) -> str:
    port_file = procs.tmp / "lean.port"
    procs.start([sys.executable, str(ROOT / "bench" / "lean_upstream.py"), "--port-file", str(port_file)])
    return f"http://127.0.0.1:{wait_for(lambda: read_file(port_file), 'lean upstream did not start')}/mcp"


def start_relay(procs: Procs, cp_url: str, target_flags: list[str], inflight: int, workers: int
                ) -> tuple[psutil.Process, float]:
    """Start `tunnel-client run`; returns its process and the seconds from spawn to /readyz 200."""
    url_file = procs.tmp / f"health-{len(procs.items)}.url"
    t0 = time.monotonic()
    p = procs.start([str(BIN), "run", "--control-plane.base-url", cp_url, "--control-plane.tunnel-id", TUNNEL_ID,
                     "--health.listen-addr", "127.0.0.1:0", "--health.url-file", str(url_file),
                     "--log.level", "warn", "--control-plane.max-inflight", str(inflight),
                     "--mcp.max-concurrent-requests", str(workers), *target_flags])
    health = wait_for(lambda: read_file(url_file), "relay did not bind its listener")
    wait_for(lambda: readyz(health), "relay not ready")
    return psutil.Process(p.pid), time.monotonic() - t0


def stdio_argv() -> list[str]:
    exe = shutil.which("mcp-server-time", path=str(Path(sys.executable).parent)) or "mcp-server-time"
    return [exe, "--local-timezone", "UTC"]


def new_procs() -> Procs:
    tmp = Path(tempfile.mkdtemp(prefix="tc-bench-"))
    return Procs(tmp, {**os.environ, "CONTROL_PLANE_API_KEY": secrets.token_urlsafe(24)})


def cleanup(procs: Procs) -> None:
    procs.stop()
    shutil.rmtree(procs.tmp, ignore_errors=True)


# ------------------------------------------------------------------ headline figures


async def _headline(front: str, direct: str | list[str], tool: str, args: dict[str, Any], calls: int,
                    levels: list[int], relay: psutil.Process, service: psutil.Process) -> dict[str, Any]:
    res: dict[str, Any] = {}

    async def make(target: str | list[str]) -> Any:
        return await (StdioDirect(target) if isinstance(target, list) else Session(target)).open()

    relay1, direct1 = await make(front), await make(direct)
    cpu0, svc0 = cpu(relay), cpu(service)
    lat_relay = await latency(relay1, tool, args, calls)
    done = (calls + 20) / 1000  # the warm-up calls are counted too: the CPU covers them
    res["relay_cpu_s_per_1000_c1"] = (cpu(relay) - cpu0) / done
    res["service_cpu_s_per_1000_c1"] = (cpu(service) - svc0) / done
    lat_direct = await latency(direct1, tool, args, calls)
    res["p50_relay_ms"], res["p99_relay_ms"] = statistics.median(lat_relay), pct(lat_relay, 99)
    res["p50_direct_ms"], res["p99_direct_ms"] = statistics.median(lat_direct), pct(lat_direct, 99)
    res["overhead_p50_ms"] = res["p50_relay_ms"] - res["p50_direct_ms"]
    relays, directs = [relay1], [direct1]
    for level in levels:
        relays += [await make(front) for _ in range(level - len(relays))]
        total = max(level * 10, calls * 2)
        cpu0, svc0 = cpu(relay), cpu(service)
        rate, lat = await throughput(relays[:level], tool, args, total)
        res[f"relay_cpu_s_per_1000_c{level}"] = (cpu(relay) - cpu0) / (total / 1000)
        res[f"service_cpu_s_per_1000_c{level}"] = (cpu(service) - svc0) / (total / 1000)
        res[f"tput_relay_c{level}"], res[f"p99_relay_ms_c{level}"] = rate, pct(lat, 99)
        if isinstance(direct, list):
            rate_d, _ = await throughput([direct1] * level, tool, args, total)  # one pipe, `level` ids in flight
        else:
            directs += [await make(direct) for _ in range(level - len(directs))]
            rate_d, _ = await throughput(directs[:level], tool, args, total)
        res[f"tput_direct_c{level}"] = rate_d
        res[f"tput_ratio_c{level}"] = rate / rate_d if rate_d else 0.0
    res["rss_peak_mb"] = rss_mb(relay)
    for c in relays + directs:
        c.close()
    return res


def headline_once(target: str, calls: int, levels: list[int], idle_wait: float) -> dict[str, Any]:
    procs = new_procs()
    try:
        cp_url = start_service(procs)
        service = psutil.Process(procs.items[-1].pid)
        if target == "http":
            upstream = start_stub(procs)
            flags, direct = ["--mcp.server-url", upstream], upstream
            tool, args = "echo", {"input": "hello"}
        else:
            argv = stdio_argv()
            flags, direct = ["--mcp.command", " ".join(argv)], argv
            tool, args = "get_current_time", {"timezone": "UTC"}
        relay, ready_s = start_relay(procs, cp_url, flags, inflight=max(200, max(levels) + 8),
                                     workers=max(128, max(levels)))
        time.sleep(idle_wait)  # the idle figure is taken a few seconds after ready, as operators see it
        res: dict[str, Any] = {"start_to_ready_s": ready_s, "rss_idle_mb": rss_mb(relay), "load_1m": load()}
        res.update(asyncio.run(_headline(f"{cp_url}/v1/mcp/{TUNNEL_ID}", direct, tool, args, calls, levels, relay,
                                         service)))
        return res
    finally:
        cleanup(procs)


# ------------------------------------------------------------------ curves (lean upstream)


async def _curves(front: str, direct: str, relay: psutil.Process, service: psutil.Process,
                  sizes: tuple[int, ...], levels: tuple[int, ...], inflight: tuple[int, ...],
                  calls: int) -> dict[str, Any]:
    out: dict[str, Any] = {"size": [], "concurrency": [], "in_flight": []}
    r1, d1 = await Session(front).open(), await Session(direct).open()
    for size in sizes:
        for sse in (False, True):
            n = max(20, min(calls, int(16e6 // size)))
            args = {"size": size, "sse": sse}
            c0 = cpu(relay)
            lr = await latency(r1, "blob", args, n, warmup=3)
            relay_cpu_ms = (cpu(relay) - c0) / (n + 3) * 1000
            ld = await latency(d1, "blob", args, n, warmup=3)
            out["size"].append({"bytes": size, "mode": "sse" if sse else "json", "calls": n,
                                "p50_relay_ms": statistics.median(lr), "p50_direct_ms": statistics.median(ld),
                                "relay_cpu_ms_per_call": relay_cpu_ms, "load_1m": load()})
            print(f"  size {size:>8} {'sse ' if sse else 'json'}: relay {statistics.median(lr):7.2f} ms, "
                  f"direct {statistics.median(ld):7.2f} ms, relay CPU {relay_cpu_ms:6.2f} ms/call "
                  f"(load {load()})", file=sys.stderr)
    relays, directs = [r1], [d1]
    args = {"input": "hello"}
    for level in levels:
        relays += [await Session(front).open() for _ in range(level - len(relays))]
        directs += [await Session(direct).open() for _ in range(level - len(directs))]
        total = max(level * 10, calls * 3)
        c0, s0 = cpu(relay), cpu(service)
        rate, lat = await throughput(relays[:level], "echo", args, total)
        c1, s1 = cpu(relay), cpu(service)
        rate_d, lat_d = await throughput(directs[:level], "echo", args, total)
        row = {"concurrency": level, "tput_relay": rate, "tput_direct": rate_d,
               "p50_relay_ms": statistics.median(lat), "p99_relay_ms": pct(lat, 99),
               "p50_direct_ms": statistics.median(lat_d), "relay_cpu_ms_per_call": (c1 - c0) / total * 1000,
               "service_cpu_ms_per_call": (s1 - s0) / total * 1000, "rss_mb": rss_mb(relay), "load_1m": load()}
        out["concurrency"].append(row)
        print(f"  c{level:<4} relay {rate:7.0f}/s p50 {row['p50_relay_ms']:6.2f} p99 {row['p99_relay_ms']:6.2f} ms, "
              f"direct {rate_d:7.0f}/s, relay CPU {row['relay_cpu_ms_per_call']:.3f} ms/call", file=sys.stderr)
    for c in relays + directs:
        c.close()
    stats = RawHTTP(direct.rsplit("/", 1)[0] + "/stats")
    for n in inflight:
        held = [Session(front) for _ in range(n)]
        calls_t = [asyncio.ensure_future(s.call("hold", {})) for s in held]
        deadline = time.monotonic() + 60
        while True:
            _, _, body = await stats.request("GET")
            if json.loads(body)["holding"] >= n or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.02)
        rss = rss_mb(relay)
        await stats.request("POST", path="/release")
        await asyncio.gather(*calls_t)
        for s in held:
            s.close()
        out["in_flight"].append({"commands": n, "rss_mb": rss, "reached": json.loads(body)["holding"]})
        print(f"  {n:>5} in flight: relay RSS {rss:6.1f} MB", file=sys.stderr)
    stats.close()
    return out


def curves_once(calls: int, which: set[str]) -> dict[str, Any]:
    procs = new_procs()
    try:
        cp_url = start_service(procs)
        service = psutil.Process(procs.items[-1].pid)
        upstream = start_lean_upstream(procs)
        top = max(max(CONCURRENCY), max(IN_FLIGHT)) + 16
        relay, _ = start_relay(procs, cp_url, ["--mcp.server-url", upstream], inflight=top, workers=top)
        res = asyncio.run(_curves(f"{cp_url}/v1/mcp/{TUNNEL_ID}", upstream, relay, service,
                                  SIZES if "size" in which else (),
                                  CONCURRENCY if "concurrency" in which else (),
                                  IN_FLIGHT if "in-flight" in which else (), calls))
        return res
    finally:
        cleanup(procs)


def median_curves(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Row by row, the median of every number over the runs (the rows line up: same sizes, levels)."""
    out: dict[str, Any] = {}
    for curve, rows in runs[0].items():
        out[curve] = [{k: statistics.median(r[curve][i][k] for r in runs) if isinstance(v, (int, float)) else v
                       for k, v in row.items()} for i, row in enumerate(rows)]
    out["load_1m_each"] = [[row["load_1m"] for row in r["size"]] for r in runs]
    return out


def cpu_per_mib(rows: list[dict[str, Any]], mode: str) -> float:
    """Relay CPU ms per MiB of answer: the slope between the 1 MiB and the largest size of the curve."""
    pts = sorted((r["bytes"], r["relay_cpu_ms_per_call"]) for r in rows if r["mode"] == mode and r["bytes"] >= MB)
    if len(pts) < 2:
        return float("nan")
    (b0, c0), (b1, c1) = pts[0], pts[-1]
    return (c1 - c0) / ((b1 - b0) / MB)


# ------------------------------------------------------------------ CLI and dev proxy


def cli_time(argv: list[str], reps: int = 10) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run([str(BIN), *argv], stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def dev_proxy_rss(idle_wait: float) -> float:
    procs = new_procs()
    try:
        url_file = procs.tmp / "proxy.json"
        p = procs.start([str(BIN), "dev", "proxy", "--url-file", str(url_file), "--log.level", "warn"])
        wait_for(lambda: read_file(url_file), "dev proxy not ready", every=0.01)
        time.sleep(idle_wait)
        return rss_mb(psutil.Process(p.pid))
    finally:
        cleanup(procs)


# ------------------------------------------------------------------ report


def compile_code_under_test() -> str:
    """Byte-compile the tunnel_core being measured (and return where it is).

    Installed packages come with their .pyc files; a checkout run with PYTHONDONTWRITEBYTECODE
    (or read-only) would recompile every changed module at each start, and the start and CLI
    figures would measure the compiler.
    """
    where = subprocess.run([sys.executable, "-c", "import os, tunnel_core; print(os.path.dirname(os.path.dirname("
                            "tunnel_core.__file__)))"], capture_output=True, text=True, check=True,
                           cwd=tempfile.gettempdir()).stdout.strip()
    subprocess.run([sys.executable, "-m", "compileall", "-q", f"{where}/tunnel_core", f"{where}/agent_tools"],
                   stdout=subprocess.DEVNULL, check=False)
    return where


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the headline figures (medians)")
    ap.add_argument("--calls", type=int, default=300, help="calls per latency sample")
    ap.add_argument("--target", choices=["http", "stdio", "both"], default="both")
    ap.add_argument("--levels", default="8,32,128", help="concurrency levels of the headline throughput")
    ap.add_argument("--idle-wait", type=float, default=3.0, help="seconds after ready before the idle RSS")
    ap.add_argument("--skip-curves", action="store_true", help="same as --curves none")
    ap.add_argument("--curves", default="size,concurrency,in-flight",
                    help="which curves: size, concurrency, in-flight (comma-separated) or none")
    ap.add_argument("--skip-cli", action="store_true", help="skip the --help, help TOPIC and dev proxy figures")
    ap.add_argument("--skip-headline", action="store_true", help="only the curves (and the CLI/dev proxy figures)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "relay_bench.json"))
    a = ap.parse_args()
    levels = [int(x) for x in a.levels.split(",")]
    targets = [] if a.skip_headline else ["http", "stdio"] if a.target == "both" else [a.target]
    code = compile_code_under_test()
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "code": code},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "load_1m_start": load(),
        "reps": a.reps, "calls": a.calls, "levels": levels, "targets": {},
    }
    curves = set() if a.skip_curves or a.curves == "none" else set(a.curves.split(","))
    if not curves <= {"size", "concurrency", "in-flight"}:
        ap.error(f"--curves: unknown {sorted(curves - {'size', 'concurrency', 'in-flight'})}")
    if not a.skip_cli:
        report["cli"] = {"help_s": cli_time(["--help"]), "help_topic_s": cli_time(["help", "doctor"]),
                         "load_1m": load()}
        report["dev_proxy_rss_mb"] = dev_proxy_rss(a.idle_wait)
    for target in targets:
        runs = []
        for i in range(a.reps):
            print(f"[{target}] repetition {i + 1}/{a.reps} (load {load()})", file=sys.stderr)
            runs.append(headline_once(target, a.calls, levels, a.idle_wait))
        report["targets"][target] = {k: statistics.median(r[k] for r in runs) for k in runs[0]
                                     if isinstance(runs[0][k], (int, float))}
        report["targets"][target]["load_1m_each"] = [r["load_1m"] for r in runs]
    if curves:
        runs = []
        # The headline's repetitions, or the curves' own when they run alone.
        for i in range(1 if targets else a.reps):
            print(f"[curves] lean upstream, run {i + 1} (load {load()})", file=sys.stderr)
            runs.append(curves_once(max(100, a.calls // 2), curves))
        report["curves"] = median_curves(runs)
    report["load_1m_end"] = load()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")
    print_report(report, targets, levels)
    print(f"JSON: {a.out}")


def print_report(report: dict[str, Any], targets: list[str], levels: list[int]) -> None:
    print(f"machine: {report['machine']['cores']} cores, Python {report['machine']['python']}; medians of "
          f"{report['reps']}; load 1m {report['load_1m_start']} at start, {report['load_1m_end']} at end")
    cli = report.get("cli")
    if cli:
        print(f"--help {cli['help_s'] * 1000:.0f} ms, help doctor {cli['help_topic_s'] * 1000:.0f} ms; "
              f"dev proxy idle RSS {report['dev_proxy_rss_mb']:.1f} MB")
    keys = ["p50_direct_ms", "p50_relay_ms", "overhead_p50_ms", "p99_direct_ms", "p99_relay_ms",
            "relay_cpu_s_per_1000_c1", "service_cpu_s_per_1000_c1"]
    keys += [f"{k}_c{lv}" for lv in levels for k in ("tput_direct", "tput_relay", "tput_ratio", "p99_relay_ms",
                                                      "relay_cpu_s_per_1000", "service_cpu_s_per_1000")]
    keys += ["rss_idle_mb", "rss_peak_mb", "start_to_ready_s", "load_1m"]
    if targets:
        print(f"{'metric':<30}" + "".join(f"{t:>12}" for t in targets))
        for k in keys:
            print(f"{k:<30}" + "".join(f"{report['targets'][t].get(k, float('nan')):>12.3f}" for t in targets))
    curves = report.get("curves")
    if curves and curves["size"]:
        print("response size (c1)        relay p50  direct p50  relay CPU ms/call  load 1m")
        for r in curves["size"]:
            print(f"  {r['bytes']:>8} {r['mode']:<5}       {r['p50_relay_ms']:8.2f}  {r['p50_direct_ms']:9.2f}  "
                  f"{r['relay_cpu_ms_per_call']:12.3f}  {r['load_1m']:8.2f}")
        print("relay CPU per MiB of answer (slope from 1 MiB to 4 MiB): "
              f"JSON {cpu_per_mib(curves['size'], 'json'):.2f} ms, SSE {cpu_per_mib(curves['size'], 'sse'):.2f} ms")
    if curves and curves["concurrency"]:
        print("concurrency   relay/s  direct/s  p50 ms  p99 ms  relay CPU ms/call  service CPU ms/call  RSS MB")
        for r in curves["concurrency"]:
            print(f"  {r['concurrency']:>5} {r['tput_relay']:9.0f} {r['tput_direct']:9.0f} {r['p50_relay_ms']:7.2f} "
                  f"{r['p99_relay_ms']:7.2f} {r['relay_cpu_ms_per_call']:12.3f} {r['service_cpu_ms_per_call']:16.3f}"
                  f" {r['rss_mb']:9.1f}")
    if curves and curves["in_flight"]:
        print("commands in flight -> relay RSS MB: " + ", ".join(
            f"{r['commands']}: {r['rss_mb']:.1f}" for r in curves["in_flight"]))


if __name__ == "__main__":
    with contextlib.suppress(ImportError):
        import uvloop  # the measuring side is as lean as it can be, on both paths alike

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    main()
