"""The tunnel registry: admin-created tunnels and the credentials bound to tunnels, as every instance sees them.

Two implementations behind one read path (in-memory maps, so an authorisation check is a
dictionary lookup and never a network round trip):

- ``LocalRegistry`` (queue backend ``inmem``): this process, optionally kept in SQLite with
  ``--data-dir`` (``store.TunnelStore``).
- ``RedisRegistry`` (queue backend ``redis``): two Redis hashes shared by every instance,
  ``{prefix}reg:tunnels`` (id -> tunnel JSON) and ``{prefix}reg:creds`` (SHA-256 digest ->
  credential JSON). Every write is one Lua script that also ``PUBLISH``-es on
  ``{prefix}reg``; each instance reloads both hashes when it hears it (milliseconds), after
  each pub/sub (re)subscription (a notification sent while it was away is lost), and every
  ``RESYNC`` seconds as a last resort. A revoked key or deleted tunnel therefore stops working
  on every instance well within a second. The writer reloads before it answers, so its own
  answer already reflects the change.

What is never kept: key and token values. Only their digests are stored (the secrets are 256
random bits, so an unsalted SHA-256 is a sufficient one-way function; see docs/self-hosting.md).

Errors: ``RegistryUnavailable`` when the shared registry cannot be written (the admin API
answers 503 ``tunnel_transport_unavailable``). Reads never fail: an instance that cannot reach
Redis keeps the state it last loaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio

from tunnel_core.devservice.store import KINDS, CredentialRecord, TunnelRecord, TunnelStore

if TYPE_CHECKING:
    from tunnel_core.devservice.backends.redis import RedisBackend

log = logging.getLogger("tunnel_client.tunnelservice.registry")

RESYNC = 5.0  # seconds between full reloads of a shared registry when no notification came


class RegistryUnavailable(Exception):
    """The shared registry could not be written; nothing changed."""


class Registry:
    """The read path both implementations share, and the change hook.

    ``tunnels`` maps id -> record; credentials are indexed by digest and by tunnel. Listeners
    added with ``on_change`` run (synchronously, on the event loop) after every change this
    instance learns of, its own writes included.
    """

    persistent = False
    where = "memory"

    def __init__(self) -> None:
        self.tunnels: dict[str, TunnelRecord] = {}
        self._by_digest: dict[str, CredentialRecord] = {}
        self._by_tunnel: dict[tuple[str, str], dict[str, CredentialRecord]] = {}
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def credential(self, digest: str) -> CredentialRecord | None:
        return self._by_digest.get(digest)

    def credentials_of(self, kind: str, tunnel_id: str) -> dict[str, CredentialRecord]:
        """Digest -> record of one tunnel's credentials of one kind (do not modify)."""
        return self._by_tunnel.get((kind, tunnel_id), {})

    def _replace(self, tunnels: dict[str, TunnelRecord], credentials: list[CredentialRecord]) -> None:
        by_digest = {c.digest: c for c in credentials}
        if tunnels == self.tunnels and by_digest == self._by_digest:
            return  # a resync that found nothing new: nobody needs waking
        by_tunnel: dict[tuple[str, str], dict[str, CredentialRecord]] = {}
        for c in credentials:
            by_tunnel.setdefault((c.kind, c.tunnel_id), {})[c.digest] = c
        self.tunnels = tunnels
        self._by_digest = by_digest
        self._by_tunnel = by_tunnel
        for listener in self._listeners:
            listener()

    # -- writes (implemented by each registry) ----------------------------------------------------

    async def put_tunnel(self, record: TunnelRecord) -> TunnelRecord:
        raise NotImplementedError

    async def delete_tunnel(self, tunnel_id: str) -> TunnelRecord | None:
        """Delete a tunnel and every credential bound to it; the deleted record, or None."""
        raise NotImplementedError

    async def add_credential(self, record: CredentialRecord, *, static_tunnel: bool) -> bool:
        """Store a credential; False when its tunnel is gone (``static_tunnel``: served from flags)."""
        raise NotImplementedError

    async def revoke_credential(self, kind: str, tunnel_id: str, credential_id: str) -> CredentialRecord | None:
        raise NotImplementedError

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Load and keep following the shared state (no-op for a local registry)."""
        return contextlib.nullcontext()


class LocalRegistry(Registry):
    """This process only; SQLite-backed with a data directory."""

    def __init__(self, store: TunnelStore) -> None:
        super().__init__()
        self.store = store
        self.persistent = store.persistent
        self.where = str(store.path) if store.path else "memory"
        self._refresh()

    def _refresh(self) -> None:
        self._replace({t.id: t for t in self.store.all()}, self.store.credentials())

    async def put_tunnel(self, record: TunnelRecord) -> TunnelRecord:
        stored = await anyio.to_thread.run_sync(self.store.put, record)
        self._refresh()
        return stored

    async def delete_tunnel(self, tunnel_id: str) -> TunnelRecord | None:
        gone = await anyio.to_thread.run_sync(self.store.delete, tunnel_id)
        self._refresh()
        return gone

    async def add_credential(self, record: CredentialRecord, *, static_tunnel: bool) -> bool:
        if not static_tunnel and self.store.get(record.tunnel_id) is None:
            return False
        await anyio.to_thread.run_sync(self.store.add_credential, record)
        self._refresh()
        return True

    async def revoke_credential(self, kind: str, tunnel_id: str, credential_id: str) -> CredentialRecord | None:
        gone = await anyio.to_thread.run_sync(self.store.revoke_credential, kind, tunnel_id, credential_id)
        self._refresh()
        return gone


# ARGV: prefix, tunnel id, tunnel json
_PUT_TUNNEL = """
redis.call('HSET', ARGV[1]..'reg:tunnels', ARGV[2], ARGV[3])
redis.call('PUBLISH', ARGV[1]..'reg', 'tunnel')
return 1
"""

# ARGV: prefix, tunnel id -> the deleted tunnel's json, or false
_DELETE_TUNNEL = """
local P, tid = ARGV[1], ARGV[2]
local rec = redis.call('HGET', P..'reg:tunnels', tid)
redis.call('HDEL', P..'reg:tunnels', tid)
local flat = redis.call('HGETALL', P..'reg:creds')
for i = 1, #flat, 2 do
  if cjson.decode(flat[i + 1])['tunnel_id'] == tid then redis.call('HDEL', P..'reg:creds', flat[i]) end
end
redis.call('PUBLISH', P..'reg', 'tunnel')
return rec
"""

# ARGV: prefix, tunnel id, digest, credential json, "1" when the tunnel is served from flags -> 1 stored, 0 no tunnel
_ADD_CREDENTIAL = """
local P = ARGV[1]
if ARGV[5] ~= '1' and redis.call('HEXISTS', P..'reg:tunnels', ARGV[2]) == 0 then return 0 end
redis.call('HSET', P..'reg:creds', ARGV[3], ARGV[4])
redis.call('PUBLISH', P..'reg', 'credential')
return 1
"""

# ARGV: prefix, kind, tunnel id, credential id -> the revoked credential's json, or false
_REVOKE_CREDENTIAL = """
local P = ARGV[1]
local flat = redis.call('HGETALL', P..'reg:creds')
for i = 1, #flat, 2 do
  local c = cjson.decode(flat[i + 1])
  if c['id'] == ARGV[4] and c['kind'] == ARGV[2] and c['tunnel_id'] == ARGV[3] then
    redis.call('HDEL', P..'reg:creds', flat[i])
    redis.call('PUBLISH', P..'reg', 'credential')
    return flat[i + 1]
  end
end
return false
"""


def _tunnel_json(record: TunnelRecord) -> str:
    return json.dumps({**record.to_json(), "creator": record.creator, "created_at": record.created_at,
                       "updated_at": record.updated_at}, separators=(",", ":"))


def _tunnel_from(raw: str) -> TunnelRecord:
    d: dict[str, Any] = json.loads(raw)
    return TunnelRecord(id=d["id"], name=d.get("name", ""), description=d.get("description", ""),
                        creator=d.get("creator", ""), organization_ids=tuple(d.get("organization_ids", ())),
                        workspace_ids=tuple(d.get("workspace_ids", ())), tenant_ids=tuple(d.get("tenant_ids", ())),
                        created_at=float(d.get("created_at", 0.0)), updated_at=float(d.get("updated_at", 0.0)))


class RedisRegistry(Registry):
    """Shared by every instance on one Redis; see the module docstring."""

    persistent = True

    def __init__(self, backend: RedisBackend) -> None:
        super().__init__()
        from redis.exceptions import RedisError

        self._errors = (RedisError, OSError)
        self._r = backend.redis
        self._prefix = backend.prefix
        self.where = "redis"
        self._scripts = {name: self._r.register_script(src) for name, src in (
            ("put", _PUT_TUNNEL), ("delete", _DELETE_TUNNEL), ("add", _ADD_CREDENTIAL),
            ("revoke", _REVOKE_CREDENTIAL))}
        self._poked = anyio.Event()
        self._lock = anyio.Lock()
        backend.watch(f"{self._prefix}reg", self._poke)

    def _poke(self) -> None:
        self._poked.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        try:
            await self.reload()
        except RegistryUnavailable:
            log.warning("tunnel registry not loaded yet; retrying in the background")
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    async def _follow(self) -> None:
        while True:
            with anyio.move_on_after(RESYNC):
                await self._poked.wait()
            self._poked = anyio.Event()
            try:
                await self.reload()
            except RegistryUnavailable:
                pass  # keep the last state; the next notification or resync tries again

    async def reload(self) -> None:
        """Read the whole registry and make it this instance's view."""
        async with self._lock:
            try:
                async with self._r.pipeline(transaction=True) as pipe:
                    pipe.hgetall(f"{self._prefix}reg:tunnels")
                    pipe.hgetall(f"{self._prefix}reg:creds")
                    raw_tunnels, raw_creds = await pipe.execute()
            except self._errors as exc:
                raise RegistryUnavailable(str(exc)) from None
            tunnels: dict[str, TunnelRecord] = {}
            for raw in raw_tunnels.values():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    rec = _tunnel_from(raw)
                    tunnels[rec.id] = rec
            creds: list[CredentialRecord] = []
            for raw in raw_creds.values():
                with contextlib.suppress(ValueError, KeyError, TypeError):
                    cred = CredentialRecord.load(raw)
                    if cred.kind in KINDS:
                        creds.append(cred)
            self._replace(tunnels, creds)

    async def _run(self, name: str, args: list[Any]) -> Any:
        try:
            result = await self._scripts[name](keys=[], args=[self._prefix, *args])
        except self._errors as exc:
            log.warning("tunnel registry write failed", extra={"error": str(exc) or type(exc).__name__})
            raise RegistryUnavailable(str(exc)) from None
        with contextlib.suppress(RegistryUnavailable):
            await self.reload()
        return result

    async def put_tunnel(self, record: TunnelRecord) -> TunnelRecord:
        import time

        record = replace(record, updated_at=time.time())
        await self._run("put", [record.id, _tunnel_json(record)])
        return record

    async def delete_tunnel(self, tunnel_id: str) -> TunnelRecord | None:
        raw = await self._run("delete", [tunnel_id])
        return _tunnel_from(raw) if raw else None

    async def add_credential(self, record: CredentialRecord, *, static_tunnel: bool) -> bool:
        stored = await self._run("add", [record.tunnel_id, record.digest, record.dump(),
                                         "1" if static_tunnel else ""])
        return bool(stored)

    async def revoke_credential(self, kind: str, tunnel_id: str, credential_id: str) -> CredentialRecord | None:
        raw = await self._run("revoke", [kind, tunnel_id, credential_id])
        return CredentialRecord.load(raw) if raw else None


def build_registry(backend: object, data_dir: str) -> Registry:
    """The registry for a queue backend: shared in Redis with the redis backend, else local (SQLite with a data dir).

    Raises ``store.StoreError`` for an unusable data directory, or for one given with Redis.
    """
    from pathlib import Path

    from tunnel_core.devservice.store import StoreError

    if getattr(backend, "name", "") == "redis":
        if data_dir:
            raise StoreError("tunnels and credentials live in Redis with --engine-queue-backend redis; "
                             "drop --data-dir (keep Redis appendonly)")
        return RedisRegistry(backend)  # type: ignore[arg-type]
    return LocalRegistry(TunnelStore(Path(data_dir) if data_dir else None))
