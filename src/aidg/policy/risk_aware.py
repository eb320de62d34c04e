"""``risk_aware_ts``: the guard, the exploration share, the bandit and the conservative gate, in that order.

One call of :meth:`RiskAwarePolicy.decide` per request:

1. :class:`~aidg.policy.guard.SafetyGuard` refuses variants (expected GP30 under
   0.8 × baseline, a merchant overriding too often, a high-risk category),
   each with its reason;
2. :class:`~aidg.policy.guard.ExplorationManager`: ``explore`` variants are
   allowed only on its share of requests (0.05 at first);
3. only variants whose expected reward (score + the learnt correction) beats
   the current deal's by ``min_gain`` × their distance to the merchant's anchor
   deal stay (the scorer extrapolates worse the farther a variant is from what
   the merchant ran; its merchant-wide errors cancel in the difference);
   :class:`~aidg.policy.bandit.RiskAwareThompsonSampling` samples among those
   whose risk adds at most the threshold to the current deal's;
4. :class:`~aidg.policy.conservative.ConservativeGate` lets the sampled
   variant through only if its lower confidence bound keeps cumulative
   reward above (1 − α) × the current system's; otherwise the current
   system's deal is played.

When the guard refuses everything, or no allowed variant is under the risk
threshold, the current system's deal comes back with the reasons. Rewards
(:meth:`feedback`) arrive part by part: the bandit learns from each at once;
the gate swaps the variant's lower bound for its realised reward once the
GP30 lands. The current system's deal, when played, is learnt from too (its
representation is one more context).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aidg.config import BanditSettings, ExplorationSettings, GuardSettings, PosteriorSettings, RewardSettings
from aidg.domain import PREDICTED
from aidg.errors import DataError
from aidg.policy.bandit import PARTS, RiskAwareThompsonSampling, risk_adjust
from aidg.policy.conservative import ConservativeGate, Gate
from aidg.policy.edit_response import kept_value
from aidg.policy.guard import ExplorationManager, SafetyGuard
from aidg.policy.merchant_posterior import MerchantPosterior

CURRENT = -1  # Decision.index of the current system's deal


@dataclass(frozen=True)
class Decision:
    index: int  # chosen variant, or CURRENT (-1) for the current system's deal
    pscore: float  # probability of this choice under the policy (1.0 when the current deal is forced)
    action_type: str  # safe / hybrid / explore, or "current"
    refused: dict[int, str]  # variant -> the guard's reasons
    why_current: str  # "" when a variant was chosen; else why the current system's deal was played
    lcb: float  # lower confidence bound of the chosen variant's reward (the gate's input)
    expected: dict[str, float] | None = None  # what the rep is shown to expect of the played deal (expected_parts)


def expected_parts(post: Mapping[str, tuple[np.ndarray, np.ndarray]], psi: np.ndarray,
                   row: Mapping[str, float]) -> dict[str, float]:  # fmt: skip
    """What AIDG shows a rep it expects of a played deal (term features ``psi``, scorer outputs ``row``): the scorer's
    conversion and GP30 uplift corrected by the merchant's posterior (reps judge AIDG against what it showed)."""
    return {"conversion": float(row["conversion"] + psi @ post["conversion"][0]),
            "gp30_uplift": float(row["uplift"] + psi @ post["gp30_uplift"][0])}  # fmt: skip


def predicted_parts(row: Mapping[str, float]) -> dict[str, float]:
    """The scorer's predictions as reward parts (stand-ins until each part arrives)."""
    return {
        "approval": float(row["approval"]),
        "conversion": float(row["conversion"]),
        "gp30_uplift": float(row["uplift"]),
        "override": float(row["risk"]),  # expected severity of an edit: p_override × severity
    }


@dataclass(frozen=True)
class Candidates:
    """One request's variants as arrays: ``type``, ``category_id`` and the scorer's predictions."""

    types: np.ndarray
    categories: np.ndarray
    score: np.ndarray
    risk: np.ndarray
    uplift: np.ndarray
    approval: np.ndarray
    conversion: np.ndarray
    distance: np.ndarray  # to the merchant's anchor deal (0 where unknown)

    @staticmethod
    def from_frames(variants: pd.DataFrame, predicted: pd.DataFrame) -> Candidates:
        """From a candidates frame (``type``, ``category_id``) and the scorer's outputs, row for row."""
        missing = [c for c in PREDICTED if c not in predicted]
        if missing or "type" not in variants or "category_id" not in variants:
            raise DataError(f"candidates need type and category_id, and predictions {', '.join(missing) or ''}")
        if len(variants) != len(predicted):
            raise DataError(f"{len(variants)} variants but {len(predicted)} predictions")
        cols = {c: predicted[c].to_numpy(float) for c in PREDICTED}
        if not all(np.isfinite(v).all() for v in cols.values()):
            raise DataError("the scorer's predictions hold non-finite values: the model is broken")
        dist = variants["distance"].to_numpy(float) if "distance" in variants else np.zeros(len(variants))
        return Candidates(
            variants["type"].to_numpy(dtype=object),
            variants.category_id.astype(str).to_numpy(dtype=object),
            **cols,
            distance=np.nan_to_num(dist),
        )

    def row(self, i: int) -> dict[str, float]:
        return {k: float(getattr(self, k)[i]) for k in PREDICTED}


@dataclass(frozen=True)
class MerchantTerms:
    """Who a request is for and its deals' term features (:func:`aidg.policy.pooled.term_features`): what the
    per-merchant posterior needs. ``psi`` (n, K) for the variants, ``current`` (K,) for the current deal."""

    merchant: str
    category: str
    psi: np.ndarray
    current: np.ndarray


@dataclass
class _Open:
    played: str  # "policy" or "baseline"
    explored: bool
    parts: dict[str, float] = field(default_factory=dict)
    judged: bool = False  # an explored variant's success already counted


class RiskAwarePolicy:
    """Guard → exploration share → minimum gain → risk-aware Thompson sampling → conservative gate (module doc)."""

    def __init__(
        self,
        dim: int,
        bandit: BanditSettings | None = None,
        guard: GuardSettings | None = None,
        exploration: ExplorationSettings | None = None,
        reward: RewardSettings | None = None,
        seed: int = 0,
        z: float = 1.96,
        min_explore_outcomes: int = 20,
        posterior: PosteriorSettings | None = None,
    ) -> None:
        self.settings = bandit or BanditSettings()
        self.reward = reward or RewardSettings()
        self.bandit = RiskAwareThompsonSampling(dim, self.settings, self.reward, seed=seed)
        self.posterior_settings = posterior or PosteriorSettings()
        self.merchants = MerchantPosterior(self.posterior_settings, self.reward)
        self.guard = SafetyGuard(guard)
        self.exploration_settings = exploration or ExplorationSettings()
        self.rng = np.random.default_rng(seed + 1)
        self.z = z
        self.min_explore_outcomes = min_explore_outcomes
        self._reset_own()

    def _reset_own(self) -> None:
        self.exploration = ExplorationManager(self.exploration_settings)
        self.gate: Gate = ConservativeGate(alpha=self.settings.conservative_alpha)
        self.open_: dict[str, _Open] = {}
        self.closed_: set[str] = set()  # decisions whose parts are all in (late repeats are ignored)
        self.explore_outcomes_: list[bool] = []

    def reset(self) -> None:
        """Forget everything learnt: the posteriors, the gate's budget, the exploration ramp, open decisions."""
        self.bandit.reset()
        self.merchants.reset()
        self._reset_own()

    def select_action(
        self,
        decision_id: str,
        cands: Candidates,
        phi: np.ndarray,
        override_rate: float,
        current_phi: np.ndarray,
        current: Mapping[str, float],
        explore: bool = True,
        terms: MerchantTerms | None = None,
        edit_risk: np.ndarray | None = None,
    ) -> Decision:
        """Choose for one request.

        Args:
            cands: the variants with the scorer's predictions (:meth:`Candidates.from_frames`).
            phi: (n, dim) contexts of the variants; ``current_phi`` (dim,) the current system's deal's.
            override_rate: the merchant's recent override rate (the guard's second clause).
            current: the scorer's predictions for the current system's deal (``score``, ``risk``, ``uplift``,
                ``approval``, ``conversion``).
            explore: False keeps ``explore`` variants out whatever the exploration share (a rollout's
                personalization arm, or while an alert holds exploration back).
            terms: the merchant and its deals' term features; given (and ``PosteriorSettings.enabled``), the
                choice and the GP30 clause come from the per-merchant posterior (:meth:`_select_pooled`).
            edit_risk: (n + 1,) the learnt chance the rep edits each variant and the current deal
                (:class:`~aidg.policy.edit_response.EditResponse`); given (on the posterior's path), a variant's gain
                over the current deal counts only with the chance the rep keeps it (:func:`kept_value`).
        """
        if decision_id in self.open_:
            raise DataError(f"decision {decision_id!r} was already made: decision ids must be unique")
        n = len(cands.score)
        if len(phi) != n:
            raise DataError(f"{n} variants but {len(phi)} contexts")
        if terms is not None and self.posterior_settings.enabled:
            if terms.psi.shape[0] != n:
                raise DataError(f"{n} variants but {terms.psi.shape[0]} term-feature rows")
            return self._select_pooled(
                decision_id, cands, phi, override_rate, current_phi, current, explore, terms, edit_risk
            )
        # expected GP30 relative to the merchant's baseline, both from the same model: the scorer's errors are
        # largely merchant-wide, so the ratio to its own estimate of the current deal cancels them
        rel_uplift = (1 + cands.uplift) / max(1 + float(current["uplift"]), 1e-3) - 1
        verdict = self.guard.check_arrays(cands.categories, cands.types, 1.0, override_rate, rel_uplift)
        refused = verdict.refused()
        allowed, limit = self._screen(verdict.allowed, cands, current, explore)
        b = float(current["score"])
        under = allowed & (cands.risk <= limit)
        gain = self.bandit.mean_reward(phi, cands.score) - self.bandit.mean_reward(current_phi, np.array([b]))[0]
        enough = gain >= self.settings.min_gain * cands.distance
        why = ""
        if not verdict.allowed.any():
            why = "the safety guard refused every variant"
        elif not under.any():
            why = "no allowed variant is under the risk limit"
        elif not (under & enough).any():
            why = "no eligible variant is expected to beat the current deal by enough for its distance"
        if why:
            return self._play_current(decision_id, current_phi, current, b, refused, why)
        allowed &= enough
        choice = self.bandit.select_action(phi, cands.score, cands.risk, allowed, threshold=limit)
        i = choice.index
        lcb = float(self.bandit.lower_bound(phi[i], cands.score[i : i + 1], self.z)[0])
        if not self.gate.admit(decision_id, lcb, b):
            return self._play_current(
                decision_id, current_phi, current, b, refused, "the conservative gate: the lower bound is at risk", lcb
            )
        self._register(decision_id, phi[i], cands.row(i), "policy", explored=bool(cands.types[i] == "explore"))
        return Decision(i, choice.pscore, str(cands.types[i]), refused, "", lcb)

    def _screen(
        self, guarded: np.ndarray, cands: Candidates, current: Mapping[str, float], explore: bool
    ) -> tuple[np.ndarray, float]:
        """The guard's verdict less ``explore`` variants off the exploration share, and the risk limit (the
        threshold bounds the risk a variant adds to what the merchant has today when ``relative_risk``)."""
        allowed = guarded.copy()
        if not (explore and self.exploration.allows_exploration(float(self.rng.random()))):
            allowed &= cands.types != "explore"
        limit = self.settings.risk_threshold + (float(current["risk"]) if self.settings.relative_risk else 0.0)
        return allowed, limit

    def _select_pooled(
        self,
        decision_id: str,
        cands: Candidates,
        phi: np.ndarray,
        override_rate: float,
        current_phi: np.ndarray,
        current: Mapping[str, float],
        explore: bool,
        terms: MerchantTerms,
        edit_risk: np.ndarray | None = None,
    ) -> Decision:
        """Guard (GP30 clause from the posterior) → exploration share → risk → Thompson sampling over the corrected
        rewards, the current deal competing as one more arm → conservative gate."""
        mp = self.merchants
        post = mp.part_posteriors(terms.merchant, terms.category)
        threshold = self.guard.settings.baseline_threshold
        short = mp.gp30_shortfall(post, terms.psi, cands.uplift, terms.current, float(current["uplift"]), threshold)
        verdict = self.guard.check_arrays(
            cands.categories, cands.types, 1.0, override_rate, cands.uplift, short, self.posterior_settings.delta
        )
        refused = verdict.refused()
        allowed, limit = self._screen(verdict.allowed, cands, current, explore)
        eligible = allowed & (cands.risk <= limit)
        psi = np.vstack([terms.psi, terms.current[None, :]])
        score = np.append(cands.score, float(current["score"]))
        mean_corr, sd_corr = mp.correction(post, psi)
        b = float(score[-1] + mean_corr[-1])  # the current deal's expected reward
        if not eligible.any():
            why = "the safety guard refused every variant" if not verdict.allowed.any() else (
                "no allowed variant is under the risk limit")  # fmt: skip
            return self._play_current(decision_id, current_phi, current, b, refused, why, terms=terms, post=post)
        m = self.bandit.n_propensity
        draws = score[None, :] + mp.sample_corrections(post, psi, 1 + m, self.bandit.rng)
        draws -= self.posterior_settings.caution * sd_corr[None, :]
        draws = risk_adjust(draws, np.append(cands.risk, float(current["risk"]))[None, :])
        if edit_risk is not None:  # an edited pick becomes the rep's own deal: only a kept gain counts
            draws = kept_value(draws, draws[:, -1:], np.asarray(edit_risk, float)[None, :])
        draws[:, np.flatnonzero(~eligible)] = -np.inf  # the last column, the current deal, is always eligible
        winners = draws.argmax(1)
        i = int(winners[0])
        pscore = max(float(np.mean(winners[1:] == i)), 1.0 / (2 * m))
        if i == len(cands.score):
            return self._play_current(
                decision_id, current_phi, current, b, refused, "the current deal is the best by the posterior",
                terms=terms, pscore=pscore, post=post,
            )  # fmt: skip
        lcb = float(score[i] + mean_corr[i] - self.z * sd_corr[i])
        if not self.gate.admit(decision_id, lcb, b):
            return self._play_current(
                decision_id, current_phi, current, b, refused, "the conservative gate: the lower bound is at risk",
                lcb, terms=terms, post=post,
            )  # fmt: skip
        self._register(decision_id, phi[i], cands.row(i), "policy", bool(cands.types[i] == "explore"))
        mp.register(decision_id, terms.merchant, terms.category, terms.psi[i], cands.row(i))
        expected = expected_parts(post, terms.psi[i], cands.row(i))
        return Decision(i, pscore, str(cands.types[i]), refused, "", lcb, expected)

    def expectations(self, terms: MerchantTerms, current: Mapping[str, float]) -> dict[str, float]:
        """:func:`expected_parts` of the current deal, for an answer that never asked the policy (apprentice)."""
        return expected_parts(self.merchants.part_posteriors(terms.merchant, terms.category), terms.current, current)

    def observe_current(
        self, decision_id: str, current_phi: np.ndarray, current: Mapping[str, float], terms: MerchantTerms | None
    ) -> Decision:
        """The current system's deal is shown whatever AIDG would pick (an apprentice segment): learn from its
        outcome as from any played current deal; nothing is explored."""
        if decision_id in self.open_:
            raise DataError(f"decision {decision_id!r} was already made: decision ids must be unique")
        b = float(current["score"])
        post = None
        if terms is not None and self.posterior_settings.enabled:
            post = self.merchants.part_posteriors(terms.merchant, terms.category)
        return self._play_current(decision_id, current_phi, current, b, {}, "apprentice: the current system's deal",
                                  terms=terms, post=post)  # fmt: skip

    def _play_current(
        self,
        decision_id: str,
        phi: np.ndarray,
        current: Mapping[str, float],
        b: float,
        refused: dict[int, str],
        why: str,
        lcb: float = float("nan"),
        terms: MerchantTerms | None = None,
        pscore: float = 1.0,
        post: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> Decision:
        self.gate.record(decision_id, "baseline", b, b)
        self._register(decision_id, phi, current, "baseline", explored=False)
        if terms is not None:
            self.merchants.register(decision_id, terms.merchant, terms.category, terms.current, dict(current))
        expected = None if terms is None or post is None else expected_parts(post, terms.current, current)
        return Decision(CURRENT, pscore, "current", refused, why, lcb, expected)

    def _register(
        self, decision_id: str, phi: np.ndarray, row: Mapping[str, float], played: str, explored: bool
    ) -> None:
        self.bandit.register(decision_id, phi, float(row["score"]), predicted_parts(row))
        self.open_[decision_id] = _Open(played, explored)

    def update_params(self, decision_id: str, part: str, value: float) -> bool:
        """One reward part of a decision arrived; False when it changed nothing (a repeat)."""
        if decision_id in self.closed_:
            return False  # a repeat of a part that came before the decision closed
        self.merchants.update_params(decision_id, part, value)
        changed = self.bandit.update_params(decision_id, part, value)
        o = self.open_.get(decision_id)
        if not changed or o is None:
            return changed
        o.parts[part] = float(value)
        if o.explored and not o.judged and {"approval", "override"} <= o.parts.keys():
            o.judged = True
            self.explore_outcomes_.append(o.parts["approval"] > 0.5 and o.parts["override"] == 0.0)
        if part == "gp30_uplift":
            self.close(decision_id)
        return True

    def close(self, decision_id: str) -> None:
        """No more parts will come (the GP30 landed, or never will): settle the gate with the reward as known."""
        o = self.open_.pop(decision_id, None)
        p = self.bandit.pending_.pop(decision_id, None)
        self.merchants.close(decision_id)
        if o is not None:
            self.closed_.add(decision_id)
        if o is None or p is None or o.played != "policy":
            return
        self.gate.settle(decision_id, self.bandit._reward(p))

    def release(self, decision_id: str) -> None:
        """Forget a decision locally: a service replica whose rewards are joined by the stream workers instead."""
        self.open_.pop(decision_id, None)
        self.bandit.pending_.pop(decision_id, None)
        self.merchants.close(decision_id)
        self.gate.forget(decision_id)

    def end_of_period(self) -> float:
        """Adapt the exploration share to how explored variants fared (approved, not overridden); returns it."""
        if len(self.explore_outcomes_) >= self.min_explore_outcomes:
            self.exploration.update(float(np.mean(self.explore_outcomes_)))
            self.explore_outcomes_ = []
        return self.exploration.rate


__all__ = ["CURRENT", "PARTS", "Candidates", "Decision", "MerchantTerms", "RiskAwarePolicy", "predicted_parts"]
