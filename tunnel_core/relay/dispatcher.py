"""Processing of one polled command: route by channel, enforce the deadline, post replies.

In-flight work is keyed by the tunnel ``request_id`` (JSON-RPC ids are the connector's and
are reused freely). A command's deadline is its poll-receipt time plus ``response_timeout``
and covers both the MCP work and the response POST; expired work is dropped silently.

Calls take a worker (``mcp.max-concurrent-requests``); a caller's answers and notifications do
not, since the calls holding every worker may be the very ones waiting for them. A call that
has relayed a server-to-client request *parks* until the answer comes back through this
client (matched by channel, ``Mcp-Session-Id`` and the server's JSON-RPC id): it gives back its
worker and stops counting as working in ``Slots``, so neither bound can shut out the answer it
waits for. It takes a worker again before relaying its server's next message. An answer taken
by another client of the tunnel leaves the call parked until it ends, which errs on the side
of polling (still within ``Slots``'s hard bound).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import field
from typing import Any

import anyio

from tunnel_core import tracing
from tunnel_core.config.durations import parse_response_timeout
from tunnel_core.records import record
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.responder import Responder
from tunnel_core.relay.slots import Slots
from tunnel_core.relay.traffic import TrafficRecorder, classify
from tunnel_core.targets.base import Reply, Target
from tunnel_core.wire.messages import (
    JsonRpcCommand,
    OAuthDiscoveryCommand,
    PolledCommand,
    ResponsePayload,
    SessionTerminationCommand,
    header_value,
)

log = logging.getLogger("tunnel_client.dispatcher")

# Answers an oauth_discovery command addressed to a routable channel (main only; see runner).
OAuthHandler = Callable[[OAuthDiscoveryCommand], Awaitable[Reply]]

# Unanswered server-to-client requests remembered per call: a server that asks more without waiting
# for answers keeps its call parked until it ends (bounded by Slots), without growing this table.
MAX_AWAITED_PER_CALL = 16

# (channel, Mcp-Session-Id, JSON-encoded id) of a server-to-client request: its answer carries the same.
AnswerKey = tuple[str, str, str]


def _method(cmd: PolledCommand) -> str:
    return str(cmd.jsonrpc.get("method", ""))[:64] if isinstance(cmd, JsonRpcCommand) else ""


def _request_kind(cmd: PolledCommand) -> str:
    if isinstance(cmd, SessionTerminationCommand):
        return "session_termination"
    if isinstance(cmd, OAuthDiscoveryCommand):
        return "oauth_discovery"
    return "call" if "id" in cmd.jsonrpc and "method" in cmd.jsonrpc else "notification"


def _answer_key(channel: str, headers: Any, rpc_id: Any) -> AnswerKey:
    return channel, header_value(headers, "mcp-session-id") or "", json.dumps(rpc_id)


@record(eq=False, slots=True)
class _Call:
    """One call's claim on a worker and on max-inflight, as parking changes it."""

    worker: bool = False
    parked: bool = False
    awaited: set[AnswerKey] = field(default_factory=set)  # relayed requests whose answers have not passed


class Dispatcher:
    def __init__(
        self,
        *,
        tunnel_id: str,
        targets: Mapping[str, Target],
        responder: Responder,
        metrics: RelayMetrics,
        max_concurrent: int,
        traffic: TrafficRecorder | None = None,
        slots: Slots,
        oauth: OAuthHandler | None = None,
    ) -> None:
        self._oauth = oauth
        self._slots = slots
        self._awaited: dict[AnswerKey, _Call] = {}
        self._traffic = traffic or TrafficRecorder()
        self._tunnel_id = tunnel_id
        self._targets = targets
        self._responder = responder
        self._metrics = metrics
        self._workers = anyio.CapacityLimiter(max_concurrent)
        metrics.worker_capacity.set(max_concurrent)

    @property
    def running(self) -> int:
        return int(self._workers.borrowed_tokens)

    async def handle(self, cmd: PolledCommand, received_at: float) -> None:
        """Process one command to completion (or silent drop on deadline)."""
        timeout = parse_response_timeout(cmd.response_timeout)
        deadline = received_at + timeout if timeout is not None else float("inf")
        ctx = {"request_id": cmd.request_id, "channel": cmd.channel, "command_type": cmd.command_type}
        if anyio.current_time() >= deadline:
            self._metrics.deadline_drops.labels("before_start").inc()
            self._dropped(cmd, "deadline", received_at)
            log.info("response deadline already passed; dropping command", extra=ctx)
            return
        with anyio.CancelScope(deadline=deadline) as scope:
            if _request_kind(cmd) == "notification":
                # A caller's answer to a server-to-client request, or a notification such as
                # notifications/cancelled, needs no worker: the calls holding every worker may be the
                # very ones waiting for it. It is one short POST (or stdin write), bounded like any command.
                await self._run(cmd, received_at, ctx, None)
            else:
                call = _Call()
                await self._take_worker(call)
                try:
                    await self._run(cmd, received_at, ctx, call)
                finally:
                    self._end(call)
        if scope.cancelled_caught:
            self._metrics.deadline_drops.labels("in_flight").inc()
            self._dropped(cmd, "deadline", received_at)
            log.info("response deadline expired during processing; no response posted", extra=ctx)

    async def _take_worker(self, call: _Call) -> None:
        # A free worker is taken without yielding: a yield here would let the poll loop send its
        # next poll before this call's request reaches the server (on every call's critical path).
        try:
            self._workers.acquire_on_behalf_of_nowait(call)
        except anyio.WouldBlock:
            await self._workers.acquire_on_behalf_of(call)
        call.worker = True
        self._metrics.worker_occupancy.set(self._workers.borrowed_tokens)

    def _give_worker(self, call: _Call) -> None:
        if call.worker:
            call.worker = False
            self._workers.release_on_behalf_of(call)
            self._metrics.worker_occupancy.set(self._workers.borrowed_tokens)

    def _await_answer(self, call: _Call, cmd: PolledCommand, reply: Reply) -> AnswerKey | None:
        """Remember a server-to-client request of ``call`` before it is relayed (its answer may be quick).

        None when ``reply`` is not such a request (or the call already awaits its fill of them).
        """
        body = reply.body
        if (reply.resp_type != "jsonrpc_notify" or body is None or "method" not in body or "id" not in body
                or len(call.awaited) >= MAX_AWAITED_PER_CALL):
            return None
        key = _answer_key(cmd.channel, cmd.headers, body["id"])
        call.awaited.add(key)
        self._awaited[key] = call
        return key

    def _park(self, call: _Call) -> None:
        if call.awaited and not call.parked:
            call.parked = True
            self._slots.park()
            self._metrics.parked.set(self._slots.parked)
            self._give_worker(call)

    def _unpark(self, call: _Call) -> None:
        if call.parked:
            call.parked = False
            self._slots.unpark()
            self._metrics.parked.set(self._slots.parked)

    def _answered(self, key: AnswerKey) -> None:
        """The caller's answer reached the server: its call works again unless it awaits more answers."""
        call = self._awaited.pop(key, None)
        if call is not None:
            call.awaited.discard(key)
            if not call.awaited:
                self._unpark(call)

    def _end(self, call: _Call) -> None:
        for key in call.awaited:
            if self._awaited.get(key) is call:
                del self._awaited[key]
        call.awaited.clear()
        self._unpark(call)
        self._give_worker(call)

    async def _run(self, cmd: PolledCommand, received_at: float, ctx: dict[str, str], call: _Call | None) -> None:
        try:
            with tracing.start("tunnel.dispatch", ctx, kind="CONSUMER", link_from=cmd.headers):
                await self._process(cmd, received_at, call)
        except Exception as exc:  # one command's fault must never stop the relay
            self._dropped(cmd, "client_internal", received_at)
            log.error("command failed unexpectedly; no response posted",
                      extra={**ctx, "error_type": type(exc).__name__})

    async def _process(self, cmd: PolledCommand, received_at: float, call: _Call | None) -> None:
        target = self._targets.get(cmd.channel)
        client_request_id = header_value(cmd.headers, "x-request-id")
        if target is None:
            await self._post(cmd, self._unsupported(cmd), received_at, client_request_id, "unsupported_channel")
            return

        async def emit(reply: Reply) -> bool:
            key = None
            if call is not None:
                if not call.parked and not call.worker:
                    await self._take_worker(call)  # its answer came: the server works on the call again
                key = self._await_answer(call, cmd, reply)
            with tracing.start("tunnel.response", {"tunnel.resp_type": reply.resp_type}, kind="CLIENT") as span:
                status = await self._responder.post(
                    self._payload(cmd, reply), shard_token=cmd.shard_token, client_request_id=client_request_id
                )
                span.set("tunnel.response.accepted_status", status or 0)
            if call is not None and key is not None:
                if status == 200:
                    self._park(call)  # unless the answer has already come back
                else:
                    self._answered(key)  # the caller never saw the request: nothing to wait for
            return status == 200

        try:
            if isinstance(cmd, JsonRpcCommand):
                with tracing.start("mcp.call", {"rpc.system": "jsonrpc", "rpc.method": _method(cmd),
                                                "tunnel.channel": cmd.channel}, kind="CLIENT") as span:
                    reply = await target.call(cmd, emit)
                    span.set("http.response.status_code", reply.code)
                if call is None and "id" in cmd.jsonrpc and reply.code < 300:
                    # A caller's answer (no method: it is not a call) reached the server.
                    self._answered(_answer_key(cmd.channel, cmd.headers, cmd.jsonrpc["id"]))
            elif isinstance(cmd, SessionTerminationCommand):
                reply = await target.terminate_session(cmd)
            elif self._oauth is not None:
                reply = await self._oauth(cmd)
            else:
                reply = Reply(
                    "oauth_discovery_response", 404,
                    {"error": {"message": "OAuth discovery is not available for this target",
                               "type": "invalid_request_error", "code": "oauth_discovery_unavailable"}},
                    {"Content-Type": ["application/json"]},
                )
        except TimeoutError:
            log.warning("MCP connection TTL reached; no response posted",
                        extra={"request_id": cmd.request_id, "channel": cmd.channel})
            self._dropped(cmd, "ttl", received_at)
            return
        await self._post(cmd, reply, received_at, client_request_id)

    async def _post(
        self, cmd: PolledCommand, reply: Reply, received_at: float, client_request_id: str | None, outcome: str = ""
    ) -> None:
        with tracing.start("tunnel.response", {"tunnel.resp_type": reply.resp_type}, kind="CLIENT") as span:
            status = await self._responder.post(
                self._payload(cmd, reply), shard_token=cmd.shard_token, client_request_id=client_request_id
            )
            span.set("tunnel.response.accepted_status", status or 0)
        method, kind = _method(cmd), _request_kind(cmd)
        elapsed_ms = (anyio.current_time() - received_at) * 1000
        self._metrics.observe_end_to_end((self._tunnel_id, str(status or "failed"), kind, method, cmd.channel),
                                         elapsed_ms, cmd.created_at)
        if status is None or not outcome:
            outcome = classify(reply.code, reply.body, status)
        self._traffic.add(cmd.request_id, cmd.channel, method, kind, reply.code, outcome, elapsed_ms)

    def _dropped(self, cmd: PolledCommand, outcome: str, received_at: float) -> None:
        self._traffic.add(cmd.request_id, cmd.channel, _method(cmd), _request_kind(cmd), 0, outcome,
                          (anyio.current_time() - received_at) * 1000)

    def _payload(self, cmd: PolledCommand, reply: Reply) -> ResponsePayload:
        return ResponsePayload(
            request_id=cmd.request_id,
            channel=cmd.channel,
            resp_json=reply.body,
            resp_headers=reply.headers or None,
            resp_code=reply.code,
            resp_type=reply.resp_type,
            resp_raw=reply.raw,
        )

    def _unsupported(self, cmd: PolledCommand) -> Reply:
        self._metrics.unsupported_channel.labels(self._tunnel_id, cmd.channel, cmd.command_type).inc()
        log.warning("unsupported channel", extra={"request_id": cmd.request_id, "channel": cmd.channel})
        message = f'Bad Request: unsupported channel "{cmd.channel}"'
        if isinstance(cmd, SessionTerminationCommand):
            return Reply("session_termination_response", 400)
        if isinstance(cmd, OAuthDiscoveryCommand):
            return Reply(
                "oauth_discovery_response", 400,
                {"error": {"message": message, "type": "invalid_request_error", "code": "unsupported_channel"}},
                {"Content-Type": ["application/json"]},
            )
        body = {"jsonrpc": "2.0", "id": cmd.jsonrpc.get("id"), "error": {"code": -32603, "message": message}}
        return Reply("jsonrpc_response", 400, body, {"Content-Type": ["application/json"]})
