"""Prometheus exposition over the figures modules already keep: one rule for both sides.

Modules keep plain counters (ints, :class:`collections.Counter`, :class:`Buckets`) as
attributes, for their tests and for this; nothing is counted twice. A side describes, in one
collector function, which attribute becomes which metric; :func:`exposition` reads them at
scrape time and renders the text format with the process figures (CPU, RSS, open fds) from
``prometheus_client``'s process collector. No global registry: each app renders its own.

Why :class:`Buckets` rather than ``prometheus_client.Histogram``: it is observed on hot paths
(every ACK of every edge), and a plain list increment costs a fraction of the library's
locked update. It renders as a normal histogram.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

#: seconds; latency buckets from sub-millisecond ACKs on a LAN to a 30 s retry
LATENCY_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)

#: Content-Type of the text exposition
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(slots=True)
class Buckets:
    """A histogram kept as plain counts (see the module notes)."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, cumulative count)`` pairs as Prometheus wants them, ``+Inf`` last."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((repr(bound), float(running)))
        out.append(("+Inf", float(self.n)))
        return out


def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def labelled(
    kind: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    doc: str,
    label: str,
    values: Mapping[str, float],
) -> Metric:
    """One family with a sample per ``values`` entry (a bounded set of label values)."""
    family = kind(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def histogram(name: str, doc: str, buckets: Buckets) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=buckets.cumulative(), sum_value=buckets.total)


class _Describe(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def make_registry(collect: Callable[[], Iterable[Metric]]) -> CollectorRegistry:
    """A registry of the process figures and ``collect``'s metrics (called at each scrape)."""
    registry = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=registry)
    registry.register(_Describe(collect))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry rendered in the Prometheus text format."""
    return generate_latest(registry)
