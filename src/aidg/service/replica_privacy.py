"""A replica's privacy state: erased merchants, consent, and the non-personalized answer.

* **Erased merchants** (keyed hashes, from the decision log's privacy audit trail, re-read with the
  posterior every ``posterior_refresh_seconds``): ``generate``, the profile and explanations answer 404
  for them at once on the replica that ran the erasure and within one refresh on the others, so no new
  decision re-creates data the erasure removed.
* **Consent**: the merchants table's ``consent_personalization`` column, overridden by the API's
  ``PUT /v1/merchants/{id}/consent`` (kept in the decision log; changes are picked up incrementally).
  Without personalization consent, ``generate`` runs no model on the merchant: it answers the current
  system's deal for it (what the marketplace proposes without AIDG, so "safe" by the memo's definition),
  marked ``personalized: false`` with the reason, and logs no decision (nothing is learned from it).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from aidg.decisionlog.privacy import PrivacyStore
from aidg.errors import NotFoundError
from aidg.privacy.consent import consent_flags
from aidg.privacy.ids import hash_id

if TYPE_CHECKING:
    from aidg.config import Settings

NO_CONSENT = (
    "this merchant has not consented to personalization: AIDG ran no model on it and answers the current "
    "system's deal, unscored; no decision was logged"
)


class ReplicaPrivacy:
    """Erased merchants and consent as one replica sees them (see the module docstring)."""

    def __init__(self, settings: Settings, store: PrivacyStore, merchants: pd.DataFrame) -> None:
        self.key = settings.privacy.id_hash_key
        self.store = store
        self.erased: set[str] = set()
        self._lock = threading.Lock()
        self._flags = consent_flags(merchants)
        self.personalization: dict[str, bool] = {str(k): bool(v) for k, v in self._flags.personalization.items()}
        self.training: dict[str, bool] = {str(k): bool(v) for k, v in self._flags.training.items()}
        self._seen = datetime(1970, 1, 1, tzinfo=UTC)

    def hash(self, merchant_id: str) -> str:
        return hash_id(merchant_id, self.key)

    def refresh(self) -> set[str]:
        """Re-read erasures and the consent changed since the last call; returns the hashes newly erased."""
        erased = self.store.erased()
        changed = self.store.consent_changed(self._seen)
        with self._lock:
            new = erased - self.erased
            self.erased |= erased
            for mid, (personalization, training, at) in changed.items():
                self.personalization[mid] = personalization
                self.training[mid] = training
                self._seen = max(self._seen, at)
        return new

    def check(self, merchant_id: str) -> None:
        """404 for an erased merchant (its id is not echoed: the hash is what the logs show)."""
        if self.erased and self.hash(merchant_id) in self.erased:
            raise NotFoundError("unknown merchant: it was erased at its request (right to deletion)")

    def personalized(self, merchant_id: str) -> bool:
        return self.personalization.get(merchant_id, True)

    def may_be_prototype(self, merchant_id: str) -> bool:
        """Whether a merchant may be shown as a similar merchant: not erased, and consenting to training."""
        return self.training.get(merchant_id, True) and not (self.erased and self.hash(merchant_id) in self.erased)

    def forget(self, merchant_id: str) -> None:
        with self._lock:
            self.erased.add(self.hash(merchant_id))
            self.personalization.pop(merchant_id, None)
            self.training[merchant_id] = False

    def set_personalization(self, merchant_id: str, allowed: bool, training: bool | None = None) -> None:
        with self._lock:
            self.personalization[merchant_id] = allowed
            if training is not None:
                self.training[merchant_id] = training

    def consent_of(self, merchant_id: str) -> dict[str, Any]:
        """The merchant's effective flags and where each comes from."""
        row = self.store.consent([merchant_id]).get(merchant_id)
        if row is None:
            if merchant_id not in self._flags.index:
                raise NotFoundError(f"unknown merchant {merchant_id!r}")
            p, t = (bool(v) for v in self._flags.loc[merchant_id])
            return {"merchant_id": merchant_id, "personalization": p, "training": t, "source": "merchants table"}
        return {"merchant_id": merchant_id, "personalization": row[0], "training": row[1], "source": "api"}


__all__ = ["NO_CONSENT", "ReplicaPrivacy"]
