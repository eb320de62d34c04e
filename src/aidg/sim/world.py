"""A simulated marketplace: public tables (DESIGN §2) plus the hidden truth behind them."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from aidg.progress import Progress, no_progress
from aidg.sim.catalog import CATEGORIES, CATEGORY_PRICE, CATEGORY_WEIGHTS
from aidg.sim.geo import city_regions, competition_counts, extra_locations, make_cities, place_merchants
from aidg.sim.history import HABIT_FIELD, HABIT_WEIGHTS, HABITS, RepTraits, simulate_history
from aidg.sim.latent import draw_merchant_latent
from aidg.sim.reps import TrustConfig
from aidg.sim.response import CategoryContext, MerchantContext, respond
from aidg.sim.scales import Scale, get_scale
from aidg.sim.text import render_notes

AS_OF = pd.Timestamp("2026-01-01")  # the world's "now": history ends here
SIM_VERSION = "1"
TRUTH_DIR = "truth"



@dataclass
class World:
    """Public tables (what a marketplace would feed AIDG) and the simulator's hidden truth.

    ``truth`` holds per-entity latent traits (``merchants``, ``reps``,
    ``categories``), the region of every city (``cities``) and the sentiment
    labels of every note; models never see it, the oracle and evaluations do.
    """

    tables: dict[str, pd.DataFrame]
    truth: dict[str, pd.DataFrame]
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(str(self.meta["as_of"]))


def simulate(
    scale: str | Scale = "small", seed: int = 0, progress: Progress = no_progress, rep_trust: TrustConfig | None = None
) -> World:
    """Build a world, deterministically from ``seed``; ``rep_trust`` configures reps with memory
    (:mod:`aidg.sim.reps`; default on, :meth:`TrustConfig.off` for reps without memory). The tables never depend
    on it: trust only moves once AIDG's suggestions are seen.

    >>> w = simulate("tiny", seed=1)
    >>> sorted(w.tables)[:3], len(w.tables["merchants"])
    (['categories', 'cities', 'deals'], 150)
    """
    sc = get_scale(scale) if isinstance(scale, str) else scale
    rng = np.random.default_rng(seed)
    epoch = AS_OF - pd.Timedelta(days=sc.history_days + 2000)
    asof_day = (AS_OF - epoch).days
    progress("world", 0.0)

    # categories and their seasonality
    n_cat = len(CATEGORIES)
    categories = pd.DataFrame(
        {
            "category_id": [c[0] for c in CATEGORIES],
            "name": [c[1] for c in CATEGORIES],
            "is_high_risk": [c[2] for c in CATEGORIES],
        }
    )
    related = np.array([categories.index[categories.category_id == c[3]][0] for c in CATEGORIES])
    cat_truth = pd.DataFrame(
        {
            "category_id": categories.category_id,
            "season_amplitude": rng.uniform(0.05, 0.35, n_cat),
            "season_peak_doy": rng.uniform(0, 365, n_cat),
        }
    )
    cats = CategoryContext(cat_truth.season_amplitude.to_numpy(), cat_truth.season_peak_doy.to_numpy())

    # cities, merchants, locations, competition
    cities = make_cities(rng, sc.n_cities)
    n = sc.n_merchants
    w = np.array(CATEGORY_WEIGHTS) / sum(CATEGORY_WEIGHTS)
    pcat = rng.choice(n_cat, size=n, p=w)
    safe = np.flatnonzero(~categories.is_high_risk.to_numpy())
    scat = np.where(rng.random(n) < 0.8, related[pcat], rng.choice(safe, n))
    scat = np.where(scat == pcat, related[pcat], scat)
    city, lat, lon = place_merchants(rng, cities, n)
    progress("world", 0.2)
    latent = draw_merchant_latent(rng, n, np.array(CATEGORY_PRICE, dtype=float), pcat)
    city_demand = cities.demand_index.to_numpy()[city]
    latent["capacity"] = latent["capacity"] * city_demand
    comp_p = competition_counts(lat, lon, pcat, pcat, n_cat)
    comp_s = competition_counts(lat, lon, pcat, scat, n_cat)
    mood0 = np.clip(rng.normal(0.1, 0.3, n), -1, 1)
    m = MerchantContext(
        list_price=latent.list_price.to_numpy(),
        quality=latent.quality.to_numpy(),
        elasticity=latent.elasticity.to_numpy(),
        preferred_size=latent.preferred_size.to_numpy(),
        distrust=latent.distrust.to_numpy(),
        capacity=latent.capacity.to_numpy(),
        base_demand=latent.base_demand.to_numpy(),
        decay_days=latent.decay_days.to_numpy(),
        urgency=latent.urgency.to_numpy(),
        secondary_fit=latent.secondary_fit.to_numpy(),
        preferred_discount=latent.preferred_discount.to_numpy(),
        refund_risk=latent.refund_risk.to_numpy(),
        take_rate=latent.take_rate.to_numpy(),
        season_mult=latent.season_mult.to_numpy(),
        city_demand=city_demand,
        primary_cat=pcat,
        secondary_cat=scat,
        comp_primary=comp_p,
        comp_secondary=comp_s,
        mood=mood0,
    )

    # reps: at least one per city where possible, the rest where the merchants are
    n_reps = sc.n_reps
    merchants_per_city = np.bincount(city, minlength=len(cities)).astype(float)
    first = np.arange(min(n_reps, len(cities)))
    rest = rng.choice(len(cities), size=n_reps - len(first), p=merchants_per_city / merchants_per_city.sum())
    rep_city = np.concatenate([first, rest])
    rep_traits = RepTraits(
        habit=rng.choice(len(HABITS), size=n_reps, p=np.array(HABIT_WEIGHTS) / sum(HABIT_WEIGHTS)),
        magnitude=rng.uniform(0.05, 0.15, n_reps),
        override_rate=rng.beta(2, 5, n_reps),
    )
    merchant_rep = np.empty(n, dtype=np.int64)
    for c in np.unique(city):
        here = np.flatnonzero(city == c)
        pool = np.flatnonzero(rep_city == c)
        if len(pool) == 0:
            pool = np.arange(n_reps)
        merchant_rep[here] = rng.choice(pool, size=len(here))

    # habitual (baseline) deal and its expected GP30 over the year
    base_d = np.clip(np.round((m.preferred_discount + rng.normal(0, 0.05, n)) / 0.05) * 0.05, 0.05, 0.7)
    base = {"discount": np.round(base_d, 2), "price": np.round(m.list_price, 2), "duration": np.full(n, 30)}
    months = np.arange(15, 365, 30.4)[None, :]
    mc = m.column()
    base_gp30 = respond(
        mc, cats, base["discount"][:, None], base["price"][:, None], np.full((1, 1), 30.0), pcat[:, None], months
    ).gp30.mean(axis=1)
    created_day = asof_day - rng.uniform(90, sc.history_days + 1500, n)
    start_day = np.maximum(created_day, asof_day - sc.history_days)
    n_props = np.clip(rng.poisson(sc.proposals_per_merchant - 2, n) + 2, 2, 80)
    progress("history", 0.3)
    hist = simulate_history(rng, m, cats, rep_traits, merchant_rep, n_reps, start_day, asof_day, n_props, base, epoch)
    progress("notes", 0.8)

    merchant_ids = np.array([f"m-{i:06d}" for i in range(n)], dtype=object)
    rep_ids = np.array([f"rep-{i:04d}" for i in range(n_reps)], dtype=object)
    cat_ids = categories.category_id.to_numpy(dtype=object)
    city_ids = cities.city_id.to_numpy(dtype=object)

    merchants = pd.DataFrame(
        {
            "merchant_id": merchant_ids,
            "category_id": cat_ids[pcat],
            "secondary_category_id": cat_ids[scat],
            "city_id": city_ids[city],
            "rep_id": rep_ids[merchant_rep],
            "lat": lat,
            "lon": lon,
            "created_at": (epoch + pd.to_timedelta(np.round(created_day), unit="D")).astype("datetime64[us]"),
            "list_price": m.list_price,
            "baseline_discount_pct": base["discount"],
            "baseline_price": base["price"],
            "baseline_duration_days": base["duration"].astype(np.int64),
            "baseline_gp30": np.round(base_gp30, 2),
            "consent_personalization": rng.random(n) < 0.95,
            "consent_training": rng.random(n) < 0.97,
        }
    )
    reps = pd.DataFrame(
        {
            "rep_id": rep_ids,
            "city_id": city_ids[rep_city],
            "hired_at": (epoch + pd.to_timedelta(rng.integers(0, 1500, n_reps), unit="D")).astype("datetime64[us]"),
        }
    )
    tables = _name_history(hist, merchant_ids, rep_ids, cat_ids, categories, rng)
    # regions and multi-location merchants draw from their own generator: the tables above stay as they were
    region_truth = city_regions(cities)
    locations = _merchant_locations(
        np.random.default_rng([seed, 1]), cities, region_truth.region.to_numpy(), city, merchant_ids, city_ids
    )
    tables = {
        "cities": cities,
        "categories": categories,
        "merchants": merchants,
        "merchant_locations": locations,
        "reps": reps,
    } | tables

    latent.insert(0, "merchant_id", merchant_ids)
    latent["secondary_category_id"] = cat_ids[scat]
    latent["city_demand"] = city_demand
    latent["competition_primary"] = comp_p
    latent["competition_secondary"] = comp_s
    latent["mood_initial"] = mood0
    latent["mood_now"] = hist["_mood"]["mood"].to_numpy()
    rep_truth = pd.DataFrame(
        {
            "rep_id": rep_ids,
            "habit": np.array(HABITS, dtype=object)[rep_traits.habit],
            "habit_field": [HABIT_FIELD[HABITS[h]] for h in rep_traits.habit],
            "magnitude": rep_traits.magnitude,
            "override_rate": rep_traits.override_rate,
        }
    )
    notes = tables.pop("_note_truth")
    meta: dict[str, object] = {"scale": sc.name, "seed": seed, "as_of": str(AS_OF.date()), "sim_version": SIM_VERSION,
                               "rep_trust": (rep_trust or TrustConfig()).to_meta()}  # fmt: skip
    progress("done", 1.0)
    return World(
        tables=tables,
        truth={
            "merchants": latent,
            "reps": rep_truth,
            "categories": cat_truth,
            "cities": region_truth,
            "notes": notes,
        },
        meta=meta,
    )


def _merchant_locations(
    rng: np.random.Generator,
    cities: pd.DataFrame,
    region: np.ndarray,
    city: np.ndarray,
    merchant_ids: np.ndarray,
    city_ids: np.ndarray,
) -> pd.DataFrame:
    """Every merchant's primary city plus the extra cities of multi-location merchants, merchant by merchant."""
    em, ec = extra_locations(rng, cities, region, city)
    n = len(city)
    m = np.concatenate([np.arange(n), em])
    c = np.concatenate([np.asarray(city, dtype=np.int64), ec])
    primary = np.concatenate([np.ones(n, dtype=bool), np.zeros(len(em), dtype=bool)])
    order = np.lexsort((np.arange(len(m)), m))  # per merchant: primary first, then extras as drawn
    m, c, primary = m[order], c[order], primary[order]
    return pd.DataFrame(
        {
            "location_id": np.array([f"loc-{i:07d}" for i in range(len(m))], dtype=object),
            "merchant_id": merchant_ids[m],
            "city_id": city_ids[c],
            "is_primary": primary,
        }
    )


def _name_history(
    hist: dict[str, pd.DataFrame],
    merchant_ids: np.ndarray,
    rep_ids: np.ndarray,
    cat_ids: np.ndarray,
    categories: pd.DataFrame,
    rng: np.random.Generator,
) -> dict[str, pd.DataFrame]:
    """Give the index-coded history its public ids, names and note texts."""
    P, D, Ov, N = hist["proposals"], hist["deals"], hist["overrides"], hist["notes"]
    pid = np.array([f"p-{i:07d}" for i in range(len(P))], dtype=object)
    did = np.array([f"d-{i:07d}" for i in range(len(D))], dtype=object)

    def maybe(ids: np.ndarray, idx: np.ndarray) -> pd.Series:
        idx = np.asarray(idx, dtype=np.int64)
        return pd.Series(np.where(idx >= 0, ids[np.maximum(idx, 0)], None), dtype=object)

    proposals = pd.DataFrame(
        {
            "proposal_id": pid,
            "merchant_id": merchant_ids[P.m],
            "rep_id": rep_ids[P.rep],
            "at": P["at"],
            "category_id": cat_ids[P.cat],
            "discount_pct": P.discount_pct,
            "price": P.price,
            "duration_days": P.duration_days,
            "approved": P.approved,
            "approved_at": P.approved_at,
            "deal_id": maybe(did, P.deal_num.to_numpy()),
        }
    )
    deals = pd.DataFrame(
        {
            "deal_id": did,
            "merchant_id": merchant_ids[D.m],
            "rep_id": rep_ids[D.rep],
            "category_id": cat_ids[D.cat],
            "started_at": D.started_at,
            "discount_pct": D.discount_pct,
            "price": D.price,
            "duration_days": D.duration_days,
            "units_sold": D.units_sold,
            "redemption_rate": D.redemption_rate,
            "conversion_proxy": D.conversion_proxy,
            "gp30": D.gp30,
            "gp30_uplift": D.gp30_uplift,
            "gp30_known_at": D.gp30_known_at,
            "proposal_id": pid[D.proposal_num],
        }
    )
    habit = Ov["habit"].to_numpy(np.int64)
    is_cat = habit == 6

    def fmt(v: np.ndarray) -> list[str]:
        return [cat_ids[int(x)] if c else f"{x:g}" for x, c in zip(v, is_cat, strict=True)]

    overrides = pd.DataFrame(
        {
            "override_id": [f"o-{i:07d}" for i in range(len(Ov))],
            "deal_id": maybe(did, Ov.deal_num.to_numpy()),
            "decision_id": pd.Series([None] * len(Ov), dtype=object),
            "proposal_id": pid[Ov.proposal_num.to_numpy(np.int64)],
            "rep_id": rep_ids[Ov.rep.to_numpy(np.int64)],
            "field": [HABIT_FIELD[HABITS[h]] for h in habit],
            "old_value": fmt(Ov.old.to_numpy(float)),
            "new_value": fmt(Ov.new.to_numpy(float)),
            "delta": np.where(is_cat, 1.0, np.round(Ov.new.to_numpy(float) - Ov.old.to_numpy(float), 4)),
            "override_type": np.array(HABITS, dtype=object)[habit],
            "at": Ov["at"],
        }
    )
    cat_names = categories.name.str.lower().to_numpy(dtype=object)
    texts, tids, held = render_notes(
        rng,
        N.theme.to_numpy(int),
        N.intensity.to_numpy(float),
        N.d.to_numpy(float),
        N.dur.to_numpy(int),
        cat_names[N.cat.to_numpy(int)],
    )
    from aidg.sim.text import THEMES

    sentiment = np.array([THEMES[t][0] for t in N.theme_name], dtype=object)
    labelled = rng.random(len(N)) < 0.7
    nid = np.array([f"n-{i:07d}" for i in range(len(N))], dtype=object)
    rep_idx = N.rep.to_numpy(np.int64)
    notes = pd.DataFrame(
        {
            "note_id": nid,
            "merchant_id": merchant_ids[N.m.to_numpy(np.int64)],
            "rep_id": maybe(rep_ids, rep_idx),
            "author": np.where(rep_idx >= 0, "mm", "merchant"),
            "text": texts,
            "at": N["at"],
            "deal_id": maybe(did, N.deal_num.to_numpy()),
            "sentiment": pd.Series(sentiment, dtype=object).where(labelled, None),
            "intensity": np.where(labelled, np.round(N.intensity.to_numpy(float), 3), np.nan),
            "template_id": tids,
            "template_heldout": held,
        }
    )
    note_truth = pd.DataFrame(
        {
            "note_id": nid,
            "theme": N.theme_name.to_numpy(dtype=object),
            "sentiment": sentiment,
            "intensity": N.intensity.to_numpy(float),
        }
    )
    return {
        "proposals": proposals,
        "deals": deals,
        "overrides": overrides,
        "feedback_notes": notes,
        "_note_truth": note_truth,
    }
