"""Start-up of the agent tool server as Codex sees it, and the size of what the model is sent.

For each command: N cold starts; each writes Codex's ``initialize`` (protocol 2025-06-18) as soon
as the process exists and times the answer, then ``notifications/initialized`` + ``tools/list``.
The client is the leanest possible (a pipe and ``readline``), so nothing hides in it.

    .venv/bin/python bench/agent_tools_startup.py              # 7 starts of each command
    .venv/bin/python bench/agent_tools_startup.py --starts 15 --busy 2

``--busy N`` keeps N CPU-bound processes running meanwhile (the "cores busy" condition).
Commands: ``python -m agent_tools`` (what the installed plugin's .mcp.json starts),
``tunnel-client codex mcp-server`` (the command the plugin template and docs name), and the SDK
server alone (``python -m agent_tools.server``, what Codex used to start) for comparison.
Not a test: it prints figures for docs/codex.md and the closing notes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent_tools.catalogue import model_bytes  # noqa: E402

INIT = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {"elicitation": {"form": {}, "url": {}}},
    "clientInfo": {"name": "codex-mcp-client", "title": "Codex", "version": "0.169.0"}}}
AFTER = (b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
         b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}\n')


def one_start(argv: list[str]) -> tuple[float, float, list[dict[str, object]]]:
    """(seconds to the initialize answer, seconds to the tools/list answer, the tools)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write((json.dumps(INIT) + "\n").encode())
        proc.stdin.flush()
        answer = json.loads(proc.stdout.readline())
        initialized = time.perf_counter() - start
        assert answer.get("id") == 0 and "result" in answer, answer
        proc.stdin.write(AFTER)
        proc.stdin.flush()
        listed = json.loads(proc.stdout.readline())
        tools_at = time.perf_counter() - start
        proc.stdin.close()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return initialized, tools_at, listed["result"]["tools"]


def _spin(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


def measure(name: str, argv: list[str], starts: int) -> dict[str, object]:
    init_times, list_times = [], []
    tools: list[dict[str, object]] = []
    for _ in range(starts):
        i, t, tools = one_start(argv)
        init_times.append(i * 1000)
        list_times.append(t * 1000)
    return {"command": name, "starts": starts, "initialize_ms_median": round(statistics.median(init_times)),
            "initialize_ms_min": round(min(init_times)), "initialize_ms_max": round(max(init_times)),
            "tools_list_ms_median": round(statistics.median(list_times)), "tools": len(tools),
            "model_catalogue_bytes": model_bytes(tools)}  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=7)
    parser.add_argument("--busy", type=int, default=0, help="CPU-bound processes to run meanwhile")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    python = sys.executable
    commands = [
        ("python -m agent_tools", [python, "-m", "agent_tools"]),
        ("tunnel-client codex mcp-server", [str(Path(python).parent / "tunnel-client"), "codex", "mcp-server"]),
        ("python -m agent_tools.server (SDK only)", [python, "-m", "agent_tools.server"]),
    ]
    spinners = [multiprocessing.Process(target=_spin, args=(time.monotonic() + 3600,), daemon=True)
                for _ in range(args.busy)]
    for s in spinners:
        s.start()
    try:
        rows = [measure(name, argv, args.starts) for name, argv in commands]
    finally:
        for s in spinners:
            s.terminate()
    if args.json:
        print(json.dumps({"cpus": os.cpu_count(), "busy": args.busy, "results": rows}, indent=2))
        return 0
    print(f"{os.cpu_count()} CPUs, {args.busy} busy spinners, {args.starts} cold starts each")
    print(f"{'command':42} {'init median':>12} {'min':>6} {'max':>6} {'tools/list':>11} {'tools':>6} {'model bytes':>12}")
    for r in rows:
        print(f"{r['command']:42} {r['initialize_ms_median']:>9} ms {r['initialize_ms_min']:>6} "
              f"{r['initialize_ms_max']:>6} {r['tools_list_ms_median']:>8} ms {r['tools']:>6} "
              f"{r['model_catalogue_bytes']:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
