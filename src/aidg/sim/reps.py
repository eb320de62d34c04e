"""Reps with memory: how far a suggestion sits from what fits, and how much the rep trusts AIDG.

A rep's chance of editing a suggestion is

    ``p = σ(logit ρ_r + 3 · |d − dpref_m| − trust_weight · τ_r)``

(:func:`aidg.sim.response.override_probability` at trust 0, shifted by
:func:`shift_edit_probability`):

- ``ρ_r``: the rep's habit (Beta(2, 5) across reps, as in the legacy era);
- ``|d − dpref_m|``: how far the suggested discount sits from what the rep
  believes fits the merchant (reps know their merchants' appetite);
- ``τ_r`` in [−1, 1]: the rep's trust in AIDG, 0 before AIDG is seen, so the
  legacy era's override rate (~0.3) is exactly today's.

Trust moves with the record of the AIDG suggestions the rep has seen
(:class:`RepTrust`):

- early sales as predicted (3-day conversion ≥ ``as_predicted`` × AIDG's
  prediction) and, 30 days on, a GP30 within ``tolerance`` of the predicted
  uplift raise it: ``τ += gain · (1 − τ)``;
- a flop (early sales under ``flop_sales`` × the prediction, or a GP30 under
  0.8 × the habitual deal's: the memo's safety line) lowers it
  ``loss_aversion`` times faster: ``τ −= loss_aversion · gain · (1 + τ)``
  (people abandon an algorithm after seeing it err: Dietvorst, Simmons & Massey
  2015; losses weigh about 2.25 × gains: Tversky & Kahneman 1992);
- a shown explanation raises it a little: ``τ += explained · (1 − τ)``
  (being able to see and adjust a model raises its use: Dietvorst et al. 2018).

The current system's deals (the legacy era, AIDG's apprentice level) are not
AIDG's suggestions: they never move trust. ``trust_weight = 0`` (``aidg
simulate --rep-trust off``) gives the world without memory.

>>> t = RepTrust(TrustConfig(), n_reps=2)
>>> t.outcome(0, sales_ratio=1.0)
>>> t.outcome(1, sales_ratio=0.4)
>>> bool(t.trust[0] > 0 > t.trust[1]), bool(-t.trust[1] > t.trust[0])
(True, True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from aidg.errors import SimulationError

FloatArray = np.ndarray
SAFETY_UPLIFT = -0.2  # a GP30 under 0.8 × the habitual deal's is a flop a rep remembers


@dataclass(frozen=True)
class TrustConfig:
    """The world's parameters of reps with memory (stored in the world's meta, documented in docs/simulator.md)."""

    enabled: bool = True
    trust_weight: float = 2.0  # logit of an edit at full trust: odds × e^-2 ≈ 0.14; at full distrust × 7.4
    gain: float = 0.04  # step toward full trust of one suggestion that performed as predicted
    loss_aversion: float = 2.25  # a flop's step toward distrust, in gains (Tversky & Kahneman 1992)
    explained: float = 0.005  # step toward trust of one shown explanation (a smaller effect)
    as_predicted: float = 0.9  # early sales ≥ this × AIDG's prediction: as predicted
    flop_sales: float = 0.6  # early sales under this × AIDG's prediction: a flop
    tolerance: float = 0.1  # GP30 uplift at most this under the prediction: as predicted

    @staticmethod
    def off() -> TrustConfig:
        """Reps without memory: today's behaviour (the edit chance ignores trust, which never moves)."""
        return TrustConfig(enabled=False, trust_weight=0.0)

    @staticmethod
    def from_meta(meta: dict[str, Any] | None) -> TrustConfig:
        """The world's configuration; worlds made before reps had memory behave as ``off``."""
        raw = (meta or {}).get("rep_trust")
        if raw is None:
            return TrustConfig.off()
        known = {f.name for f in fields(TrustConfig)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise SimulationError(f"unknown rep_trust parameters {unknown}; known: {sorted(known)}")
        return TrustConfig(**raw)

    def to_meta(self) -> dict[str, Any]:
        return asdict(self)


def _logit(p: FloatArray) -> FloatArray:
    q = np.clip(p, 1e-4, 1 - 1e-4)
    return np.asarray(np.log(q / (1 - q)))


def shift_edit_probability(p_at_zero: FloatArray | float, trust: FloatArray | float, cfg: TrustConfig) -> FloatArray:
    """The edit chance at ``trust`` from the chance at trust 0 (the shift is additive in logit)."""
    z = _logit(np.asarray(p_at_zero, float)) - cfg.trust_weight * np.asarray(trust, float)
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


class RepTrust:
    """Every rep's trust in AIDG (module docstring), moved one observed suggestion at a time."""

    def __init__(self, cfg: TrustConfig, n_reps: int) -> None:
        self.cfg = cfg
        self.trust = np.zeros(n_reps)
        self.successes = np.zeros(n_reps, np.int64)
        self.flops = np.zeros(n_reps, np.int64)

    def _up(self, rep: int, step: float) -> None:
        if self.cfg.enabled:
            self.trust[rep] += step * (1.0 - self.trust[rep])

    def _down(self, rep: int, step: float) -> None:
        if self.cfg.enabled:
            self.trust[rep] -= step * (1.0 + self.trust[rep])

    def shown(self, rep: int, explained: bool) -> None:
        """The rep saw an AIDG suggestion, with its explanation when ``explained``."""
        if explained:
            self._up(rep, self.cfg.explained)

    def outcome(self, rep: int, sales_ratio: float | None = None, uplift_miss: float | None = None,
                uplift: float | None = None) -> None:  # fmt: skip
        """What the rep saw of an approved AIDG suggestion: early sales ÷ predicted (3 days on), or 30 days on the
        realised GP30 uplift and its shortfall under the predicted one (``predicted − realised``)."""
        flop = (sales_ratio is not None and sales_ratio < self.cfg.flop_sales) or (
            uplift is not None and uplift < SAFETY_UPLIFT
        )
        good = (sales_ratio is not None and sales_ratio >= self.cfg.as_predicted) or (
            uplift_miss is not None and uplift is not None and uplift_miss <= self.cfg.tolerance
        )
        if flop:
            self.flops[rep] += 1
            self._down(rep, self.cfg.loss_aversion * self.cfg.gain)
        elif good:
            self.successes[rep] += 1
            self._up(rep, self.cfg.gain)
