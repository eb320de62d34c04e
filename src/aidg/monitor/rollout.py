"""The rollout controller: champion and challenger, shadow → A/B → ramp → full, promotion and rollback.

States (memo §3.1, DESIGN §7):

* ``idle``: no challenger; the champion serves every request.
* ``shadow``: the challenger scores every request in parallel; its answers are
  logged (``aidg_shadow``) and never shown.
* ``ab``: a deterministic hash of the merchant id picks the arm: a share
  ``ab_personalization_share`` (memo: 5 %) goes to ``challenger`` (the
  challenger's model without exploration, "new personalization"),
  ``ab_exploration_share`` (memo: 10 %) to ``explore`` (the challenger with
  the exploration framework), the rest to ``champion``.
* ``ramp``: step *k* gives the challenger's arms ``ab share + k × ramp_step``
  of the traffic (same 1 : 2 split), one step every ``ramp_interval_hours`` of
  simulated time (memo: +10 % every 2 days) unless paused.
* ``full``: the challenger's arms serve everything.
* ``rolled_back``: back on the champion after an admin or a trigger.

Moving shares keep each merchant in its arm as long as its arm exists (the
hash is compared with cumulative shares). ``promote`` makes the challenger
the champion (state ``idle``). Every change is a compare-and-set on the
shared state row with a recorded transition (who, when, why); the MLflow
registry's ``champion`` / ``challenger`` aliases follow it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aidg.config import Settings
from aidg.decisionlog.rollout import RolloutRow, RolloutStore, Transition
from aidg.decisionlog.schema import utcnow
from aidg.errors import ConflictError, NotFoundError

log = logging.getLogger("aidg.rollout")
STATES = ("idle", "shadow", "ab", "ramp", "full", "rolled_back")
ACTIVE = ("shadow", "ab", "ramp", "full")
LIVE = ("ab", "ramp", "full")  # states in which challenger answers reach clients


def unit_hash(merchant_id: str, salt: str) -> float:
    """A merchant's fixed position in [0, 1) (blake2b of salt and id)."""
    h = hashlib.blake2b(f"{salt}|{merchant_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


@dataclass(frozen=True)
class View:
    """What a replica needs per request: the state and the arms' shares."""

    row: RolloutRow
    shares: dict[str, float]

    @property
    def state(self) -> str:
        return self.row.state

    def arm_for(self, merchant_id: str, salt: str) -> str:
        if self.row.state not in LIVE:
            return "champion"
        u = unit_hash(merchant_id, salt)
        if u < self.shares["challenger"]:
            return "challenger"
        if u < self.shares["challenger"] + self.shares["explore"]:
            return "explore"
        return "champion"


def shares_of(state: str, step: int, settings: Settings) -> dict[str, float]:
    r = settings.rollout
    p, e = r.ab_personalization_share, r.ab_exploration_share
    total = {"ab": p + e, "ramp": min(1.0, p + e + step * r.ramp_step), "full": 1.0}.get(state, 0.0)
    frac = p / (p + e) if p + e > 0 else 0.5
    chal = round(total * frac, 6)
    expl = round(total - chal, 6)
    return {"champion": round(1.0 - chal - expl, 6), "challenger": chal, "explore": expl}


class RolloutController:
    """State transitions of the shared rollout (module docstring); ``aliases`` mirrors them into MLflow."""

    def __init__(
        self,
        store: RolloutStore,
        settings: Settings,
        champion: str,
        aliases: Callable[[str | None, str | None], None] | None = None,
        versions: Callable[[], list[str]] | None = None,
    ) -> None:
        self.store, self.settings = store, settings
        self.aliases, self.versions = aliases, versions
        self.row = store.ensure(champion)

    # -- reading -------------------------------------------------------------------------------------------------
    def reload(self) -> RolloutRow:
        row = self.store.get()
        if row is not None:
            self.row = row
        return self.row

    def view(self) -> View:
        return View(self.row, shares_of(self.row.state, self.row.step, self.settings))

    def ramp_interval(self) -> timedelta:
        return timedelta(seconds=self.settings.rollout.ramp_interval_hours * 3600 / self.settings.monitor.time_scale)

    def next_step_at(self) -> datetime | None:
        r = self.row
        if r.state not in ("ab", "ramp") or r.paused or r.step_started_at is None:
            return None
        return r.step_started_at + self.ramp_interval()

    def to_dict(self, transitions: int = 50) -> dict[str, Any]:
        r = self.row
        sh = shares_of(r.state, r.step, self.settings)
        nxt = self.next_step_at()
        out: dict[str, Any] = {
            "state": r.state, "champion": r.champion, "challenger": r.challenger, "shares": sh,
            "challenger_share": round(sh["challenger"] + sh["explore"], 6), "step": r.step, "paused": r.paused,
            "revision": r.revision, "updated_at": r.updated_at.isoformat(),
            "started_at": r.started_at.isoformat() if r.started_at else None,
            "next_step_at": nxt.isoformat() if nxt else None, "time_scale": self.settings.monitor.time_scale,
            "gate": r.gate, "drill_fault_rate": r.drill_fault_rate,
        }  # fmt: skip
        if transitions:
            out["transitions"] = [t.to_dict() for t in self.store.transitions(transitions)]
        return out

    # -- changing ------------------------------------------------------------------------------------------------
    def _change(self, action: str, actor: str, reason: str, to: str, detail: dict[str, Any] | None = None,
                **values: Any) -> RolloutRow:  # fmt: skip
        row = self.row  # as _require just read it: the compare-and-set refuses it if another writer moved first
        t = Transition(utcnow(), row.state, to, action, actor, reason or action, detail or {})
        self.row = self.store.change(row.revision, {"state": to, **values}, t)
        log.info("rollout %s by %s: %s → %s (%s)", action, actor, row.state, to, reason)
        self._mirror()
        return self.row

    def _mirror(self) -> None:
        if self.aliases is None:
            return
        try:
            live = self.row.state in ACTIVE
            self.aliases(self.row.champion, self.row.challenger if live else None)
        except Exception:  # the registry is a mirror: the decision log's row is the truth
            log.warning("could not update the registry's champion/challenger aliases", exc_info=True)

    def _require(self, action: str, allowed: tuple[str, ...]) -> RolloutRow:
        row = self.reload()
        if row.state not in allowed:
            raise ConflictError(
                f"cannot {action} a rollout in state {row.state!r}; {action} works in: {', '.join(allowed)}"
            )
        return row

    def start(self, challenger: str, actor: str, reason: str, drill_fault_rate: float = 0.0) -> RolloutRow:
        """Shadow a challenger; ``drill_fault_rate`` > 0 makes a rollback drill (that share of its requests fail)."""
        row = self._require("start", ("idle", "rolled_back"))
        if self.versions is not None and challenger not in self.versions():
            raise NotFoundError(f"no model version {challenger!r}; registered: {', '.join(self.versions())}")
        if challenger == row.champion:
            raise ConflictError(f"version {challenger} is already the champion; start a different version")
        now = utcnow()
        detail = {"challenger": challenger, "drill_fault_rate": drill_fault_rate}
        values = {"challenger": challenger, "step": 0, "paused": False, "started_at": now, "step_started_at": now,
                  "gate": None, "drill_fault_rate": drill_fault_rate}  # fmt: skip
        return self._change("start", actor, reason, "shadow", detail, **values)

    def advance(self, actor: str, reason: str, force: bool = False,
                gate: Callable[[], dict[str, Any]] | None = None) -> RolloutRow:  # fmt: skip
        row = self._require("advance", ("shadow", "ab", "ramp"))
        now = utcnow()
        if row.state == "shadow":
            verdict = gate() if gate is not None else None
            if verdict is not None and not verdict["passed"] and not force:
                self.row = self.store.change(row.revision, {"gate": verdict}, Transition(
                    now, "shadow", "shadow", "gate_refused", actor, verdict["reason"], verdict))  # fmt: skip
                raise ConflictError(f"the promotion gate refused: {verdict['reason']}")
            why = reason or (verdict or {}).get("reason", "advance")
            if force and verdict is not None and not verdict["passed"]:
                why = f"forced past the gate ({verdict['reason']}): {reason or 'no reason given'}"
            return self._change("advance", actor, why, "ab", verdict, gate=verdict, step=0, step_started_at=now)
        total = shares_of(row.state, row.step, self.settings)
        if row.state == "ab":
            return self._change("advance", actor, reason, "ramp", None, step=1, step_started_at=now)
        if 1.0 - total["champion"] + self.settings.rollout.ramp_step >= 1.0 - 1e-9:
            return self._change("advance", actor, reason, "full", None, step_started_at=now)
        return self._change("advance", actor, reason, "ramp", {"step": row.step + 1}, step=row.step + 1,
                            step_started_at=now)  # fmt: skip

    def auto_advance(self) -> RolloutRow | None:
        """Take the ramp's next step when its interval has passed (A/B → ramp, ramp → next / full)."""
        nxt = self.next_step_at()
        if nxt is None or utcnow() < nxt:
            return None
        try:
            return self.advance("monitor", f"ramp interval of {self.settings.rollout.ramp_interval_hours:g} h passed")
        except ConflictError:
            return None  # another replica took the step

    def pause(self, actor: str, reason: str) -> RolloutRow:
        row = self._require("pause", ACTIVE)
        if row.paused:
            raise ConflictError("the rollout is already paused; resume it first")
        return self._change("pause", actor, reason, row.state, None, paused=True)

    def resume(self, actor: str, reason: str) -> RolloutRow:
        row = self._require("resume", ACTIVE)
        if not row.paused:
            raise ConflictError("the rollout is not paused")
        return self._change("resume", actor, reason, row.state, None, paused=False, step_started_at=utcnow())

    def promote(self, actor: str, reason: str) -> RolloutRow:
        row = self._require("promote", LIVE)
        return self._change("promote", actor, reason, "idle", {"champion": row.challenger, "was": row.champion},
                            champion=row.challenger, challenger=None, step=0, paused=False)  # fmt: skip

    def rollback(self, actor: str, reason: str, detail: dict[str, Any] | None = None) -> RolloutRow:
        self._require("roll back", ACTIVE)
        return self._change("rollback" if actor != "monitor" else "auto_rollback", actor, reason, "rolled_back",
                            detail, paused=False)  # fmt: skip


__all__ = ["ACTIVE", "LIVE", "STATES", "RolloutController", "View", "shares_of", "unit_hash"]
