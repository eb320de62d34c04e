"""A merchant's cached serving inputs for one day (the embedding cache's value, memo §1.3): its feature row, the
day's candidate variants and the current deal, packed with :mod:`aidg.store.arrays`; unpacked as tensors,
patched by the stream worker's write-through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from aidg.online.feature_row import FeatureRow, bundle_key
from aidg.store.arrays import pack_arrays, unpack_arrays
from aidg.store.online import CacheBackend


@dataclass
class Bundle:
    """One merchant's cached serving inputs for one day: scorer tensors, the variants and the current deal."""

    merchant_id: str
    at: str
    category: str
    override_rate: float
    tensors: tuple[torch.Tensor, ...]  # the scorer's merchant inputs, batch of one
    deal: torch.Tensor  # (1, n + 1, D): the n variants, then the current deal
    deal_category: torch.Tensor  # (1, n + 1)
    x: np.ndarray  # (F,) readable features (shown in the top-5)
    terms: dict[str, np.ndarray]  # variant, discount_pct, price, duration_days, distance: (n + 1,)
    labels: dict[str, list[str]]  # category_id, focus, type: n + 1 strings

    @property
    def n(self) -> int:
        return int(self.deal.shape[1]) - 1



def pack_bundle(
    row: FeatureRow, at: str, category: str, cand: pd.DataFrame, deal: np.ndarray, dcat: np.ndarray
) -> bytes:
    meta = {
        "merchant_id": row.merchant_id,
        "at": at,
        "category_name": category,
        "category": row.category,
        "override_rate": row.override_rate,
        **{k: cand[k].astype(str).tolist() for k in ("category_id", "focus", "type")},
    }
    arrays = {
        **{k: getattr(row, k) for k in ("x", "profile", "intent", "memory", "memory_mask")},
        "deal": deal,
        "deal_category": dcat,
        **{k: cand[k].to_numpy(np.float64) for k in ("variant", "discount_pct", "price", "duration_days", "distance")},
    }
    return pack_arrays(meta, arrays)



def unpack_bundle(data: bytes) -> Bundle:
    """A cached value back as tensors (no copies of the arrays)."""
    meta, a = unpack_arrays(data)
    t = torch.from_numpy
    tensors = (
        t(np.array(a["x"][None], np.float32)),
        torch.tensor([int(meta["category"])], dtype=torch.int64),
        t(np.array(a["profile"][None], np.float32)),
        t(np.array(a["intent"][None], np.float32)),
        t(np.array(a["memory"][None], np.float32)),
        t(np.array(a["memory_mask"][None], bool)),
    )
    return Bundle(
        str(meta["merchant_id"]),
        str(meta["at"]),
        str(meta["category_name"]),
        float(meta["override_rate"]),
        tensors,
        t(np.array(a["deal"][None], np.float32)),
        t(np.array(a["deal_category"][None], np.int64)),
        np.asarray(a["x"]),
        {k: np.asarray(a[k]) for k in ("variant", "discount_pct", "price", "duration_days", "distance")},
        {k: list(meta[k]) for k in ("category_id", "focus", "type")},
    )



def patched_bundle(raw: bytes, row: FeatureRow) -> bytes:
    """A cached bundle with the merchant's updated readable features (the stream worker's write-through).

    Only the override record changes with feedback, and the variants' deal features do not read it, so the
    scorer's merchant features and the guard's override rate are all there is to replace.
    """
    meta, arrays = unpack_arrays(raw)
    meta["override_rate"] = row.override_rate
    return pack_arrays(meta, {**arrays, "x": row.x})



def refreshed_bundles(cache: CacheBackend, row: FeatureRow, payload: dict[str, Any]) -> dict[str, bytes]:
    """The cached bundle a decision was served from, patched with ``row``; empty when it is not cached."""
    at, n = payload.get("as_of"), payload.get("n_variants")
    if at is None or n is None:
        return {}
    key = str(payload.get("ns", "")) + bundle_key(row.merchant_id, at, int(n))
    raw = cache.get_many([key])[0]
    return {key: patched_bundle(raw, row)} if raw is not None else {}



def write_through(
    cache: CacheBackend, row: FeatureRow, payload: dict[str, Any], write: Callable[[dict[str, bytes]], None]
) -> int:
    """The stream worker updated ``row``: the bundle its decision was served from (``payload``) patched and handed
    to ``write`` (the serving cache's ``put``, or a backend's ``set_many`` with the TTL); how many were."""
    patched = refreshed_bundles(cache, row, payload)
    if patched:
        write(patched)
    return len(patched)


__all__ = ["Bundle", "pack_bundle", "patched_bundle", "refreshed_bundles", "unpack_bundle", "write_through"]
