"""The prototypes' refresh (memo §1.2: "prototypical memory refreshed every 24 h"), owned by each replica.

Every served version's explainer keeps a :class:`~aidg.explain.prototypes.PrototypicalMemory`, fitted at training on
the training merchants. A :class:`PrototypeRefresher` thread checks every ``explain.prototype_check_seconds`` whether
a memory is ``explain.prototype_refresh_hours`` old (24 h by default) and, when it is, refits it on the merchants
this replica serves now (their behaviour fingerprints from the served snapshot), leaving out merchants that were
erased or withdrew their consent to training. The new memory is built aside and swapped in by one assignment, so
a request never waits for a refit: it reads the old memory or the new one. A merchant erased while a refit runs is
removed from the new memory right after the swap (the erasure also removes it from whichever memory it finds).

What a refit changes today: which merchants can be prototypes (merchants the training never saw, erasures,
consent); the fingerprints themselves move when a new version's snapshot is served. Every worker and replica
refits on the same inputs with the same seed, so they agree. The explanation shows the memory's age
(``prototypes_age_hours``, :meth:`~aidg.explain.prototypes.PrototypicalMemory.age_hours`) beside the
similar merchants.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np

from aidg.explain.prototypes import PrototypicalMemory

if TYPE_CHECKING:
    from aidg.config import Settings
    from aidg.online.serving_model import ServingModel

log = logging.getLogger("aidg.service")


def refit(model: ServingModel, eligible: Callable[[str], bool], now: datetime) -> PrototypicalMemory | None:
    """A new memory over ``model``'s eligible served merchants (None when the model keeps no prototypes)."""
    explainer = model.explainer
    old = explainer.memory
    if old is None:
        return None
    ids = np.asarray([str(m) for m in model.ctx.merchant_ids])
    rows = np.flatnonzero([eligible(m) for m in ids])
    cats = model.ctx.tables["merchants"].category_id.astype(str).to_numpy()[rows]
    emb = explainer.embedding(model.ctx, model.snap, rows)
    new = PrototypicalMemory(k=old.k, refresh_hours=old.refresh_hours, seed=old.seed)
    return new.fit(emb, list(ids[rows]), list(cats), now=now)


class PrototypeRefresher:
    """Refits the served versions' prototypes when they are due (module docstring).

    Args:
        settings: ``explain.prototype_refresh_hours`` and ``explain.prototype_check_seconds``.
        models: The models this replica serves now (the champion and any challenger).
        eligible: Whether a merchant may be a prototype now (not erased, consenting to training).
        clock: The time now (UTC); tests pass a fake one.
    """

    def __init__(
        self,
        settings: Settings,
        models: Callable[[], list[ServingModel]],
        eligible: Callable[[str], bool],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings, self.models, self.eligible, self.clock = settings, models, eligible, clock
        self.refits = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def refresh_once(self, force: bool = False) -> int:
        """Refit every served memory that is due (or every one, ``force``); returns how many were refitted."""
        done = 0
        for model in self.models():
            memory, now = model.explainer.memory, self.clock()
            if memory is None:
                continue
            memory.refresh_hours = self.settings.explain.prototype_refresh_hours  # this replica's setting wins
            if not (force or memory.needs_refresh(now)):
                continue
            new = refit(model, self.eligible, now)
            if new is None:
                continue
            model.explainer.memory = new  # one assignment: a request reads the old memory or the new one
            stale = {m for c in new.categories() for m in new.prototypes(c) if not self.eligible(m)}
            for m in stale:  # erased (or withdrawn) while the refit ran
                new.remove(m)
            done += 1
        self.refits += done
        return done

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.explain.prototype_check_seconds):
            try:
                n = self.refresh_once()
                if n:
                    log.info("refreshed the prototypes of %d served version(s)", n)
            except Exception:  # keep the memory we have; the next check tries again
                log.warning("the prototypes' refresh failed", exc_info=True)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="aidg-prototypes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)


__all__ = ["PrototypeRefresher", "refit"]
