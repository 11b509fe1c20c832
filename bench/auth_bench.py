"""What authentication costs the tunnel service per request, measured in-process.

The front-door guard (find ``X-Tunnel-Caller-Token``, hash it, compare it with the tunnel's
digests, strip the header) and the runtime-key check of a poll or response, with a registry
holding ``--tunnels`` tunnels of three keys and three tokens each. The ASGI app behind the
guard does nothing, so the figure is the guard's own cost. Compare it with the service's CPU
per call that bench/service_scale_bench.py reports (``cpu_s_per_1000_service``): that bench is
the end-to-end before/after; this one is far less sensitive to other load on the machine: it
counts this process's CPU time (not wall time) and takes the best of several repetitions.

    .venv/bin/python bench/auth_bench.py
    .venv/bin/python bench/auth_bench.py --tunnels 10000 --calls 200000

Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from tunnel_core.devservice.credentials import (
    CALLER_TOKEN,
    RUNTIME_KEY,
    FrontDoorGuard,
    FrontDoorPolicy,
    Gate,
    mint,
)
from tunnel_core.devservice.registry import LocalRegistry
from tunnel_core.devservice.store import CredentialRecord, TunnelStore


def build(tunnels: int) -> tuple[Gate, str, str, str]:
    """A gate over a registry of ``tunnels`` tunnels; returns it with one tunnel id, its token and its key."""
    store = TunnelStore(None)
    secrets: dict[tuple[str, str], str] = {}
    for i in range(tunnels):
        tunnel_id = f"tunnel_{i:032x}"
        for kind in (RUNTIME_KEY, CALLER_TOKEN) * 3:
            cred_id, secret, dig = mint(kind)
            store.add_credential(CredentialRecord(id=cred_id, kind=kind, tunnel_id=tunnel_id, digest=dig))
            secrets[(kind, tunnel_id)] = secret
    gate = Gate(LocalRegistry(store), policy=FrontDoorPolicy(default=True))
    tunnel_id = f"tunnel_{tunnels // 2:032x}"
    return gate, tunnel_id, secrets[(CALLER_TOKEN, tunnel_id)], secrets[(RUNTIME_KEY, tunnel_id)]


async def guard_calls(gate: Gate, tunnel_id: str, token: str, calls: int, *, guarded: bool) -> float:
    """Seconds for ``calls`` front-door requests through the guard (or straight to the app)."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        return None

    target = FrontDoorGuard(app, gate) if guarded else app
    headers = [(b"host", b"relay.example.com"), (b"content-type", b"application/json"),
               (b"accept", b"application/json, text/event-stream"), (b"authorization", b"Bearer user-oauth-token"),
               (b"mcp-session-id", b"3f0c9a1b2d4e5f60"), (b"x-tunnel-caller-token", token.encode())]
    scope = {"type": "http", "method": "POST", "path": f"/v1/mcp/{tunnel_id}", "headers": headers}

    async def nothing() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def drop(message: Any) -> None:
        raise AssertionError("the guard refused a valid token")

    t0 = time.process_time()
    for _ in range(calls):
        await target(scope, nothing, drop)
    return time.process_time() - t0


def best(fn: Callable[[], float], reps: int) -> float:
    return min(fn() for _ in range(reps))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tunnels", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    gate, tunnel_id, token, key = build(a.tunnels)
    n = a.calls
    bare = best(lambda: asyncio.run(guard_calls(gate, tunnel_id, token, n, guarded=False)), a.reps)
    guarded = best(lambda: asyncio.run(guard_calls(gate, tunnel_id, token, n, guarded=True)), a.reps)

    def runtime() -> float:
        t0 = time.process_time()
        for _ in range(n):
            if gate.runtime(key, tunnel_id) != "ok":
                raise AssertionError("the runtime key was refused")
        return time.process_time() - t0

    rt = best(runtime, a.reps)
    print(f"registry: {a.tunnels} tunnels x (3 runtime keys + 3 caller tokens); best of {a.reps} x {n} calls")
    print(f"front-door guard (token found, hashed, compared, header stripped): {(guarded - bare) / n * 1e6:.2f} us/request")
    print(f"runtime key check (poll, response, metadata):                     {rt / n * 1e6:.2f} us/request")


if __name__ == "__main__":
    main()
