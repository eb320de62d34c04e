"""What the deal scorer is fed: merchant snapshots at a date, logged training examples, candidate batches.

A :class:`Snapshot` holds, for every merchant at one date, the readable
features, the 512-d profile and the override intent, all computed from what
was known before that date. Training examples are the legacy proposals of a
window after the snapshot (so every target lies in the snapshot's future):

- ``approved``: the merchant's answer to the terms it was shown;
- ``overridden``: whether the handling rep edited the suggestion, with the
  suggestion's discount *before* the edit (from the override's old value);
- ``severity``: how large the edit was (field units, ÷ 0.75, clipped to 1);
- ``uplift`` and ``conversion``: the realised GP30 uplift and 3-day conversion
  of the deal that ran, when it ran and its outcome was known by the window end.

Nothing here reads the simulator's truth.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from aidg.errors import DataError
from aidg.features.context import FIELD_SCALE, UPLIFT_CLIP, FeatureContext
from aidg.features.merchant_view import MERCHANT_NAMES, SEVERITY_SCALE, MerchantView, deal_view, merchant_view
from aidg.features.panel import cutoff_seconds, to_seconds
from aidg.features.sequences import deal_sequences
from aidg.models.scorer_config import MerchantTensors
from aidg.store.arrays import pack_arrays, unpack_arrays

if TYPE_CHECKING:  # the encoders (PyTorch Geometric, the text encoder): not loaded to read a snapshot
    from aidg.inference.profile_model import ProfileModel

MEMORY_LEN = 20  # latest deals the scorer's deal memory reads
SNAPSHOT_ARRAYS = ("numeric", "category", "secondary", "profile", "intent", "memory", "memory_mask")


@dataclass
class Snapshot:
    """Every merchant's scorer inputs at one date (rows in ``FeatureContext`` merchant-code order)."""

    at: pd.Timestamp
    view: MerchantView
    profile: np.ndarray  # (n, 512)
    intent: np.ndarray  # (n, 64)
    memory: np.ndarray  # (n, L, 29) latest deals, outcomes masked until known
    memory_mask: np.ndarray  # (n, L)

    def take(self, rows: np.ndarray) -> Snapshot:
        v = self.view
        view = MerchantView(v.numeric[rows], v.category[rows], v.secondary[rows], v.names)
        return Snapshot(self.at, view, self.profile[rows], self.intent[rows], self.memory[rows], self.memory_mask[rows])

    def to_bytes(self) -> bytes:
        """Packed (``aidg.store.arrays``: a JSON header and raw buffers, no pickle); :meth:`from_bytes` reads it."""
        v = self.view
        arrays = dict(zip(SNAPSHOT_ARRAYS, (v.numeric, v.category, v.secondary, self.profile, self.intent,
                                            self.memory, self.memory_mask), strict=True))  # fmt: skip
        return pack_arrays({"merchants": len(v.numeric), "names": list(v.names)}, arrays)

    @staticmethod
    def from_bytes(packed: bytes, at: pd.Timestamp) -> Snapshot:
        meta, a = unpack_arrays(packed)
        names = list(meta.get("names") or MERCHANT_NAMES)
        view = MerchantView(np.array(a["numeric"]), np.array(a["category"]), np.array(a["secondary"]), names)
        return Snapshot(at, view, *(np.array(a[k]) for k in SNAPSHOT_ARRAYS[3:]))

    def tensors(self, rows: np.ndarray) -> MerchantTensors:
        """The scorer's merchant inputs for the merchant codes ``rows``."""
        return MerchantTensors(
            torch.from_numpy(self.view.numeric[rows].astype(np.float32)),
            torch.from_numpy(self.view.category[rows].astype(np.int64)),
            torch.from_numpy(self.profile[rows].astype(np.float32)),
            torch.from_numpy(self.intent[rows].astype(np.float32)),
            torch.from_numpy(self.memory[rows].astype(np.float32)),
            torch.from_numpy(self.memory_mask[rows]),
        )


def snapshot(
    pm: ProfileModel,
    ctx: FeatureContext,
    at: pd.Timestamp | str,
    seed: int = 0,
    memory_len: int = MEMORY_LEN,
    drop: frozenset[str] = frozenset(),
) -> Snapshot:
    """Compute every merchant's readable features, profile, override intent and deal memory as of ``at``
    (``drop``: profile branches switched off, as for a merchant missing them: the decision ablation's)."""
    readable: dict[str, np.ndarray] = {}
    parts = pm.compute_parts(ctx, at, seed=seed, readable=readable)
    view = merchant_view(ctx, at, readable.get("mood"))
    n = len(ctx.merchant_ids)
    mem = deal_sequences(ctx, np.arange(n), np.full(n, cutoff_seconds(at)), length=memory_len)
    return Snapshot(
        pd.Timestamp(at),
        view,
        pm.profiles(parts, drop),
        parts["override_intent"].astype(np.float32),
        mem.x.astype(np.float32),
        mem.mask,
    )


@dataclass
class ScorerExamples:
    """Logged proposals as scorer training rows (``snap``/``m`` index a list of snapshots and merchant codes)."""

    snap: np.ndarray
    m: np.ndarray
    deal: np.ndarray  # (n, D) features of the terms shown
    deal_category: np.ndarray  # (n,)
    risk_deal: np.ndarray  # (n, D) features of the terms before any rep edit
    approved: np.ndarray
    overridden: np.ndarray
    severity: np.ndarray  # NaN when not overridden
    uplift: np.ndarray  # NaN when unknown
    conversion: np.ndarray  # NaN when unknown

    def __len__(self) -> int:
        return len(self.m)

    def take(self, idx: np.ndarray) -> ScorerExamples:
        return ScorerExamples(**{k: v[idx] for k, v in self.__dict__.items()})

    @staticmethod
    def concat(items: list[ScorerExamples]) -> ScorerExamples:
        return ScorerExamples(**{k: np.concatenate([getattr(e, k) for e in items]) for k in items[0].__dict__})


def scorer_examples(
    ctx: FeatureContext, snap: Snapshot, snap_index: int, codes: np.ndarray, end: pd.Timestamp
) -> ScorerExamples:
    """Proposals to the merchants ``codes`` made in [snapshot date, ``end``) and answered before ``end``."""
    p = ctx.proposals
    start_s, end_s = (int(to_seconds(np.array([t], dtype="datetime64[ns]"))[0]) for t in (snap.at, end))
    if len(p) == 0:
        raise DataError("scorer training needs the proposals table (logged suggestions with the merchant's answer)")
    ok = np.isin(p.m.to_numpy(), codes) & (p.t.to_numpy() >= start_s) & (p.t_known.to_numpy() < end_s)
    s = p[ok]
    merchants = ctx.tables["merchants"]
    rows = s.m.to_numpy(np.int64)
    cat = s.c.to_numpy(np.int64)
    shown = deal_view(
        merchants, snap.view, rows, s.discount_pct.to_numpy(float), s.price.to_numpy(float),
        s.duration_days.to_numpy(float), cat,
    )  # fmt: skip
    ov = ctx.tables.get("overrides")
    before = s.discount_pct.to_numpy(float).copy()
    overridden = np.zeros(len(s), np.float32)
    severity = np.full(len(s), np.nan, np.float32)
    if ov is not None and len(ov) and "proposal_id" in ov:
        o = ov[ov.proposal_id.isin(s.proposal_id)]
        pos = pd.Series(np.arange(len(s)), index=s.proposal_id.to_numpy())
        at = pos.reindex(o.proposal_id).to_numpy()
        overridden[at] = 1.0
        scale = o.field.map(FIELD_SCALE).fillna(1.0)
        severity[at] = np.clip(np.abs((o.delta.astype(float) / scale).to_numpy()) / SEVERITY_SCALE, 0, 1)
        disc = (o.field == "discount_pct").to_numpy()
        before[at[disc]] = pd.to_numeric(o.old_value[disc], errors="coerce").fillna(
            pd.Series(before[at[disc]], index=o.index[disc])
        )
    risk = deal_view(merchants, snap.view, rows, before, s.price.to_numpy(float), s.duration_days.to_numpy(float), cat)
    deals = ctx.deals.set_index("deal_id") if "deal_id" in ctx.deals else None
    uplift = np.full(len(s), np.nan, np.float32)
    conversion = np.full(len(s), np.nan, np.float32)
    if deals is not None and "deal_id" in s:
        d = deals.reindex(s.deal_id)
        known = (d.t_known.to_numpy(float) < end_s) & d.gp30_uplift.notna().to_numpy()
        uplift = np.where(known, np.clip(d.gp30_uplift.to_numpy(float), *UPLIFT_CLIP), np.nan).astype(np.float32)
        conv_known = (d.t_conv.to_numpy(float) < end_s) & d.conversion_proxy.notna().to_numpy()
        conversion = np.where(conv_known, d.conversion_proxy.to_numpy(float), np.nan).astype(np.float32)
    return ScorerExamples(
        snap=np.full(len(s), snap_index, np.int64),
        m=rows,
        deal=shown,
        deal_category=cat,
        risk_deal=risk,
        approved=s.approved.astype(float).to_numpy(np.float32),
        overridden=overridden,
        severity=severity,
        uplift=uplift,
        conversion=conversion,
    )


class SnapshotStack:
    """Several snapshots' merchant inputs stacked once, indexed by (snapshot, merchant code)."""

    def __init__(self, snaps: list[Snapshot]) -> None:
        if not snaps:
            raise DataError("no merchant snapshots to build scorer inputs from")
        self.n = len(snaps[0].view.numeric)
        self.all = Snapshot(
            snaps[0].at,
            MerchantView(
                np.concatenate([s.view.numeric for s in snaps]),
                np.concatenate([s.view.category for s in snaps]),
                np.concatenate([s.view.secondary for s in snaps]),
                snaps[0].view.names,
            ),
            np.concatenate([s.profile for s in snaps]),
            np.concatenate([s.intent for s in snaps]),
            np.concatenate([s.memory for s in snaps]),
            np.concatenate([s.memory_mask for s in snaps]),
        )

    def rows(self, snap: np.ndarray, m: np.ndarray) -> MerchantTensors:
        """The scorer's merchant inputs of each (snapshot index, merchant code) pair."""
        return self.all.tensors(np.asarray(snap, np.int64) * self.n + np.asarray(m, np.int64))


def candidate_features(
    ctx: FeatureContext, snap: Snapshot, candidates: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merchant codes, deal features (n, D) and category codes of a candidates frame."""
    rows = ctx.codes(candidates.merchant_id.astype(str).to_numpy())
    cat = candidates.category_id.astype(str).map(ctx.category_code)
    if cat.isna().any():
        raise DataError(f"candidate category {candidates.category_id[cat.isna()].iloc[0]!r} is not a known category")
    codes = cat.astype(int).to_numpy()
    feats = deal_view(
        ctx.tables["merchants"], snap.view, rows, candidates.discount_pct.to_numpy(float),
        candidates.price.to_numpy(float), candidates.duration_days.to_numpy(float), codes,
    )  # fmt: skip
    if not np.isfinite(feats).all():
        raise DataError("candidate terms give non-finite features: check discount in [0, 1), price > 0, duration ≥ 1")
    return rows, feats, codes
