"""Prometheus metrics of one app (its own registry: nothing global, two apps in one process do not mix)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from aidg.service.engine import DealEngine

LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


class _EngineCollector(Collector):
    """Cache, decision, feedback, posterior and inline-worker figures, read from the engine at scrape time."""

    def __init__(self, engine: DealEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        e = self.engine
        st = e.cache.stats
        for name, value, doc in (
            ("aidg_cache_hits", st.hits, "embedding cache hits"),
            ("aidg_cache_misses", st.misses, "embedding cache misses (loaded from the online store)"),
            ("aidg_cache_refreshes", st.refreshes, "entries reloaded ahead of expiry"),
            ("aidg_decisions", e.counters["decisions"], "decisions served"),
            ("aidg_decisions_degraded", e.counters["degraded"], "decisions served with a backend down"),
            ("aidg_feedback_accepted", e.counters["events_accepted"], "feedback events stored"),
            ("aidg_feedback_duplicates", e.counters["events_duplicate"], "feedback events whose id was seen before"),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("aidg_cache_hit_rate", "embedding cache hit rate since start", value=st.hit_rate)
        yield GaugeMetricFamily("aidg_posterior_version", "bandit posterior version loaded", value=e.posterior_version)
        yield GaugeMetricFamily(
            "aidg_exploration_rate", "share of requests allowed explore variants", value=e.policy.exploration.rate
        )
        if e.worker is not None:
            yield CounterMetricFamily("aidg_stream_applied", "reward events applied by the inline worker",
                                      value=e.worker.applied)  # fmt: skip


class Metrics:
    def __init__(self, engine: DealEngine) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "aidg_http_requests", "HTTP requests", ["route", "method", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "aidg_http_request_seconds", "request latency", ["route"], buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.registry.register(_EngineCollector(engine))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)


__all__ = ["Metrics"]
