"""What the bandit learns of each merchant: one pooled posterior per reward part, fed part by part.

The scorer predicts every reward part of every variant. For each part that
lands (approval and the rep's edit within hours, conversion in days, GP30 at
30 days) the error of the scorer's prediction is learnt as a function of the
deal's terms relative to the merchant's current deal, pooled population →
category → merchant (:class:`~aidg.policy.pooled.PooledLinear`). So the
approvals of a merchant's first few decisions already move what is expected
of its next ones; its GP30s correct the uplift when they land; a merchant
with no record gets its category's and the population's corrections, with
their uncertainty and more the farther a variant is from its current deal.

A variant's expected reward is the memo formula over the corrected parts
(``score + Σ_part w_part · ψᵀθ_part``; the rep's edit keeps the scorer's
prediction: its weight in the reward is 0.005). Its GP30 risk is
``P(expected GP30 < 0.8 × the current deal's)``, Gaussian in the posterior:
``(1 + u_v + ψ_vᵀθ) − 0.8 (1 + u_cur + ψ_curᵀθ)`` is linear in θ.

Each decision's parts are applied exactly once (a repeat with the same value
changes nothing; a corrected value moves the sums by the difference), and the
sums commute, so the posterior does not depend on the order events arrive in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.special import ndtr

from aidg.config import PosteriorSettings, RewardSettings
from aidg.errors import DataError
from aidg.policy.pooled import K, PooledLinear

# reward part -> the scorer's prediction it corrects
PART_PREDICTIONS = {"approval": "approval", "conversion": "conversion", "gp30_uplift": "uplift"}


class PartRecord(NamedTuple):
    """One reward part of a merchant's record: the term features of its past deals, the predictor's errors on them
    (observed − predicted) and each one's age in days at the as-of date."""

    psi: np.ndarray  # (n, K)
    err: np.ndarray  # (n,)
    age_days: np.ndarray  # (n,)


def record_weights(age_days: np.ndarray, half_life_days: float | None) -> np.ndarray:
    """Each record's weight: ``0.5 ** (age / half_life)`` (a future date counts as today); None: every one weighs 1."""
    age = np.maximum(np.asarray(age_days, float), 0.0)
    return np.ones_like(age) if half_life_days is None else 0.5 ** (age / half_life_days)


Record = dict[str, PartRecord]  # reward part -> its record


@dataclass
class _Decision:
    merchant: str
    category: str
    psi: np.ndarray  # (K,)
    predicted: dict[str, float]
    seen: dict[str, float] = field(default_factory=dict)


class MerchantPosterior:
    """One :class:`PooledLinear` per learnt reward part, and the open decisions whose parts are still coming."""

    def __init__(self, settings: PosteriorSettings | None = None, reward: RewardSettings | None = None) -> None:
        self.settings = s = settings or PosteriorSettings()
        self.reward = reward or RewardSettings()
        self.weights = {
            "approval": self.reward.w_approval,
            "conversion": self.reward.w_conversion,
            "gp30_uplift": self.reward.w_gp30,
        }
        noise = {"approval": s.approval_noise, "conversion": s.conversion_noise, "gp30_uplift": s.gp30_noise}
        spread = {"approval": s.approval_prior_sd, "conversion": s.conversion_prior_sd,
                  "gp30_uplift": s.uplift_prior_sd}  # fmt: skip
        self.parts = {}
        for p in PART_PREDICTIONS:
            m = np.asarray(spread[p], float)
            self.parts[p] = PooledLinear(noise[p], (s.population_share * m, s.category_share * m, m))
        self.open_: dict[str, _Decision] = {}
        self.widened: dict[str, float] = {}  # the prior's widening per part (calibrate)

    def reset(self) -> None:
        for m in self.parts.values():
            m.reset()
        self.open_ = {}

    # -- learning ------------------------------------------------------------------------------
    def register(
        self, decision_id: str, merchant: str, category: str, psi: np.ndarray, predicted: dict[str, float]
    ) -> None:
        """Remember a played deal's term features and the scorer's predictions until its parts land."""
        self.open_[decision_id] = _Decision(merchant, category, np.asarray(psi, float).copy(), dict(predicted))

    def update_params(self, decision_id: str, part: str, value: float) -> bool:
        """A reward part landed; False when it changed nothing (not learnt here, unknown decision, or a repeat)."""
        d = self.open_.get(decision_id)
        if d is None or part not in self.parts:
            return False
        if not np.isfinite(value):
            raise DataError(f"reward part {part} of {decision_id} must be finite, got {value}")
        before = d.seen.get(part)
        if before == value:
            return False
        y = value - (d.predicted[PART_PREDICTIONS[part]] if before is None else before)
        self.parts[part].add(d.merchant, d.category, d.psi, y, first=before is None)
        d.seen[part] = float(value)
        return True

    def calibrate(self, errors: dict[str, list[np.ndarray]]) -> dict[str, float]:
        """Widen each part's prior when the merchants' records show larger scorer errors than the development
        world's: the ratio of the root mean square of merchants' mean errors (those with 3 records or more) to
        ``settings.record_error_reference``, within [1, 4]. Returns the factor per part."""
        ref = dict(zip(PART_PREDICTIONS, self.settings.record_error_reference, strict=True))
        out = {}
        for part, errs in errors.items():
            means = np.array([e.mean() for e in errs if len(e) >= 3])
            if part not in self.parts or len(means) < 10:
                continue
            out[part] = float(np.clip(np.sqrt(np.mean(means**2)) / ref[part], 1.0, 4.0))
            self.parts[part].widen(out[part])
        self.widened = out
        return out

    def warm_start(self, merchant: str, category: str, record: Record) -> None:
        """The merchant's record (:func:`aidg.inference.history.merchant_record`): per part, the term features of
        past deals and the scorer's errors on them (observed − predicted), learnt as if they were decisions. Past
        approvals weigh less the older they are (``settings.approval_half_life_days``, :func:`record_weights`: an
        observation of weight w counts with its noise variance ÷ w): a merchant's mood follows its recent deals, so
        last month's approvals say more about tomorrow's than last year's. GP30s and conversions weigh 1: they answer
        to the merchant's traits."""
        for part, (psi, err, age) in record.items():
            if part in self.parts and len(err):
                if not np.isfinite(err).all():
                    raise DataError(f"the record of merchant {merchant!r} holds non-finite {part} values")
                half_life = self.settings.approval_half_life_days if part == "approval" else None
                self.parts[part].add_many(merchant, category, psi, err, record_weights(age, half_life))

    def warm_start_many(self, records: list[tuple[str, str, Record]]) -> None:
        """Every merchant's record, (merchant, category, record) each: the priors widened by the records' errors
        (:meth:`calibrate`), then each record learnt (:meth:`warm_start`)."""
        errors: dict[str, list[np.ndarray]] = {}
        for _, _, rec in records:
            for part, (_, err, _) in rec.items():
                errors.setdefault(part, []).append(err)
        self.calibrate(errors)
        for merchant, category, rec in records:
            if rec:
                self.warm_start(merchant, category, rec)

    def set_online(self, merchant: str, category: str, A: np.ndarray, b: np.ndarray) -> None:
        """A merchant's online statistics from the stream workers (:meth:`aidg.online.worker.StreamWorker.apply`):
        ``A`` block-diagonal ``Σψψᵀ`` and ``b`` stacked ``Σψy``, one block of K per part in
        :data:`PART_PREDICTIONS`' order; they replace what the previous call brought for the merchant."""
        n = len(self.parts) * K
        if A.shape != (n, n) or b.shape != (n,):
            raise DataError(f"merchant {merchant!r}: online statistics of shapes {A.shape}, {b.shape}; expected {n}")
        for j, part in enumerate(PART_PREDICTIONS):
            sl = slice(j * K, (j + 1) * K)
            self.parts[part].set_online(merchant, category, A[sl, sl], b[sl])

    def forget(self, merchant: str) -> bool:
        """An erasure: the merchant's record and outcomes leave every part and level, its open decisions go."""
        self.open_ = {k: d for k, d in self.open_.items() if d.merchant != merchant}
        return any([m.forget(merchant) for m in self.parts.values()])

    def close(self, decision_id: str) -> None:
        """No more parts will come for this decision."""
        self.open_.pop(decision_id, None)

    # -- what is expected ----------------------------------------------------------------------
    def uplift_rest_sd(self) -> float:
        """The GP30 uplift error the term features cannot explain (``uplift_sd``, widened as the part's prior is)."""
        return self.settings.uplift_sd * self.parts["gp30_uplift"].factor

    def irreducible_sd(self) -> float:
        """The reward's error the term features cannot explain: :meth:`uplift_rest_sd` × the GP30 weight."""
        return self.weights["gp30_uplift"] * self.uplift_rest_sd()

    def part_posteriors(self, merchant: str, category: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {p: m.posterior(merchant, category) for p, m in self.parts.items()}

    def reward_weights(self, post: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """Mean and covariance of the reward correction's weights ``Σ_part w_part θ_part`` (parts independent): the
        correction of a row ψ is ψᵀ of them, so one K-dimensional draw serves every part."""
        mean = np.zeros(K)
        cov = np.zeros((K, K))
        for p, (m, c) in post.items():
            w = self.weights[p]
            mean += w * m
            cov += (w * w) * c
        return mean, cov

    def correction(
        self, post: dict[str, tuple[np.ndarray, np.ndarray]], psi: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each row's reward correction ``Σ_part w · ψᵀθ`` (with the error the term
        features cannot explain)."""
        m, c = self.reward_weights(post)
        var = np.einsum("ij,jk,ik->i", psi, c, psi) + self.irreducible_sd() ** 2
        return psi @ m, np.sqrt(var)

    def sample_corrections(
        self, post: dict[str, tuple[np.ndarray, np.ndarray]], psi: np.ndarray, draws: int, rng: np.random.Generator
    ) -> np.ndarray:
        """(draws, n) reward corrections of the rows of ``psi``: posterior draws of the combined weights, their
        spread × ``settings.sample_scale``."""
        m, c = self.reward_weights(post)
        chol = np.linalg.cholesky(c + 1e-12 * np.eye(K))
        theta = m[None, :] + self.settings.sample_scale * (rng.standard_normal((draws, K)) @ chol.T)
        return np.asarray(theta @ psi.T)

    def uplift_interval(
        self, post: dict[str, tuple[np.ndarray, np.ndarray]], psi: np.ndarray, uplift: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean and sd of each row's expected GP30 uplift: the scorer's, corrected, with the posterior's spread and
        the error the term features cannot explain."""
        m, c = post["gp30_uplift"]
        return uplift + psi @ m, np.sqrt(np.einsum("ij,jk,ik->i", psi, c, psi) + self.uplift_rest_sd() ** 2)

    def gp30_shortfall(
        self,
        post: dict[str, tuple[np.ndarray, np.ndarray]],
        psi: np.ndarray,
        uplift: np.ndarray,
        current_psi: np.ndarray,
        current_uplift: float,
        threshold: float,
    ) -> np.ndarray:
        """P(expected GP30 of each row < ``threshold`` × the current deal's), from the GP30 part's posterior plus
        the scorer's own error (``settings.uplift_sd``) on the difference."""
        m, c = post["gp30_uplift"]
        g = psi - threshold * current_psi[None, :]
        mean = (1 + uplift + psi @ m) - threshold * (1 + current_uplift + current_psi @ m)
        var = np.einsum("ij,jk,ik->i", g, c, g) + self.uplift_rest_sd() ** 2
        return np.asarray(ndtr(-mean / np.sqrt(var)))
