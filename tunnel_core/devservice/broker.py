"""Command broker of the local tunnel service: the callers of this instance over a queue backend.

Per tunnel the broker keeps the requests whose callers wait on *this* instance (a memory
stream each, fed with the ``jsonrpc_notify`` payloads and then the terminal one); the
queue of commands itself lives in a backend (``backends.inmem`` in this process, or
``backends.redis`` shared by several instances). A response for a request that is no
longer pending (answered, expired, caller gone) is refused with 404, as the hosted service
does.

Synchronous entry points (``enqueue``, ``deliver``) are kept for callers that cannot await;
``deliver`` works with the inmem backend only. The front door uses ``submit`` and ``respond``.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from tunnel_core.devservice.backends.base import (
    DeliveryError,
    Pending,
    Poller,
    QueueBackend,
    TunnelQueue,
    header,
)
from tunnel_core.devservice.backends.inmem import InMemoryBackend
from tunnel_core.devservice.registry import Registry
from tunnel_core.inbox import Inbox

__all__ = ["Broker", "DeliveryError", "Pending", "Poller", "TunnelQueue"]


class Broker:
    def __init__(self, backend: QueueBackend | None = None) -> None:
        self.tunnels: dict[str, TunnelQueue] = {}
        self.backend: QueueBackend = backend if backend is not None else InMemoryBackend()
        self.backend.attach(self._arrive, self._wake, self.tunnels.get)
        self.closing = False
        self.stats: Counter[str] = Counter()
        self.registry: Registry | None = None  # tunnels and credentials shared by instances (build_service_app)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Broker]:
        """Run the backend (connections, listeners, recovery); on exit stop handing out work first."""
        async with self.backend.running(), self.registry.running() if self.registry else contextlib.nullcontext():
            try:
                yield self
            finally:
                self.close()

    def close(self) -> None:
        """Stop handing out work: waiting polls answer empty, queued commands stay queued (durable backends)."""
        self.closing = True
        for q in self.tunnels.values():
            q.notify()

    def add_tunnel(self, tunnel_id: str, name: str = "", description: str = "") -> TunnelQueue:
        q = self.tunnels.get(tunnel_id)
        if q is None:
            q = self.tunnels[tunnel_id] = TunnelQueue(tunnel_id, name or tunnel_id, description)
        return q

    def remove_tunnel(self, tunnel_id: str) -> None:
        """Stop serving a tunnel: callers still waiting on it are released (they answer 504), pollers woken."""
        q = self.tunnels.pop(tunnel_id, None)
        if q is None:
            return
        for p in list(q.pending.values()):
            p.send.close()
        q.pending.clear()
        q.queued.clear()
        q.notify()

    def _new(self, tunnel_id: str, command: dict[str, Any]) -> tuple[TunnelQueue, Pending]:
        q = self.tunnels[tunnel_id]
        request_id = "req_" + secrets.token_hex(12)
        shard = self.backend.shard_token()
        command = {"request_id": request_id, "shard_token": shard, **command}
        p = Pending(request_id, shard, command, Inbox())
        p.session = header(command.get("headers"), "mcp-session-id")
        if p.is_initialize:
            p.mint = "tsess_" + secrets.token_hex(16)
        q.pending[request_id] = p
        self.stats["commands_enqueued"] += 1
        return q, p

    def enqueue(self, tunnel_id: str, command: dict[str, Any]) -> Pending:
        """Queue a command (request_id and shard_token are assigned here) and return its pending handle.

        Does not wait for the backend: if it refuses the command, the handle's stream closes.
        """
        q, p = self._new(tunnel_id, command)
        self.backend.push_nowait(q, p)
        return p

    async def submit(self, tunnel_id: str, command: dict[str, Any]) -> Pending:
        """Like ``enqueue``, but returns once the command is queued; raises DeliveryError when refused."""
        q, p = self._new(tunnel_id, command)
        try:
            await self.backend.push(q, p)
        except BaseException:
            q.pending.pop(p.request_id, None)
            p.send.close()
            self.stats["commands_refused"] += 1
            raise
        return p

    def forget(self, tunnel_id: str, request_id: str) -> None:
        """The caller is done (answered, timed out or gone): release it and withdraw its unpolled command."""
        q = self.tunnels.get(tunnel_id)
        if q is None:
            return
        p = q.pending.pop(request_id, None)
        if p is not None:
            p.send.close()
            # While shutting down, a queued command outlives its caller: another instance
            # (or this one, restarted) hands it to a client, as with a crash.
            if not p.done and not self.closing:
                self.backend.withdraw(q, p)

    async def poll(
        self, tunnel_id: str, limit: int, timeout: float, channels: set[str] | None, *,
        poller: Poller | None = None, allowed: Callable[[], bool] = lambda: True,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` commands, waiting at most ``timeout`` seconds for the first; [] when none came.

        A waiting poll ends empty as soon as its tunnel is no longer served or ``allowed()`` turns
        false (its key was revoked): ``wake_all`` after such a change.
        """
        q = self.tunnels[tunnel_id]
        who = poller or Poller()
        q.last_poll = time.time()
        end = time.monotonic() + timeout
        out: list[dict[str, Any]] = []

        def stop() -> bool:
            return self.closing or self.tunnels.get(tunnel_id) is not q or not allowed()

        q.polling += 1
        q.first_poll.set()
        try:
            if not stop():
                seen = q.rings  # read before taking, so a wake-up during the take is not missed
                out = await self.backend.take(q, limit, channels, who, timeout)
                recheck = self.backend.recheck  # inf: every enqueue wakes the pollers (inmem)
                while not out and not self.closing:
                    left = end - time.monotonic()
                    if left <= 0:
                        break
                    await q.wait_ring(seen, min(recheck, left))
                    if stop():
                        break
                    seen = q.rings
                    out = await self.backend.take(q, limit, channels, who, max(0.0, end - time.monotonic()))
        finally:
            q.polling -= 1
        q.last_poll = time.time()
        self.stats["commands_polled"] += len(out)
        return out

    def deliver(self, tunnel_id: str, shard_token: str, payload: dict[str, Any]) -> None:
        """Route one response payload to its waiting caller (inmem backend); terminal payloads close the request."""
        if not isinstance(self.backend, InMemoryBackend):
            raise RuntimeError("Broker.deliver is synchronous and serves the inmem backend only; await respond()")
        self.backend.route_now(tunnel_id, shard_token, payload)
        self.stats["responses_routed"] += 1

    async def respond(self, tunnel_id: str, shard_token: str, payload: dict[str, Any]) -> None:
        """Route one response payload to the instance holding its caller; raises DeliveryError when refused."""
        try:
            await self.backend.route(tunnel_id, shard_token, payload)
        except DeliveryError as exc:
            self.stats[f"responses_refused_{exc.code}"] += 1
            raise
        self.stats["responses_routed"] += 1

    def _arrive(self, tunnel_id: str, request_id: str, payload: dict[str, Any], session: str) -> bool:
        """Hand a routed payload to the local caller; False when that caller is gone."""
        q = self.tunnels.get(tunnel_id)
        p = q.pending.get(request_id) if q is not None else None
        if q is None or p is None:
            return False
        if session:
            headers = dict(payload.get("resp_headers") or {})
            headers["Mcp-Session-Id"] = [session]
            payload = {**payload, "resp_headers": headers}
        try:
            p.send.send_nowait(payload)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return False
        if payload.get("resp_type", "jsonrpc_response") != "jsonrpc_notify":
            q.pending.pop(p.request_id, None)
            p.done = True
            p.send.close()
        return True

    def wake_all(self) -> None:
        """Wake every waiting poll, so each re-checks that its tunnel and key are still valid."""
        self._wake("*")

    def _wake(self, tunnel_id: str) -> None:
        """Wake the pollers of one tunnel ("*": of every tunnel)."""
        if tunnel_id == "*":
            for q in self.tunnels.values():
                q.notify()
            return
        one = self.tunnels.get(tunnel_id)
        if one is not None:
            one.notify()
