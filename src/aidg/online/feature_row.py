"""A merchant's online feature row: what the scorer reads about it, plus the counts stream workers update.

The row is materialised from a trained version's snapshot (every merchant's
readable features, 512-d profile, 64-d override intent and deal memory at the
as-of date) into the online store, one binary value per merchant
(:func:`aidg.store.arrays.pack_arrays`, no pickle). Stream workers then update
it incrementally as feedback arrives (memo §1.3 "incremental updates: Kafka →
Flink → Redis"):

- an ``approval`` answer is one more answered proposal: ``override_rate =
  overrides / proposals`` is recomputed, and ``recent_approval_rate`` (the
  approval share of the last 5 proposals) moves as a 5-step moving average
  ``r ← r + (a − r) / 5``;
- an ``override`` with severity > 0 is one more override: the rate and the
  mean ``override_severity`` are recomputed.

The learned parts (profile, intent, deal memory) change only when the batch
materialisation runs again on new data: they need the merchant's whole history
and its neighbours in the merchant–deal graph.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aidg.errors import DataError
from aidg.features.merchant_view import MERCHANT_NAMES, RECENT_PROPOSALS
from aidg.store.arrays import pack_arrays, unpack_arrays

ARRAYS = ("x", "profile", "intent", "memory", "memory_mask")
_RATE = MERCHANT_NAMES.index("override_rate")
_SEVERITY = MERCHANT_NAMES.index("override_severity")
_APPROVAL = MERCHANT_NAMES.index("recent_approval_rate")


@dataclass
class FeatureRow:
    """One merchant's online features (see the module docstring)."""

    merchant_id: str
    version: str  # the model version whose snapshot it came from
    category: int  # primary category code (-1 unknown)
    secondary: int  # secondary category code (-1 none)
    x: np.ndarray  # (F,) readable features, MERCHANT_NAMES order (NaN: unknown)
    profile: np.ndarray  # (512,)
    intent: np.ndarray  # (64,)
    memory: np.ndarray  # (L, 29) latest deals
    memory_mask: np.ndarray  # (L,)
    n_proposals: int = 0
    n_overrides: int = 0
    updates: int = 0  # feedback events folded in since materialisation
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def override_rate(self) -> float:
        v = float(self.x[_RATE])
        return v if np.isfinite(v) else 0.0

    def to_bytes(self) -> bytes:
        meta = {
            "merchant_id": self.merchant_id,
            "version": self.version,
            "category": self.category,
            "secondary": self.secondary,
            "n_proposals": self.n_proposals,
            "n_overrides": self.n_overrides,
            "updates": self.updates,
            "extra": self.extra,
        }
        return pack_arrays(meta, {k: getattr(self, k) for k in ARRAYS})

    @staticmethod
    def from_bytes(data: bytes) -> FeatureRow:
        meta, arrays = unpack_arrays(data)
        missing = [k for k in ARRAYS if k not in arrays]
        if missing or "merchant_id" not in meta:
            raise DataError(f"not a merchant feature row (missing {', '.join(missing) or 'merchant_id'})")
        x, profile, intent, memory, mask = (np.array(arrays[k]) for k in ARRAYS)  # writable copies
        return FeatureRow(
            str(meta["merchant_id"]),
            str(meta.get("version", "")),
            int(meta.get("category", -1)),
            int(meta.get("secondary", -1)),
            x,
            profile,
            intent,
            memory,
            mask,
            n_proposals=int(meta.get("n_proposals", 0)),
            n_overrides=int(meta.get("n_overrides", 0)),
            updates=int(meta.get("updates", 0)),
            extra=dict(meta.get("extra", {})),
        )

    def apply(self, events: Iterable[tuple[str, float]]) -> bool:
        """Fold ``(part, value)`` feedback into the override record; True when anything changed."""
        changed = False
        for part, value in events:
            if part == "approval":
                self.n_proposals += 1
                r = float(self.x[_APPROVAL])
                r = r if np.isfinite(r) else float(value)
                self.x[_APPROVAL] = r + (float(value) - r) / RECENT_PROPOSALS
            elif part == "override" and value > 0:
                old = float(self.x[_SEVERITY]) if np.isfinite(self.x[_SEVERITY]) else 0.0
                self.x[_SEVERITY] = (old * self.n_overrides + min(float(value), 1.0)) / (self.n_overrides + 1)
                self.n_overrides += 1
            else:
                continue
            self.x[_RATE] = min(self.n_overrides / max(self.n_proposals, 1), 1.0)
            self.updates += 1
            changed = True
        return changed


def bundle_key(merchant_id: str, at: object, n: int) -> str:
    """The embedding cache's key of a merchant's serving bundle: merchant, day (its candidates are seeded by it), n."""
    return f"{merchant_id}|{str(at)[:10]}|{n}"


__all__ = ["FeatureRow", "bundle_key"]
