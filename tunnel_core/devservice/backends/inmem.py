"""The embedded queue: per tunnel one FIFO in this process (the default; nothing survives a restart).

Every operation is synchronous underneath (no await between reading and changing the
queue), so on one event loop a command is handed to exactly one poller.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from tunnel_core.devservice.backends.base import (
    CHANNEL_TTL,
    DEFAULT_CLIENT_GRACE,
    MAX_CHANNELS,
    PIN_TTL,
    Arrive,
    DeliveryError,
    Pending,
    Poller,
    TunnelQueue,
    not_found,
    queue_full,
    session_gone,
    session_to_pin,
    unknown_channel,
)

MAX_PINS = 100_000
MAX_LIMITER_KEYS = 10_000
MAX_CLIENTS = 10_000  # client instances remembered for session liveness before expired ones are pruned


class InMemoryBackend:
    """Queues in this process; ``route`` only reaches callers of this process."""

    name = "inmem"
    recheck = math.inf  # every enqueue wakes the pollers directly

    def __init__(self, *, max_queued: int = 0, client_grace: float = DEFAULT_CLIENT_GRACE,
                 known_channels_only: bool = False) -> None:
        self.max_queued = max_queued  # per tunnel; 0 = unbounded (the dev default)
        self.client_grace = client_grace
        self.known_channels_only = known_channels_only
        # tunnel -> channel -> until when it is known (named by a poll); bounded by MAX_CHANNELS per tunnel
        self._channels: dict[str, OrderedDict[str, float]] = {}
        self._pins: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()  # -> (client, expires)
        self._seen_until: dict[tuple[str, str], float] = {}
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._arrive: Arrive = lambda *_: False
        self._lookup: Callable[[str], TunnelQueue | None] = lambda _: None

    def attach(self, arrive: Arrive, wake: Callable[[str], None],
               lookup: Callable[[str], TunnelQueue | None]) -> None:
        self._arrive = arrive
        self._lookup = lookup

    def running(self) -> AbstractAsyncContextManager[None]:
        return _nothing()

    def shard_token(self) -> str:
        return "dev:" + secrets.token_hex(8)

    # -- queueing -------------------------------------------------------------------------------

    async def push(self, q: TunnelQueue, p: Pending) -> None:
        self.push_now(q, p)

    def push_nowait(self, q: TunnelQueue, p: Pending) -> None:
        try:
            self.push_now(q, p)
        except DeliveryError:
            p.send.close()

    def push_now(self, q: TunnelQueue, p: Pending) -> None:
        if self.known_channels_only and p.channel != "main" and not self._known(q.tunnel_id, p.channel):
            raise unknown_channel(p.channel)
        if p.session:
            who = self._pinned(q.tunnel_id, p.session)
            if who:
                if self._seen_until.get((q.tunnel_id, who), 0.0) < time.monotonic():
                    raise session_gone()
                p.pinned_to = who
        if self.max_queued and len(q.queued) >= self.max_queued:
            raise queue_full()
        q.queued.append(p)
        q.notify()

    def withdraw(self, q: TunnelQueue, p: Pending) -> None:
        if not p.polled:
            with contextlib.suppress(ValueError):
                q.queued.remove(p)

    async def take(self, q: TunnelQueue, limit: int, channels: set[str] | None, poller: Poller,
                   hold: float = 0.0) -> list[dict[str, Any]]:
        return self.take_now(q, limit, channels, poller, hold)

    def take_now(self, q: TunnelQueue, limit: int, channels: set[str] | None, poller: Poller,
                 hold: float = 0.0) -> list[dict[str, Any]]:
        self._name_channels(q.tunnel_id, (channels or set()) | poller.declared)
        if poller.instance_id:
            now = time.monotonic()
            if len(self._seen_until) > MAX_CLIENTS:
                self._seen_until = {k: t for k, t in self._seen_until.items() if t > now}
            self._seen_until[(q.tunnel_id, poller.instance_id)] = now + hold + self.client_grace
        out: list[dict[str, Any]] = []
        keep: deque[Pending] = deque()
        while q.queued and len(out) < limit:
            p = q.queued.popleft()
            if (channels is not None and p.channel not in channels) or (
                    p.pinned_to and p.pinned_to != poller.instance_id):
                keep.append(p)
                continue
            p.polled = True
            p.taker = poller.instance_id
            p.affinity = p.channel in poller.affinity
            out.append(p.command)
        keep.extend(q.queued)
        q.queued = keep
        if out and poller.instance_id:  # the poll ends now: alive for the grace only
            self._seen_until[(q.tunnel_id, poller.instance_id)] = time.monotonic() + self.client_grace
        return out

    # -- responses ------------------------------------------------------------------------------

    async def route(self, tunnel_id: str, shard_token: str, payload: dict[str, Any]) -> None:
        self.route_now(tunnel_id, shard_token, payload)

    def route_now(self, tunnel_id: str, shard_token: str, payload: dict[str, Any]) -> None:
        q = self._lookup(tunnel_id)
        p = q.pending.get(payload["request_id"]) if q is not None else None
        if p is None or not p.polled:
            raise not_found()
        if p.shard_token != shard_token:
            raise DeliveryError(401, "tunnel_request_mismatch", "The shard token does not match this request.")
        inject = ""
        if payload.get("resp_type", "jsonrpc_response") != "jsonrpc_notify":
            sid, add = session_to_pin(p, payload)
            if sid:
                self._pin(tunnel_id, sid, p.taker)
                inject = sid if add else ""
            if p.is_termination and p.session:
                self._pins.pop((tunnel_id, p.session), None)
        if p.taker:
            key = (tunnel_id, p.taker)
            self._seen_until[key] = max(self._seen_until.get(key, 0.0), time.monotonic() + self.client_grace)
        if not self._arrive(tunnel_id, p.request_id, payload, inject):
            raise not_found("The caller is gone.")

    def _name_channels(self, tunnel_id: str, names: set[str] | frozenset[str]) -> None:
        if not names:
            return
        known = self._channels.setdefault(tunnel_id, OrderedDict())
        until = time.monotonic() + CHANNEL_TTL
        for name in names:
            known[name] = until
            known.move_to_end(name)
        while len(known) > MAX_CHANNELS:
            known.popitem(last=False)

    def _known(self, tunnel_id: str, channel: str) -> bool:
        known = self._channels.get(tunnel_id)
        until = known.get(channel) if known is not None else None
        return until is not None and until > time.monotonic()

    def _pin(self, tunnel_id: str, sid: str, client: str) -> None:
        self._pins[(tunnel_id, sid)] = (client, time.monotonic() + PIN_TTL)
        self._pins.move_to_end((tunnel_id, sid))
        while len(self._pins) > MAX_PINS:
            self._pins.popitem(last=False)

    def _pinned(self, tunnel_id: str, sid: str) -> str:
        got = self._pins.get((tunnel_id, sid))
        if got is None:
            return ""
        client, expires = got
        if expires < time.monotonic():
            del self._pins[(tunnel_id, sid)]
            return ""
        self._pin(tunnel_id, sid, client)  # refresh on use
        return client

    # -- the rest -------------------------------------------------------------------------------

    async def admit(self, key: str, rate: float, burst: int) -> float:
        """GCRA: each request costs 1/rate seconds of credit; up to ``burst`` may pass at once."""
        now = time.monotonic()
        step = 1.0 / rate
        tat = max(self._tat.get(key, now), now)
        allow_at = tat + step - burst * step
        if now < allow_at:
            return allow_at - now
        self._tat[key] = tat + step
        self._tat.move_to_end(key)
        while len(self._tat) > MAX_LIMITER_KEYS:
            self._tat.popitem(last=False)
        return 0.0

    async def check(self) -> str:
        return ""

    async def flush(self) -> None:
        """Nothing to wait for: every operation took effect when it was called."""


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield
