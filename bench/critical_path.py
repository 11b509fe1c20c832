"""Where one relayed call's time goes: a timeline of its critical path, process by process.

    .venv/bin/python bench/critical_path.py                 # 1,000 calls, the headline's SDK upstream
    .venv/bin/python bench/critical_path.py --upstream lean --calls 2000

Starts the tunnel service, an MCP server and `tunnel-client run` as bench/relay_bench.py does,
with bench/critical_path_hook/sitecustomize.py loaded into the relay and the service: it stamps
every HTTP read and write they make with the shared monotonic clock. The caller makes
``--calls`` `tools/call` requests one at a time (after a warm-up) and stamps each send and
answer. Each call's stamps are matched to landmarks (front door request in, poll answer out,
request to the MCP server out, its answer in, response POST out and in, caller answer out) and
the medians of the steps between them are printed, with who spends them. Then the same calls
are made directly to the MCP server for the floor.

Not a test and not a throughput figure: the stamps cost a few microseconds each. Needs a quiet
machine (load printed). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import relay_bench as rb  # the bench's processes and lean client

HOOK = Path(__file__).resolve().parent / "critical_path_hook"

# (label, who spends the step that ends here, stamp tag, first bytes of the stamped data; None:
# the last such stamp before the next landmark, as the answer's last piece)
LANDMARKS: list[tuple[str, str, str, bytes | None]] = [
    ("front door request in", "caller -> service", "service-in", b"POST /v1/mcp/"),
    ("poll answer out", "service", "service-out", b"HTTP/1.1 200"),
    ("relay has the command", "wire", "relay-in", b"HTTP/1.1 200"),
    ("request to the MCP server out", "relay", "relay-out", b"POST "),
    ("MCP server's answer in", "MCP server", "relay-in", None),
    ("response POST out", "relay", "relay-out", b"POST /v1/tunnels/"),
    ("service has the response", "wire", "service-in", b"POST /v1/tunnels/"),
    ("caller's answer out", "service", "service-out", b"HTTP/1.1 200"),
]


def _read_trace(prefix: Path) -> list[tuple[int, str, bytes]]:
    events = []
    for path in prefix.parent.glob(prefix.name + ".*"):
        for line in path.read_text().splitlines():
            t, tag, data = line.split(" ")
            events.append((int(t), tag, bytes.fromhex(data)))
    events.sort()
    return events


def _steps(events: list[tuple[int, str, bytes]], calls: list[tuple[int, int]]) -> tuple[dict[str, list[float]], int]:
    stamps = [e[0] for e in events]
    steps: dict[str, list[float]] = collections.defaultdict(list)
    unmatched = 0
    for t0, t1 in calls:
        k, end = bisect.bisect_left(stamps, t0), bisect.bisect_right(stamps, t1)
        found: list[int] = []
        last_of: str | None = None  # a landmark that is the last stamp of its tag before the next one
        for _, _, tag, prefix in LANDMARKS:
            if prefix is None:
                last_of = tag
                continue
            seen = None
            while k < end and not (events[k][1] == tag and events[k][2].startswith(prefix)):
                if events[k][1] == last_of:
                    seen = events[k][0]
                k += 1
            if k >= end or (last_of is not None and seen is None):
                break
            if last_of is not None:
                found.append(seen)  # type: ignore[arg-type]
                last_of = None
            found.append(events[k][0])
            k += 1
        if len(found) != len(LANDMARKS):
            unmatched += 1
            continue
        prev = t0
        for (label, _, _, _), t in zip(LANDMARKS, found, strict=True):
            steps[label].append((t - prev) / 1000)
            prev = t
        steps["caller has the answer"].append((t1 - prev) / 1000)
        steps["total"].append((t1 - t0) / 1000)
    return steps, unmatched


async def _calls(url: str, n: int, warmup: int) -> list[tuple[int, int]]:
    session = await rb.Session(url).open()
    try:
        for _ in range(warmup):
            await session.call("echo", {"input": "hello"})
        out = []
        for _ in range(n):
            t0 = time.monotonic_ns()
            await session.call("echo", {"input": "hello"})
            out.append((t0, time.monotonic_ns()))
        return out
    finally:
        session.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--upstream", choices=["sdk", "lean"], default="sdk")
    args = ap.parse_args()
    rb.compile_code_under_test()
    procs = rb.new_procs()
    trace = procs.tmp / "trace"
    plain_env = dict(procs.env)
    traced_env = {**plain_env, "CRITICAL_PATH_TRACE": str(trace),
                  "PYTHONPATH": f"{HOOK}:{plain_env['PYTHONPATH']}" if plain_env.get("PYTHONPATH") else str(HOOK)}
    try:
        procs.env = traced_env
        cp_url = rb.start_service(procs)
        procs.env = plain_env
        upstream = rb.start_stub(procs) if args.upstream == "sdk" else rb.start_lean_upstream(procs)
        procs.env = traced_env
        rb.start_relay(procs, cp_url, ["--mcp.server-url", upstream], inflight=16, workers=8)
        calls = asyncio.run(_calls(f"{cp_url}/v1/mcp/{rb.TUNNEL_ID}", args.calls, args.warmup))
        direct = asyncio.run(_calls(upstream, args.calls, args.warmup))
        load = rb.load()
        procs.stop()  # the relay and the service write their stamps as they exit
        steps, unmatched = _steps(_read_trace(trace), calls)
    finally:
        rb.cleanup(procs)
    direct_p50 = statistics.median((t1 - t0) / 1000 for t0, t1 in direct)
    print(f"{len(calls) - unmatched} of {len(calls)} calls matched; upstream {args.upstream}; load {load}")
    print(f"{'step (median, us)':34s} {'us':>6s}  spent by")
    who = {label: spender for label, spender, _, _ in LANDMARKS} | {"caller has the answer": "service -> caller"}
    share: dict[str, float] = collections.defaultdict(float)
    for label in [*who, "total"]:
        med = statistics.median(steps[label])
        print(f"  {label:32s} {med:6.0f}  {who.get(label, '')}")
        if label in who:
            share[who[label]] += med
    print(f"  {'direct call (floor)':32s} {direct_p50:6.0f}")
    print(f"  {'overhead (total - direct)':32s} {statistics.median(steps['total']) - direct_p50:6.0f}")
    print("by spender: " + ", ".join(f"{k} {v:.0f}" for k, v in share.items()))


if __name__ == "__main__":
    main()
