"""Learning from overrides: each rep's edit response and what each merchant will accept.

An override event says more than "edited": which rep, and the terms the rep
corrected to. :class:`EditResponse` keeps, with the override pattern
analyzer's predictions as the prior:

- per rep, how the rep's edits compare with the analyzer's prediction: the
  odds ratio of observed to predicted edits, shrunk toward 1 with
  ``prior_weight`` pseudo-decisions and forgetting old decisions at
  ``forget`` per decision (a rep's trust moves, so does their edit rate);
- per merchant, the discount the merchant will accept: a normal posterior,
  the current deal's discount as prior mean (sd ``accept_prior_sd``), each
  rep's corrected discount one observation (sd ``correction_sd``);
- one slope for how the edit odds grow with the distance between a suggested
  discount and the merchant's accepted one, learnt online (logistic SGD,
  starting at 0: no distance effect is assumed).

:meth:`edit_probability` gives the chance the rep edits each candidate; the
policy trades expected reward against it (:func:`kept_value`): an edited
suggestion is replaced by the rep's own terms, so a pick's gain over the
current deal only counts when the rep keeps it.

>>> er = EditResponse()
>>> for _ in range(30):
...     er.observe("rep-1", "m-1", 0.5, 0.1, 0.2, edited=True, corrected=0.2)
>>> p = er.edit_probability("rep-1", "m-1", np.array([0.2, 0.5]), np.array([0.1, 0.1]), 0.2)
>>> bool(p[1] > p[0] > 0.1)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _logit(p: np.ndarray | float) -> np.ndarray:
    q = np.clip(np.asarray(p, float), 1e-4, 1 - 1e-4)
    return np.asarray(np.log(q / (1 - q)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


@dataclass
class _Rep:
    edits: float = 0.0
    predicted: float = 0.0
    shown: float = 0.0


@dataclass
class _Accept:
    mean: float
    precision: float


class EditResponse:
    """The reps' and merchants' edit response (module docstring)."""

    def __init__(self, prior_weight: float = 10.0, forget: float = 0.99, accept_prior_sd: float = 0.1,
                 correction_sd: float = 0.05, learning_rate: float = 0.5) -> None:  # fmt: skip
        self.prior_weight, self.forget = prior_weight, forget
        self.accept_prior_sd, self.correction_sd = accept_prior_sd, correction_sd
        self.learning_rate = learning_rate
        self.slope = 0.0
        self.reps: dict[str, _Rep] = {}
        self.accept: dict[str, _Accept] = {}

    def rep_offset(self, rep: str) -> float:
        """log(observed ÷ predicted edit odds) of the rep, shrunk toward 0 by the prior weight."""
        r = self.reps.get(rep)
        if r is None or r.shown <= 0:
            return 0.0
        k = self.prior_weight
        p_pred = r.predicted / r.shown
        seen = (r.edits + k * p_pred) / (r.shown + k)
        return float(_logit(seen) - _logit(p_pred))

    def accepted_discount(self, merchant: str, current: float) -> float:
        a = self.accept.get(merchant)
        return float(current) if a is None else a.mean

    def edit_probability(self, rep: str, merchant: str, discounts: np.ndarray, analyzer: np.ndarray,
                         current_discount: float) -> np.ndarray:  # fmt: skip
        """The chance ``rep`` edits each suggested discount for ``merchant``; ``analyzer`` is the override pattern
        analyzer's prediction for each (the prior)."""
        mu = self.accepted_discount(merchant, current_discount)
        dist = np.abs(np.asarray(discounts, float) - mu)
        return _sigmoid(_logit(analyzer) + self.rep_offset(rep) + self.slope * dist)

    def observe(self, rep: str, merchant: str, discount: float, analyzer: float, current_discount: float,
                edited: bool, corrected: float | None = None) -> None:  # fmt: skip
        """The rep kept or edited a shown suggestion (``corrected``: the discount they set, when they edited)."""
        p = float(self.edit_probability(rep, merchant, np.array([discount]), np.array([analyzer]),
                                        current_discount)[0])  # fmt: skip
        mu = self.accepted_discount(merchant, current_discount)
        self.slope = max(0.0, self.slope + self.learning_rate * (float(edited) - p) * abs(discount - mu))
        r = self.reps.setdefault(rep, _Rep())
        r.edits = self.forget * r.edits + float(edited)
        r.predicted = self.forget * r.predicted + float(np.clip(analyzer, 1e-4, 1 - 1e-4))
        r.shown = self.forget * r.shown + 1.0
        if edited and corrected is not None and np.isfinite(corrected):
            a = self.accept.get(merchant) or _Accept(float(current_discount), self.accept_prior_sd**-2)
            prec = self.correction_sd**-2
            a.mean = (a.mean * a.precision + float(corrected) * prec) / (a.precision + prec)
            a.precision += prec
            self.accept[merchant] = a


def kept_value(reward: np.ndarray, current_reward: np.ndarray | float, p_edit: np.ndarray) -> np.ndarray:
    """Expected reward when an edit puts the rep's own terms back (worth the current deal's reward): the gain over
    the current deal counts only with the chance the rep keeps the pick."""
    return np.asarray(current_reward + (1.0 - p_edit) * (np.asarray(reward) - current_reward))
