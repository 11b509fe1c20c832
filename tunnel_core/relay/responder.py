"""Posting replies to the control plane with the protocol's retry rules.

Terminal replies retry 408/429/502/503/504 and transport errors with the identical body,
with backoff (capped at ``RETRY_MAX_DELAY``, or the service's ``Retry-After``) until the
command's own deadline (the enclosing cancel scope's, set by the dispatcher): an answer
outlives a service or Redis restart as long as its caller still waits. Without a deadline
they stop after ``MAX_ATTEMPTS``. 404 means the service already has (or dropped) the request
and is treated as done. Notifications retry only 429 and failures before the request was
sent, up to ``MAX_ATTEMPTS``. The MCP call itself is never replayed.

The first attempt allocates nothing beyond the POST itself; the retry state is built only
after a failure.
"""

from __future__ import annotations

import logging
import math

import anyio

from tunnel_core.controlplane.client import ControlPlaneClient, ControlPlaneError
from tunnel_core.httpio import NetworkErrors, PreSendErrors, describe_network_error
from tunnel_core.relay.backoff import Backoff
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.wire.messages import ResponsePayload

log = logging.getLogger("tunnel_client.controlplane")

MAX_ATTEMPTS = 3
RETRY_MAX_DELAY = 2.0  # once the service takes answers again, a retried answer gets through within this
POST_TIMEOUT = 30.0
TERMINAL_RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
NOTIFY_RETRY_STATUSES = frozenset({429})
_Failures: tuple[type[BaseException], ...] = (ControlPlaneError, *NetworkErrors)


class Responder:
    def __init__(self, cp: ControlPlaneClient, metrics: RelayMetrics) -> None:
        self._cp = cp
        self._metrics = metrics

    async def post(
        self, payload: ResponsePayload, *, shard_token: str, client_request_id: str | None = None
    ) -> int | None:
        """Deliver one reply; returns the accepting status (200, or 404 for already done) or None on failure."""
        try:
            await self._cp.post_response(payload, shard_token=shard_token, client_request_id=client_request_id)
        except _Failures as exc:
            return await self._retry(payload, shard_token, client_request_id, exc)
        return 200

    async def _retry(
        self, payload: ResponsePayload, shard_token: str, client_request_id: str | None, exc: BaseException
    ) -> int | None:
        terminal = payload.terminal
        deadline = anyio.current_effective_deadline() if terminal else math.inf
        backoff = Backoff(maximum=RETRY_MAX_DELAY)
        attempt = 1
        while True:
            if isinstance(exc, ControlPlaneError):
                if exc.status == 404 and terminal:
                    log.warning(
                        "response not accepted: request already fulfilled or unknown",
                        extra={"request_id": payload.request_id, "status_code": 404, "error_code": exc.code},
                    )
                    return 404
                retryable = exc.status in (TERMINAL_RETRY_STATUSES if terminal else NOTIFY_RETRY_STATUSES)
                delay = max(backoff.next(), exc.retry_after or 0.0)
            else:
                retryable = terminal or isinstance(exc, PreSendErrors)
                delay = backoff.next()
            now = anyio.current_time()
            if deadline == math.inf:
                retryable = retryable and attempt < MAX_ATTEMPTS
            elif now + delay >= deadline:
                retryable = False  # the caller stops waiting before the next attempt could land
            if not retryable:
                self._failed(payload, exc, attempt, deadline_reached=deadline != math.inf and now + delay >= deadline)
                return None
            self._metrics.response_retries.labels(payload.resp_type).inc()
            log.info(
                "retrying response post",
                extra={"request_id": payload.request_id, "retry_in_ms": int(delay * 1000), "attempt": attempt},
            )
            await anyio.sleep(delay)
            attempt += 1
            try:
                await self._cp.post_response(payload, shard_token=shard_token, client_request_id=client_request_id,
                                             timeout=max(0.05, min(POST_TIMEOUT, deadline - anyio.current_time())))
            except _Failures as again:
                exc = again
                continue
            return 200

    def _failed(self, payload: ResponsePayload, exc: BaseException, attempts: int, *, deadline_reached: bool) -> None:
        extra: dict[str, object] = {"request_id": payload.request_id, "resp_type": payload.resp_type,
                                    "attempts": attempts}
        if isinstance(exc, ControlPlaneError):
            extra.update(status_code=exc.status, error_code=exc.code, mitigation=exc.mitigation)
        else:
            extra.update(error_type=type(exc).__name__, error=describe_network_error(exc, self._cp.url("/response")))
        if deadline_reached:
            extra["reason"] = "deadline"
        log.error("response post failed", extra=extra)
