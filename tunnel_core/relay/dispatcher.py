"""Processing of one polled command: route by channel, enforce the deadline, post replies.

In-flight work is keyed by the tunnel ``request_id`` (JSON-RPC ids are the connector's and
are reused freely). A command's deadline is its poll-receipt time plus ``response_timeout``
and covers both the MCP work and the response POST; expired work is dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio

from tunnel_core import tracing
from tunnel_core.config.durations import parse_response_timeout
from tunnel_core.relay.metrics import RelayMetrics
from tunnel_core.relay.responder import Responder
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


def _method(cmd: PolledCommand) -> str:
    return str(cmd.jsonrpc.get("method", ""))[:64] if isinstance(cmd, JsonRpcCommand) else ""


def _request_kind(cmd: PolledCommand) -> str:
    if isinstance(cmd, SessionTerminationCommand):
        return "session_termination"
    if isinstance(cmd, OAuthDiscoveryCommand):
        return "oauth_discovery"
    return "call" if "id" in cmd.jsonrpc and "method" in cmd.jsonrpc else "notification"


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
        oauth: OAuthHandler | None = None,
    ) -> None:
        self._oauth = oauth
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
                await self._run(cmd, received_at, ctx)
            else:
                async with self._workers:
                    self._metrics.worker_occupancy.set(self._workers.borrowed_tokens)
                    try:
                        await self._run(cmd, received_at, ctx)
                    finally:
                        self._metrics.worker_occupancy.set(self._workers.borrowed_tokens - 1)
        if scope.cancelled_caught:
            self._metrics.deadline_drops.labels("in_flight").inc()
            self._dropped(cmd, "deadline", received_at)
            log.info("response deadline expired during processing; no response posted", extra=ctx)

    async def _run(self, cmd: PolledCommand, received_at: float, ctx: dict[str, str]) -> None:
        try:
            with tracing.start("tunnel.dispatch", ctx, kind="CONSUMER", link_from=cmd.headers):
                await self._process(cmd, received_at)
        except Exception as exc:  # one command's fault must never stop the relay
            self._dropped(cmd, "client_internal", received_at)
            log.error("command failed unexpectedly; no response posted",
                      extra={**ctx, "error_type": type(exc).__name__})

    async def _process(self, cmd: PolledCommand, received_at: float) -> None:
        target = self._targets.get(cmd.channel)
        client_request_id = header_value(cmd.headers, "x-request-id")
        if target is None:
            await self._post(cmd, self._unsupported(cmd), received_at, client_request_id, "unsupported_channel")
            return

        async def emit(reply: Reply) -> bool:
            with tracing.start("tunnel.response", {"tunnel.resp_type": reply.resp_type}, kind="CLIENT") as span:
                status = await self._responder.post(
                    self._payload(cmd, reply), shard_token=cmd.shard_token, client_request_id=client_request_id
                )
                span.set("tunnel.response.accepted_status", status or 0)
            return status == 200

        try:
            if isinstance(cmd, JsonRpcCommand):
                with tracing.start("mcp.call", {"rpc.system": "jsonrpc", "rpc.method": _method(cmd),
                                                "tunnel.channel": cmd.channel}, kind="CLIENT") as span:
                    reply = await target.call(cmd, emit)
                    span.set("http.response.status_code", reply.code)
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
