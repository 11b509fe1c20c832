"""Posting replies to the control plane with the protocol's retry rules.

Terminal replies retry 408/429/502/503/504 and transport errors, up to 3 attempts with
the identical body; 404 means the service already has (or dropped) the request and is
treated as done. Notifications retry only 429 and failures before the request was sent.
The MCP call itself is never replayed.
"""

from __future__ import annotations

import logging

import anyio

from tunnel_core.controlplane.client import ControlPlaneClient, ControlPlaneError
from tunnel_core.httpio import NetworkErrors, PreSendErrors, describe_network_error
from tunnel_core.relay.backoff import Backoff
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.wire.messages import ResponsePayload

log = logging.getLogger("tunnel_client.controlplane")

MAX_ATTEMPTS = 3
TERMINAL_RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
NOTIFY_RETRY_STATUSES = frozenset({429})


class Responder:
    def __init__(self, cp: ControlPlaneClient, metrics: RelayMetrics) -> None:
        self._cp = cp
        self._metrics = metrics

    async def post(
        self, payload: ResponsePayload, *, shard_token: str, client_request_id: str | None = None
    ) -> int | None:
        """Deliver one reply; returns the accepting status (200, or 404 for already done) or None on failure."""
        terminal = payload.terminal
        retry_statuses = TERMINAL_RETRY_STATUSES if terminal else NOTIFY_RETRY_STATUSES
        backoff = Backoff()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            delay: float | None = None
            try:
                await self._cp.post_response(payload, shard_token=shard_token, client_request_id=client_request_id)
                return 200
            except ControlPlaneError as exc:
                if exc.status == 404 and terminal:
                    log.warning(
                        "response not accepted: request already fulfilled or unknown",
                        extra={"request_id": payload.request_id, "status_code": 404, "error_code": exc.code},
                    )
                    return 404
                if exc.status in retry_statuses and attempt < MAX_ATTEMPTS:
                    delay = max(backoff.next(), exc.retry_after or 0.0)
                else:
                    log.error(
                        "response post failed",
                        extra={"request_id": payload.request_id, "status_code": exc.status,
                               "error_code": exc.code, "resp_type": payload.resp_type, "attempts": attempt,
                               "mitigation": exc.mitigation},
                    )
                    return None
            except NetworkErrors as exc:
                retryable = terminal or isinstance(exc, PreSendErrors)
                if retryable and attempt < MAX_ATTEMPTS:
                    delay = backoff.next()
                else:
                    log.error(
                        "response post failed",
                        extra={"request_id": payload.request_id, "error_type": type(exc).__name__,
                               "error": describe_network_error(exc, self._cp.url("/response")),
                               "resp_type": payload.resp_type, "attempts": attempt},
                    )
                    return None
            self._metrics.response_retries.labels(payload.resp_type).inc()
            log.info(
                "retrying response post",
                extra={"request_id": payload.request_id, "retry_in_ms": int(delay * 1000), "attempt": attempt},
            )
            await anyio.sleep(delay)
        return None
