"""The policies the arena compares (:mod:`aidg.policy.arena`), all behind one small interface.

- ``current``: the current system's deal (the rep's usual deal), always.
- ``greedy``: the scorer's best variant, never learning.
- ``epsilon_greedy``: the neural-linear mean's best, a uniformly random variant with probability ε (0.1).
- ``linucb``: the neural-linear upper confidence bound, mean + α·sd (α = 1).
- ``ts``: plain Thompson sampling on the same posterior: no risk filter, no guard, no gate.
- ``vw``: Vowpal Wabbit's ``cb_explore_adf`` (the peer), given the same per-variant features
  (the scorer's outputs, the terms, the projected representation); it learns each
  decision once, when its GP30 lands (or 30 days on, with the scorer's prediction
  for a GP30 that never came), as a service calling VW would.
- ``risk_aware_ts``: ours (:class:`~aidg.policy.risk_aware.RiskAwarePolicy`).
- ``latent_informed``: a reference, not a contender: the best variant by a model of the simulator's hidden
  traits fitted on the training merchants (:mod:`aidg.policy.latent_informed`), the ceiling of a perfect profile.

``epsilon_greedy``, ``linucb`` and ``ts`` learn exactly as ours does (part by
part, :class:`~aidg.policy.bandit.RiskAwareThompsonSampling` with ``risk_aware``
off), so the comparison is between ways of choosing, not ways of learning.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import pandas as pd

from aidg.config import Settings
from aidg.errors import DataError
from aidg.policy.bandit import RiskAwareThompsonSampling
from aidg.policy.merchant_posterior import Record
from aidg.policy.names import POLICIES
from aidg.policy.risk_aware import CURRENT, Candidates, MerchantTerms, RiskAwarePolicy, predicted_parts


class Arms(Protocol):
    """What a policy sees of one merchant (see :class:`aidg.policy.arena.ArenaData`)."""

    variants: pd.DataFrame
    predicted: pd.DataFrame
    cands: Candidates
    phi: np.ndarray
    current_phi: np.ndarray
    current: dict[str, float]
    override_rate: float
    latent_score: np.ndarray | None
    terms: MerchantTerms | None
    record: Record | None

    @property
    def vw_lines(self) -> list[str]: ...


class ArenaPolicy(ABC):
    """Base, in Open Bandit Pipeline's vocabulary: ``select_action`` gives an index (CURRENT for the current system's
    deal) with its propensity, ``update_params`` takes one reward part, ``close`` ends a decision, ``reset`` forgets."""

    name = "base"

    @abstractmethod
    def select_action(self, decision_id: str, arms: Arms) -> tuple[int, float]:
        """The chosen variant's index (or CURRENT) and its probability under the policy."""

    def update_params(self, decision_id: str, part: str, value: float) -> None:
        return None

    def shown(self, decision_id: str) -> dict[str, float] | None:
        """What the policy showed the rep it expects of decision ``decision_id``'s deal (``conversion``,
        ``gp30_uplift``), once; None: the scorer's predictions were shown."""
        return None

    def observe_current(self, decision_id: str, arms: Arms) -> bool:
        """The current system's deal was shown (an apprentice segment): learn from it if the policy can; True when
        the decision is registered (its reward parts then reach :meth:`update_params`)."""
        return False

    def warm_start(self, arms: Sequence[Arms]) -> None:
        """Before the first request: what the merchants' records say (only a per-merchant learner uses it)."""
        return None

    def close(self, decision_id: str) -> None:
        """A decision's parts are all in (or will not come): settle what waits for it."""
        return None

    def end_of_period(self) -> None:
        return None

    def reset(self) -> None:
        """Forget everything learnt (a stateless policy has nothing to forget)."""
        return None


class Current(ArenaPolicy):
    name = "current"

    def select_action(self, decision_id: str, arms: Arms) -> tuple[int, float]:
        return CURRENT, 1.0


class Greedy(ArenaPolicy):
    name = "greedy"

    def select_action(self, decision_id: str, arms: Arms) -> tuple[int, float]:
        return int(np.argmax(arms.cands.score)), 1.0


class LatentInformed(ArenaPolicy):
    """The diagnostic ceiling (:mod:`aidg.policy.latent_informed`): the best predicted from the hidden traits."""

    name = "latent_informed"

    def select_action(self, decision_id: str, arms: Arms) -> tuple[int, float]:
        if arms.latent_score is None:
            raise DataError("latent_informed needs the simulator's truth: the arena was built without it")
        i = int(np.argmax(arms.latent_score))
        return (CURRENT if i == len(arms.latent_score) - 1 else i), 1.0


class _NeuralLinear(ArenaPolicy):
    """Shared learning: the neural-linear posterior, fed part by part."""

    def __init__(self, dim: int, settings: Settings, seed: int) -> None:
        self.model = RiskAwareThompsonSampling(dim, settings.bandit, settings.reward, seed=seed, risk_aware=False)
        self.rng = np.random.default_rng(seed + 7)

    def _register(self, decision_id: str, arms: Arms, i: int) -> None:
        row = arms.cands.row(i)
        self.model.register(decision_id, arms.phi[i], row["score"], predicted_parts(row))

    def update_params(self, decision_id: str, part: str, value: float) -> None:
        if decision_id in self.model.pending_:
            self.model.update_params(decision_id, part, value)

    def close(self, decision_id: str) -> None:
        self.model.forget(decision_id)

    def reset(self) -> None:
        self.model.reset()


class EpsilonGreedy(_NeuralLinear):
    name = "epsilon_greedy"
    epsilon = 0.1

    def select_action(self, decision_id: str, arms: Arms) -> tuple[int, float]:
        score = arms.cands.score
        best = int(np.argmax(self.model.mean_reward(arms.phi, score)))
        n = len(score)
        i = int(self.rng.integers(n)) if self.rng.random() < self.epsilon else best
        p = self.epsilon / n + (1 - self.epsilon) * (i == best)
        self._register(decision_id, arms, i)
        return i, p


class LinUCB(_NeuralLinear):
    name = "linucb"
    alpha = 1.0

    def select_action(self, decision_id: str, arms: Arms) -> tuple[int, float]:
        score = arms.cands.score
        ucb = self.model.mean_reward(arms.phi, score) + self.alpha * self.model.sd(arms.phi)
        i = int(np.argmax(ucb))
        self._register(decision_id, arms, i)
        return i, 1.0


class PlainTS(_NeuralLinear):
    name = "ts"

    def select_action(self, decision_id: str, arms: Arms) -> tuple[int, float]:
        c = self.model.select_action(arms.phi, arms.cands.score, arms.cands.risk)
        self._register(decision_id, arms, c.index)
        return c.index, c.pscore


class RiskAwareTS(ArenaPolicy):
    name = "risk_aware_ts"

    def __init__(self, dim: int, settings: Settings, seed: int) -> None:
        self.policy = RiskAwarePolicy(
            dim, settings.bandit, settings.guard, settings.exploration, settings.reward, seed=seed,
            posterior=settings.posterior,
        )  # fmt: skip
        self.why_current: dict[str, int] = {}
        self.widened: dict[str, float] = {}  # the prior's widening per part (MerchantPosterior.calibrate)
        self.edit_risk: Any = None  # arms -> each variant's and the current deal's chance the rep edits it
        self.shown_: dict[str, dict[str, float]] = {}  # what was shown the rep, until the arena reads it

    def select_action(self, decision_id: str, arms: Arms) -> tuple[int, float]:
        a = arms
        er = None if self.edit_risk is None else self.edit_risk(a)
        d = self.policy.select_action(
            decision_id, a.cands, a.phi, a.override_rate, a.current_phi, a.current, terms=a.terms, edit_risk=er
        )
        if d.why_current:
            self.why_current[d.why_current] = self.why_current.get(d.why_current, 0) + 1
        if d.expected is not None:
            self.shown_[decision_id] = d.expected
        return d.index, d.pscore

    def shown(self, decision_id: str) -> dict[str, float] | None:
        return self.shown_.pop(decision_id, None)

    def observe_current(self, decision_id: str, arms: Arms) -> bool:
        d = self.policy.observe_current(decision_id, arms.current_phi, arms.current, arms.terms)
        if d.expected is not None:
            self.shown_[decision_id] = d.expected
        return True

    def warm_start(self, arms: Sequence[Arms]) -> None:
        mp = self.policy.merchants
        mp.warm_start_many([(a.terms.merchant, a.terms.category, a.record) for a in arms if a.terms and a.record])
        self.widened = mp.widened

    def update_params(self, decision_id: str, part: str, value: float) -> None:
        if decision_id in self.policy.bandit.pending_:
            self.policy.update_params(decision_id, part, value)

    def close(self, decision_id: str) -> None:
        self.policy.close(decision_id)

    def end_of_period(self) -> None:
        self.policy.end_of_period()

    def reset(self) -> None:
        self.policy.reset()
        self.why_current = {}


VW_ARGS = "--cb_explore_adf --squarecb --gamma_scale 1000 -q sp --quiet"
VW_LEARN_EARLY = True


class VW(ArenaPolicy):
    """Vowpal Wabbit ``cb_explore_adf``, one predict per decision and one learn when the reward is complete."""

    name = "vw"

    def __init__(self, settings: Settings, seed: int, args: str = VW_ARGS, learn_early: bool = VW_LEARN_EARLY) -> None:
        try:
            import vowpalwabbit
        except ImportError as e:  # pragma: no cover - a dependency; the message says how to get it
            raise DataError("the vw policy needs vowpalwabbit: pip install vowpalwabbit==9.11.9") from e
        self.args, self.seed = args, seed
        self.learn_early = learn_early  # learn at the first reward part, the scorer's predictions standing in
        self._workspace = vowpalwabbit.Workspace
        self.rng = np.random.default_rng(seed + 11)
        self.reward = settings.reward
        self.vw_: Any = None
        self.reset()

    def reset(self) -> None:
        """A fresh Vowpal Wabbit workspace (same seed) and no open decisions."""
        if self.vw_ is not None:
            self.vw_.finish()
        self.vw_ = self._workspace(f"{self.args} --random_seed {self.seed}")
        self.open_: dict[str, tuple[list[str], int, float, dict[str, float], dict[str, float]]] = {}

    def select_action(self, decision_id: str, arms: Arms) -> tuple[int, float]:
        pmf = np.asarray(self.vw_.predict(arms.vw_lines), float)
        pmf = pmf / pmf.sum()
        i = int(self.rng.choice(len(pmf), p=pmf))
        self.open_[decision_id] = (arms.vw_lines, i, float(pmf[i]), predicted_parts(arms.cands.row(i)), {})
        return i, float(pmf[i])

    def update_params(self, decision_id: str, part: str, value: float) -> None:
        o = self.open_.get(decision_id)
        if o is not None:
            o[4][part] = value
            if self.learn_early:
                self.close(decision_id)

    def close(self, decision_id: str) -> None:
        from aidg.reward import composite_reward

        o = self.open_.pop(decision_id, None)
        if o is None:
            return
        lines, i, p, predicted, got = o
        v = {k: got.get(k, predicted[k]) for k in predicted}
        r = float(composite_reward(v["gp30_uplift"], v["approval"], v["conversion"], v["override"], 1.0, self.reward))
        ex = list(lines)
        ex[i + 1] = f"0:{-r:.6f}:{p:.6f} {lines[i + 1]}"  # line 0 is the shared context
        self.vw_.learn(ex)

    def finish(self) -> None:
        self.vw_.finish()


def vw_lines(predicted: pd.DataFrame, variants: pd.DataFrame, phi: np.ndarray, list_price: float) -> list[str]:
    """VW ``adf`` text of one merchant's variants: a shared line, then one line per variant."""
    lines = ["shared |c bias"]
    for i in range(len(predicted)):
        p, v = predicted.iloc[i], variants.iloc[i]
        proj = " ".join(f"p{j}:{x:.5f}" for j, x in enumerate(phi[i, 1:]))
        lines.append(
            f"|s score:{p.score:.5f} risk:{p.risk:.5f} uplift:{p.uplift:.5f} approval:{p.approval:.5f} "
            f"conversion:{p.conversion:.5f} |t discount:{v.discount_pct:.3f} size:{v.price / list_price:.3f} "
            f"days:{v.duration_days / 30:.3f} type_{v.type} focus_{v.focus} |p {proj}"
        )
    return lines


def make_policy(name: str, dim: int, settings: Settings, seed: int) -> ArenaPolicy:
    if name == "current":
        return Current()
    if name == "greedy":
        return Greedy()
    if name == "epsilon_greedy":
        return EpsilonGreedy(dim, settings, seed)
    if name == "linucb":
        return LinUCB(dim, settings, seed)
    if name == "ts":
        return PlainTS(dim, settings, seed)
    if name == "risk_aware_ts":
        return RiskAwareTS(dim, settings, seed)
    if name == "vw":
        return VW(settings, seed)
    if name == "latent_informed":
        return LatentInformed()
    raise DataError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")


def describe() -> dict[str, Any]:
    return {"vw_args": VW_ARGS, "epsilon": EpsilonGreedy.epsilon, "linucb_alpha": LinUCB.alpha}
