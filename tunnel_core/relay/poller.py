"""The single poll loop.

Each poll asks for at most the room ``Slots`` leaves (and at most 25): ``control-plane.max-inflight``
bounds the commands this client works on and, with calls parked on their callers, everything it
holds (see ``relay/slots.py``), so the client never holds more than it promised, unlike the
reference (workers + queue + 1).
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio
import anyio.lowlevel

from tunnel_core import tracing
from tunnel_core.controlplane.client import ControlPlaneClient, ControlPlaneError
from tunnel_core.httpio import NetworkOrDecodeErrors, describe_network_error
from tunnel_core.relay.backoff import Backoff
from tunnel_core.relay.dispatcher import Dispatcher
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.slots import Slots
from tunnel_core.relay.state import RuntimeState
from tunnel_core.wire.messages import CommandDecodeError, PolledCommand, decode_command

log = logging.getLogger("tunnel_client.controlplane")

MAX_POLL_LIMIT = 25


class Poller:
    def __init__(
        self,
        *,
        cp: ControlPlaneClient,
        dispatcher: Dispatcher,
        state: RuntimeState,
        metrics: RelayMetrics,
        slots: Slots,
        poll_timeout: float,
        poll_guardrail: float,
        poll_channels: tuple[str, ...] | None,
    ) -> None:
        self._cp = cp
        self._dispatcher = dispatcher
        self._state = state
        self._metrics = metrics
        self._slots = slots
        self._timeout = poll_timeout
        self._guardrail = poll_guardrail
        self._channels = poll_channels
        self._tasks: set[asyncio.Task[None]] = set()
        metrics.queue_capacity.set(slots.capacity)

    @property
    def held(self) -> int:
        return self._slots.held

    def _update_gauges(self) -> None:
        self._metrics.queue_length.set(max(0, self._slots.working - self._dispatcher.running))

    async def run(self) -> None:
        """Poll until cancelled, each command in a task of its own (``abandon`` cancels those left).

        Plain asyncio tasks, not a task group's: starting one is on every call's critical path,
        and an anyio task group's ``start_soon`` costs several times ``create_task``. The
        deadline of each command is still an anyio cancel scope (``Dispatcher.handle``).
        """
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        reported_auth = False
        while True:
            await self._slots.wait_for_room()
            limit = min(MAX_POLL_LIMIT, self._slots.room())
            self._slots.reserved = limit
            started_at = time.monotonic()
            self._metrics.poll_cycles.inc()
            span = tracing.start("tunnel.poll", {"tunnel.poll.limit": limit}, kind="CLIENT")
            try:
                result = await self._cp.poll(
                    limit=limit, timeout=self._timeout, guardrail=self._guardrail, channels=self._channels
                )
            except ControlPlaneError as exc:
                self._slots.reserved = 0
                self._metrics.poll_latency.labels("true").observe(time.monotonic() - started_at)
                self._metrics.poll_errors.labels("other").inc()
                self._state.poll_failed(f"HTTP {exc.status}" + (f" {exc.code}" if exc.code else ""))
                span.end(f"HTTP {exc.status}")
                self._metrics.poll_retries.labels(f"http_{exc.status}").inc()
                delay = max(backoff.next(), exc.retry_after or 0.0)
                # 401/403 will not fix themselves: report once loudly with the mitigation, then quietly.
                auth = exc.status in (401, 403)
                level = (logging.DEBUG if reported_auth else logging.ERROR) if auth else logging.WARNING
                reported_auth = reported_auth or auth
                log.log(
                    level,
                    "poll failed; backing off",
                    extra={"retry_in_ms": int(delay * 1000), "status_code": exc.status, "error_code": exc.code,
                           "error_message": exc.message, "mitigation": exc.mitigation,
                           "tunnel_request_id": exc.request_id or "missing_request_id"},
                )
                await anyio.sleep(delay)
                continue
            except NetworkOrDecodeErrors as exc:
                self._slots.reserved = 0
                kind = "timeout" if isinstance(exc, TimeoutError) else "other"
                self._metrics.poll_latency.labels("true").observe(time.monotonic() - started_at)
                self._metrics.poll_errors.labels(kind).inc()
                cause = describe_network_error(exc, self._cp.url("/poll"), timeout=self._timeout + self._guardrail)
                self._state.poll_failed(cause)
                span.end(type(exc).__name__)
                self._metrics.poll_retries.labels(kind).inc()
                delay = backoff.next()
                log.warning(
                    "poll timed out; backing off" if kind == "timeout" else "poll failed; backing off",
                    extra={"retry_in_ms": int(delay * 1000), "error": cause, "error_type": type(exc).__name__},
                )
                await anyio.sleep(delay)
                continue
            except Exception as exc:  # the poll loop outlives any single bad poll
                self._slots.reserved = 0
                self._state.poll_failed(type(exc).__name__)
                delay = backoff.next()
                log.error("poll failed unexpectedly; backing off",
                          extra={"retry_in_ms": int(delay * 1000), "error_type": type(exc).__name__})
                await anyio.sleep(delay)
                continue
            self._slots.reserved = 0
            poll_seconds = time.monotonic() - started_at
            # The commands start first: the poll's and the commands' bookkeeping below runs while
            # their requests are on their way (each call's critical path starts at this poll's answer).
            started: list[PolledCommand] = []
            for raw in result.commands:
                try:
                    cmd = decode_command(raw)
                except CommandDecodeError as exc:
                    self._metrics.queue_drops.labels(exc.reason).inc()
                    log.warning("dropping malformed command",
                                extra={"request_id": exc.request_id or "", "reason": exc.reason, "detail": str(exc)})
                    continue
                self._slots.hold()
                task = loop.create_task(self._run_one(cmd, result.received_at))  # inherits the poll span
                self._tasks.add(task)
                task.add_done_callback(self._task_done)
                started.append(cmd)
            if started:
                # Let the new command tasks send their MCP requests before this loop spends CPU on
                # bookkeeping and the next poll request.
                await anyio.lowlevel.checkpoint()
            self._metrics.poll_latency.labels("false").observe(poll_seconds)
            if backoff.attempts:
                log.info("poller recovered", extra={"failed_attempts": backoff.attempts})
            backoff.reset()
            reported_auth = False
            self._state.poll_succeeded()
            self._metrics.poll_last_success.set(time.time())
            if len(result.commands) > limit:
                log.error("poll returned more commands than requested",
                          extra={"limit": limit, "count": len(result.commands)})
            self._metrics.polled.inc(len(result.commands))
            for cmd in started:
                self._metrics.enqueued.inc()
                self._metrics.observe_age(cmd.created_at)
            span.set("tunnel.poll.commands", len(result.commands))
            span.end()
            self._update_gauges()

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("command task failed unexpectedly", extra={"error_type": type(exc).__name__})

    def abandon(self) -> None:
        """Cancel every command still running (shutdown, after the grace period)."""
        for task in list(self._tasks):
            task.cancel()

    async def drained(self) -> None:
        """Return once no command is held."""
        await self._slots.wait_empty()

    async def _run_one(self, cmd: PolledCommand, received_at: float) -> None:
        try:
            await self._dispatcher.handle(cmd, received_at)
        finally:
            self._slots.release()
            self._update_gauges()
