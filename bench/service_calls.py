"""The tunnel service's own cost per relayed call, without a relay or an MCP server in the way.

Starts `tunnel-client dev tunnel-service` on 127.0.0.1 and plays both of its clients with raw
HTTP/1.1 over asyncio streams (one keep-alive connection each): a caller POSTs `tools/call` to the
front door, a tunnel client long-polls, posts the answer, and the caller reads it. Every relayed
call is those three requests, so what the service spends here is what it adds to every call.

    .venv/bin/python bench/service_calls.py                    # CPU ms per call (getrusage of the service)
    .venv/bin/python bench/service_calls.py --callgrind        # instructions per call (valgrind): load-independent
    PYTHONPATH=/tmp/old-checkout .venv/bin/python bench/service_calls.py --callgrind   # the same for other code

CPU time per call depends on the machine's load; the instruction count does not (within 0.1%),
so compare versions with ``--callgrind``. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

TUNNEL = "tunnel_" + "a" * 32
KEY = "bench-runtime-key-" + "k" * 16
BIN = Path(sys.executable).parent / "tunnel-client"


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


async def _drive(port: int, warmup: int, calls: int, between: tuple[object, ...]) -> list[float]:
    """Relay ``warmup`` then ``calls`` calls; ``between`` runs (sync) after the warm-up. Latencies in s."""
    caller_r, caller_w = await asyncio.open_connection("127.0.0.1", port)
    client_r, client_w = await asyncio.open_connection("127.0.0.1", port)
    common = (b"Host: bench\r\nUser-Agent: tunnel-client/bench\r\nX-Tunnel-Client-Instance-Id: bench\r\n"
              b"Authorization: Bearer " + KEY.encode() + b"\r\n")
    base = f"/v1/tunnels/{TUNNEL}".encode()

    async def tunnel_client() -> None:
        while True:
            client_w.write(b"GET " + base + b"/poll?timeout_ms=30000 HTTP/1.1\r\n" + common + b"\r\n")
            body = await _answer(client_r)
            for cmd in json.loads(body)["commands"] if body else []:
                rpc = cmd["jsonrpc"]
                answer = json.dumps({"request_id": cmd["request_id"], "resp_code": 200, "resp_type": "jsonrpc_response",
                                     "resp_headers": {"Content-Type": ["application/json"]},
                                     "resp_json": {"jsonrpc": "2.0", "id": rpc["id"],
                                                   "result": {"content": [{"type": "text", "text": "hello"}]}}}).encode()
                client_w.write(b"POST " + base + b"/response HTTP/1.1\r\n" + common + b"X-Tunnel-Shard-Token: "
                               + cmd["shard_token"].encode() + b"\r\nContent-Type: application/json\r\nContent-Length: "
                               + str(len(answer)).encode() + b"\r\n\r\n" + answer)
                await _answer(client_r)

    poller = asyncio.create_task(tunnel_client())
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"input": "hello"}}}).encode()
    request = (f"POST /v1/mcp/{TUNNEL} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
               f"Accept: application/json, text/event-stream\r\nMcp-Session-Id: bench\r\n"
               f"Content-Length: {len(call)}\r\n\r\n").encode() + call

    async def one() -> float:
        started = time.perf_counter()
        caller_w.write(request)
        if b"hello" not in await asyncio.wait_for(_answer(caller_r), 120):
            raise SystemExit("the caller got no answer")
        return time.perf_counter() - started

    for _ in range(warmup):
        await one()
    for step in between:
        step()  # type: ignore[operator]
    latencies = [await one() for _ in range(calls)]
    poller.cancel()
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=0, help="measured calls (default 4000, 300 with --callgrind)")
    ap.add_argument("--callgrind", action="store_true", help="run the service under valgrind; count instructions")
    args = ap.parse_args()
    calls = args.calls or (300 if args.callgrind else 4000)
    if args.callgrind and not shutil.which("valgrind"):
        raise SystemExit("--callgrind needs valgrind (apt-get install valgrind)")
    tmp = Path(tempfile.mkdtemp(prefix="service-calls-"))
    url_file, out = tmp / "service.json", tmp / "callgrind.out"
    prefix = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable] if args.callgrind else []
    proc = subprocess.Popen([*prefix, str(BIN), "dev", "tunnel-service", "--listen", "127.0.0.1:0", "--tunnel-id",
                             TUNNEL, "--url-file", str(url_file), "--log.level", "warn"],
                            env={**os.environ, "CONTROL_PLANE_API_KEY": KEY}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + (300 if args.callgrind else 30)
        while not (url_file.exists() and url_file.read_text().rstrip().endswith("}")):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("the tunnel service did not start")
            time.sleep(0.1)
        port = int(json.loads(url_file.read_text())["control_plane_base_url"].rsplit(":", 1)[1])
        service = psutil.Process(proc.pid)
        marks: list[float] = []

        def zero() -> None:
            if args.callgrind:
                subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t = service.cpu_times()
            marks.append(t.user + t.system)

        latencies = asyncio.run(_drive(port, 50 if args.callgrind else 300, calls, (zero,)))
        t = service.cpu_times()
        cpu_ms = (t.user + t.system - marks[0]) / calls * 1000
        latencies.sort()
        load = os.getloadavg()[0]
        if args.callgrind:
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            dumps = sorted(glob.glob(f"{out}.*"), key=os.path.getmtime)
            totals = [int(line.split()[1]) for line in open(dumps[-1]) if line.startswith(("totals:", "summary:"))]
            print(f"service instructions per relayed call: {max(totals) / calls / 1e6:.3f} M ({calls} calls)")
        else:
            print(f"service CPU per relayed call: {cpu_ms:.3f} ms; p50 of a call {latencies[len(latencies) // 2] * 1000:.3f}"
                  f" ms ({calls} calls, load {load:.2f})")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
