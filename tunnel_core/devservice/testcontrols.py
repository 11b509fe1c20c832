"""Test controls of the local tunnel service (enabled only with ``--test-controls``).

* a record of every request received (method, path, query, headers with secrets masked,
  JSON body), readable at ``GET /_test/requests`` and cleared by ``DELETE /_test/requests``;
* fault knobs set with ``POST /_test/faults``: the next N polls answer a status (with an
  optional ``Retry-After``), the next N response POSTs answer a status, or the next N
  requests to a route have their connection dropped mid-response.

Faults are consumed in order of arrival, so a test states exactly which request fails.
With test controls on, the front door also honours ``?response_timeout=<duration>`` so a
test can give one call its own deadline (``0s`` = already expired).
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_RECORDS = 20000
_MASKED = frozenset({"authorization", "x-tunnel-shard-token", "cookie"})


@dataclass(slots=True)
class Fault:
    route: str  # "poll" | "response" | "metadata" | "front_door"
    count: int
    status: int = 503
    retry_after: str | None = None
    drop: bool = False
    body: dict[str, Any] | None = None


@dataclass(slots=True)
class TestControls:
    records: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))
    faults: list[Fault] = field(default_factory=list)

    def take_fault(self, route: str) -> Fault | None:
        for f in self.faults:
            if f.route == route and f.count > 0:
                f.count -= 1
                if f.count == 0:
                    self.faults.remove(f)
                return f
        return None


def _route(path: str) -> str:
    if path.startswith("/v1/mcp/"):
        return "front_door"
    if path.endswith("/poll"):
        return "poll"
    if path.endswith("/response"):
        return "response"
    if path.startswith("/v1/tunnels/"):
        return "metadata"
    return "other"


class TestControlsMiddleware:
    __test__ = False  # not a pytest class
    lean_http = True  # wraps the service app only: served by the service's own server as well

    def __init__(self, app: ASGIApp, controls: TestControls) -> None:
        self.app = app
        self.controls = controls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/_test/"):
            await self._control(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        route = _route(path)
        record: dict[str, Any] = {
            "t": time.monotonic(), "method": scope["method"], "path": path, "route": route,
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": {k: ("[MASKED]" if k in _MASKED else v) for k, v in headers.items()},
            "has_bearer": headers.get("authorization", "").lower().startswith("bearer "),
            "body": _json_or_none(body),
        }
        fault = self.controls.take_fault(route)
        if fault is not None:
            record["fault"] = {"status": fault.status, "drop": fault.drop}
        self.controls.records.append(record)
        if fault is not None:
            await self._apply(fault, send)
            return

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _apply(self, fault: Fault, send: Send) -> None:
        if fault.drop:
            # Promise a body, send half of it, then fail: the server closes the connection.
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")]})
            await send({"type": "http.response.body", "body": b'{"commands":', "more_body": True})
            raise ConnectionAbortedError("test control: connection dropped")
        payload = fault.body or {"error": {"message": "injected fault", "type": "server_error", "param": None,
                                           "code": "tunnel_transport_unavailable" if fault.status == 503 else None}}
        data = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
        if fault.retry_after is not None:
            headers.append((b"retry-after", fault.retry_after.encode()))
        await send({"type": "http.response.start", "status": fault.status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, out = 200, dict[str, Any]()
        if scope["path"] == "/_test/requests" and scope["method"] == "GET":
            out = {"requests": list(self.controls.records)}
        elif scope["path"] == "/_test/requests" and scope["method"] == "DELETE":
            self.controls.records.clear()
        elif scope["path"] == "/_test/faults" and scope["method"] == "POST":
            spec = json.loads(body or b"{}")
            self.controls.faults.append(Fault(
                route=spec["route"], count=int(spec.get("count", 1)), status=int(spec.get("status", 503)),
                retry_after=spec.get("retry_after"), drop=bool(spec.get("drop", False)), body=spec.get("body"),
            ))
        elif scope["path"] == "/_test/faults" and scope["method"] == "DELETE":
            self.controls.faults.clear()
        else:
            status, out = 404, {"error": "unknown test control"}
        data = json.dumps(out).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": data})


def _json_or_none(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body)
    except ValueError:
        return {"_raw_bytes": len(body)}
