"""Tracing end to end: the real relay (in-process) exports poll -> dispatch -> mcp.call / response spans
into an in-memory exporter, and the HTTP MCP target receives the mcp.call span as ``traceparent``."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.support import frontdoor as fd
from tests.support.targets import MCPTarget
from tests.support.tunnel import TunnelService
from tunnel_core import tracing
from tunnel_core.config.settings import default_flags, load_settings
from tunnel_core.runner import RunHandle, run_client

WAIT = 15.0
CONNECTOR_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CONNECTOR_TRACEPARENT = f"00-{CONNECTOR_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    tracing.use_provider(provider)
    yield exp
    tracing.disable()
    provider.shutdown()


def _structured(msg: dict[str, Any]) -> Any:
    result = msg["result"]
    if "structuredContent" in result:
        content = result["structuredContent"]
        return content.get("result", content)
    return json.loads(result["content"][0]["text"])


@pytest.mark.anyio
async def test_spans_chain_poll_dispatch_mcp_call_and_response_and_traceparent_reaches_the_target(
    exporter: InMemorySpanExporter, tunnel_service: TunnelService, mcp_target: MCPTarget, runtime_key: str,
) -> None:
    tunnel_id = tunnel_service.add_tunnel()
    flags = {**default_flags(), "cfg__control_plane__base_url": tunnel_service.base_url,
             "cfg__control_plane__tunnel_id": tunnel_id, "cfg__mcp__server_urls": [mcp_target.url],
             "cfg__health__listen_addr": "127.0.0.1:0", "cfg__control_plane__poll_timeout": "5s"}
    settings = load_settings(flags, {"CONTROL_PLANE_API_KEY": runtime_key})
    handle = RunHandle()
    url = tunnel_service.mcp_url(tunnel_id)
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(run_client, settings, handle=handle))
        with anyio.fail_after(WAIT):
            await handle.ready_url.wait()
            assert handle.state is not None
            await handle.state.wait_ready()
            async with fd.http_client() as client:
                session = await fd.open_session(client, url)
                resp, msgs = await fd.post(
                    client, url, fd.request("tools/call", {"name": "seen_headers", "arguments": {}}),
                    {**session, "traceparent": CONNECTOR_TRACEPARENT})
                assert resp.status_code == 200, resp.text
                seen = _structured(msgs[-1])
                resp, msgs = await fd.post(client, url, fd.request(
                    "tools/call", {"name": "progress", "arguments": {"steps": 2}, "_meta": {"progressToken": "p"}}),
                    session)
                assert [m.get("method") for m in msgs] == ["notifications/progress"] * 2 + [None]
        handle.stop.set()

    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}

    def parent(span: ReadableSpan) -> ReadableSpan:
        assert span.parent is not None, f"{span.name} has no parent"
        return by_id[span.parent.span_id]

    # The target saw the relay's own traceparent (the connector's was replaced): it names an mcp.call span.
    version, trace_id, parent_id, _flags = seen["traceparent"].split("-")
    call = by_id[int(parent_id, 16)]
    assert (version, call.name, format(call.context.trace_id, "032x")) == ("00", "mcp.call", trace_id)
    assert call.attributes is not None and call.attributes["rpc.method"] == "tools/call"
    assert call.attributes["http.response.status_code"] == 200

    dispatch = parent(call)
    assert dispatch.name == "tunnel.dispatch" and dispatch.context.trace_id == call.context.trace_id
    assert [format(link.context.trace_id, "032x") for link in dispatch.links] == [CONNECTOR_TRACE]
    poll = parent(dispatch)
    assert poll.name == "tunnel.poll" and poll.context.trace_id == call.context.trace_id
    assert poll.parent is None
    assert poll.attributes is not None and poll.attributes["tunnel.poll.commands"] >= 1

    terminal = [s for s in spans if s.name == "tunnel.response" and s.parent
                and s.parent.span_id == dispatch.context.span_id]
    assert len(terminal) == 1 and terminal[0].attributes is not None
    assert terminal[0].attributes["tunnel.resp_type"] == "jsonrpc_response"
    assert terminal[0].attributes["tunnel.response.accepted_status"] == 200
    assert terminal[0].end_time is not None and call.end_time is not None
    assert terminal[0].start_time >= call.end_time  # the answer is posted after the MCP call returns

    # Streamed notifications are posted while the call runs: their spans are children of that mcp.call.
    notify = [s for s in spans if s.name == "tunnel.response" and s.attributes
              and s.attributes["tunnel.resp_type"] == "jsonrpc_notify"]
    assert len(notify) == 2
    progress_call = parent(notify[0])
    assert progress_call.name == "mcp.call" and parent(notify[1]) is progress_call
    assert parent(parent(progress_call)).name == "tunnel.poll"
    assert all(s.status.status_code.name != "ERROR" for s in spans if s.name != "tunnel.poll")
