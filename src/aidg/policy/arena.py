"""The policy arena: policies run through the simulator's timeline, judged by the oracle's truth.

Setup (:func:`build_arena`): at the model's as-of date every held-out
merchant gets its 50 candidate variants and the current system's deal, all
scored once by the trained scorer (the model does not retrain during the
run). The oracle gives each one's true expectations for every week of the
run (season moves them).

Run (:func:`run_policy`): ``rounds`` requests at uniform times over ``days``
days, each for a uniformly drawn merchant. The policy picks; the chosen
deal's outcome is realised from the truth with the simulator's noise, and its
reward parts arrive late, as they do in the marketplace:

- approval and the rep's override (severity of the edit, 0 if none): 0.1 day on;
- conversion (3-day proxy, ±15 % noise): 3 days on, if the deal was approved;
- GP30 uplift (log-normal σ 0.3): 30 days on, if approved; a rejected deal's
  GP30 never arrives, and the learner keeps the scorer's prediction for it.

Every request of a seed is the same for every policy (same merchants, times
and random numbers), so the comparison is paired.

Judging (:func:`summarize`), from the oracle's expectations of the chosen
deals, never from the noisy draws the policies learnt from:
``cumulative_reward``, ``gp30_uplift_vs_current`` (Σ expected GP30 of the
chosen ÷ Σ of the current system's deals − 1), ``override_rate`` (mean true
override probability), ``safety_violation_rate`` (share of chosen deals with
true expected GP30 under 0.8 × the merchant's baseline), ``regret_vs_oracle``
(Σ of the best variant's true reward minus the chosen's) and whether the
cumulative reward ever fell under (1 − α) × the current system's at a
checkpoint, one after every decision as in Wu et al. (``conservative_violation``; over seeds:
``conservative_violation_runs``).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from aidg.config import RewardSettings, Settings
from aidg.errors import DataError
from aidg.policy.arena_reps import LEGACY, LEVEL_CODES, Drill, RepLoop, timeline
from aidg.policy.baselines import ArenaPolicy, RiskAwareTS, make_policy, vw_lines
from aidg.policy.merchant_posterior import Record
from aidg.policy.names import POLICIES
from aidg.policy.pooled import CURRENT_FEATURES
from aidg.policy.projector import ContextProjector
from aidg.policy.response_model import deal_features, merchant_records
from aidg.policy.risk_aware import CURRENT, Candidates, MerchantTerms
from aidg.sim.reps import TrustConfig

APPROVAL_DELAY, CONVERSION_DELAY, GP30_DELAY = 0.1, 3.0, 30.0
CONVERSION_NOISE = 0.15
TRUTH_KEYS = ("reward", "expected_uplift", "expected_gp30", "approval_prob", "conversion", "override_prob")


@dataclass
class MerchantArms:
    """One merchant's choices as the policies see them (scorer outputs only; no truth)."""

    variants: pd.DataFrame
    predicted: pd.DataFrame  # score, risk, uplift, approval, conversion per variant
    cands: Candidates  # the same as arrays
    phi: np.ndarray  # (n, dim)
    current_phi: np.ndarray  # (dim,)
    current: dict[str, float]
    override_rate: float
    list_price: float
    latent_score: np.ndarray | None = None  # (n + 1,) the latent-informed reference's predictions, current deal last
    terms: MerchantTerms | None = None  # the merchant and its deals' term features (the per-merchant posterior)
    record: Record | None = None  # reward part -> its record (term features, scorer errors, ages)
    current_discount: float = 0.0  # the current deal's discount (the edit learner's prior of what is accepted)

    @cached_property
    def vw_lines(self) -> list[str]:
        """The variants as Vowpal Wabbit text, built on first use (only the vw policy reads it)."""
        return vw_lines(self.predicted, self.variants, self.phi, self.list_price)


@dataclass
class ArenaData:
    merchants: list[str]
    arms: list[MerchantArms]
    truth: dict[str, np.ndarray]  # key -> (weeks, merchants, slots): n variants, the current deal, [the legacy deal]
    severity: np.ndarray  # (merchants,) the rep's edit severity when they override
    days: int
    dim: int
    n_variants: int
    rep: np.ndarray | None = None  # (merchants,) each merchant's rep as an index (-1: none)
    n_reps: int = 0
    segment: list[str] | None = None  # each merchant's autonomy segment
    dpref: np.ndarray | None = None  # (merchants,) the discount each merchant prefers (where an edit goes)
    trust: TrustConfig | None = None  # the world's reps with memory (None: reps without)

    def __post_init__(self) -> None:
        n = len(self.merchants)
        if self.rep is None:
            self.rep, self.n_reps = np.full(n, -1), 0
        if self.segment is None:
            self.segment = ["all"] * n
        if self.dpref is None:
            self.dpref = np.array([a.current_discount for a in self.arms], float)


def build_arena(
    scored: pd.DataFrame,
    representation: np.ndarray,
    current_scored: pd.DataFrame,
    current_representation: np.ndarray,
    override_rate: np.ndarray,
    list_price: np.ndarray,
    truth_at: Callable[[pd.DataFrame, int], pd.DataFrame],
    days: int,
    k: int = 32,
    legacy: pd.DataFrame | None = None,
    latent_score: np.ndarray | None = None,
    record: pd.DataFrame | None = None,
    reps: RepsOfMerchants | None = None,
) -> ArenaData:
    """Assemble the arena from scored candidates (``n`` per merchant, merchant by merchant) and truth.

    Args:
        scored: candidates with the scorer's outputs, grouped by merchant in a fixed order.
        current_scored: the current system's deal of each merchant (same order), scored.
        truth_at: (terms frame with ``merchant_id``, week) -> the oracle's expectations (one row per term).
        legacy: optionally, another reference deal per merchant (judged, never played): slot ``n + 1``.
        latent_score: optionally (merchants, n + 1), the ``latent_informed`` reference's predicted reward of every
            variant and the current deal (:mod:`aidg.policy.latent_informed`).
        reps: optionally, each merchant's rep, autonomy segment and preferred discount, and the world's trust model.
    """
    ids = list(dict.fromkeys(scored.merchant_id.astype(str)))
    n_m = len(ids)
    if n_m == 0 or len(scored) % n_m:
        raise DataError("the arena needs the same number of variants for every merchant")
    n = len(scored) // n_m
    proj = ContextProjector(k).fit(np.concatenate([representation, current_representation]))
    phi = proj.transform(representation).reshape(n_m, n, -1)
    cphi = proj.transform(current_representation)
    keep = ["score", "risk", "uplift", "approval", "conversion", "p_override"]
    deals_now = current_scored.assign(merchant_id=current_scored.merchant_id.astype(str),
                                      category_id=current_scored.category_id.astype(str)).set_index("merchant_id")
    records = {m: rec for m, _, rec in merchant_records(record, deals_now)}
    arms = []
    for j in range(n_m):
        rows = slice(j * n, (j + 1) * n)
        v = scored.iloc[rows].reset_index(drop=True)
        pred = v[keep].reset_index(drop=True)
        cur = {c: float(current_scored[c].iloc[j]) for c in keep}
        c_row = current_scored.iloc[j]
        c_terms = (float(c_row.discount_pct), float(c_row.price), float(c_row.duration_days))
        mterms = MerchantTerms(ids[j], str(c_row.category_id), deal_features(v, c_terms), CURRENT_FEATURES)
        rec = records.get(ids[j])
        arms.append(
            MerchantArms(
                v,
                pred,
                Candidates.from_frames(v, pred),
                phi[j],
                cphi[j],
                cur,
                float(override_rate[j]),
                float(list_price[j]),
                None if latent_score is None else latent_score[j],
                mterms,
                rec,
                c_terms[0],
            )
        )
    weeks = max(1, int(np.ceil(days / 7)))
    parts = [scored.assign(_slot=np.tile(np.arange(n), n_m)), current_scored.assign(_slot=n)]
    if legacy is not None:
        parts.append(legacy.assign(_slot=n + 1))
    terms = pd.concat(parts, ignore_index=True)
    terms["_m"] = terms.merchant_id.astype(str).map({m: i for i, m in enumerate(ids)})
    slots = n + 1 + (legacy is not None)
    truth = {key: np.full((weeks, n_m, slots), np.nan) for key in (*TRUTH_KEYS, "override_severity")}
    for w in range(weeks):
        t = truth_at(terms, w)
        for key in truth:
            truth[key][w, terms._m.to_numpy(), terms._slot.to_numpy()] = t[key].to_numpy(float)
    severity = truth.pop("override_severity")[0, :, 0]
    r = reps or RepsOfMerchants()
    return ArenaData(ids, arms, truth, severity, days, proj.dim, n, r.rep, r.n_reps, r.segment, r.dpref, r.trust)


@dataclass(frozen=True)
class RepsOfMerchants:
    """Who handles each arena merchant and how (:class:`ArenaData`'s rep fields; defaults: no reps in the loop)."""

    rep: np.ndarray | None = None
    n_reps: int = 0
    segment: list[str] | None = None
    dpref: np.ndarray | None = None
    trust: TrustConfig | None = None


def run_policy(
    data: ArenaData,
    policy: ArenaPolicy,
    rounds: int,
    seed: int,
    progress: Callable[[float], None] | None = None,
    loop: RepLoop | None = None,
) -> dict[str, np.ndarray]:
    """Run one policy over one seed's requests; returns the chosen slot (``n`` = current deal) per request.

    ``loop``: reps in the loop (:mod:`aidg.policy.arena_reps`): the autonomy level decides what is shown, the reps'
    trust moves with what they saw, and the edit learner feeds the policy's trade-off. None: as before, every request
    plays the policy's pick and reps edit with the world's chance at trust 0."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, data.days, rounds))
    m = rng.integers(0, len(data.merchants), rounds)
    u_approve, u_override = rng.random(rounds), rng.random(rounds)
    shock = np.exp(rng.normal(-(0.3**2) / 2, 0.3, rounds))
    conv_noise = np.exp(rng.normal(0, CONVERSION_NOISE, rounds))
    weeks = np.minimum((t // 7).astype(int), data.truth["reward"].shape[0] - 1)
    n = data.n_variants
    chosen = np.zeros(rounds, np.int64)
    pscore = np.zeros(rounds)
    p_edit = np.zeros(rounds)
    shown = np.zeros((rounds, 2))  # the conversion and GP30 uplift the rep was shown (the policy's, else the scorer's)
    approved_at = np.zeros(rounds, bool)
    events: list[tuple[float, int, str, str, float]] = []
    seq = 0
    day = 0
    tr = data.truth
    policy.warm_start(data.arms)
    if loop is not None and hasattr(policy, "edit_risk") and loop.edit_tradeoff:
        policy.edit_risk = loop.edit_risk_of  # the trade-off reads the learnt edit response
    own = set()  # decisions the policy made or registered (an apprentice's shown deal may not be)
    for j in range(rounds):
        while events and events[0][0] <= t[j]:
            when, _, did, part, value = heapq.heappop(events)
            if part.startswith("rep:"):
                _rep_event(loop, data, part, int(value), when, chosen, m, approved_at, weeks, conv_noise, shock, shown)
            elif did not in own:
                continue
            elif part == "close":
                policy.close(did)
                own.discard(did)
            else:
                policy.update_params(did, part, value)
        while day < int(t[j]):
            policy.end_of_period()
            day += 1
            if loop is not None:
                loop.end_of_day(float(day))
        did = f"s{seed}-{j}"
        w, mm = weeks[j], m[j]
        lvl = "copilot" if loop is None else loop.level_for(mm)
        if lvl == "apprentice":  # the current system's deal is shown; the policy may learn from it
            a, p = n, 1.0
            if policy.observe_current(did, data.arms[mm]):
                own.add(did)
        else:
            i, p = policy.select_action(did, data.arms[mm])
            own.add(did)
            a = n if i == CURRENT else i
            if loop is not None and lvl != LEGACY and loop.drilled(mm, t[j]):  # AIDG's pick bad on purpose
                a = loop.drill_pick(mm)
        chosen[j], pscore[j] = a, p
        own_view = policy.shown(did)
        if own_view is not None:
            shown[j] = (own_view["conversion"], own_view["gp30_uplift"])
        else:
            arms = data.arms[mm]
            shown[j] = ((arms.current["conversion"], arms.current["uplift"]) if a == n
                        else (arms.cands.conversion[a], arms.cands.uplift[a]))  # fmt: skip
        approved = approved_at[j] = u_approve[j] < tr["approval_prob"][w, mm, a]
        p_edit[j] = tr["override_prob"][w, mm, a] if loop is None else loop.decide(j, mm, w, a, lvl)
        edited = u_override[j] < p_edit[j]
        over = data.severity[mm] if edited else 0.0
        for dt, part, value in (
            (APPROVAL_DELAY, "approval", float(approved)),
            (APPROVAL_DELAY, "override", float(over)),
        ):
            heapq.heappush(events, (t[j] + dt, seq, did, part, value))
            seq += 1
        if loop is not None:
            heapq.heappush(events, (t[j] + APPROVAL_DELAY, seq, did, "rep:edited" if edited else "rep:kept", j))
            seq += 1
        if approved:
            conv = float(np.clip(tr["conversion"][w, mm, a] * conv_noise[j], 0, 1))
            gp = float((1 + tr["expected_uplift"][w, mm, a]) * shock[j] - 1)
            heapq.heappush(events, (t[j] + CONVERSION_DELAY, seq, did, "conversion", conv))
            heapq.heappush(events, (t[j] + GP30_DELAY, seq + 1, did, "gp30_uplift", gp))
            seq += 2
            if loop is not None:
                heapq.heappush(events, (t[j] + CONVERSION_DELAY, seq, did, "rep:sales", j))
                heapq.heappush(events, (t[j] + GP30_DELAY, seq + 1, did, "rep:gp30", j))
                seq += 2
        heapq.heappush(events, (t[j] + GP30_DELAY + 1e-6, seq, did, "close", 0.0))
        seq += 1
        if progress is not None and j % 1000 == 0:
            progress(j / rounds)
    out = {"chosen": chosen, "pscore": pscore, "time": t, "merchant": m, "week": weeks, "override_prob": p_edit}
    if loop is not None:
        out |= {"level": loop.level, "override_floor": loop.floor, "override_prob_legacy": loop.p_edit_legacy}
    return out


def _rep_event(loop: RepLoop | None, data: ArenaData, part: str, j: int, when: float, chosen: np.ndarray,
               m: np.ndarray, approved: np.ndarray, weeks: np.ndarray, conv_noise: np.ndarray, shock: np.ndarray,
               shown: np.ndarray) -> None:  # fmt: skip
    """A reps-in-the-loop event of decision ``j`` (its draws are the run's own: the same for every policy). The rep
    judges the deal against what it was shown (``shown``: the policy's expectations, else the scorer's)."""
    if loop is None:
        return
    mm, a, w = int(m[j]), int(chosen[j]), int(weeks[j])
    tr = data.truth
    if part in ("rep:edited", "rep:kept"):
        edited = part == "rep:edited"
        loop.rep_action(j, mm, a, when, bool(approved[j]), edited, loop.corrected(mm) if edited else float("nan"))
    elif part == "rep:sales":
        loop.sales(j, mm, float(tr["conversion"][w, mm, a] * conv_noise[j]) / max(float(shown[j, 0]), 1e-6))
    elif part == "rep:gp30":
        loop.gp30(j, mm, when, float((1 + tr["expected_uplift"][w, mm, a]) * shock[j] - 1), float(shown[j, 1]))


def summarize(
    data: ArenaData, run: dict[str, np.ndarray], alpha: float, rewards: RewardSettings | None = None
) -> dict[str, float]:
    """The oracle's judgement of one run (module docstring); paired with the current system's deal."""
    w, m, a = run["week"], run["merchant"], run["chosen"]
    n = data.n_variants
    tr = data.truth
    reward = tr["reward"][w, m, a]
    if "override_prob_legacy" in run:  # the risk penalty at the reps' trust of the moment (the truth holds trust 0)
        rw = rewards or RewardSettings()
        extra_edits = run["override_prob"] - run["override_prob_legacy"]
        reward = reward - rw.w_risk * rw.risk_penalty_scale * data.severity[m] * extra_edits
    cur_reward = tr["reward"][w, m, n]
    best = tr["reward"][w, m, : n + 1].max(1)  # the best of the variants and the current deal
    gp30, cur_gp30 = tr["expected_gp30"][w, m, a], tr["expected_gp30"][w, m, n]
    cum, cum_cur = np.cumsum(reward), np.cumsum(cur_reward)  # a checkpoint after every decision (Wu et al.)
    approval = tr["approval_prob"][w, m, a].mean()
    extra = {}
    if tr["reward"].shape[2] > n + 1:
        extra["gp30_uplift_vs_legacy"] = float(gp30.sum() / tr["expected_gp30"][w, m, n + 1].sum() - 1)
        extra["acceptance_uplift_vs_legacy"] = float(approval / tr["approval_prob"][w, m, n + 1].mean() - 1)
    oracle_gap = float(best.sum() - cur_reward.sum())
    return {
        **extra,
        "cumulative_reward": float(reward.sum()),
        "oracle_cumulative_reward": float(best.sum()),
        # the share of what a policy knowing each merchant's true response could gain over the current deals
        "oracle_gain_share": float((reward.sum() - cur_reward.sum()) / oracle_gap) if oracle_gap > 0 else 0.0,
        "acceptance_uplift_vs_current": float(approval / tr["approval_prob"][w, m, n].mean() - 1),
        "mean_reward": float(reward.mean()),
        "gp30_uplift_vs_current": float(gp30.sum() / cur_gp30.sum() - 1),
        "override_rate": float(run["override_prob"].mean()) if "override_prob" in run
        else float(tr["override_prob"][w, m, a].mean()),
        "safety_violation_rate": float(np.mean(tr["expected_uplift"][w, m, a] < -0.2)),
        "regret_vs_oracle": float((best - reward).sum()),
        "conservative_violation": bool(np.any(cum < (1 - alpha) * cum_cur)),
        "worst_checkpoint_ratio": float(np.min(cum / np.where(cum_cur == 0, np.nan, cum_cur))),
        "current_deal_share": float(np.mean(a == n)),
        "override_floor": float(run["override_floor"].mean()) if "override_floor" in run
        else float(tr["override_prob"][w, m, : n + 1].min(1).mean()),
        **_level_shares(run),
    }


def _level_shares(run: dict[str, np.ndarray]) -> dict[str, float]:
    if "level" not in run:
        return {}
    return {f"share_{name}": float(np.mean(run["level"] == code)) for name, code in LEVEL_CODES.items()}


def arena(
    data: ArenaData,
    settings: Settings,
    rounds: int,
    seeds: list[int],
    policies: tuple[str, ...] = POLICIES,
    progress: Callable[[str, float], None] | None = None,
    reps: bool = True,
    drill: Drill | None = None,
) -> dict[str, Any]:
    """Every policy over every seed; per policy, the mean of each figure over seeds and the violation share.

    ``reps``: reps in the loop (:mod:`aidg.policy.arena_reps`): each policy meets its own reps, the autonomy dial
    decides what they see; per policy the first seed's week-by-week ``timeline`` and ``autonomy`` changes.
    ``drill``: one segment's suggestions made bad on purpose from a day on (its demotion is reported)."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise DataError(f"unknown policies {', '.join(unknown)}; choose from {', '.join(POLICIES)}")
    if rounds < 1:
        raise DataError(f"run at least one round, got {rounds}")
    if drill is not None and drill.segment not in set(data.segment or ()):
        known = sorted(set(data.segment or ()))
        raise DataError(f"no arena merchant is in segment {drill.segment!r}; segments: {', '.join(known[:12])}")
    alpha = settings.bandit.conservative_alpha
    out: dict[str, Any] = {}
    curves: dict[str, list[float]] = {}
    total = len(policies) * len(seeds)
    done = 0
    for name in policies:
        per_seed = []
        started = time.perf_counter()
        extra: dict[str, Any] = {}
        for s in seeds:
            pol = make_policy(name, data.dim, settings, s)

            def tick(f: float, base: int = done, label: str = name) -> None:
                if progress is not None:
                    progress(label, (base + f) / total)

            loop = RepLoop(data, settings, name != "current", rounds, s, drill) if reps else None
            run = run_policy(data, pol, rounds, s, tick, loop)
            per_seed.append(summarize(data, run, alpha, settings.reward))
            if s == seeds[0]:
                curves[name] = _daily_curve(data, run)
                if loop is not None:
                    extra |= _loop_report(data, run, loop, drill)
                if hasattr(pol, "why_current"):
                    extra["why_current"] = dict(pol.why_current)
            if hasattr(pol, "finish"):
                pol.finish()
            done += 1
        keys = [k for k in per_seed[0] if k != "conservative_violation"]
        res: dict[str, Any] = {k: float(np.mean([r[k] for r in per_seed])) for k in keys}
        res["conservative_violation_runs"] = float(np.mean([r["conservative_violation"] for r in per_seed]))
        res["seconds"] = round(time.perf_counter() - started, 2)
        res["rounds_per_second"] = round(rounds * len(seeds) / max(res["seconds"], 1e-9), 1)
        res.update(extra)
        out[name] = res
    report: dict[str, Any] = {"policies": out, "curves": curves}
    if "risk_aware_ts" in policies and settings.posterior.enabled:
        report["posterior"] = interval_coverage(data, settings)
    return report


def _loop_report(data: ArenaData, run: dict[str, np.ndarray], loop: RepLoop, drill: Drill | None) -> dict[str, Any]:
    """The first seed's reps in the loop: week by week, the segments' levels and every change, the reps' trust."""
    changes = [c.to_dict() for c in loop.dial.changes]
    segs = sorted(set(loop.segment))
    graduated = {c["segment"] for c in changes if c["from_level"] == "apprentice" and c["to_level"] == "copilot"}
    out: dict[str, Any] = {
        "timeline": timeline(data, run),
        "autonomy_changes": changes,
        "segments": len(segs),
        "segments_graduated_share": len(graduated & set(segs)) / max(len(segs), 1) if loop.aidg else 0.0,
        "final_levels": loop.dial.levels(),
        "mean_rep_trust_end": float(loop.trust.trust.mean()),
        "trust_curve": loop.trust_curve,
    }
    if drill is not None and loop.aidg:
        demoted = [c for c in changes if c["segment"] == drill.segment and c["day"] >= drill.day
                   and c["to_level"] in ("apprentice", "copilot") and c["from_level"] != "apprentice"]  # fmt: skip
        was = [c for c in changes if c["segment"] == drill.segment and c["day"] < drill.day]
        out["drill"] = {"segment": drill.segment, "day": drill.day,
                        "level_at_drill": was[-1]["to_level"] if was else "apprentice",
                        "demoted_after_days": round(demoted[0]["day"] - drill.day, 2) if demoted else None}  # fmt: skip
    return out


def interval_coverage(data: ArenaData, settings: Settings, z: float = 1.645) -> dict[str, Any]:
    """Before the first decision (after the warm start from the merchants' records): the share of the held-out
    merchants' deals (variants and current) whose true expected GP30 uplift lies in the posterior's 90 % interval,
    and the widening of each part's prior."""
    pol = RiskAwareTS(data.dim, settings, 0)
    pol.warm_start(data.arms)
    mp = pol.policy.merchants
    inside, width = [], []
    truth = data.truth["expected_uplift"][0]  # the first week's expectations
    for j, a in enumerate(data.arms):
        if a.terms is None:
            continue
        post = mp.part_posteriors(a.terms.merchant, a.terms.category)
        psi = np.vstack([a.terms.psi, a.terms.current])
        mean, sd = mp.uplift_interval(post, psi, np.append(a.cands.uplift, a.current["uplift"]))
        inside.append(np.abs(truth[j, : len(psi)] - mean) <= z * sd)
        width.append(2 * z * sd)
    if not inside:
        return {}
    return {
        "interval_coverage_90": float(np.mean(np.concatenate(inside))),
        "interval_width_90": float(np.mean(np.concatenate(width))),
        "prior_widened": pol.widened,
    }


def _daily_curve(data: ArenaData, run: dict[str, np.ndarray]) -> list[float]:
    """Cumulative true reward at the end of each day (the first seed), for the plot."""
    r = data.truth["reward"][run["week"], run["merchant"], run["chosen"]]
    day = run["time"].astype(int)
    return [float(x) for x in np.bincount(day, weights=r, minlength=data.days).cumsum()]
