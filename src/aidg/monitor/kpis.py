"""KPI names, the per-replica recorder, and the rolling windows computed from the decision log's KPI rows.

KPI rows are ``(bucket, "<arm>/<metric>") -> (count, total)``. The service's
replicas add what they serve (:class:`Recorder`, flushed every
``monitor.flush_seconds``); the stream workers add what the feedback says
(:func:`feedback_kpis`). Windows are simulated time: a window of *h* hours
covers the last ``h × 3600 / time_scale`` real seconds.

Metrics per arm: ``decisions``, ``errors`` (requests the arm failed; a
challenger's failure is answered by the champion), ``latency_ms`` and its
histogram ``lat_le_<edge>``, ``risk_<bin>`` (the chosen deal's risk score),
``explore`` (explored variants played), ``explore_variants`` (distinct ones
per flush), ``conversion_baseline`` (the scorer's prediction for the
merchant's current deal), and from feedback ``approval``, ``override``
(severity), ``overridden`` (edits), ``override_expected``, ``conversion``,
``gp30_uplift``, ``gp30_proxy``, ``explore_answered``,
``explore_success``. Arm ``all`` carries ``cache_hit``, ``cache_miss`` and
``exploration_rate``.

The GP30 proxy of a decision is ``approved × conversion × (1 − discount) /
(1 − the current deal's discount)``, divided by what the scorer expected of
the merchant's current deal (``approval × conversion``, floored at 0.01): it
is known after the 3-day conversion instead of 30 days, and near 1 for a
merchant served its current deal, whatever the merchant's level. Without
that, the arms of a merchant-hash split differ by which merchants they hold:
traffic is Zipf-popular, and a few heavy merchants set an arm's mean. For the
same reason an arm's override rate is compared with the ``override_expected``
of its decisions (the merchants' recent override rates). An approved
decision's proxy counts once its conversion is in, so decisions still
waiting do not drag an arm down. docs/gp30-proxy.md measures it against the simulator's
true GP30 (arm-level log-ratio Pearson 0.995, 87 % of true drops > 20 %
caught, 0.9 % false alarms) and against the alternatives (the price × (1 −
discount) margin counts package size twice: conversion is in list-price
units already).
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

ARMS = ("champion", "challenger", "explore")
CHALLENGER_ARMS = ("challenger", "explore")
LATENCY_EDGES_MS = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
RISK_BINS = 10
WINDOWS_HOURS = {"realtime": None, "1h": 1.0, "2h": 2.0, "7d": 168.0}

Totals = Mapping[str, tuple[int, float]]  # "<arm>/<metric>" -> (count, total)


PROXY_FLOOR = 0.01  # the smallest expected proxy a decision is normalised by
GROUPS = 16  # merchant clusters of the triggers' variances
GROUPED = ("gp30_proxy", "overridden", "override_expected")


def bucket_of(t: datetime, seconds: float) -> datetime:
    """The KPI bucket holding time ``t`` (buckets of ``seconds``, aligned on the epoch)."""
    ts = t.timestamp()
    return datetime.fromtimestamp(ts - ts % seconds, UTC)


def margin(terms: Mapping[str, Any]) -> float:
    """The unit margin the GP30 proxy weighs conversion with: ``1 − discount`` (module docstring)."""
    return 1.0 - float(terms["discount_pct"])


def merchant_group(merchant_id: str) -> int:
    """The merchant's cluster (0 … GROUPS − 1) for the triggers' cluster-robust variances."""
    h = hashlib.blake2b(f"aidg-kpi-group|{merchant_id}".encode(), digest_size=4).digest()
    return int.from_bytes(h, "big") % GROUPS


def feedback_kpis(
    arm: str, merchant_id: str, decision: Mapping[str, Any], part: str, value: float
) -> list[tuple[str, float]]:
    """The KPI ``(name, value)`` pairs one applied reward part adds (the stream worker's side).

    ``decision`` is the logged decision's payload (``chosen``, ``current_margin``, ``proxy_baseline``,
    ``override_expected``). The triggers' inputs are also kept per merchant group (``<arm>/g<k>/<metric>``)."""
    out = _feedback(arm, decision, part, value)
    g = f"{arm}/g{merchant_group(merchant_id)}/"
    out += [(g + n.split("/", 1)[1], v) for n, v in out if n.split("/", 1)[1] in GROUPED]
    return out


def _feedback(arm: str, decision: Mapping[str, Any], part: str, value: float) -> list[tuple[str, float]]:
    out = [(f"{arm}/{part}", float(value))]
    explored = (decision.get("chosen") or {}).get("type") == "explore"
    if part == "override":
        out.append((f"{arm}/overridden", float(value > 0)))
        out.append((f"{arm}/override_expected", float(decision.get("override_expected") or 0.0)))
        if explored:
            out.append((f"{arm}/explore_overridden", float(value > 0)))
    elif part == "approval":
        if value < 0.5:  # refused: its proxy is known now (0); an approved one's waits for its conversion, so
            out.append((f"{arm}/gp30_proxy", 0.0))  # decisions still waiting do not drag an arm's mean down
        if explored:
            out.append((f"{arm}/explore_answered", float(value)))
    elif part == "conversion":
        chosen, base = decision.get("chosen") or {}, float(decision.get("current_margin") or 0.0)
        proxy = float(value) * margin(chosen) / base if base > 0 and chosen else float(value)
        proxy /= max(float(decision.get("proxy_baseline") or 1.0), PROXY_FLOOR)
        out.append((f"{arm}/gp30_proxy", proxy))
    return out


class Recorder:
    """A replica's KPI counters since the last flush (thread-safe; ``drain`` hands them over and resets)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._acc: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        self._sets: dict[str, set[Any]] = defaultdict(set)

    def add(self, name: str, value: float = 1.0, count: int = 1) -> None:
        with self._lock:
            acc = self._acc[name]
            acc[0] += count
            acc[1] += value

    def decision(
        self, arm: str, seconds: float, risk: float, explored: bool, variant: Any, baseline: Mapping[str, float],
    ) -> None:  # fmt: skip
        ms = seconds * 1e3
        edge = next((e for e in LATENCY_EDGES_MS if ms <= e), "inf")
        b = min(int(max(risk, 0.0) * RISK_BINS), RISK_BINS - 1) if math.isfinite(risk) else RISK_BINS - 1
        with self._lock:
            for name, v in (
                (f"{arm}/decisions", 1.0), (f"{arm}/latency_ms", ms), (f"{arm}/lat_le_{edge}", 1.0),
                (f"{arm}/risk_{b}", 1.0), (f"{arm}/explore", float(explored)),
                (f"{arm}/conversion_baseline", baseline["conversion"]),
            ):  # fmt: skip
                acc = self._acc[name]
                acc[0] += 1
                acc[1] += v
            if explored:
                self._sets[f"{arm}/explore_variants"].add(variant)

    def drain(self) -> list[tuple[str, int, float]]:
        with self._lock:
            out = [(k, int(c), float(t)) for k, (c, t) in self._acc.items()]
            out += [(k, 1, float(len(v))) for k, v in self._sets.items()]
            self._acc.clear()
            self._sets.clear()
        return out


# -- reading windows --------------------------------------------------------------------------------------------------
def _get(t: Totals, name: str) -> tuple[int, float]:
    return t.get(name, (0, 0.0))


def pooled(t: Totals, arms: Iterable[str], metric: str) -> tuple[int, float]:
    """``(count, total)`` of ``<arm>/<metric>`` summed over ``arms``."""
    c, s = 0, 0.0
    for a in arms:
        ci, si = _get(t, f"{a}/{metric}")
        c, s = c + ci, s + si
    return c, s


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def latency_quantile(t: Totals, arms: Iterable[str], q: float = 0.95) -> float | None:
    """The ``q`` quantile of latency from the histogram counts (upper edge of the bucket holding it)."""
    counts = [(e, sum(_get(t, f"{a}/lat_le_{e}")[0] for a in arms)) for e in (*LATENCY_EDGES_MS, "inf")]
    total = sum(c for _, c in counts)
    if total == 0:
        return None
    seen = 0
    for e, c in counts:
        seen += c
        if seen >= q * total:
            return float(e) if e != "inf" else float(LATENCY_EDGES_MS[-1]) * 2
    return None


def arm_stats(t: Totals, arms: Iterable[str]) -> dict[str, Any]:
    """The dashboard's ``Stats`` of one arm, or of several pooled (``all``)."""
    arms = list(arms)

    def tot(metric: str) -> tuple[int, float]:
        return pooled(t, arms, metric)

    dec, err = tot("decisions")[0], tot("errors")[0]
    answered, proxy = tot("gp30_proxy")
    conv_n, conv = tot("conversion")
    cb_n, cb = tot("conversion_baseline")
    ov_n, ov = tot("overridden")
    mean_proxy = _ratio(proxy, answered)
    hits, misses = _get(t, "all/cache_hit")[1], _get(t, "all/cache_miss")[1]
    return {
        "decisions": dec,
        "errors": err,
        "error_rate": _ratio(err, dec + err),
        "answered": answered,
        "gp30_proxy": mean_proxy,
        "gp30_uplift_proxy": mean_proxy - 1 if mean_proxy is not None else None,
        "override_rate": _ratio(ov, ov_n),
        "override_expected": _ratio(tot("override_expected")[1], ov_n),
        "conversion": _ratio(conv, conv_n),
        "conversion_baseline": _ratio(cb, cb_n),
        "latency_p95_ms": latency_quantile(t, arms),
        "cache_hit_rate": _ratio(hits, hits + misses) if "all" in arms or len(arms) > 1 else None,
        "explore_share": _ratio(tot("explore")[1], dec),
    }


def window_seconds(hours: float | None, realtime_minutes: float, time_scale: float) -> float:
    """Real seconds of a window of simulated ``hours`` (``None``: the real-time window)."""
    h = realtime_minutes / 60 if hours is None else hours
    return h * 3600.0 / time_scale


def totals(rows: Iterable[Mapping[str, Any]], since: datetime | None = None) -> dict[str, tuple[int, float]]:
    """Sum KPI rows ``{bucket, name, count, total}`` by name (buckets at or after ``since``)."""
    out: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for r in rows:
        if since is not None and r["bucket"] < since:
            continue
        acc = out[r["name"]]
        acc[0] += r["count"]
        acc[1] += r["total"]
    return {k: (int(c), float(s)) for k, (c, s) in out.items()}


def series(
    rows: Sequence[Mapping[str, Any]], start: datetime, end: datetime, points: int,
) -> dict[str, Any]:  # fmt: skip
    """The dashboard's time series: ``points`` slices of [start, end], each arm's Stats per slice."""
    step = max((end - start).total_seconds() / points, 1e-3)
    slices: list[list[Mapping[str, Any]]] = [[] for _ in range(points)]
    for r in rows:
        k = int((r["bucket"] - start).total_seconds() // step)
        if 0 <= k < points:
            slices[k].append(r)
    per = [totals(s) for s in slices]
    keys = ("decisions", "gp30_proxy", "gp30_uplift_proxy", "override_rate", "conversion", "conversion_baseline",
            "error_rate", "latency_p95_ms")  # fmt: skip
    arms: dict[str, dict[str, list[Any]]] = {a: {k: [] for k in keys} for a in ARMS}
    overall: dict[str, list[Any]] = {k: [] for k in ("cache_hit_rate", "exploration_rate", "active_variants",
                                                    "explore_success_rate")}  # fmt: skip
    for t in per:
        for a in ARMS:
            st = arm_stats(t, [a])
            for key in keys:
                v = st[key]
                arms[a][key].append(None if (v is None or (key == "decisions" and not st["decisions"])) else _r(v))
        hits, misses = _get(t, "all/cache_hit")[1], _get(t, "all/cache_miss")[1]
        overall["cache_hit_rate"].append(_r(_ratio(hits, hits + misses)))
        er = _get(t, "all/exploration_rate")
        overall["exploration_rate"].append(_r(_ratio(er[1], er[0])))
        overall["active_variants"].append(sum(_get(t, f"{a}/explore_variants")[1] for a in ARMS) if t else None)
        overall["explore_success_rate"].append(_r(explore_success(t)))
    times = [(start + timedelta(seconds=step * (k + 0.5))).isoformat() for k in range(points)]
    return {"t": times, "arms": arms, "all": overall}


def explore_success(t: Totals) -> float | None:
    """Share of answered explored variants approved and not edited."""
    answered = sum(_get(t, f"{a}/explore_answered")[0] for a in ARMS)
    approved = sum(_get(t, f"{a}/explore_answered")[1] for a in ARMS)
    edited = sum(_get(t, f"{a}/explore_overridden")[1] for a in ARMS)
    return max(approved - edited, 0.0) / answered if answered else None


def risk_histogram(t: Totals) -> dict[str, Any]:
    edges = [round(i / RISK_BINS, 2) for i in range(RISK_BINS + 1)]
    return {"edges": edges, "counts": {a: [_get(t, f"{a}/risk_{i}")[0] for i in range(RISK_BINS)] for a in ARMS}}


def _r(v: float | None, n: int = 5) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), n)


__all__ = [
    "ARMS",
    "CHALLENGER_ARMS",
    "LATENCY_EDGES_MS",
    "WINDOWS_HOURS",
    "Recorder",
    "arm_stats",
    "bucket_of",
    "explore_success",
    "feedback_kpis",
    "latency_quantile",
    "margin",
    "merchant_group",
    "pooled",
    "risk_histogram",
    "series",
    "totals",
    "window_seconds",
]
