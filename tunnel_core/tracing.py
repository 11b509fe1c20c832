"""Optional OpenTelemetry tracing of the relay: poll -> dispatch -> MCP call / response POST.

Spans (all in one trace per command):

    tunnel.poll                 one long-poll request (parent of the commands it delivered)
      tunnel.dispatch           one command, from poll receipt to its terminal response
        mcp.call                the request to the MCP target (HTTP targets get ``traceparent``)
          tunnel.response       each jsonrpc_notify POSTed while the call streams
        tunnel.response         the terminal response POST

Tracing is off unless the ``otel`` extra is installed *and* the standard variables ask for
it (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_TRACES_EXPORTER=otlp|console``; ``OTEL_SDK_DISABLED=true`` wins). When it is off,
every hook is a call that returns a shared no-op object, so the relay's hot path pays
nothing measurable. OpenTelemetry is imported lazily, never by ``tunnel-client --help``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("tunnel_client.tracing")

TRACER_NAME = "tunnel-client"
_PROPAGATED = ("traceparent", "tracestate")


class _NoopSpan:
    """What every hook returns while tracing is off."""

    __slots__ = ()

    def __enter__(self) -> _NoopSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def set(self, key: str, value: Any) -> None:
        return None

    def end(self, error: str = "") -> None:
        return None


NOOP = _NoopSpan()


class _State:
    tracer: Any = None
    provider: Any = None
    propagator: Any = None
    context: Any = None  # opentelemetry.context, cached once tracing is on
    trace: Any = None  # opentelemetry.trace
    status_error: Any = None
    description = "disabled"


_state = _State()


def enabled() -> bool:
    return _state.tracer is not None


def description() -> str:
    """Human-readable tracing state for /api/system and the startup log."""
    return _state.description


class Span:
    """A started span that is the current one (in this task and tasks started from it) until ended."""

    __slots__ = ("_span", "_token")

    def __init__(self, name: str, attributes: Mapping[str, Any] | None, kind: str, links: Any) -> None:
        trace = _state.trace
        self._span = _state.tracer.start_span(
            name, kind=getattr(trace.SpanKind, kind), attributes=dict(attributes or {}), links=links
        )
        self._token: Any = _state.context.attach(trace.set_span_in_context(self._span))

    def __enter__(self) -> Span:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None:
            self.end()
        elif _is_cancellation(exc):
            self._span.set_attribute("tunnel.cancelled", True)
            self.end()
        else:
            self.end(type(exc).__name__)

    def set(self, key: str, value: Any) -> None:
        self._span.set_attribute(key, value)

    def end(self, error: str = "") -> None:
        """End the span (idempotent); a non-empty ``error`` marks it failed."""
        if self._token is None:
            return
        if error:
            self._span.set_status(_state.status_error(error))
        token, self._token = self._token, None
        try:
            _state.context.detach(token)
        except ValueError:  # pragma: no cover - ended from another context; the span still ends
            pass
        self._span.end()


def _is_cancellation(exc: BaseException) -> bool:
    # The relay runs on anyio's asyncio backend, whose cancellation is asyncio.CancelledError.
    return isinstance(exc, asyncio.CancelledError)


def start(
    name: str, attributes: Mapping[str, Any] | None = None, *, kind: str = "INTERNAL",
    link_from: Mapping[str, list[str]] | None = None,
) -> Span | _NoopSpan:
    """Start ``name`` as a child of the current span and make it current; use as a context manager or ``end()``.

    ``link_from``: connector headers; a ``traceparent`` there becomes a span *link*, so the
    caller's trace is connected without handing it control of ours.
    """
    if _state.tracer is None:
        return NOOP
    links = _links(link_from) if link_from else None
    return Span(name, attributes, kind, links)


def _links(headers: Mapping[str, list[str]]) -> Any:
    carrier = {k.lower(): v[0] for k, v in headers.items() if k.lower() in _PROPAGATED and v}
    if "traceparent" not in carrier:
        return None
    trace = _state.trace
    remote = trace.get_current_span(_state.propagator.extract(carrier)).get_span_context()
    return [trace.Link(remote)] if remote.is_valid else None


def inject(headers: list[tuple[str, str]]) -> None:
    """Replace any ``traceparent``/``tracestate`` in ``headers`` with the current span's (no-op when off)."""
    if _state.tracer is None:
        return
    carrier: dict[str, str] = {}
    _state.propagator.inject(carrier)
    if carrier:
        headers[:] = [(k, v) for k, v in headers if k.lower() not in _PROPAGATED]
        headers.extend(carrier.items())


# ---------------------------------------------------------------------------- set-up


def use_provider(provider: Any) -> None:
    """Trace into ``provider`` (an SDK TracerProvider); for embedding and tests. The OTel global is untouched."""
    import functools

    from opentelemetry import context, trace
    from opentelemetry.trace import Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    from tunnel_core import __version__

    _state.context, _state.trace = context, trace
    _state.status_error = functools.partial(Status, StatusCode.ERROR)
    _state.propagator = TraceContextTextMapPropagator()
    _state.provider = provider
    _state.tracer = provider.get_tracer(TRACER_NAME, __version__)
    _state.description = "enabled"


def disable() -> None:
    _state.tracer = _state.provider = _state.propagator = None
    _state.description = "disabled"


def _wanted(env: Mapping[str, str]) -> str:
    """Which exporter the standard variables ask for: "otlp", "console" or "" (none)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",") if e.strip()]
    if "none" in exporters:
        return ""
    if "console" in exporters:
        return "console"
    if "otlp" in exporters or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return "otlp"
    return ""


def configure_from_env(env: Mapping[str, str]) -> bool:
    """Set up tracing from the ``OTEL_*`` variables; True when this call installed an exporter
    (the caller then owns :func:`shutdown`). A provider already set with :func:`use_provider` is kept.

    Resource attributes come from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (service
    name defaults to ``tunnel-client``); the OTLP protocol from ``OTEL_EXPORTER_OTLP_TRACES_PROTOCOL``
    or ``OTEL_EXPORTER_OTLP_PROTOCOL`` (``http/protobuf`` by default, ``grpc`` supported).
    """
    if _state.tracer is not None:
        return False
    wanted = _wanted(env)
    if not wanted:
        _state.description = "disabled (no OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_TRACES_EXPORTER)"
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        _state.description = "disabled (install the otel extra: pip install 'tunnel-client[otel]')"
        log.warning("OTEL_* tracing requested but OpenTelemetry is not installed; tracing stays off",
                    extra={"fix": "pip install 'tunnel-client[otel]'"})
        return False
    exporter: Any
    if wanted == "console":
        exporter = ConsoleSpanExporter()
    else:
        protocol = (env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
                    or "http/protobuf").strip().lower()
        try:
            if protocol == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
                    OTLPSpanExporter,
                )
        except ImportError:
            _state.description = f"disabled (no OTLP {protocol} exporter installed)"
            log.warning("OTLP exporter not installed; tracing stays off",
                        extra={"protocol": protocol, "fix": "pip install 'tunnel-client[otel]'"})
            return False
        exporter = OTLPSpanExporter()  # endpoint, headers, timeout: from the OTEL_* variables
    from tunnel_core import __version__

    resource = Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "tunnel-client",
                                "service.version": __version__})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    use_provider(provider)
    _state.description = f"enabled ({wanted})"
    return True


def shutdown() -> None:
    """Flush and stop the exporter set up by :func:`configure_from_env` (bounded by the SDK's timeouts)."""
    provider = _state.provider
    disable()
    if provider is not None:
        try:
            provider.shutdown()
        except Exception as exc:  # pragma: no cover - exporter failures must not fail shutdown
            log.warning("tracing shutdown failed", extra={"error_type": type(exc).__name__})
