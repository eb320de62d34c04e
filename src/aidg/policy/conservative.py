"""The conservative gate: never let cumulative reward fall below (1 − α) × the current system's.

In the spirit of conservative bandits (Wu et al., 2016; Kazerouni et al., 2017):
each round the policy proposes a variant with a lower confidence bound ``lcb``
on its reward, and the current system's deal (the baseline) has an estimated
reward ``b``. The gate keeps a budget

    budget = Σ_{policy rounds} reward (its lcb until the reward is known)
           + Σ_{baseline rounds} b − (1 − α) Σ_{all rounds} b

and lets the policy's variant through only if ``budget + lcb − (1 − α) b ≥ 0``;
otherwise the round plays the baseline, which adds ``α b`` to the budget. So,
with the lcbs holding, the cumulative reward stays above (1 − α) × the
baseline's at every round. When a policy round's reward becomes known
(``settle``), it replaces the lcb, once (idempotent).

>>> g = ConservativeGate(alpha=0.1)
>>> g.allows(lcb=0.0, baseline=1.0)  # nothing banked yet: a risky round would break the bound
False
>>> g.record("d1", played="baseline", value=1.0, baseline=1.0); round(g.budget, 3)
0.1
>>> g.allows(lcb=0.95, baseline=1.0)
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aidg.errors import DataError, NotFoundError


class Gate(Protocol):
    """What :class:`~aidg.policy.risk_aware.RiskAwarePolicy` asks of a gate: this module's, or one whose budget
    several processes share (``aidg.service.shared_state.SharedGate``)."""

    def admit(self, decision_id: str, lcb: float, baseline: float) -> bool: ...

    def record(self, decision_id: str, played: str, value: float, baseline: float) -> None: ...

    def forget(self, decision_id: str) -> None: ...

    def settle(self, decision_id: str, reward: float) -> bool: ...


@dataclass
class ConservativeGate:
    alpha: float = 0.1
    budget: float = 0.0
    _policy_rounds: dict[str, tuple[float, bool]] = field(default_factory=dict)  # id -> (value counted, settled)
    rounds: int = 0
    refused: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise DataError(f"alpha is a share in (0, 1), got {self.alpha}")

    def allows(self, lcb: float, baseline: float) -> bool:
        """Whether the policy's variant may be played this round (the caller plays the baseline if not)."""
        ok = self.budget + lcb - (1 - self.alpha) * baseline >= 0
        if not ok:
            self.refused += 1
        return ok

    def admit(self, decision_id: str, lcb: float, baseline: float) -> bool:
        """:meth:`allows` and, if it does, :meth:`record` the policy round, as one step (a gate shared by several
        processes makes this one atomic step on its server: ``aidg.service.shared_state``). The caller records
        the baseline round when it does not."""
        ok = self.allows(lcb, baseline)
        if ok:
            self.record(decision_id, "policy", lcb, baseline)
        return ok

    def record(self, decision_id: str, played: str, value: float, baseline: float) -> None:
        """Count a round: ``value`` is the policy variant's lcb (or the baseline's estimate when it played)."""
        if played not in ("policy", "baseline"):
            raise DataError(f"played is 'policy' or 'baseline', got {played!r}")
        self.rounds += 1
        self.budget += value - (1 - self.alpha) * baseline
        if played == "policy":
            self._policy_rounds[decision_id] = (value, False)

    def forget(self, decision_id: str) -> None:
        """Stop tracking a round (its lower bound stays counted in the budget)."""
        self._policy_rounds.pop(decision_id, None)

    def settle(self, decision_id: str, reward: float) -> bool:
        """The policy round's reward is known: it replaces the lcb counted so far; False if already settled."""
        if decision_id not in self._policy_rounds:
            raise NotFoundError(f"no policy round {decision_id!r} to settle")
        counted, settled = self._policy_rounds[decision_id]
        if settled:
            return False
        self.budget += reward - counted
        self._policy_rounds[decision_id] = (reward, True)
        return True
