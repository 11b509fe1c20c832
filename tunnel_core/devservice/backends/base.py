"""The queue-backend contract of the tunnel service, and the records the broker and backends share.

A backend keeps the commands queued for each tunnel and hands them to pollers; the broker
(``tunnel_core.devservice.broker``) keeps the callers. The contract every backend meets:

* **Lanes.** Commands are queued per tunnel and channel. A command that carries an
  ``Mcp-Session-Id`` pinned to a client instance (see *affinity*) is queued in that
  client's own lane of the channel and only that client may take it.
* **take** returns at most ``limit`` commands in one call, each exactly once across every
  poller of every service instance; a command whose caller has given up or whose
  ``response_timeout`` budget has run out is never handed out.
* **route** accepts one response payload from any instance and hands it to the instance
  that holds the caller (the shard token names it); a terminal payload closes the request,
  so a second terminal payload is refused with 404 ``pending_request_not_found``.
* **Affinity.** When a client answers an ``initialize`` on a channel it declared
  ``proc_affinity`` (stdio), the session is pinned to that client instance: the target's
  ``Mcp-Session-Id`` or, when the target has none, one minted here. Later commands of the
  session go to that client only; when that client is gone, the session is refused with 404
  so the MCP client re-initializes.
* **Known channels** (``known_channels_only``, on in ``serve``): a tunnel's channels are
  ``main`` plus the ones its clients named when polling (``channel`` parameters and the
  channels declared in ``X-Tunnel-MCP-Server-Info``) in the last ``CHANNEL_TTL``; a command
  for any other channel is refused with 400 ``unknown_channel`` before anything is stored.
  At most ``MAX_CHANNELS`` are remembered per tunnel.
* **Durability** is the backend's: ``inmem`` loses its queue with the process; ``redis``
  keeps queued commands in Redis across service-instance restarts.

Errors are ``DeliveryError`` (status + stable error code), so the HTTP mapping is a lookup.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections import deque
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio

from tunnel_core.config.durations import parse_response_timeout
from tunnel_core.inbox import Inbox
from tunnel_core.wire.models import CHANNEL_RE

CALLER_SLACK = 1.0  # the front door waits response_timeout + this; the request lives as long
DEFAULT_CLIENT_GRACE = 60.0  # a client instance not seen for this long no longer holds its sessions
PIN_TTL = 24 * 3600.0  # an idle session pin is forgotten after this long
CHANNEL_TTL = 24 * 3600.0  # a channel no client has named for this long is unknown again
MAX_CHANNELS = 64  # channels remembered per tunnel (the least recently named go first)
MAX_DECLARED = 32  # channels one X-Tunnel-MCP-Server-Info may declare (the wire contract's cap)




@dataclass(slots=True)
class Pending:
    """One queued or polled request, held by the service instance whose caller waits for it."""

    request_id: str
    shard_token: str
    command: dict[str, Any]
    inbox: Inbox
    polled: bool = False
    taker: str = ""  # X-Tunnel-Client-Instance-Id of the client that polled it
    affinity: bool = False  # taken on a channel that client declared proc_affinity
    pinned_to: str = ""  # only this client instance may take it (session affinity)
    session: str = ""  # the Mcp-Session-Id the command carries
    mint: str = ""  # session id offered when an initialize is answered on a proc_affinity channel
    done: bool = False  # terminal payload delivered: nothing left to withdraw

    @property
    def send(self) -> Inbox:
        """Where the broker hands this request's payloads."""
        return self.inbox

    @property
    def receive(self) -> Inbox:
        """Where the caller reads them."""
        return self.inbox

    @property
    def channel(self) -> str:
        return str(self.command.get("channel", "main"))

    @property
    def is_initialize(self) -> bool:
        rpc = self.command.get("jsonrpc")
        return (self.command.get("command_type") == "jsonrpc" and isinstance(rpc, dict)
                and rpc.get("method") == "initialize" and "id" in rpc)

    @property
    def is_termination(self) -> bool:
        return self.command.get("command_type") == "session_termination"

    @property
    def lifetime(self) -> float:
        """How long the request may live: its response_timeout plus the caller's slack."""
        timeout = parse_response_timeout(self.command.get("response_timeout"))
        return (30.0 if timeout is None else timeout) + CALLER_SLACK


@dataclass(slots=True)
class TunnelQueue:
    """A tunnel served by this instance: its metadata, local callers and (inmem) queued commands."""

    tunnel_id: str
    name: str = ""
    description: str = ""
    queued: deque[Pending] = field(default_factory=deque)  # inmem backend only
    pending: dict[str, Pending] = field(default_factory=dict)  # callers held by this instance
    rings: int = 0  # how often notify() was called; a poll reads it before taking, so no wake-up is missed
    waiters: set[asyncio.Future[None]] = field(default_factory=set)  # polls of this instance waiting for a ring
    last_poll: float = 0.0
    polling: int = 0  # polls of this instance waiting right now
    first_poll: anyio.Event = field(default_factory=anyio.Event)  # set by the first poll this instance serves

    def seen_within(self, window: float, now: float) -> bool:
        """A client is polling now, or finished a poll less than ``window`` seconds ago."""
        return self.polling > 0 or (self.last_poll > 0 and now - self.last_poll <= window)

    def notify(self) -> None:
        """Wake every waiting poll (commands arrived, or something they check changed)."""
        self.rings += 1
        if self.waiters:
            waiters, self.waiters = self.waiters, set()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_ring(self, seen: int, timeout: float) -> None:
        """Return once notify() has been called since ``rings`` was ``seen``, or after ``timeout`` seconds.

        A future and a timer handle per wait (no task, no cancel scope: a poll waits once per call)."""
        if self.rings != seen or timeout <= 0:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self.waiters.add(waiter)
        timer = loop.call_later(timeout, _resolve, waiter) if timeout != math.inf else None
        try:
            await waiter
        finally:
            self.waiters.discard(waiter)
            if timer is not None:
                timer.cancel()


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(frozen=True, slots=True)
class Poller:
    """Who is polling: the client's X-Tunnel-Client-Instance-Id, its proc_affinity channels and
    every channel it declared (X-Tunnel-MCP-Server-Info)."""

    instance_id: str = ""
    affinity: frozenset[str] = frozenset()
    declared: frozenset[str] = frozenset()


class DeliveryError(Exception):
    """A request the service refuses; ``status`` and ``code`` are the HTTP answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def not_found(message: str = "The pending request was already processed, expired, or never existed.") -> DeliveryError:
    return DeliveryError(404, "pending_request_not_found", message)


def session_gone() -> DeliveryError:
    return DeliveryError(404, "session_not_found",
                         "The tunnel client instance that held this MCP session is gone; initialize a new session.")


def unavailable() -> DeliveryError:
    return DeliveryError(503, "tunnel_transport_unavailable", "The tunnel service queue is unavailable; retry.")


def queue_full() -> DeliveryError:
    return DeliveryError(503, "tunnel_queue_full", "Too many commands are queued for this tunnel; retry later.")


def unknown_channel(channel: str) -> DeliveryError:
    return DeliveryError(400, "unknown_channel", f"No tunnel client serves the channel {channel!r} of this tunnel; "
                         "use a channel the client binds (main by default).")


def header(headers: object, name: str) -> str:
    """First value of a header in a command's ``{name: [values]}`` map, case-insensitive; '' if absent."""
    if not isinstance(headers, dict):
        return ""
    for k, v in headers.items():
        if isinstance(k, str) and k.lower() == name:
            if isinstance(v, list) and v:
                return str(v[0])
            if isinstance(v, str):
                return v
    return ""


def session_to_pin(p: Pending, payload: dict[str, Any]) -> tuple[str, bool]:
    """For a terminal answer to ``p``: the session to pin to ``p.taker`` and whether it must be injected.

    Returns ("", False) unless ``p`` is a successful initialize taken on a proc_affinity channel.
    """
    ok = payload.get("resp_type", "jsonrpc_response") == "jsonrpc_response" and 200 <= int(
        payload.get("resp_code") or 200) < 300
    if not (ok and p.is_initialize and p.affinity and p.taker):
        return "", False
    own = header(payload.get("resp_headers"), "mcp-session-id")
    return (own, False) if own else (p.mint, True)


# (tunnel_id, request_id, payload, session to add as Mcp-Session-Id or "") -> handed to a caller?
Arrive = Callable[[str, str, dict[str, Any], str], bool]


class QueueBackend(Protocol):
    """What the broker needs from a queue engine (see the module docstring for the contract)."""

    name: str
    recheck: float  # a waiting poll re-reads the queue this often even without a wake-up

    def attach(self, arrive: Arrive, wake: Callable[[str], None],
               lookup: Callable[[str], TunnelQueue | None]) -> None:
        """Give the backend the broker's hooks: hand a payload to a local caller, wake a tunnel's pollers
        (``"*"``: every tunnel's), find a tunnel served here."""

    def running(self) -> AbstractAsyncContextManager[None]:
        """Connect and run background work (listeners, recovery) for the lifetime of the context."""

    def shard_token(self) -> str:
        """A fresh shard token that routes responses back to this instance."""

    async def push(self, q: TunnelQueue, p: Pending) -> None:
        """Queue ``p`` (lane chosen by session affinity); raises DeliveryError when refused."""

    def push_nowait(self, q: TunnelQueue, p: Pending) -> None:
        """Queue ``p`` without waiting; a refusal closes ``p``'s stream (the caller sees no answer)."""

    def withdraw(self, q: TunnelQueue, p: Pending) -> None:
        """The caller has gone: drop ``p`` if no client has taken it yet (best effort, may finish later)."""

    async def take(self, q: TunnelQueue, limit: int, channels: set[str] | None, poller: Poller,
                   hold: float = 0.0) -> list[dict[str, Any]]:
        """Up to ``limit`` queued commands for ``poller``, each handed out once; [] at once when none.

        ``hold`` is how much longer the poller keeps waiting: it counts as alive until then plus a grace.
        """

    async def route(self, tunnel_id: str, shard_token: str, payload: dict[str, Any]) -> None:
        """Hand a response payload to the instance holding its caller; raises DeliveryError when refused."""

    async def admit(self, key: str, rate: float, burst: int) -> float:
        """Rate limiter (GCRA): 0 when a request under ``key`` may pass, else seconds until one may."""

    async def check(self) -> str:
        """'' when the backend is usable, else a one-line reason."""

    async def flush(self) -> None:
        """Wait until operations posted without waiting (``push_nowait``, ``withdraw``) have taken effect."""


def poller_from_headers(instance_id: str | None, server_info: str | None) -> Poller:
    """The Poller a poll request describes; a malformed X-Tunnel-MCP-Server-Info declares nothing.

    A client sends the same two headers on every poll, so the answer is remembered (at most
    ``_MAX_POLLERS`` pairs, from authenticated polls only; ``Poller`` is immutable)."""
    key = (instance_id, server_info)
    known = _pollers.get(key)
    if known is None:
        if len(_pollers) >= _MAX_POLLERS:
            _pollers.clear()
        known = _pollers[key] = _poller(instance_id, server_info)
    return known


_MAX_POLLERS = 1024
_pollers: dict[tuple[str | None, str | None], Poller] = {}


def _poller(instance_id: str | None, server_info: str | None) -> Poller:
    affinity: set[str] = set()
    declared: set[str] = set()
    if server_info and len(server_info) <= 4096:
        try:
            info = json.loads(server_info)
        except (ValueError, RecursionError):
            info = None
        channels = info.get("channels") if isinstance(info, dict) else None
        for ch in channels[:MAX_DECLARED] if isinstance(channels, list) else []:
            name = ch.get("name") if isinstance(ch, dict) else None
            if isinstance(name, str) and CHANNEL_RE.match(name):
                declared.add(name)
                if ch.get("proc_affinity") is True:
                    affinity.add(name)
    return Poller((instance_id or "").strip()[:64], frozenset(affinity), frozenset(declared))
