"""The ground-truth oracle: true expected outcomes of any deal terms, for any merchant, at any date.

Only evaluations use it. Models train on the logged tables; the oracle knows
the latent traits behind them (see :mod:`aidg.sim.response` for the formulas).

>>> from aidg.sim.world import simulate
>>> w = simulate("tiny", seed=3)
>>> o = Oracle(w)
>>> ids = w.tables["merchants"].merchant_id[:2]
>>> res = o.evaluate(ids, o.baseline_deal(ids), at="2026-01-15")
>>> list(res.columns)
['expected_gp30', 'expected_uplift', 'approval_prob', 'conversion', 'override_prob', 'override_severity', 'reward']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidg.config import RewardSettings
from aidg.domain import DEAL_TERMS
from aidg.errors import NotFoundError
from aidg.reward import composite_reward
from aidg.sim.history import HABITS, apply_habit
from aidg.sim.reps import RepTrust, TrustConfig, shift_edit_probability
from aidg.sim.response import CategoryContext, MerchantContext, override_probability, respond
from aidg.sim.world import World

TERM_COLUMNS = list(DEAL_TERMS)
MAX_HABIT_MAGNITUDE = 0.15
LATENT_TRAIT_FIELDS = (
    "list_price", "quality", "elasticity", "preferred_size", "distrust", "capacity", "base_demand", "decay_days",
    "urgency", "secondary_fit", "preferred_discount", "refund_risk", "take_rate", "season_mult", "city_demand",
    "comp_primary", "comp_secondary", "mood",
)  # fmt: skip


@dataclass(frozen=True)
class RelativeGrid:
    """Deal terms in merchant-relative coordinates, so one grid fits every merchant.

    ``size`` multiplies the merchant's list price; ``focus`` 0 is the primary
    category, 1 the secondary one.
    """

    discount: np.ndarray
    size: np.ndarray
    duration: np.ndarray
    focus: np.ndarray

    @staticmethod
    def default() -> RelativeGrid:
        """14 discounts (5 %–70 %) × 5 sizes × 4 durations × 2 foci = 560 terms."""
        d, s, t, f = np.meshgrid(
            np.round(np.arange(0.05, 0.701, 0.05), 2),
            [0.5, 0.75, 1.0, 1.5, 2.0],
            [7, 14, 30, 60],
            [0, 1],
            indexing="ij",
        )
        return RelativeGrid(d.ravel(), s.ravel(), t.ravel(), f.ravel())

    def __len__(self) -> int:
        return len(self.discount)


def _day_of_year(at: object) -> float:
    return float(pd.Timestamp(at).day_of_year - 1)  # type: ignore[arg-type]


class Oracle:
    """True expected outcomes in a simulated world (needs the world's truth)."""

    def __init__(self, world: World, reward: RewardSettings | None = None) -> None:
        self.world = world
        self.reward_settings = reward or RewardSettings()
        t = world.truth["merchants"]
        merchants = world.tables["merchants"].set_index("merchant_id").loc[t.merchant_id]
        cat_index = {c: i for i, c in enumerate(world.tables["categories"].category_id)}
        self._cat_ids = world.tables["categories"].category_id.to_numpy(dtype=object)
        self._cat_index = cat_index
        self._row = pd.Series(np.arange(len(t)), index=t.merchant_id.to_numpy())
        self._m = MerchantContext(
            list_price=t.list_price.to_numpy(float),
            quality=t.quality.to_numpy(float),
            elasticity=t.elasticity.to_numpy(float),
            preferred_size=t.preferred_size.to_numpy(float),
            distrust=t.distrust.to_numpy(float),
            capacity=t.capacity.to_numpy(float),
            base_demand=t.base_demand.to_numpy(float),
            decay_days=t.decay_days.to_numpy(float),
            urgency=t.urgency.to_numpy(float),
            secondary_fit=t.secondary_fit.to_numpy(float),
            preferred_discount=t.preferred_discount.to_numpy(float),
            refund_risk=t.refund_risk.to_numpy(float),
            take_rate=t.take_rate.to_numpy(float),
            season_mult=t.season_mult.to_numpy(float),
            city_demand=t.city_demand.to_numpy(float),
            primary_cat=merchants.category_id.map(cat_index).to_numpy(np.int64),
            secondary_cat=merchants.secondary_category_id.map(cat_index).fillna(-1).to_numpy(np.int64),
            comp_primary=t.competition_primary.to_numpy(float),
            comp_secondary=t.competition_secondary.to_numpy(float),
            mood=t.mood_now.to_numpy(float),
        )
        c = world.truth["categories"].set_index("category_id").loc[self._cat_ids]
        self._cats = CategoryContext(c.season_amplitude.to_numpy(float), c.season_peak_doy.to_numpy(float))
        reps = world.truth["reps"].set_index("rep_id")
        rep_of = merchants.rep_id.to_numpy(dtype=object)
        self._rep_rate = reps.override_rate.reindex(rep_of).fillna(0.25).to_numpy(float)
        self._rep_mag = reps.magnitude.reindex(rep_of).fillna(0.1).to_numpy(float)
        self._rep_habit = reps.habit.reindex(rep_of).map({h: i for i, h in enumerate(HABITS)}).fillna(0).to_numpy(int)
        self._base = merchants[["baseline_discount_pct", "baseline_price", "baseline_duration_days"]].to_numpy(float)
        self.rep_ids = reps.index.to_numpy(dtype=object)
        self._rep_index = pd.Series(np.arange(len(reps)), index=self.rep_ids).reindex(rep_of).fillna(-1).to_numpy(int)
        self.trust_config = TrustConfig.from_meta(world.meta)
        self.trust = RepTrust(self.trust_config, len(reps))  # moved by whoever plays AIDG's suggestions to the reps

    # -- lookups ---------------------------------------------------------------------------------
    def rows(self, merchant_ids: Sequence[str] | pd.Series | np.ndarray) -> np.ndarray:
        """Internal row of each merchant id; NotFoundError naming the unknown ones."""
        ids = pd.Index(np.asarray(merchant_ids, dtype=object))
        missing = ids[~ids.isin(self._row.index)]
        if len(missing):
            raise NotFoundError(f"unknown merchant id(s): {', '.join(map(str, missing[:5]))}")
        return np.asarray(self._row.loc[ids].to_numpy(), dtype=np.int64)

    def _terms_arrays(self, rows: np.ndarray, terms: pd.DataFrame) -> tuple[np.ndarray, ...]:
        missing = [c for c in TERM_COLUMNS if c not in terms.columns]
        if missing:
            raise ValueError(f"terms need the columns {TERM_COLUMNS}; missing {missing}")
        if len(terms) != len(rows):
            raise ValueError(f"{len(terms)} terms for {len(rows)} merchants: give one row per merchant")
        cat = terms.category_id.map(self._cat_index)
        if cat.isna().any():
            bad = terms.category_id[cat.isna()].iloc[0]
            raise NotFoundError(f"unknown category_id {bad!r}")
        return (
            terms.discount_pct.to_numpy(float),
            terms.price.to_numpy(float),
            terms.duration_days.to_numpy(float),
            cat.to_numpy(np.int64),
        )

    # -- the oracle API ------------------------------------------------------------------------
    def evaluate(
        self, merchant_ids: Sequence[str] | pd.Series | np.ndarray, terms: pd.DataFrame, at: object
    ) -> pd.DataFrame:
        """True expectations of ``terms`` (one row per merchant id) for deals starting at ``at``.

        Returns one row per input row: expected GP30, uplift over the merchant's
        habitual deal at the same date, approval probability, 3-day conversion,
        the merchant's rep's override probability and severity, and the
        composite reward (memo §2.2 weights from :class:`RewardSettings`).
        """
        rows = self.rows(merchant_ids)
        d, p, dur, cat = self._terms_arrays(rows, terms.reset_index(drop=True))
        doy = _day_of_year(at)
        m = self._m.take(rows)
        r = respond(m, self._cats, d, p, dur, cat, doy)
        b = respond(m, self._cats, self._base[rows, 0], self._base[rows, 1], self._base[rows, 2], m.primary_cat, doy)
        uplift = r.gp30 / b.gp30 - 1.0
        p_over = override_probability(self._rep_rate[rows], d, m.preferred_discount)
        tau = self.rep_trust_of(rows)
        moved = tau != 0.0  # the reps' trust in AIDG now (0 in the legacy era: the legacy chance, bit for bit)
        if self.trust_config.enabled and moved.any():
            p_over = np.where(moved, shift_edit_probability(p_over, tau, self.trust_config), p_over)
        severity = np.clip(self._rep_mag[rows] / MAX_HABIT_MAGNITUDE, 0, 1)
        reward = composite_reward(uplift, r.approval, r.conversion, p_over, severity, self.reward_settings)
        return pd.DataFrame(
            {
                "expected_gp30": r.gp30,
                "expected_uplift": uplift,
                "approval_prob": r.approval,
                "conversion": r.conversion,
                "override_prob": p_over,
                "override_severity": severity,
                "reward": reward,
            }
        )

    def rep_trust(self) -> pd.DataFrame:
        """Each rep's current trust in AIDG (−1 … 1; 0 before AIDG is seen) and the record behind it."""
        t = self.trust
        return pd.DataFrame({"rep_id": self.rep_ids, "trust": t.trust.copy(), "successes": t.successes.copy(),
                             "flops": t.flops.copy()})  # fmt: skip

    def rep_index(self, merchant_ids: Sequence[str] | pd.Series | np.ndarray) -> np.ndarray:
        """Each merchant's rep as an index into :attr:`rep_ids` (−1: no rep)."""
        return np.asarray(self._rep_index[self.rows(merchant_ids)])

    def rep_trust_of(self, rows: np.ndarray) -> np.ndarray:
        rep = self._rep_index[rows]
        return np.where(rep >= 0, self.trust.trust[np.maximum(rep, 0)], 0.0)

    def traits(self, merchant_ids: Sequence[str] | pd.Series | np.ndarray) -> pd.DataFrame:
        """Each merchant's hidden traits as the response model uses them, with its rep's habit: what a perfect
        profile would know (the arena's ``latent_informed`` reference). Never a realised draw's noise."""
        rows = self.rows(merchant_ids)
        m = self._m.take(rows)
        cols = {f: np.asarray(getattr(m, f), float) for f in LATENT_TRAIT_FIELDS}
        return pd.DataFrame(
            {
                **cols,
                "rep_override_rate": self._rep_rate[rows],
                "rep_magnitude": self._rep_mag[rows],
                "primary_cat": m.primary_cat.astype(np.int64),
                "secondary_cat": m.secondary_cat.astype(np.int64),
                "baseline_discount": self._base[rows, 0],
                "baseline_size": self._base[rows, 1] / m.list_price,
                "baseline_duration": self._base[rows, 2],
            }
        )

    def category_index(self, category_ids: pd.Series) -> np.ndarray:
        """Category ids as the response model's indices (-1 where unknown)."""
        return np.asarray(category_ids.map(self._cat_index).fillna(-1).to_numpy(np.int64))

    def baseline_deal(self, merchant_ids: Sequence[str] | pd.Series | np.ndarray) -> pd.DataFrame:
        """Each merchant's habitual deal (the reference of GP30 uplift)."""
        rows = self.rows(merchant_ids)
        return pd.DataFrame(
            {
                "discount_pct": self._base[rows, 0],
                "price": self._base[rows, 1],
                "duration_days": self._base[rows, 2].astype(np.int64),
                "category_id": self._cat_ids[self._m.primary_cat[rows]],
            }
        )

    def current_system_deal(self, merchant_ids: Sequence[str] | pd.Series | np.ndarray, at: object) -> pd.DataFrame:
        """What the current (pre-AIDG) system proposes at ``at``: the last deal, nudged by the rep's habit.

        The last deal is the latest that started before ``at``; a merchant with
        none gets its habitual deal. The rep applies half their habitual edit.
        """
        rows = self.rows(merchant_ids)
        deals = self.world.tables["deals"]
        before = deals[deals.started_at < pd.Timestamp(at)]  # type: ignore[arg-type]
        last = before.sort_values("started_at").groupby("merchant_id").tail(1).set_index("merchant_id")
        ids = np.asarray(merchant_ids, dtype=object)
        base = self.baseline_deal(ids)
        got = last.reindex(ids)
        has = got.deal_id.notna().to_numpy()
        d = np.where(has, got.discount_pct.to_numpy(float), base.discount_pct.to_numpy(float))
        price = np.where(has, got.price.to_numpy(float), base.price.to_numpy(float))
        dur = np.where(has, got.duration_days.to_numpy(float), base.duration_days.to_numpy(float)).astype(np.int64)
        cat = np.where(
            has, got.category_id.map(self._cat_index).fillna(-1).to_numpy(float), self._m.primary_cat[rows]
        ).astype(np.int64)
        cat = np.where(cat < 0, self._m.primary_cat[rows], cat)
        s = price / self._m.list_price[rows]
        sec = np.where(self._m.secondary_cat[rows] >= 0, self._m.secondary_cat[rows], self._m.primary_cat[rows])
        d2, s2, dur2, cat2 = apply_habit(
            self._rep_habit[rows], self._rep_mag[rows], d, s, dur, cat, self._m.primary_cat[rows], sec, strength=0.5
        )
        return pd.DataFrame(
            {
                "discount_pct": d2,
                "price": np.round(s2 * self._m.list_price[rows], 2),
                "duration_days": dur2.astype(np.int64),
                "category_id": self._cat_ids[cat2],
            }
        )

    def grid_gp30(self, rows: np.ndarray, grid: RelativeGrid, at: object) -> np.ndarray:
        """Expected GP30 of every grid term for every merchant row: shape (len(rows), len(grid))."""
        m = self._m.take(rows).column()
        sec = np.where(m.secondary_cat >= 0, m.secondary_cat, m.primary_cat)
        cat = np.where(grid.focus[None, :] == 1, sec, m.primary_cat)
        r = respond(
            m,
            self._cats,
            grid.discount[None, :],
            grid.size[None, :] * m.list_price,
            grid.duration[None, :].astype(float),
            cat,
            _day_of_year(at),
        )
        return np.asarray(r.gp30)

    def best_deal(
        self, merchant_ids: Sequence[str] | pd.Series | np.ndarray, at: object, grid: RelativeGrid | None = None
    ) -> pd.DataFrame:
        """The grid terms of highest expected GP30 for each merchant, with that GP30."""
        g = grid or RelativeGrid.default()
        rows = self.rows(merchant_ids)
        gp = self.grid_gp30(rows, g, at)
        k = gp.argmax(axis=1)
        m = self._m
        sec = np.where(m.secondary_cat[rows] >= 0, m.secondary_cat[rows], m.primary_cat[rows])
        cat = np.where(g.focus[k] == 1, sec, m.primary_cat[rows])
        return pd.DataFrame(
            {
                "discount_pct": g.discount[k],
                "price": np.round(g.size[k] * m.list_price[rows], 2),
                "duration_days": g.duration[k].astype(np.int64),
                "category_id": self._cat_ids[cat],
                "expected_gp30": gp[np.arange(len(rows)), k],
            }
        )
