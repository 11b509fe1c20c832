"""Tracing hooks (tunnel_core.tracing): free when off, W3C propagation and links when on."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tunnel_core import tracing

REMOTE_TRACE = "0af7651916cd43dd8448eb211c80319c"
REMOTE_PARENT = "b7ad6b7169203331"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    tracing.use_provider(provider)
    yield exp
    tracing.disable()
    provider.shutdown()


def test_off_by_default_every_hook_is_the_shared_noop() -> None:
    tracing.disable()
    span = tracing.start("tunnel.poll", {"x": 1})
    assert span is tracing.NOOP
    with tracing.start("mcp.call") as inner:
        inner.set("k", "v")
    headers = [("Accept", "application/json"), ("traceparent", "00-" + REMOTE_TRACE + "-" + REMOTE_PARENT + "-01")]
    tracing.inject(headers)
    assert len(headers) == 2  # the connector's own header passes through untouched
    assert not tracing.enabled()


@pytest.mark.parametrize(("env", "wanted"), [
    ({}, ""),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, "otlp"),
    ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, "otlp"),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
    ({"OTEL_TRACES_EXPORTER": "console"}, "console"),
    ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ""),
    ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, ""),
])
def test_standard_variables_decide_whether_to_export(env: dict[str, str], wanted: str) -> None:
    assert tracing._wanted(env) == wanted


def test_configure_from_env_installs_and_shuts_down_an_exporter() -> None:
    tracing.disable()
    assert tracing.configure_from_env({}) is False and not tracing.enabled()
    assert tracing.configure_from_env({"OTEL_TRACES_EXPORTER": "otlp",
                                       "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}) is True
    try:
        assert tracing.enabled() and tracing.description() == "enabled (otlp)"
    finally:
        tracing.shutdown()
    assert not tracing.enabled()


def test_an_embedders_provider_is_not_replaced_by_the_environment(exporter: InMemorySpanExporter) -> None:
    assert tracing.configure_from_env({"OTEL_TRACES_EXPORTER": "console"}) is False
    assert tracing.description() == "enabled"


def test_spans_nest_and_inject_replaces_the_connectors_traceparent(exporter: InMemorySpanExporter) -> None:
    incoming = {"traceparent": [f"00-{REMOTE_TRACE}-{REMOTE_PARENT}-01"]}
    with tracing.start("tunnel.dispatch", {"request_id": "r1"}, link_from=incoming):
        with tracing.start("mcp.call", kind="CLIENT") as call:
            headers = [("Accept", "*/*"), ("TraceParent", "00-" + "1" * 32 + "-" + "2" * 16 + "-01")]
            tracing.inject(headers)
            call.set("http.response.status_code", 200)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    dispatch, call_span = spans["tunnel.dispatch"], spans["mcp.call"]
    assert call_span.parent is not None and call_span.parent.span_id == dispatch.context.span_id
    assert call_span.context.trace_id == dispatch.context.trace_id
    [link] = dispatch.links
    assert format(link.context.trace_id, "032x") == REMOTE_TRACE
    assert format(dispatch.context.trace_id, "032x") != REMOTE_TRACE  # linked, not adopted
    names = [k.lower() for k, _ in headers]
    assert names.count("traceparent") == 1
    value = dict((k.lower(), v) for k, v in headers)["traceparent"]
    assert value.startswith(f"00-{call_span.context.trace_id:032x}-{call_span.context.span_id:016x}-")
    assert int(value[-2:], 16) & 1  # sampled
    assert call_span.attributes is not None and call_span.attributes["http.response.status_code"] == 200


def test_an_exception_marks_the_span_failed_and_end_is_idempotent(exporter: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), tracing.start("tunnel.response"):
        raise RuntimeError("post failed")
    span = tracing.start("tunnel.poll")
    span.end("HTTP 503")
    span.end()
    failed = exporter.get_finished_spans()
    assert [s.status.status_code.name for s in failed] == ["ERROR", "ERROR"]
    assert failed[1].status.description == "HTTP 503"


def test_help_does_not_import_opentelemetry() -> None:
    code = ("import sys; from tunnel_core.cli.main import main; import contextlib, io\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()): main(['run', '--help'])\n"
            "print(any(m.startswith('opentelemetry') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
