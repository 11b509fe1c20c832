"""In-memory command broker of the local tunnel service.

Per tunnel: a FIFO of queued commands that polls drain, and the set of pending requests
(polled or not) that wait for their terminal response. A response for a request that is
no longer pending (answered, expired, caller gone) is refused with 404, as the hosted
service does.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream


@dataclass(slots=True)
class Pending:
    request_id: str
    shard_token: str
    command: dict[str, Any]
    send: MemoryObjectSendStream[dict[str, Any]]
    receive: MemoryObjectReceiveStream[dict[str, Any]]
    polled: bool = False


@dataclass(slots=True)
class TunnelQueue:
    tunnel_id: str
    name: str = ""
    description: str = ""
    queued: deque[Pending] = field(default_factory=deque)
    pending: dict[str, Pending] = field(default_factory=dict)
    arrived: anyio.Event = field(default_factory=anyio.Event)
    last_poll: float = 0.0

    def notify(self) -> None:
        self.arrived.set()
        self.arrived = anyio.Event()


class DeliveryError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Broker:
    def __init__(self) -> None:
        self.tunnels: dict[str, TunnelQueue] = {}

    def add_tunnel(self, tunnel_id: str, name: str = "", description: str = "") -> TunnelQueue:
        q = self.tunnels.get(tunnel_id)
        if q is None:
            q = self.tunnels[tunnel_id] = TunnelQueue(tunnel_id, name or tunnel_id, description)
        return q

    def enqueue(self, tunnel_id: str, command: dict[str, Any]) -> Pending:
        """Queue a command (request_id and shard_token are assigned here) and return its pending handle."""
        q = self.tunnels[tunnel_id]
        request_id = "req_" + secrets.token_hex(12)
        shard = "dev:" + secrets.token_hex(8)
        command = {"request_id": request_id, "shard_token": shard, **command}
        send, receive = anyio.create_memory_object_stream[dict[str, Any]](math.inf)
        p = Pending(request_id, shard, command, send, receive)
        q.pending[request_id] = p
        q.queued.append(p)
        q.notify()
        return p

    def forget(self, tunnel_id: str, request_id: str) -> None:
        q = self.tunnels.get(tunnel_id)
        if q is None:
            return
        p = q.pending.pop(request_id, None)
        if p is not None:
            p.send.close()
            if not p.polled:
                try:
                    q.queued.remove(p)
                except ValueError:
                    pass

    async def poll(
        self, tunnel_id: str, limit: int, timeout: float, channels: set[str] | None
    ) -> list[dict[str, Any]]:
        q = self.tunnels[tunnel_id]
        q.last_poll = time.time()
        with anyio.move_on_after(timeout):
            while True:
                out = self._take(q, limit, channels)
                if out:
                    return out
                await q.arrived.wait()
        q.last_poll = time.time()
        return []

    def _take(self, q: TunnelQueue, limit: int, channels: set[str] | None) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        keep: deque[Pending] = deque()
        while q.queued and len(out) < limit:
            p = q.queued.popleft()
            if channels is not None and p.command.get("channel", "main") not in channels:
                keep.append(p)
                continue
            p.polled = True
            out.append(p.command)
        keep.extend(q.queued)
        q.queued = keep
        return out

    def deliver(self, tunnel_id: str, shard_token: str, payload: dict[str, Any]) -> None:
        """Route one response payload to its waiting caller; terminal payloads close the request."""
        q = self.tunnels[tunnel_id]
        p = q.pending.get(payload["request_id"])
        if p is None or not p.polled:
            raise DeliveryError(404, "pending_request_not_found",
                                "The pending request was already processed, expired, or never existed.")
        if p.shard_token != shard_token:
            raise DeliveryError(401, "tunnel_request_mismatch", "The shard token does not match this request.")
        try:
            p.send.send_nowait(payload)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise DeliveryError(404, "pending_request_not_found", "The caller is gone.") from None
        if payload.get("resp_type", "jsonrpc_response") != "jsonrpc_notify":
            q.pending.pop(p.request_id, None)
            p.send.close()
