"""Queue backends of the tunnel service: ``inmem`` (embedded, default) and ``redis`` (shared, durable).

``build_backend`` is the one place that turns the ``--engine-queue-backend`` /
``--engine-redis-url`` settings into a backend; the redis client library is imported only
when the redis backend is chosen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tunnel_core.devservice.backends.base import DeliveryError, Pending, Poller, QueueBackend, TunnelQueue
from tunnel_core.errors import ConfigError

BACKENDS = ("inmem", "redis")
REDIS_URL_ENV = "TUNNEL_ENGINE_REDIS_URL"
BACKEND_ENV = "TUNNEL_ENGINE_QUEUE_BACKEND"

__all__ = ["BACKENDS", "DeliveryError", "Pending", "Poller", "QueueBackend", "TunnelQueue", "build_backend"]


def build_backend(
    kind: str | None,
    redis_url: str | None,
    *,
    env: Mapping[str, str],
    instance_id: str = "",
    max_queued: int = 0,
    reclaim_after: float = 10.0,
    preflight: bool = True,
    known_channels_only: bool = False,
    encryption_keys: Sequence[str] = (),
) -> QueueBackend:
    """The backend for the flags (flag > env > default); ConfigError names the flag to fix.

    With ``preflight`` a Redis backend connects once, synchronously (call it before the event loop).
    ``known_channels_only`` refuses commands for channels no client named (see ``backends.base``);
    ``encryption_keys`` seal the commands stored in Redis (the first seals, all open).
    """
    kind = kind or env.get(BACKEND_ENV, "") or "inmem"
    url = redis_url or env.get(REDIS_URL_ENV, "")
    if kind == "inmem":
        from tunnel_core.devservice.backends.inmem import InMemoryBackend

        return InMemoryBackend(max_queued=max_queued, known_channels_only=known_channels_only)
    if kind == "redis":
        if not url:
            raise ConfigError(f"--engine-redis-url: required with --engine-queue-backend redis (or set {REDIS_URL_ENV})")
        from tunnel_core.devservice.backends.redis import RedisBackend
        from tunnel_core.devservice.backends.sealing import Sealer

        backend = RedisBackend(url, instance_id=instance_id, max_queued=max_queued or 10_000,
                               reclaim_after=reclaim_after, known_channels_only=known_channels_only,
                               sealer=Sealer(list(encryption_keys)))
        if preflight:
            backend.preflight()
        return backend
    raise ConfigError(f"--engine-queue-backend: {kind!r} is not one of {', '.join(BACKENDS)}")
