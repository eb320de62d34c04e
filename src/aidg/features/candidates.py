"""Deal variants for a merchant at a date: the action space of memo §2.1, labelled safe / hybrid / explore.

The space is a grid in merchant-relative coordinates: discount (5 %–70 % in
5-point steps) × package size (0.5–2 × the merchant's list price) × duration
(7, 14, 30, 60 days) × category focus (primary, secondary where the merchant
has one). Each grid point's distance to the merchant's *anchor* (the best
deal it ran recently, by realised GP30 uplift; its habitual deal when it has
none) is

    |Δ discount| / 0.10 + |Δ ln size| / ln 1.5 + 0.5 · duration steps + 1 · focus change

A variant within ``safe_radius`` is ``safe`` ("close to what worked"), within
``hybrid_radius`` ``hybrid``, else ``explore``. The ``n`` variants are drawn
without replacement by type quota (safe 40 %, hybrid 30 %, explore 30 % by
default; a short type is filled from the others), seeded by merchant and
date so the same request gets the same set. The anchor itself always
comes first.

>>> from aidg.sim.world import simulate
>>> w = simulate("tiny", seed=3)
>>> gen = CandidateGenerator(w.tables["merchants"], w.tables["deals"])
>>> c = gen.generate(w.tables["merchants"].merchant_id[0], at="2026-01-01", n=20)
>>> len(c), sorted(c.type.unique()), c.type.iloc[0]
(20, ['explore', 'hybrid', 'safe'], 'safe')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from aidg.config import CandidateSettings
from aidg.errors import DataError, NotFoundError

DISCOUNTS = np.round(np.arange(0.05, 0.701, 0.05), 2)
SIZES = np.array([0.5, 0.75, 1.0, 1.5, 2.0])
DURATIONS = np.array([7, 14, 30, 60])
ANCHOR_DEALS = 10  # the anchor is the best of the merchant's last 10 deals with a known outcome
TYPES = ("safe", "hybrid", "explore")
CANDIDATE_COLUMNS = [
    "merchant_id",
    "variant",
    "discount_pct",
    "price",
    "duration_days",
    "category_id",
    "focus",
    "type",
    "distance",
]


def _terms(row: Mapping[Any, Any], discount: str, price: str, duration: str) -> tuple[float, float, float, str]:
    return float(row[discount]), float(row[price]), float(row[duration]), str(row["category_id"])


def _seed(merchant_id: str, at: pd.Timestamp) -> int:
    h = hashlib.blake2b(f"{merchant_id}|{at.date()}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little")


class CandidateGenerator:
    """Generates labelled deal variants from the merchants table and the deals that ran."""

    def __init__(self, merchants: pd.DataFrame, deals: pd.DataFrame, settings: CandidateSettings | None = None) -> None:
        need = {"merchant_id", "category_id", "baseline_discount_pct", "baseline_price", "baseline_duration_days"}
        missing = sorted(need - set(merchants.columns))
        if missing:
            raise DataError(f"the merchants table needs the columns {', '.join(missing)} to generate candidates")
        self.settings = settings or CandidateSettings()
        self.merchants = merchants.set_index(merchants.merchant_id.astype(str))
        d = deals[["merchant_id", "started_at", "discount_pct", "price", "duration_days", "category_id"]].copy()
        d["uplift"] = deals.gp30_uplift.astype(float) if "gp30_uplift" in deals else np.nan
        d["known_at"] = (
            pd.to_datetime(deals.gp30_known_at)
            if "gp30_known_at" in deals
            else pd.to_datetime(deals.started_at) + pd.Timedelta(days=30)
        )
        d["merchant_id"] = d.merchant_id.astype(str)
        self.deals = d.sort_values("started_at", kind="stable")
        # each merchant's deals, found when first asked for (grouping all 2,000 merchants' up front costs 0.25 s
        # that a one-merchant explanation does not need)
        ids = self.deals.merchant_id.to_numpy(dtype=object)
        self._order = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[self._order]
        self._by_merchant: dict[str, pd.DataFrame | None] = {}

    def _history(self, merchant_id: str) -> pd.DataFrame | None:
        """The merchant's deals in start order (None: it ran none)."""
        if merchant_id not in self._by_merchant:
            lo = int(np.searchsorted(self._sorted_ids, merchant_id, "left"))
            hi = int(np.searchsorted(self._sorted_ids, merchant_id, "right"))
            rows = self._order[lo:hi]  # positions in start order (the stable sort keeps it within a merchant)
            self._by_merchant[merchant_id] = self.deals.iloc[rows] if hi > lo else None
        return self._by_merchant[merchant_id]

    def anchor(self, merchant_id: str, at: pd.Timestamp) -> tuple[float, float, float, str]:
        """(discount, price, duration, category) of the deal that worked best lately, else the habitual deal."""
        m = self.merchants.loc[str(merchant_id)]
        hist = self._history(merchant_id)
        if hist is not None:
            known = hist[(hist.known_at < at) & hist.uplift.notna()].tail(ANCHOR_DEALS)
            if len(known):
                best = known.iloc[int(np.argmax(known.uplift.to_numpy(float)))]
                return _terms(best.to_dict(), "discount_pct", "price", "duration_days")
        return _terms(m.to_dict(), "baseline_discount_pct", "baseline_price", "baseline_duration_days")

    def grid(self, merchant_id: str, at: pd.Timestamp | str) -> pd.DataFrame:
        """Every grid variant of the merchant with its type and distance to the anchor (anchor first)."""
        mid = str(merchant_id)
        if mid not in self.merchants.index:
            raise NotFoundError(f"unknown merchant {mid!r}: it is not in the merchants table")
        at = pd.Timestamp(at)
        m = self.merchants.loc[mid].to_dict()
        lp = m.get("list_price")
        list_price = float(lp) if lp is not None and pd.notna(lp) else float(m["baseline_price"])
        primary = str(m["category_id"])
        secondary = m.get("secondary_category_id")
        cats = [primary] + ([str(secondary)] if isinstance(secondary, str) and secondary != primary else [])
        d, s, t, f = np.meshgrid(DISCOUNTS, SIZES, DURATIONS, np.arange(len(cats)), indexing="ij")
        d, s, t, f = d.ravel(), s.ravel(), t.ravel(), f.ravel()
        a_d, a_p, a_t, a_c = self.anchor(mid, at)
        a_s = a_p / max(list_price, 1e-3)
        a_f = cats.index(a_c) if a_c in cats else 0
        a_step = int(np.argmin(np.abs(np.log(DURATIONS / max(a_t, 1.0)))))  # nearest duration class of the anchor
        step = np.abs(np.searchsorted(DURATIONS, t) - a_step)
        dist = np.abs(d - a_d) / 0.10 + np.abs(np.log(s) - np.log(a_s)) / np.log(1.5) + 0.5 * step + 1.0 * (f != a_f)
        out = pd.DataFrame(
            {
                "merchant_id": mid,
                "discount_pct": d,
                "price": np.round(s * list_price, 2),
                "duration_days": t.astype(np.int64),
                "category_id": np.asarray(cats, dtype=object)[f],
                "focus": np.where(f == 0, "primary", "secondary"),
                "distance": np.round(dist, 3),
            }
        )
        c = self.settings
        out["type"] = np.where(dist <= c.safe_radius, "safe", np.where(dist <= c.hybrid_radius, "hybrid", "explore"))
        anchor_row = pd.DataFrame(
            {
                "merchant_id": [mid],
                "discount_pct": [round(a_d, 2)],
                "price": [round(a_p, 2)],
                "duration_days": [int(a_t)],
                "category_id": [a_c],
                "focus": ["primary" if a_f == 0 else "secondary"],
                "distance": [0.0],
                "type": ["safe"],
            }
        )
        return pd.concat([anchor_row, out.sort_values("distance", kind="stable")], ignore_index=True)

    def current(self, merchant_id: str) -> pd.DataFrame:
        """The merchant's current (habitual) deal as one candidate row: variant -1, type ``current``."""
        return current_deals(self.merchants, [str(merchant_id)])

    def generate(self, merchant_id: str, at: pd.Timestamp | str, n: int = 50) -> pd.DataFrame:
        """``n`` variants (the anchor first), by type quota, reproducible for a (merchant, date)."""
        if n < 1:
            raise DataError(f"ask for at least one candidate (got n={n})")
        at = pd.Timestamp(at)
        g = self.grid(str(merchant_id), at)
        rng = np.random.default_rng(_seed(str(merchant_id), at))
        c = self.settings
        quota = {"safe": round(n * c.safe_share), "hybrid": round(n * c.hybrid_share)}
        quota["explore"] = n - quota["safe"] - quota["hybrid"]
        pools = {t: list(rng.permutation(np.flatnonzero(g.type.to_numpy()[1:] == t) + 1)) for t in TYPES}
        chosen = [0]
        quota["safe"] -= 1
        for t in TYPES:
            take = max(quota[t], 0)
            chosen += pools[t][:take]
            pools[t] = pools[t][take:]
        rest = [i for t in TYPES for i in pools[t]]  # a type short of its quota is filled from the others
        chosen += rest[: max(0, n - len(chosen))]
        out = g.iloc[chosen[:n]].reset_index(drop=True)
        out.insert(1, "variant", np.arange(len(out)))
        return out[CANDIDATE_COLUMNS]

    def generate_many(self, merchant_ids: list[str] | np.ndarray, at: pd.Timestamp | str, n: int = 50) -> pd.DataFrame:
        """:meth:`generate` for several merchants, stacked."""
        frames = [self.generate(str(m), at, n) for m in merchant_ids]
        if not frames:
            return pd.DataFrame(columns=CANDIDATE_COLUMNS)
        return pd.concat(frames, ignore_index=True)


def current_deals(merchants: pd.DataFrame, merchant_ids: list[str]) -> pd.DataFrame:
    """The merchants' current (habitual) deals as candidate rows (variant -1, type ``current``), from a merchants
    table indexed by merchant id (the baseline terms)."""
    m = merchants.loc[list(merchant_ids)]
    return pd.DataFrame(
        {
            "merchant_id": np.asarray(merchant_ids, dtype=object), "variant": -1,
            "discount_pct": m.baseline_discount_pct.astype(float).to_numpy(),
            "price": m.baseline_price.astype(float).to_numpy(),
            "duration_days": m.baseline_duration_days.astype(int).to_numpy(),
            "category_id": m.category_id.astype(str).to_numpy(), "focus": "primary", "type": "current", "distance": 0.0,
        }
    )  # fmt: skip
