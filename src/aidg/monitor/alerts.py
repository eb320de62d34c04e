"""Alert rules (memo §3.2: P0, P1, P2) and the auto-rollback triggers (memo §2.3), on rolling windows.

Alerts say what is wrong; triggers roll a challenger back. A trigger compares
the challenger's arms (``challenger`` + ``explore``) with the champion's arm
over the same window since the rollout started:

* **GP30 proxy drop** > ``rollback_gp30_drop`` over ``rollback_gp30_window_hours``:
  challenger mean proxy < (1 − drop) × champion's.
* **Override spike** > ``rollback_override_spike`` in the ``rollback_override_window_hours``
  window: the challenger merchants' edits over what their own recent override
  rates predict, > (1 + spike) × the same ratio of the champion's merchants.
* **Errors** > ``rollback_error_rate`` over the last hour (since the rollout started).

**A designed false-alarm rate.** Each trigger tests the memo's threshold itself
(H0: "the challenger is within it": the drop ≤ 20 %, the spike ≤ 30 %, the
error rate ≤ 5 %), not "no difference", with a sequential test that stays valid
however often it looks: the normal-mixture sequential probability ratio test
(mSPRT; Robbins 1970, Johari et al. 2017 "Peeking at A/B tests", Howard et al.
2021), which fires when the mixture likelihood ratio of the window's excess
over the threshold reaches 1/α. By Ville's inequality its chance of *ever*
firing under H0 is ≤ α over all looks of one window. A rollout spans many
windows (the A/B interval and the ramp's steps: ``ramp_interval_hours`` ×
(1/``ramp_step`` + 1), 528 h by default, is 528 one-hour windows), so each
trigger gets ``monitor.rollout_false_alarm`` (1 % per rollout, shared by the
three triggers) ÷ 3 ÷ its number of windows (Bonferroni: valid whatever the
windows' overlap). A healthy challenger sits far inside H0 (its excess is
about −20 % or −30 % of the champion's figure), so its false-alarm rate is far
below the bound; `bench/rollout.py` measures it.

The GP30 and override estimates use cluster-robust variances over 16 merchant
groups (:func:`ratio_estimate`): traffic is Zipf-popular and the arms are a hash
of the merchant, so decisions of one merchant are not independent samples (the
plain binomial or Welch errors fired on healthy challengers in the demo). With
16 groups the estimate's error has Student-t tails (15 df), so its variance is
inflated by the t distribution's ν / (ν − 2). Failures are independent draws:
the error test uses the binomial variance at the threshold.
  (The memo's absolute 30 % is the P1 alert: in the simulator, reps edit about
  28 % of any suggestion, so an absolute trigger would fire on every model.)

With no champion traffic in the window (state ``full``), the champion's
7-day figures before the rollout stand in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from aidg.config import Settings
from aidg.monitor.kpis import ARMS, CHALLENGER_ARMS, GROUPS, Totals, arm_stats, pooled


@dataclass(frozen=True)
class Alert:
    severity: str  # P0 / P1 / P2
    rule: str
    arm: str
    message: str
    value: float
    threshold: float
    rollback: bool = False  # a trigger: the challenger is rolled back

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def wilson_lower(k: float, n: float, z: float) -> float:
    """Lower end of the Wilson score interval of a proportion ``k / n``."""
    if n <= 0:
        return 0.0
    p = k / n
    den = 1 + z * z / n
    return (p + z * z / (2 * n) - z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / den


@dataclass(frozen=True)
class RatioEstimate:
    """A ratio of totals Σy / Σx over merchant groups, with its cluster-robust variance."""

    value: float
    var: float
    n: int  # decisions
    groups: int


def ratio_estimate(t: Totals, arms: tuple[str, ...], num: str, den: str | None = None) -> RatioEstimate | None:
    """Σ num / Σ den (``den`` None: the decision count of ``num``) with the variance across merchant groups.

    Decisions of one merchant are not independent (a popular merchant asks many times and sits in one arm), so
    the variance is the clustered one, ``K/(K−1) Σ_k (y_k − R x_k)² / (Σ x)²`` over the K groups with data,
    each merchant wholly in one group. None with fewer than 4 groups."""
    ys, xs, ns = [], [], 0
    for k in range(GROUPS):
        cy, y = pooled(t, tuple(f"{a}/g{k}" for a in arms), num)
        x = pooled(t, tuple(f"{a}/g{k}" for a in arms), den)[1] if den else float(cy)
        if cy:
            ys.append(y)
            xs.append(x)
            ns += cy
    if len(ys) < 4 or sum(xs) <= 0:
        return None
    y_, x_ = np.array(ys), np.array(xs)
    ratio = float(y_.sum() / x_.sum())
    k = len(ys)
    var = float(k / (k - 1) * ((y_ - ratio * x_) ** 2).sum() / x_.sum() ** 2)
    return RatioEstimate(ratio, var, ns, k)


def msprt_log_lr(excess: float, var: float, tau: float) -> float:
    """Log of the normal-mixture likelihood ratio for an estimate ``excess`` (variance ``var``) against 0, the
    mixing prior N(0, ``tau``²) on the true excess (the size of difference the test is tuned to see)."""
    if var <= 0 or tau <= 0:
        return -math.inf
    t2 = tau * tau
    return 0.5 * math.log(var / (var + t2)) + excess * excess * t2 / (2.0 * var * (var + t2))


def trigger_alpha(settings: Settings, window_hours: float) -> float:
    """One trigger's false-alarm budget per window: the rollout's ÷ 3 triggers ÷ the windows a rollout spans."""
    r = settings.rollout
    planned_hours = r.ramp_interval_hours * (math.ceil(1.0 / r.ramp_step) + 1)  # the A/B interval, then the ramp
    return settings.monitor.rollout_false_alarm / 3.0 / max(1.0, planned_hours / window_hours)


def _t_inflated(e: RatioEstimate) -> float:
    """The cluster-robust variance times the t distribution's ν / (ν − 2), ν = groups − 1."""
    nu = e.groups - 1
    return e.var * (nu / (nu - 2) if nu > 2 else 3.0)


def triggers(settings: Settings, win: dict[str, Totals], reference: Totals | None = None) -> list[Alert]:
    """The rollback triggers that fire on windows ``{"realtime", "1h", "2h"}`` (each since the rollout started);
    ``reference``: champion totals to compare with when the windows hold no champion traffic."""
    r, m = settings.rollout, settings.monitor
    out: list[Alert] = []
    champ = ("champion",)

    def champion_side(t: Totals) -> Totals:
        if reference is not None and pooled(t, champ, "gp30_proxy")[0] < m.min_samples:
            return reference
        return t

    # GP30 proxy drop over the 2-hour window: H0 "challenger ≥ (1 − drop) × champion"
    t, keep = win["2h"], 1 - r.rollback_gp30_drop
    c, h = ratio_estimate(t, CHALLENGER_ARMS, "gp30_proxy"), ratio_estimate(champion_side(t), champ, "gp30_proxy")
    if c and h and c.n >= m.min_samples and h.n >= m.min_samples and h.value > 0:
        excess, var = keep * h.value - c.value, _t_inflated(c) + keep * keep * _t_inflated(h)
        llr = msprt_log_lr(excess, var, r.rollback_gp30_drop * h.value)
        if excess > 0 and llr >= -math.log(trigger_alpha(settings, r.rollback_gp30_window_hours)):
            ratio = c.value / h.value
            out.append(Alert("P0", "gp30_proxy_drop", "challenger", (
                f"challenger GP30 proxy {c.value:.3f} is {1 - ratio:.0%} under the champion's {h.value:.3f} "
                f"(n = {c.n} / {h.n}, log LR = {llr:.1f})"), 1 - ratio, r.rollback_gp30_drop, True))  # fmt: skip
    # override spike over the 1-hour window: each side's edits over what its merchants' own recent override rates
    # predict (observed / expected), so the arms' different merchants do not count as a spike;
    # H0 "challenger ≤ (1 + spike) × champion"
    t, cap = win["1h"], 1 + r.rollback_override_spike
    c = ratio_estimate(t, CHALLENGER_ARMS, "overridden", "override_expected")
    h = ratio_estimate(champion_side(t), champ, "overridden", "override_expected")
    if c and h and c.n >= m.min_samples and h.n >= m.min_samples and h.value > 0:
        excess, var = c.value - cap * h.value, _t_inflated(c) + cap * cap * _t_inflated(h)
        llr = msprt_log_lr(excess, var, r.rollback_override_spike * h.value)
        if excess > 0 and llr >= -math.log(trigger_alpha(settings, r.rollback_override_window_hours)):
            ratio = c.value / h.value
            out.append(Alert("P1", "override_spike", "challenger", (
                f"challenger merchants' edits are {ratio - 1:.0%} over the champion's, each against the merchants' "
                f"usual override rates (n = {c.n} / {h.n}, log LR = {llr:.1f})"), ratio - 1, r.rollback_override_spike,
                True))  # fmt: skip
    # failures over the last hour since the rollout started (the real-time window holds too few requests of an
    # accelerated demo); H0 "failure rate ≤ rollback_error_rate", the binomial variance at the threshold
    t, limit = win["1h"], r.rollback_error_rate
    ok, _ = pooled(t, CHALLENGER_ARMS, "decisions")
    bad, _ = pooled(t, CHALLENGER_ARMS, "errors")
    n = ok + bad
    if n >= m.min_samples:
        excess = bad / n - limit
        llr = msprt_log_lr(excess, limit * (1 - limit) / n, limit)
        if excess > 0 and llr >= -math.log(trigger_alpha(settings, 1.0)):
            said = f"challenger failed {bad} of {n} requests ({bad / n:.1%} > {limit:.0%}, log LR = {llr:.1f})"
            out.append(Alert("P0", "error_rate", "challenger", said, bad / n, limit, True))
    return out


def alerts(settings: Settings, win: dict[str, Totals], down: dict[str, str]) -> list[Alert]:
    """The memo's P0 / P1 / P2 alerts on the pooled traffic (the triggers are added by the caller)."""
    a, m = settings.alerts, settings.monitor
    out: list[Alert] = []
    for name, why in sorted(down.items()):
        out.append(Alert("P0", "service_down", "all", f"{name} is down: {why}", 1.0, 0.0))
    rt, hour = arm_stats(win["realtime"], ARMS), arm_stats(win["1h"], ARMS)
    ov = pooled(win["1h"], ARMS, "overridden")[0]
    if hour["override_rate"] is not None and ov >= m.min_samples and hour["override_rate"] > a.p1_override_rate:
        out.append(Alert("P1", "override_rate", "all", f"override rate {hour['override_rate']:.1%} over the last hour "
                         f"(> {a.p1_override_rate:.0%})", hour["override_rate"], a.p1_override_rate))  # fmt: skip
    slow = rt["latency_p95_ms"]
    if slow is not None and rt["decisions"] >= m.min_samples and slow > a.p1_latency_ms:
        out.append(Alert("P1", "latency", "all", f"p95 latency {slow:.0f} ms (> {a.p1_latency_ms:.0f} ms)",
                         slow, a.p1_latency_ms))  # fmt: skip
    hits, misses = win["realtime"].get("all/cache_hit", (0, 0.0))[1], win["realtime"].get("all/cache_miss", (0, 0.0))[1]
    if hits + misses >= m.min_samples and hits / (hits + misses) < a.p2_cache_hit_rate:
        out.append(Alert("P2", "cache_hit_rate", "all", f"cache hit rate {hits / (hits + misses):.1%} "
                         f"(< {a.p2_cache_hit_rate:.0%})", hits / (hits + misses), a.p2_cache_hit_rate))  # fmt: skip
    conv, base = hour["conversion"], hour["conversion_baseline"]
    if conv is not None and base and pooled(win["1h"], ARMS, "conversion")[0] >= m.min_samples and conv < 0.9 * base:
        out.append(Alert("P2", "conversion_below_baseline", "all",
                         f"conversion {conv:.3f} is {1 - conv / base:.0%} under the current deals' {base:.3f}",
                         1 - conv / base, 0.1))  # fmt: skip
    return out


__all__ = ["Alert", "alerts", "msprt_log_lr", "trigger_alpha", "triggers", "wilson_lower"]
