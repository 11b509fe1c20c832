"""The Redis queue: several tunnel-service instances share one Redis (Streams + consumer groups).

Layout (prefix ``tc:`` by default; one Redis database, not Redis Cluster):

``t:{tunnel}:q:{channel}``            shared lane: a stream of queued commands, consumer group ``pollers``
``t:{tunnel}:p:{client}:{channel}``   a client instance's own lane (commands of sessions pinned to it)
``t:{tunnel}:chans``                  sorted set: the tunnel's known channels, scored by when they expire
``t:{tunnel}:pin:{session}``          session -> client instance that owns it (proc_affinity)
``t:{tunnel}:alive:{client}``         present while that client polls (expires after a grace)
``req:{request_id}``                  hash: shard token, state queued|polled, taker, lane and entry id;
                                      expires when the caller's budget (response_timeout + 1 s) ends
``lanes``                             set of every lane key, for the recovery sweep
``up:{instance}``                     present while that instance is subscribed (refreshed by its listener)
``bell:{tunnel}``  (pub/sub)          "commands arrived": wakes pollers on every instance
``inst:{instance}`` (pub/sub)         responses for the callers held by that instance
``reg:tunnels``, ``reg:creds``, ``reg`` (pub/sub)  the tunnel registry (``devservice.registry``)

Why Streams with a consumer group rather than lists: a poll first *reads* entries into the
group's pending-entries list (``XREADGROUP``), then *claims* them (ack + state
queued->polled, one Lua script) before the HTTP answer is written. An instance that dies
between the two leaves its entries in the pending list, where the recovery sweep
(``XAUTOCLAIM``) finds them and queues them again, so a command is never lost before a client
has it; a list pop has no such second chance. The per-request state in ``req:`` is the
single arbiter of "taken": only the claim that moves it from queued to polled hands the
command out, so even a re-queued copy can never reach a second client. Entry ids are
timestamps, which makes trimming expired heads cheap. Pub/sub is used only for wake-ups and
for routing answers to the instance that holds the caller: both are useless once that
instance is gone, and ``PUBLISH`` reports that (no receiver -> 404 to the client at once),
unless the instance's ``up:`` key says it is only re-subscribing (after a Redis restart): then
the answer is refused with 503 and the client retries until its deadline.

Commands are stored sealed (AES-GCM) when encryption keys are given (``sealing``): they carry
the callers' headers, and Redis writes them to disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import redis.asyncio as aioredis
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisError

from tunnel_core.devservice.backends import redis_lua as lua
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
    header,
    not_found,
    queue_full,
    session_gone,
    unavailable,
    unknown_channel,
)
from tunnel_core.devservice.backends.sealing import Sealer, SealError
from tunnel_core.devservice.jsonbody import dumps_keeping, loads_keeping
from tunnel_core.errors import ConfigError

log = logging.getLogger("tunnel_client.tunnelservice.redis")

INSTANCE_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
OUTBOX_CAPACITY = 10_000
CONNECT_TIMEOUT = 10.0
PING_EVERY = 5.0  # the listener pings Redis this often; three silent intervals mean a dead connection
# An instance's up: key lasts this long after its last refresh (every PING_EVERY while subscribed): a
# Redis outage shorter than UP_TTL - PING_EVERY - RESUBSCRIBE_MAX_DELAY loses no answer, and answers for
# the callers of a killed instance are refused (404) at most UP_TTL after it died.
UP_TTL = 3 * PING_EVERY
RESUBSCRIBE_MAX_DELAY = 2.0  # back-off cap of the pub/sub reconnection


class _Batcher:
    """Sends the scripts that concurrent requests issue in the same moment as one pipeline.

    Each front-door call costs an enqueue and a deliver script; under load many are issued at
    once, and one write + one read for the lot is far cheaper than a round trip each. A lone
    call goes out at once (no added wait): batching comes only from calls that arrive while
    the previous pipeline is in flight.
    """

    def __init__(self, r: aioredis.Redis, max_batch: int = 128) -> None:
        self._r = r
        self._max = max_batch
        self._items: list[tuple[AsyncScript, list[Any], asyncio.Future[Any]]] = []
        self._wake = anyio.Event()
        self._running = False

    async def call(self, script: AsyncScript, args: list[Any]) -> Any:
        if not self._running:
            raise RedisError("the Redis queue is not running")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._items.append((script, args, future))
        self._wake.set()
        return await future

    async def run(self) -> None:
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                while self._items:
                    items, self._items = self._items[:self._max], self._items[self._max:]
                    try:
                        await self._send(items)
                    finally:
                        self._fail(items)  # only those left unanswered (cancelled mid-send)
        finally:
            self._running = False
            self._fail(self._items)
            self._items.clear()

    @staticmethod
    def _fail(items: list[tuple[AsyncScript, list[Any], asyncio.Future[Any]]]) -> None:
        for _, _, future in items:
            if not future.done():
                future.set_exception(RedisError("the Redis queue stopped"))

    async def _send(self, items: list[tuple[AsyncScript, list[Any], asyncio.Future[Any]]]) -> None:
        results: list[Any]
        try:
            if len(items) == 1:
                script, args, _ = items[0]
                results = [await script(keys=[], args=args)]
            else:
                async with self._r.pipeline(transaction=False) as pipe:
                    for script, args, _ in items:
                        pipe.evalsha(script.sha, 0, *args)
                    results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            results = [exc] * len(items)
        for (script, args, future), res in zip(items, results, strict=True):
            if isinstance(res, NoScriptError):  # Redis restarted and lost its script cache
                try:
                    res = await script(keys=[], args=args)
                except (RedisError, OSError) as exc:
                    res = exc
            if future.done():
                continue
            if isinstance(res, BaseException):
                future.set_exception(res)
            else:
                future.set_result(res)


def redact_url(url: str) -> str:
    """The Redis URL with any password replaced, for logs and error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisBackend:
    """Queues in Redis shared by every service instance that uses the same URL and prefix."""

    name = "redis"
    recheck = 2.0  # a lost wake-up (pub/sub reconnect) delays a waiting poll by at most this

    def __init__(
        self,
        url: str,
        *,
        instance_id: str = "",
        prefix: str = "tc:",
        max_queued: int = 10_000,
        client_grace: float = DEFAULT_CLIENT_GRACE,
        reclaim_after: float = 10.0,
        max_connections: int = 64,
        known_channels_only: bool = False,
        sealer: Sealer | None = None,
    ) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError("--engine-redis-url: use redis://[:password@]host:port/db, rediss://... or unix://...")
        self.instance_id = instance_id or "svc_" + secrets.token_hex(8)
        if not INSTANCE_RE.match(self.instance_id):
            raise ConfigError("--instance-id: use 1-64 letters, digits, '_' or '-'")
        self.url = url
        self.prefix = prefix
        self.max_queued = max_queued
        self.client_grace = client_grace
        self.reclaim_after = reclaim_after
        self.known_channels_only = known_channels_only
        self.sealer = sealer or Sealer([])
        self._up_key = f"{prefix}up:{self.instance_id}"
        self._pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=5, decode_responses=True,
            socket_connect_timeout=5, socket_timeout=10, socket_keepalive=True, health_check_interval=30,
        )
        self._r = aioredis.Redis(connection_pool=self._pool)
        self._enqueue = self._r.register_script(lua.ENQUEUE)
        self._read = self._r.register_script(lua.READ)
        self._claim = self._r.register_script(lua.CLAIM)
        self._deliver = self._r.register_script(lua.DELIVER)
        self._batch = _Batcher(self._r)
        self._forget = self._r.register_script(lua.FORGET)
        self._sweep = self._r.register_script(lua.SWEEP)
        self._admit = self._r.register_script(lua.ADMIT)
        self._outbox: MemoryObjectSendStream[Callable[[], Awaitable[None]]]
        self._outbox_rx: MemoryObjectReceiveStream[Callable[[], Awaitable[None]]]
        self._outbox, self._outbox_rx = anyio.create_memory_object_stream[Callable[[], Awaitable[None]]](
            OUTBOX_CAPACITY)
        self._arrive: Arrive = lambda *_: False
        self._wake: Callable[[str], None] = lambda _: None
        self._lookup: Callable[[str], TunnelQueue | None] = lambda _: None
        self._subscribed = False
        self._pubsub: Any = None
        self._unsubscribed = anyio.Event()
        self._rotation = 0
        self._watched: dict[str, Callable[[], None]] = {}

    @property
    def redis(self) -> aioredis.Redis:
        """The shared connection pool's client (for the tunnel registry)."""
        return self._r

    def watch(self, channel: str, on_event: Callable[[], None]) -> None:
        """Call ``on_event`` for each message on pub/sub ``channel``, and after each (re)subscription,
        since messages sent while the subscription was down are lost. Register before ``running``."""
        self._watched[channel] = on_event

    def attach(self, arrive: Arrive, wake: Callable[[str], None],
               lookup: Callable[[str], TunnelQueue | None]) -> None:
        self._arrive = arrive
        self._wake = wake
        self._lookup = lookup

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Subscribe, then run the listener, the outbox writer and the recovery sweep until exit."""
        ready = anyio.Event()
        pumped = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._listen, ready)
                tg.start_soon(self._pump, pumped)
                tg.start_soon(self._sweeper)
                tg.start_soon(self._batch.run)
                with anyio.move_on_after(CONNECT_TIMEOUT):
                    await ready.wait()
                if ready.is_set():
                    log.info("redis queue ready", extra={"redis_url": redact_url(self.url),
                                                         "instance_id": self.instance_id})
                    try:
                        yield
                    finally:
                        self._outbox.close()  # the writer drains what is queued, then stops
                        with anyio.move_on_after(2.0, shield=True):
                            await self._leave()
                        with anyio.move_on_after(2.0, shield=True):
                            await pumped.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.move_on_after(2.0, shield=True):
                await self._r.aclose()
                await self._pool.aclose()
        if not ready.is_set():
            raise ConfigError(f"--engine-redis-url: cannot reach Redis at {redact_url(self.url)} within "
                              f"{CONNECT_TIMEOUT:g}s; check the URL and that redis-server runs")

    def preflight(self) -> None:
        """Connect once, synchronously, so a wrong URL fails the command line before anything starts."""
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=CONNECT_TIMEOUT / 2,
                                      socket_timeout=CONNECT_TIMEOUT / 2)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ConfigError(f"--engine-redis-url: cannot reach Redis at {redact_url(self.url)}: "
                              f"{exc}; check the URL and that redis-server runs") from None
        finally:
            client.close()

    def shard_token(self) -> str:
        # The owning instance travels in the token: any instance can route the answer to it.
        return f"{self.instance_id}.{secrets.token_hex(8)}"

    # -- queueing -------------------------------------------------------------------------------

    async def push(self, q: TunnelQueue, p: Pending) -> None:
        args: list[str | int] = [
                self.prefix, q.tunnel_id, p.channel, p.session, p.request_id, p.shard_token, _ms(p.lifetime),
                self.sealer.seal(p.request_id, p.command), "1" if p.is_initialize else "", p.mint,
                p.session if p.is_termination else "", self.max_queued, _ms(PIN_TTL),
                "1" if self.known_channels_only else "", MAX_CHANNELS]
        try:
            res = await self._batch.call(self._enqueue, args)
        except RedisError as exc:
            log.warning("redis enqueue failed", extra={"tunnel_id": q.tunnel_id, "error": str(exc)})
            raise unavailable() from None
        if res[0] == "session_gone":
            raise session_gone()
        if res[0] == "queue_full":
            raise queue_full()
        if res[0] == "unknown_channel":
            raise unknown_channel(p.channel)
        p.pinned_to = res[1]

    def push_nowait(self, q: TunnelQueue, p: Pending) -> None:
        async def op() -> None:
            try:
                await self.push(q, p)
            except DeliveryError:
                p.send.close()

        if not self._post(op):
            p.send.close()

    def withdraw(self, q: TunnelQueue, p: Pending) -> None:
        async def op() -> None:
            try:
                await self._forget(keys=[], args=[self.prefix, p.request_id])
            except RedisError as exc:  # the request expires with its budget anyway
                log.debug("redis withdraw failed", extra={"request_id": p.request_id, "error": str(exc)})

        self._post(op)

    async def flush(self) -> None:
        """Wait until every operation posted without waiting (push_nowait, withdraw) has reached Redis."""
        done = anyio.Event()

        async def marker() -> None:
            done.set()

        if self._post(marker):
            with anyio.move_on_after(CONNECT_TIMEOUT):
                await done.wait()

    def _post(self, op: Callable[[], Awaitable[None]]) -> bool:
        try:
            self._outbox.send_nowait(op)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.warning("redis outbox full or closed; operation dropped")
            return False
        return True

    async def _pump(self, done: anyio.Event) -> None:
        try:
            async with self._outbox_rx:
                async for op in self._outbox_rx:
                    await op()
        finally:
            done.set()

    async def take(self, q: TunnelQueue, limit: int, channels: set[str] | None, poller: Poller,
                   hold: float = 0.0) -> list[dict[str, Any]]:
        client = poller.instance_id if INSTANCE_RE.match(poller.instance_id) else ""
        self._rotation += 1
        named = sorted(channels or ())
        args: list[Any] = [self.prefix, q.tunnel_id, self.instance_id, limit, client,
                           _ms(hold + self.client_grace), self._rotation, _ms(CHANNEL_TTL), MAX_CHANNELS,
                           len(named), *named, *sorted(poller.declared.difference(named))]
        try:
            flat = await self._read(keys=[], args=args)
            if not flat:
                return []
            commands: dict[str, dict[str, Any]] = {}
            quads: list[str] = []
            for i in range(0, len(flat), 4):
                lane, entry, rid, raw = flat[i:i + 4]
                try:
                    command = self.sealer.open(rid, raw)
                except (SealError, ValueError) as exc:
                    # Claimed below (so it is not re-queued forever) but never handed out.
                    log.error("queued command cannot be read; dropped", extra={"request_id": rid, "error": str(exc)})
                    command = {}
                else:
                    commands[rid] = command
                quads += [lane, entry, rid, "1" if command.get("channel", "main") in poller.affinity else ""]
            claimed = await self._claim(keys=[], args=[self.prefix, client, _ms(self.client_grace), q.tunnel_id,
                                                       *quads])
        except RedisError as exc:
            log.warning("redis poll failed", extra={"tunnel_id": q.tunnel_id, "error": str(exc)})
            raise unavailable() from None
        return [commands[rid] for rid in claimed if rid in commands]

    # -- responses ------------------------------------------------------------------------------

    async def route(self, tunnel_id: str, shard_token: str, payload: dict[str, Any]) -> None:
        owner, dot, _ = shard_token.partition(".")
        if not dot or not INSTANCE_RE.match(owner):
            raise not_found()
        resp_type = payload.get("resp_type", "jsonrpc_response")
        terminal = resp_type != "jsonrpc_notify"
        ok = resp_type == "jsonrpc_response" and 200 <= int(payload.get("resp_code") or 200) < 300
        args = [self.prefix, tunnel_id, payload["request_id"], shard_token, owner,
                dumps_keeping(payload, "resp_json"), "1" if terminal else "", "1" if ok else "",
                header(payload.get("resp_headers"), "mcp-session-id"), _ms(PIN_TTL), _ms(self.client_grace)]
        try:
            res = await self._batch.call(self._deliver, args)
        except RedisError as exc:
            log.warning("redis deliver failed", extra={"tunnel_id": tunnel_id, "error": str(exc)})
            raise unavailable() from None
        if res[0] == "ok":
            return
        if res[0] == "retry":  # the owner instance is re-subscribing (Redis restarted): the client retries
            raise unavailable()
        if res[0] == "mismatch":
            raise DeliveryError(401, "tunnel_request_mismatch", "The shard token does not match this request.")
        if res[0] == "gone":
            raise not_found("The caller is gone (its service instance stopped).")
        raise not_found()

    async def _listen(self, ready: anyio.Event) -> None:
        """Wake-ups for every tunnel and the answers for this instance's callers; reconnects on failure."""
        delay = 0.1
        while True:
            ps = self._pubsub = self._r.pubsub()
            try:
                await ps.psubscribe(f"{self.prefix}bell:*")
                await ps.subscribe(f"{self.prefix}inst:{self.instance_id}", *self._watched)
                confirmed = 0
                last = anyio.current_time()
                pinged = refreshed = last
                while True:
                    msg = await ps.get_message(timeout=1.0)
                    now = anyio.current_time()
                    if self._subscribed and now - refreshed > PING_EVERY:
                        await self._r.set(self._up_key, "1", px=_ms(UP_TTL))
                        refreshed = now
                    if msg is None:
                        if now - last > 3 * PING_EVERY:
                            raise RedisError("pub/sub connection silent")
                        if now - pinged > PING_EVERY:
                            await ps.ping()
                            pinged = now
                        continue
                    last = now
                    kind = msg["type"]
                    if kind in ("subscribe", "psubscribe"):
                        confirmed += 1
                        if confirmed >= 2 + len(self._watched):
                            await self._r.set(self._up_key, "1", px=_ms(UP_TTL))
                            refreshed = now
                            self._subscribed = True
                            delay = 0.1
                            ready.set()
                            self._wake("*")  # re-read queues: wake-ups sent while we were away are lost
                            for on_event in self._watched.values():
                                on_event()
                    elif kind == "pmessage":
                        self._wake(str(msg["channel"])[len(self.prefix) + len("bell:"):])
                    elif kind in ("unsubscribe", "punsubscribe") and msg["data"] == 0:
                        self._unsubscribed.set()
                    elif kind == "message":
                        watcher = self._watched.get(str(msg["channel"]))
                        if watcher is not None:
                            watcher()
                        else:
                            self._on_answer(msg["data"])
            except (RedisError, OSError) as exc:
                self._subscribed = False
                log.warning("redis pub/sub lost; reconnecting",
                            extra={"error": str(exc) or type(exc).__name__, "retry_in_ms": int(delay * 1000)})
            finally:
                with anyio.move_on_after(1.0, shield=True):
                    with contextlib.suppress(RedisError, OSError):
                        await ps.aclose()  # type: ignore[no-untyped-call]
            await anyio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX_DELAY)

    async def _leave(self) -> None:
        """Unsubscribe and wait for Redis to confirm: from then on, answers for this instance's
        callers are refused at once (PUBLISH finds no receiver) instead of vanishing."""
        if not self._subscribed or self._pubsub is None:
            return
        try:
            await self._r.delete(self._up_key)
            await self._pubsub.unsubscribe()
            await self._pubsub.punsubscribe()
        except (RedisError, OSError):
            return
        await self._unsubscribed.wait()
        self._subscribed = False

    def _on_answer(self, data: str) -> None:
        # "tunnel\nrequest_id\nsession to inject\npayload json" (ids never hold a newline)
        try:
            tunnel_id, request_id, session, raw = data.split("\n", 3)
            payload = loads_keeping(raw, "resp_json")
        except (ValueError, RecursionError) as exc:
            log.warning("malformed routed answer dropped", extra={"error": str(exc)})
            return
        if isinstance(payload, dict):
            self._arrive(tunnel_id, request_id, payload, session)

    async def _sweeper(self) -> None:
        while True:
            await anyio.sleep(max(0.05, self.reclaim_after / 2))
            try:
                await self.sweep()
            except RedisError as exc:
                log.warning("redis recovery sweep failed", extra={"error": str(exc)})

    async def sweep(self) -> tuple[int, int]:
        """One recovery pass; returns (re-queued, dropped) entry counts."""
        res = await self._sweep(keys=[], args=[self.prefix, self.instance_id, int(self.reclaim_after * 1000)])
        requeued, dropped = int(res[0]), int(res[1])
        if requeued:
            log.warning("re-queued commands read but never handed out", extra={"count": requeued})
        return requeued, dropped

    # -- the rest -------------------------------------------------------------------------------

    async def admit(self, key: str, rate: float, burst: int) -> float:
        try:
            wait_ms = await self._admit(keys=[], args=[f"{self.prefix}rl:{key}", 1000.0 / rate, burst])
        except RedisError:
            return 0.0  # fail open: a limiter outage must not stop traffic the queue could carry
        return float(wait_ms) / 1000.0

    async def check(self) -> str:
        if not self._subscribed:
            return "redis pub/sub not connected"
        try:
            await self._r.ping()
        except RedisError as exc:
            return f"redis unreachable: {exc}"
        return ""

    async def depth(self) -> int:
        """Commands waiting in every lane (for /metrics)."""
        try:
            lanes = await self._r.smembers(f"{self.prefix}lanes")
            async with self._r.pipeline(transaction=False) as pipe:
                for lane in lanes:
                    pipe.xlen(lane)
                lengths = await pipe.execute()
        except RedisError:
            return -1
        return int(sum(lengths))
