"""The production edge of ``tunnel-client serve`` (ASGI, in process, inmem backend): body cap with
and without Content-Length, per-tunnel rate limit, /healthz, /readyz, /metrics; size parsing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from tunnel_core.cli.servecmd import parse_size
from tunnel_core.devservice.broker import Broker
from tunnel_core.devservice.serve import Edge, ServeOptions
from tunnel_core.errors import ConfigError

pytestmark = pytest.mark.anyio

T = "tunnel_" + "f" * 32


class Recorder:
    """The app behind the edge: records the body it was given and answers 200."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        more = True
        while more:
            m = await receive()
            body += m.get("body", b"")
            more = m.get("more_body", False)
        self.bodies.append(body)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


async def call(edge: Edge, method: str, path: str, chunks: Sequence[bytes] = (), *,
               length: bool = True) -> tuple[int, dict[str, str], bytes]:
    body = b"".join(chunks)
    headers = [(b"content-length", str(len(body)).encode())] if length and chunks else []
    pending = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    pending = pending or [{"type": "http.request", "body": b"", "more_body": False}]
    out: dict[str, Any] = {"body": b""}

    async def receive() -> Any:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(m: Any) -> None:
        if m["type"] == "http.response.start":
            out["status"] = m["status"]
            out["headers"] = {k.decode(): v.decode() for k, v in m.get("headers", [])}
        else:
            out["body"] += m.get("body", b"")

    await edge({"type": "http", "method": method, "path": path, "headers": headers, "query_string": b""},
               receive, send)
    return out["status"], out["headers"], out["body"]


def edge_for(**options: Any) -> tuple[Edge, Recorder]:
    broker = Broker()
    broker.add_tunnel(T)
    app = Recorder()
    return Edge(app, broker, ServeOptions(**options), "edge-test"), app


async def test_body_cap_applies_with_and_without_content_length() -> None:
    edge, app = edge_for(max_body=10)
    assert (await call(edge, "POST", f"/v1/mcp/{T}", [b"12345", b"67890"]))[0] == 200
    status, _, body = await call(edge, "POST", f"/v1/mcp/{T}", [b"12345", b"678901"])
    assert status == 413 and json.loads(body)["error"]["code"] == "request_body_too_large"
    status, _, _ = await call(edge, "POST", f"/v1/mcp/{T}", [b"123456", b"78901"], length=False)  # chunked
    assert status == 413
    assert app.bodies == [b"1234567890"], "the app must see whole bodies under the cap and nothing above it"


async def test_rate_limit_is_per_tunnel_and_answers_429_with_retry_after() -> None:
    edge, _ = edge_for(rate_limit=1.0, rate_burst=2)
    statuses = [(await call(edge, "POST", f"/v1/mcp/{T}", [b"{}"]))[0] for _ in range(3)]
    status, headers, body = await call(edge, "POST", f"/v1/mcp/{T}", [b"{}"])
    other = (await call(edge, "POST", "/v1/mcp/tunnel_" + "0" * 32, [b"{}"]))[0]
    poll = (await call(edge, "GET", f"/v1/tunnels/{T}/poll"))[0]  # runtime routes have their own limit (off)
    assert statuses == [200, 200, 429] and status == 429
    assert json.loads(body)["error"]["code"] == "rate_limit_exceeded"
    assert int(headers["retry-after"]) >= 1
    assert other == 200 and poll == 200


async def test_health_readiness_and_metrics_are_served_by_the_edge() -> None:
    edge, app = edge_for()
    status, _, body = await call(edge, "GET", "/healthz")
    ready, _, _ = await call(edge, "GET", "/readyz")
    await call(edge, "POST", f"/v1/mcp/{T}", [b"{}"])
    m_status, _, metrics = await call(edge, "GET", "/metrics")
    assert status == 200 and json.loads(body)["queue_backend"] == "inmem"
    assert ready == 200 and m_status == 200
    assert 'tunnel_service_http_requests_total{code="200",route="front_door"} 1.0' in metrics.decode()
    assert T not in metrics.decode()
    assert len(app.bodies) == 1, "health and metrics never reach the service app"


@pytest.mark.parametrize(("text", "size"), [("0", 0), ("512", 512), ("64KiB", 65536), ("4MiB", 4194304),
                                            ("2m", 2097152), ("8k", 8192)])
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_size(text, "--max-request-body") == size


@pytest.mark.parametrize("text", ["", "4GB", "-1", "1.5MiB", "lots"])
def test_bad_sizes_name_the_flag(text: str) -> None:
    with pytest.raises(ConfigError, match="--max-request-body"):
        parse_size(text, "--max-request-body")
