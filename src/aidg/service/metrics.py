"""Prometheus metrics of one app (its own registry: nothing global, two apps in one process do not mix)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from aidg.monitor.rollout import STATES

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
            ("aidg_challenger_errors", e.counters["challenger_errors"], "challenger requests the champion answered"),
        ):
            yield CounterMetricFamily(name, doc, value=value)
        yield GaugeMetricFamily("aidg_cache_hit_rate", "embedding cache hit rate since start", value=st.hit_rate)
        yield GaugeMetricFamily("aidg_posterior_version", "bandit posterior version loaded", value=e.posterior_version)
        yield GaugeMetricFamily(
            "aidg_exploration_rate", "share of requests allowed explore variants", value=e.policy.exploration.rate
        )
        yield from _monitor_families(e)
        if e.worker is not None:
            yield CounterMetricFamily("aidg_stream_applied", "reward events applied by the inline worker",
                                      value=e.worker.applied)  # fmt: skip


KPI_GAUGES = ("gp30_proxy", "gp30_uplift_proxy", "override_rate", "conversion", "conversion_baseline", "error_rate",
              "latency_p95_ms", "cache_hit_rate", "explore_share")  # fmt: skip


def _monitor_families(e: DealEngine) -> Iterator[GaugeMetricFamily]:
    """The monitor's figures: rollout state and shares, firing alerts, KPIs per arm and window, risk histogram."""
    view = e.monitor.view
    state = GaugeMetricFamily("aidg_rollout_state", "1 for the rollout's current state", labels=["state"])
    for s in STATES:
        state.add_metric([s], float(view.state == s))
    yield state
    share = GaugeMetricFamily("aidg_rollout_share", "share of traffic per arm", labels=["arm"])
    for arm, v in view.shares.items():
        share.add_metric([arm], v)
    yield share
    firing = GaugeMetricFamily("aidg_alerts_firing", "alerts firing now", labels=["severity", "rule", "arm"])
    for a in e.monitor.alerts:
        firing.add_metric([a.severity, a.rule, a.arm], 1.0)
    yield firing
    try:
        report = e.monitor.report()
    except Exception:  # the decision log is down: the other figures still go out
        return
    kpi = GaugeMetricFamily("aidg_kpi", "rolling-window KPIs (docs/monitor-api.md)", labels=["window", "arm", "kpi"])
    for window, arms in report["windows"].items():
        for arm, stats in arms.items():
            for k in KPI_GAUGES:
                if stats.get(k) is not None:
                    kpi.add_metric([window, arm, k], float(stats[k]))
    yield kpi
    risk = GaugeMetricFamily("aidg_risk_score_decisions", "decisions per risk-score bin over the last hour",
                             labels=["arm", "bin"])  # fmt: skip
    edges = report["risk_histogram"]["edges"]
    for arm, counts in report["risk_histogram"]["counts"].items():
        for i, c in enumerate(counts):
            risk.add_metric([arm, f"{edges[i]:.1f}-{edges[i + 1]:.1f}"], float(c))
    yield risk
    ex = report["exploration"]
    for name, key, doc in (("aidg_active_variants", "active_variants", "explored variants served (real-time window)"),
                           ("aidg_explore_success_rate", "success_rate", "explored variants approved and not edited")):
        if ex.get(key) is not None:
            yield GaugeMetricFamily(name, doc, value=float(ex[key]))


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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
        # a client picks the method: made-up ones share one label, so they cannot grow the registry
        self.requests.labels(route, method if method in HTTP_METHODS else "other", str(status)).inc()
        self.latency.labels(route).observe(seconds)


__all__ = ["Metrics"]
