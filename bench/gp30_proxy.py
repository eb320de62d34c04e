"""How well does the rollout trigger's early proxy predict GP30? Measured against the simulator's oracle.

The monitor must flag "GP30 of the challenger down > 20 % against the champion",
but GP30 lands after 30 days. The trigger therefore runs on a proxy computed
per served decision *i* (one chosen deal for merchant *m*) from feedback that
arrives within ~3 days:

    gp30_proxy_i = approved_i × conversion_i × margin_i / margin_current_i,   margin = price × (1 − discount_pct)

``margin_current`` is the margin of the merchant's current deal (the habitual
deal the service serves as "current", ``Oracle.baseline_deal``; ``--current
legacy`` uses the pre-AIDG system's proposal, ``Oracle.current_system_deal``).
An arm's proxy is the mean over its decisions; the trigger fires when the
challenger's mean ÷ the champion's mean < 0.8. The truth it stands for is the
realized GP30 per decision relative to the merchant's current deal,
``approved × GP30(deal) / GP30(current deal)`` (with the habitual current deal
this is ``approved × (1 + expected_uplift)``), compared the same way.

Method.

1. *Decision level.* ``--merchants`` random merchants of the world (seeded),
   each with the 50 variants ``CandidateGenerator`` draws at the world's as-of
   date (``settings.bandit.n_candidates``) plus its current deal. The oracle
   gives every option's true approval probability *A*, conversion proxy *C*
   and GP30; expected proxy and expected truth ``A × GP30 / GP30_current`` are
   correlated over all options pooled (Spearman, Pearson) and within each
   merchant (Spearman, median over merchants).
2. *Arm level.* ``--pairs`` champion/challenger pairs of policies, each policy
   picking one option per merchant: random, the current deal, oracle-good
   (highest true ``A × GP30``), oracle-bad (lowest), mixtures (with
   probability q good / bad, else random), noisy scorers of the truth
   (argmax of log truth + N(0, σ)), approval-blind noisy scorers (the same
   on GP30 alone) and proxy seekers (the same on each proxy's expectation,
   σ = 0.3: a challenger trained toward an early signal, one per proxy so none
   is favoured). Champion and challenger are drawn uniformly from these
   policies; pair 0 is always champion oracle-good vs challenger
   oracle-bad. The two arms of a pair get disjoint random halves of the
   merchants (a hash split) and 200–2,000 decisions each, drawn uniformly from
   their half. Outcomes are drawn as the service sees them (as in
   ``aidg.demo.traffic``): approved ~ Bernoulli(A); observed conversion
   ``clip(C · e^N(0, 0.2), 0, 1)``; realized GP30 ``GP30 · e^N(−σ²/2, σ)``,
   σ = ``OUTCOME_NOISE`` (0.3), times approved. Per pair: the proxy's ratio of
   arm means, the true ratio of expected realized GP30 on the same decisions
   (outcome noise removed) and the ratio of the noisy realized GP30. Reported:
   Pearson r of log ratios (proxy vs noise-free truth; ``_realized`` vs the
   noisy one), their RMSE, sign agreement, and the trigger's sensitivity
   (share of pairs with true ratio < 0.8 whose proxy ratio < 0.8; ``_near``:
   only pairs with true ratio in [0.6, 0.8)) and false-alarm rate (share of
   pairs with true ratio ≥ 0.95 whose proxy ratio < 0.8).
3. *Alternatives*, on the same options, pairs and draws: approval only;
   approval × conversion; conversion × margin without approval (conversion is
   only observed on approved deals, so its arm mean is over approved
   decisions); the chosen proxy; and, for comparison, approval × conversion ×
   ``(1 − discount) / (1 − discount_current)`` (the margin without the package
   size: the simulator's conversion counts list-price units, so the option
   price's size factor is not part of GP30).

Also reported: the chosen proxy's ratio for the good-vs-bad pair
(``bad_vs_good_proxy_ratio``), what a challenger that maximises each proxy
does to true GP30 (``proxy_maximiser``, noise-free, over all merchants), the
realized GP30 itself as a trigger (the ceiling outcome noise leaves), and a
``breakdown`` of the chosen and discount-margin proxies by capacity headroom
tercile (hidden truth; low = capacity-bound), duration, discount and package size.

    python bench/gp30_proxy.py [--scale small --seed 7 | --data DIR] [--pairs 200] [--merchants 400] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import pearsonr, rankdata, spearmanr

from aidg.config import load_settings
from aidg.features.candidates import DURATIONS, SIZES, CandidateGenerator
from aidg.sim.history import OUTCOME_NOISE
from aidg.sim.oracle import TERM_COLUMNS, Oracle
from aidg.sim.world import World, simulate

PRICE_MARGIN = "approval_x_conversion_x_margin"  # margin = price × (1 − discount): the first candidate
DISCOUNT_MARGIN = "approval_x_conversion_x_discount_margin"
CHOSEN = DISCOUNT_MARGIN  # what aidg.monitor.kpis computes
CONVERSION_NOISE = 0.2  # lognormal σ of the observed 3-day conversion (aidg.demo.traffic)
DROP = 0.8  # the trigger: challenger ÷ champion < 0.8
FLAT = 0.95  # pairs at or above this true ratio must not fire
NEAR = 0.6  # "near" drops: true ratio in [0.6, 0.8), the ones a weak proxy misses
ARM_DECISIONS = (200, 2_000)


@dataclass(frozen=True)
class Proxy:
    """A per-decision proxy: approval^a × conversion^c × margin ratio (none, option price or discount only)."""

    name: str
    approval: bool
    conversion: bool
    margin: str  # "none" | "price" | "discount"


PROXIES = (
    Proxy("approval", True, False, "none"),
    Proxy("approval_x_conversion", True, True, "none"),
    Proxy("conversion_x_margin", False, True, "price"),
    Proxy(PRICE_MARGIN, True, True, "price"),
    Proxy(DISCOUNT_MARGIN, True, True, "discount"),
)


@dataclass
class Options:
    """Every merchant's options (its variants, then its current deal last) with their true expectations."""

    merchant_ids: np.ndarray  # (M,)
    approval: np.ndarray  # (M, K + 1) A
    conversion: np.ndarray  # C
    gp30_rel: np.ndarray  # GP30 / GP30(current deal)
    margin: dict[str, np.ndarray]  # margin / margin(current deal), by kind
    headroom: np.ndarray  # (M,) capacity ÷ 30-day demand at list price (hidden truth)
    duration: np.ndarray  # (M, K + 1) days
    discount: np.ndarray  # (M, K + 1)
    size: np.ndarray  # (M, K + 1) package size: price ÷ the merchant's list price

    @property
    def truth(self) -> np.ndarray:
        """Expected realized GP30 relative to the current deal: A × GP30 / GP30_current."""
        return np.asarray(self.approval * self.gp30_rel)

    def expected(self, p: Proxy) -> np.ndarray:
        """The proxy's expectation per option (conversion × margin: given approval)."""
        out = self.margin[p.margin].copy()
        if p.approval:
            out *= self.approval
        if p.conversion:
            out *= self.conversion
        return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_world(data: Path | None, scale: str, seed: int) -> World:
    if data is None:
        return simulate(scale, seed=seed)
    from aidg.sim.storage import load_data_folder

    _, _, world = load_data_folder(data)
    if world is None:
        raise SystemExit(f"{data} has no simulator truth: run this on an `aidg simulate` folder")
    return world


def build_options(world: World, n_merchants: int, current: str, seed: int) -> Options:
    """Variants + current deal of ``n_merchants`` random merchants, valued by the oracle at the as-of date."""
    settings = load_settings()
    tables = world.tables
    at = world.as_of
    all_ids = np.sort(tables["merchants"].merchant_id.astype(str).to_numpy())
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(all_ids, size=min(n_merchants, len(all_ids)), replace=False))
    k = settings.bandit.n_candidates
    cand = CandidateGenerator(tables["merchants"], tables["deals"], settings.candidates).generate_many(ids, at, k)
    if len(cand) != len(ids) * k:
        raise SystemExit(f"expected {k} variants per merchant, got {len(cand)} for {len(ids)} merchants")
    oracle = Oracle(world, settings.reward)
    cur = oracle.baseline_deal(ids) if current == "habitual" else oracle.current_system_deal(ids, at)
    cur = cur.assign(merchant_id=ids)
    m = len(ids)
    terms = pd.concat(
        [cand[["merchant_id", *TERM_COLUMNS]].assign(slot=np.tile(np.arange(k), m)), cur.assign(slot=k)],
        ignore_index=True,
    )
    terms["row"] = terms.merchant_id.map(pd.Series(np.arange(m), index=ids))
    terms = terms.sort_values(["row", "slot"], kind="stable").reset_index(drop=True)
    ev = oracle.evaluate(terms.merchant_id.to_numpy(), terms, at=at)

    def grid(x: pd.Series | np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float).reshape(m, k + 1)

    gp = grid(ev.expected_gp30)
    keep = 1.0 - grid(terms.discount_pct)
    price = grid(terms.price) * keep
    headroom = world.truth["merchants"].set_index("merchant_id").headroom.reindex(ids).to_numpy(float)
    merchants = tables["merchants"].assign(merchant_id=tables["merchants"].merchant_id.astype(str))
    lp = merchants.set_index("merchant_id").reindex(ids)
    list_price = (lp.list_price if "list_price" in lp else lp.baseline_price).to_numpy(float)
    return Options(
        merchant_ids=ids,
        approval=grid(ev.approval_prob),
        conversion=grid(ev.conversion),
        gp30_rel=gp / gp[:, -1:],
        margin={"none": np.ones_like(gp), "price": price / price[:, -1:], "discount": keep / keep[:, -1:]},
        headroom=headroom,
        duration=grid(terms.duration_days),
        discount=grid(terms.discount_pct),
        size=grid(terms.price) / list_price[:, None],
    )


# -- decision level --------------------------------------------------------------------------------------------
def row_spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row of x with the same row of y (NaN where a row is constant)."""
    rx, ry = rankdata(x, axis=1), rankdata(y, axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(den > 0, (rx * ry).sum(1) / den, np.nan))


def decision_level(opt: Options, p: Proxy) -> dict[str, float]:
    x, y = opt.expected(p), opt.truth
    within = row_spearman(x, y)
    return {
        "decision_spearman": float(spearmanr(x.ravel(), y.ravel()).statistic),
        "decision_pearson": float(pearsonr(x.ravel(), y.ravel()).statistic),
        "within_merchant_spearman_median": float(np.nanmedian(within)),
    }


# -- arm level ---------------------------------------------------------------------------------------------------
def policy_specs() -> list[tuple[str, float]]:
    """(kind, parameter) of the policies pairs are drawn from."""
    specs: list[tuple[str, float]] = [("random", 0.0), ("current", 0.0), ("good", 0.0), ("bad", 0.0)]
    specs += [("mix_good", q) for q in (0.25, 0.5, 0.75)]
    specs += [("mix_bad", q) for q in (0.25, 0.5, 0.75)]
    specs += [("noisy", s) for s in (0.1, 0.3, 1.0)]
    specs += [("noisy_blind", s) for s in (0.1, 0.5)]
    specs += [(f"seek:{p.name}", 0.3) for p in PROXIES]
    return specs


def pick(opt: Options, kind: str, q: float, rng: np.random.Generator) -> np.ndarray:
    """One option per merchant under the policy ``kind`` (parameter ``q``)."""
    m, n = opt.truth.shape
    rand = np.asarray(rng.integers(0, n, m))
    good, bad = np.asarray(opt.truth.argmax(1)), np.asarray(opt.truth.argmin(1))
    if kind == "random":
        return rand
    if kind == "current":
        return np.full(m, n - 1)
    if kind == "good":
        return good
    if kind == "bad":
        return bad
    if kind == "mix_good":
        return np.asarray(np.where(rng.random(m) < q, good, rand))
    if kind == "mix_bad":
        return np.asarray(np.where(rng.random(m) < q, bad, rand))
    if kind in ("noisy", "noisy_blind"):
        base = opt.truth if kind == "noisy" else opt.gp30_rel
        return np.asarray((np.log(np.maximum(base, 1e-12)) + rng.normal(0, q, (m, n))).argmax(1))
    if kind.startswith("seek:"):
        target = opt.expected(next(p for p in PROXIES if p.name == kind.removeprefix("seek:")))
        return np.asarray((np.log(np.maximum(target, 1e-12)) + rng.normal(0, q, (m, n))).argmax(1))
    raise ValueError(f"unknown policy kind {kind!r}")


@dataclass
class Arm:
    """One arm's decisions: merchant rows, chosen options and the drawn outcomes."""

    rows: np.ndarray
    choice: np.ndarray
    approved: np.ndarray
    conversion: np.ndarray  # observed (noisy)
    gp30_shock: np.ndarray  # realized / expected GP30


def draw_arm(opt: Options, merchants: np.ndarray, policy: np.ndarray, n: int, rng: np.random.Generator) -> Arm:
    rows = rng.choice(merchants, n)
    choice = policy[rows]
    approved = rng.random(n) < opt.approval[rows, choice]
    conv = np.clip(opt.conversion[rows, choice] * np.exp(rng.normal(0, CONVERSION_NOISE, n)), 0.0, 1.0)
    shock = np.exp(rng.normal(-(OUTCOME_NOISE**2) / 2, OUTCOME_NOISE, n))
    return Arm(rows, choice, approved, conv, shock)


def arm_proxy(opt: Options, arm: Arm, p: Proxy) -> float:
    v = opt.margin[p.margin][arm.rows, arm.choice]
    if p.conversion:
        v = v * arm.conversion
    if p.approval:
        return float(np.mean(v * arm.approved))
    return float(np.mean(v[arm.approved])) if arm.approved.any() else math.nan  # conversion only if approved


def arm_truth(opt: Options, arm: Arm) -> tuple[float, float]:
    """Mean expected realized GP30 (noise-free) and mean noisy realized GP30, relative to the current deal."""
    expected = opt.truth[arm.rows, arm.choice]
    realized = opt.gp30_rel[arm.rows, arm.choice] * arm.gp30_shock * arm.approved
    return float(expected.mean()), float(realized.mean())


def arm_level(opt: Options, n_pairs: int, seed: int) -> dict[str, Any]:
    """Proxy and true ratios (challenger ÷ champion) of every pair, per proxy."""
    rng = np.random.default_rng(seed + 1)
    specs = policy_specs()
    m = len(opt.merchant_ids)
    ratios: dict[str, list[float]] = {p.name: [] for p in PROXIES}
    true_exp: list[float] = []
    true_real: list[float] = []
    kinds: list[str] = []
    for i in range(n_pairs):
        if i == 0:
            champ, chall = ("good", 0.0), ("bad", 0.0)
        else:
            champ, chall = (specs[j] for j in rng.integers(0, len(specs), 2))
        perm = rng.permutation(m)
        halves = perm[: m // 2], perm[m // 2 :]
        arms = []
        for (kind, q), merchants in zip((champ, chall), halves, strict=True):
            n = int(rng.integers(ARM_DECISIONS[0], ARM_DECISIONS[1] + 1))
            arms.append(draw_arm(opt, merchants, pick(opt, kind, q, rng), n, rng))
        (e0, r0), (e1, r1) = arm_truth(opt, arms[0]), arm_truth(opt, arms[1])
        true_exp.append(e1 / e0)
        true_real.append(r1 / r0)
        kinds.append(f"{champ[0]}:{champ[1]:g}->{chall[0]}:{chall[1]:g}")
        for p in PROXIES:
            ratios[p.name].append(arm_proxy(opt, arms[1], p) / arm_proxy(opt, arms[0], p))
    return {
        "ratios": {k: np.asarray(v) for k, v in ratios.items()},
        "true_expected": np.asarray(true_exp),
        "true_realized": np.asarray(true_real),
        "kinds": kinds,
    }


def finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def trigger_figures(proxy_ratio: np.ndarray, true_exp: np.ndarray, true_real: np.ndarray) -> dict[str, float | None]:
    ok = np.isfinite(proxy_ratio) & (proxy_ratio > 0)
    lp, lt, lr = np.log(proxy_ratio[ok]), np.log(true_exp[ok]), np.log(true_real[ok])
    drop, flat = true_exp[ok] < DROP, true_exp[ok] >= FLAT
    near = drop & (true_exp[ok] >= NEAR)
    fired = proxy_ratio[ok] < DROP
    return {
        "arm_log_ratio_pearson": finite(pearsonr(lp, lt).statistic) if len(lp) > 2 else None,
        "arm_log_ratio_pearson_realized": finite(pearsonr(lp, lr).statistic) if len(lp) > 2 else None,
        "arm_log_ratio_rmse": finite(float(np.sqrt(np.mean((lp - lt) ** 2)))) if len(lp) else None,
        "arm_sign_agreement": finite(float(np.mean(np.sign(lp) == np.sign(lt)))) if len(lp) else None,
        "drop_sensitivity": finite(float(fired[drop].mean())) if drop.any() else None,
        "drop_sensitivity_near": finite(float(fired[near].mean())) if near.any() else None,
        "drop_false_alarm": finite(float(fired[flat].mean())) if flat.any() else None,
    }


def maximiser(opt: Options) -> dict[str, dict[str, float]]:
    """A challenger that picks each merchant's proxy-best option, against the oracle-good one (noise-free)."""
    rows = np.arange(len(opt.merchant_ids))
    good = opt.truth.max(1).mean()
    out = {}
    for p in PROXIES:
        best = opt.expected(p).argmax(1)
        out[p.name] = {"true_ratio_vs_good": float(opt.truth[rows, best].mean() / good)}
    return out


def breakdown(opt: Options, name: str = CHOSEN) -> dict[str, Any]:
    """Where a proxy goes wrong: by capacity headroom tercile (low = capacity-bound), duration, discount, size.

    ``proxy_over_truth`` is the geometric mean over variants (the current deal left
    out) of (proxy / proxy of the current deal) ÷ (truth / truth of the current
    deal): above 1 the proxy promises more GP30 than the deal earns.
    """
    p = next(p for p in PROXIES if p.name == name)
    x, y = opt.expected(p), opt.truth
    within = row_spearman(x, y)
    log_over = (np.log(x) - np.log(x[:, -1:]) - np.log(y) + np.log(y[:, -1:]))[:, :-1]

    def gmean(sel: np.ndarray) -> float:
        return float(np.exp(log_over[sel].mean()))

    rows = np.arange(len(opt.merchant_ids))
    pick_x, good = x.argmax(1), y.max(1)
    cuts = np.quantile(opt.headroom, [1 / 3, 2 / 3])
    group = np.searchsorted(cuts, opt.headroom)
    by_headroom = {}
    for g, label in enumerate(("low", "mid", "high")):
        sel = group == g
        if sel.any():
            by_headroom[label] = {
                "within_merchant_spearman_median": float(np.nanmedian(within[sel])),
                "proxy_over_truth": gmean(np.broadcast_to(sel[:, None], log_over.shape)),
                "maximiser_true_ratio_vs_good": float(y[rows[sel], pick_x[sel]].mean() / good[sel].mean()),
            }
    dur, disc, size = opt.duration[:, :-1], opt.discount[:, :-1], np.round(opt.size[:, :-1], 2)
    by_duration = {str(d): gmean(dur == d) for d in DURATIONS if (dur == d).any()}
    bins = {"<=0.20": disc <= 0.2, "0.25-0.45": (disc > 0.2) & (disc <= 0.45), ">=0.50": disc > 0.45}
    return {
        "headroom_terciles": [float(c) for c in cuts],
        "by_headroom": by_headroom,
        "proxy_over_truth_by_duration": by_duration,
        "proxy_over_truth_by_discount": {k: gmean(v) for k, v in bins.items() if v.any()},
        "proxy_over_truth_by_size": {f"{z:g}": gmean(size == z) for z in SIZES if (size == z).any()},
    }


def run(
    data: Path | None, scale: str, seed: int, n_pairs: int, n_merchants: int, current: str = "habitual"
) -> dict[str, Any]:
    t0 = time.perf_counter()
    world = load_world(data, scale, seed)
    log(f"world: {len(world.tables['merchants'])} merchants, as of {world.as_of.date()}")
    opt = build_options(world, n_merchants, current, seed)
    log(f"options: {opt.truth.shape[0]} merchants × {opt.truth.shape[1]} (variants + current), oracle-valued")
    arms = arm_level(opt, n_pairs, seed)
    log(f"pairs: {n_pairs} (true ratio < {DROP}: {int((arms['true_expected'] < DROP).sum())})")
    proxies: dict[str, dict[str, float | None]] = {}
    for p in PROXIES:
        proxies[p.name] = {**decision_level(opt, p), **trigger_figures(arms["ratios"][p.name], arms["true_expected"],
                                                                      arms["true_realized"])}  # fmt: skip
    chosen_ratio = arms["ratios"][CHOSEN]
    realized = trigger_figures(arms["true_realized"], arms["true_expected"], arms["true_realized"])
    return {
        "proxies": proxies,
        "chosen": CHOSEN,
        "pairs": n_pairs,
        "merchants": int(opt.truth.shape[0]),
        "options_per_merchant": int(opt.truth.shape[1]),
        "current_deal": current,
        "pairs_true_drop": int((arms["true_expected"] < DROP).sum()),
        "pairs_true_flat": int((arms["true_expected"] >= FLAT).sum()),
        "pairs_true_near_drop": int(((arms["true_expected"] >= NEAR) & (arms["true_expected"] < DROP)).sum()),
        "bad_vs_good_proxy_ratio": float(chosen_ratio[0]),
        "bad_vs_good_true_ratio": float(arms["true_expected"][0]),
        "realized_gp30_as_trigger": {
            k: v
            for k, v in realized.items()
            if k in ("arm_sign_agreement", "drop_sensitivity", "drop_sensitivity_near", "drop_false_alarm")
        },
        "proxy_maximiser": maximiser(opt),
        "breakdown": {p.name: breakdown(opt, p.name) for p in PROXIES if p.name in (PRICE_MARGIN, DISCOUNT_MARGIN)},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=None, help="a world written by `aidg simulate` (default: simulate one)")
    p.add_argument("--scale", default="small", help="scale of the simulated world when no --data (tiny, small, full)")
    p.add_argument("--seed", type=int, default=7, help="world seed (without --data), merchant sample and draws")
    p.add_argument("--pairs", type=int, default=200, help="champion/challenger policy pairs")
    p.add_argument("--merchants", type=int, default=400, help="random merchants (capped at the world's)")
    p.add_argument("--current", choices=("habitual", "legacy"), default="habitual", help="the current deal")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    a = p.parse_args(argv)
    if a.pairs < 2:
        p.error("--pairs must be at least 2")
    if a.merchants < 4:
        p.error("--merchants must be at least 4")
    res = run(a.data, a.scale, a.seed, a.pairs, a.merchants, a.current)
    if a.json:
        print(json.dumps(res))
    else:
        for name, figs in res["proxies"].items():
            print(f"{name:>42}: " + "  ".join(f"{k}={v:.3f}" if v is not None else f"{k}=n/a" for k, v in figs.items()))
        for k, v in res.items():
            if k != "proxies":
                print(f"{k:>42}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
