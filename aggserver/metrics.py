"""Metrics: plain counters on the objects that do the work, exported at scrape time.

The request path only bumps integers (no locks, no label lookups in prometheus-client);
``GET /metrics`` turns the current values into Prometheus families through a custom collector.
Labels are route, status, tier, outcome and exchange only, never asset: 10,000 assets would
explode the series count.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["LATENCY_BUCKETS", "Histogram", "MetricsCollector", "RequestStats"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass
class Histogram:
    """Cumulative-at-export latency histogram: one bisect and three additions per observation."""

    bounds: Sequence[float] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        running = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            running += count
            out.append((bound, running))
        return out


@dataclass
class RequestStats:
    """Requests by (route, status) and latency by route, filled in by ``web/guard.guarded``."""

    enabled: bool = True
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    latency: dict[str, Histogram] = field(default_factory=dict)

    def record(self, route: str, status: int, seconds: float) -> None:
        self.counts[route, status] += 1
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = Histogram()
        histogram.observe(seconds)


Families = Callable[[], Iterator[Metric]]


class MetricsCollector(Collector):
    """Calls each source at scrape time; a source yields ready metric families."""

    def __init__(self, sources: Sequence[Families]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        for source in self._sources:
            yield from source()


def counter(
    name: str, documentation: str, labels: Sequence[str], values: dict[tuple[str, ...], float]
) -> Metric:
    return _labelled(CounterMetricFamily(name, documentation, labels=list(labels)), values)


def gauge(
    name: str, documentation: str, labels: Sequence[str], values: dict[tuple[str, ...], float]
) -> Metric:
    return _labelled(GaugeMetricFamily(name, documentation, labels=list(labels)), values)


def _labelled(
    family: CounterMetricFamily | GaugeMetricFamily, values: dict[tuple[str, ...], float]
) -> Metric:
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family


def histogram(name: str, documentation: str, label: str, values: dict[str, Histogram]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=[label])
    for label_value, hist in values.items():
        family.add_metric([label_value], hist.buckets(), hist.total)
    return family
