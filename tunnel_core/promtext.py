"""Prometheus metrics for the relay process: the part of prometheus_client it uses, in one small module.

Same API (``CollectorRegistry``, ``Counter``, ``Gauge``, ``Histogram`` with ``labels()``, custom
collectors yielding ``CounterMetricFamily``/``GaugeMetricFamily``) and the same text exposition
(format 0.0.4, ``_total`` and ``_created`` series, Go-style floats, sorted label pairs) as
``prometheus_client.generate_latest``; tests/unit/test_promtext.py renders the same metrics
with both and compares them line by line.

Why not prometheus_client itself in the relay: importing it loads its HTTP and WSGI servers,
urllib.request, platform and gzip, about 3 MB of a relay's 34 MB and a tenth of its start
(docs/performance.md). The tunnel service, which imports far more anyway, keeps using it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

INF = float("inf")


def go_float(value: float) -> str:
    """A float as Prometheus's Go client writes it (what prometheus_client's floatToGoString does)."""
    d = float(value)
    if d == INF:
        return "+Inf"
    if d == -INF:
        return "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # Go switches to exponents sooner than Python
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1:]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def _escape_value(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(v: str) -> str:
    return v.replace("\\", r"\\").replace("\n", r"\n")


class Sample(tuple[str, dict[str, str], float]):
    """(name, labels, value)."""

    __slots__ = ()

    def __new__(cls, name: str, labels: dict[str, str], value: float) -> Sample:
        return super().__new__(cls, (name, labels, value))


class Family:
    """One metric family as collected: name (without ``_total``), type, help text and samples."""

    def __init__(self, name: str, documentation: str, typ: str) -> None:
        self.name = name
        self.documentation = documentation
        self.type = typ
        self.samples: list[Sample] = []


class CounterMetricFamily(Family):
    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name.removesuffix("_total"), documentation, "counter")
        self._labels = list(labels)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self.samples.append(Sample(self.name + "_total", dict(zip(self._labels, labels, strict=True)), value))


class GaugeMetricFamily(Family):
    def __init__(self, name: str, documentation: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, documentation, "gauge")
        self._labels = list(labels)

    def add_metric(self, labels: Sequence[str], value: float) -> None:
        self.samples.append(Sample(self.name, dict(zip(self._labels, labels, strict=True)), value))


class Collector(Protocol):
    def collect(self) -> Iterable[Family]: ...


class CollectorRegistry:
    """The collectors of one relay, in registration order."""

    def __init__(self) -> None:
        self._collectors: list[Collector] = []
        self._lock = threading.Lock()

    def register(self, collector: Collector) -> None:
        with self._lock:
            self._collectors.append(collector)

    def collect(self) -> Iterator[Family]:
        with self._lock:
            collectors = list(self._collectors)
        for c in collectors:
            yield from c.collect()


class _Child:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()


class _HistogramChild:
    __slots__ = ("bounds", "buckets", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.buckets = [0.0] * len(bounds)
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.sum += amount
        for i, bound in enumerate(self.bounds):
            if amount <= bound:
                self.buckets[i] += 1
                break


class _Metric:
    """Common to Counter, Gauge and Histogram: a family with optional labelled children."""

    typ = ""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None, **_: Any) -> None:
        self._name = name
        self._doc = documentation
        self._labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        self._child: Any = None if self._labelnames else self._new_child()
        if registry is not None:
            registry.register(self)

    def _new_child(self) -> Any:
        return _Child()

    @staticmethod
    def _inc(child: _Child, amount: float) -> None:
        child.value += amount

    def collect(self) -> Iterator[Family]:
        raise NotImplementedError

    def labels(self, *values: Any) -> Any:
        if len(values) != len(self._labelnames):
            raise ValueError(f"{self._name}: expected {len(self._labelnames)} label values, got {len(values)}")
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            child = self._children.setdefault(key, self._new_child())
        return _Bound(self, child)

    def _pairs(self) -> Iterator[tuple[dict[str, str], Any]]:
        if self._child is not None:
            yield {}, self._child
        for key, child in list(self._children.items()):
            yield dict(zip(self._labelnames, key, strict=True)), child


class _Bound:
    """A labelled child, with the methods of its metric."""

    __slots__ = ("_child", "_metric")

    def __init__(self, metric: _Metric, child: Any) -> None:
        self._metric = metric
        self._child = child

    def inc(self, amount: float = 1) -> None:
        self._metric._inc(self._child, amount)

    def dec(self, amount: float = 1) -> None:
        self._child.value -= amount

    def set(self, value: float) -> None:
        self._child.value = float(value)

    def observe(self, amount: float) -> None:
        self._child.observe(amount)


class Counter(_Metric):
    typ = "counter"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None, **kw: Any) -> None:
        super().__init__(name.removesuffix("_total"), documentation, labelnames, registry, **kw)

    @staticmethod
    def _inc(child: _Child, amount: float) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        child.value += amount

    def inc(self, amount: float = 1) -> None:
        self._inc(self._child, amount)

    def collect(self) -> Iterator[Family]:
        family = Family(self._name, self._doc, "counter")
        for labels, child in self._pairs():
            family.samples.append(Sample(self._name + "_total", labels, child.value))
            family.samples.append(Sample(self._name + "_created", labels, child.created))
        yield family


class Gauge(_Metric):
    typ = "gauge"

    def inc(self, amount: float = 1) -> None:
        self._child.value += amount

    def dec(self, amount: float = 1) -> None:
        self._child.value -= amount

    def set(self, value: float) -> None:
        self._child.value = float(value)

    def collect(self) -> Iterator[Family]:
        family = Family(self._name, self._doc, "gauge")
        for labels, child in self._pairs():
            family.samples.append(Sample(self._name, labels, child.value))
        yield family


DEFAULT_BUCKETS = (.005, .01, .025, .05, .075, .1, .25, .5, .75, 1.0, 2.5, 5.0, 7.5, 10.0, INF)


class Histogram(_Metric):
    typ = "histogram"

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str] = (),
                 registry: CollectorRegistry | None = None, buckets: Sequence[float] = DEFAULT_BUCKETS,
                 **kw: Any) -> None:
        bounds = [float(b) for b in buckets]
        if bounds[-1] != INF:
            bounds.append(INF)
        self._bounds = tuple(bounds)
        super().__init__(name, documentation, labelnames, registry, **kw)

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self._bounds)

    def observe(self, amount: float) -> None:
        self._child.observe(amount)

    def collect(self) -> Iterator[Family]:
        family = Family(self._name, self._doc, "histogram")
        for labels, child in self._pairs():
            total = 0.0
            for bound, count in zip(child.bounds, child.buckets, strict=True):
                total += count
                family.samples.append(Sample(self._name + "_bucket", {**labels, "le": go_float(bound)}, total))
            family.samples.append(Sample(self._name + "_count", labels, total))
            family.samples.append(Sample(self._name + "_sum", labels, child.sum))
            family.samples.append(Sample(self._name + "_created", labels, child.created))
        yield family


def _line(name: str, labels: dict[str, str], value: float) -> str:
    if labels:
        pairs = ",".join(f'{k}="{_escape_value(v)}"' for k, v in sorted(labels.items()))
        return f"{name}{{{pairs}}} {go_float(value)}\n"
    return f"{name} {go_float(value)}\n"


def generate_latest(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format 0.0.4, as prometheus_client writes it."""
    out: list[str] = []
    for family in registry.collect():
        name = family.name + "_total" if family.type == "counter" else family.name
        doc = _escape_help(family.documentation)
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {family.type}\n")
        created: list[str] = []
        for s_name, labels, value in family.samples:
            if s_name == family.name + "_created":
                created.append(_line(s_name, labels, value))
            else:
                out.append(_line(s_name, labels, value))
        if created:
            out.append(f"# HELP {family.name}_created {doc}\n# TYPE {family.name}_created gauge\n")
            out.extend(created)
    return "".join(out).encode("utf-8")
