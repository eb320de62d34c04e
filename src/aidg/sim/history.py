"""The pre-AIDG timeline: legacy proposals, rep overrides, approvals, deals, outcomes, notes.

Simulated step by step (step k = every merchant's k-th proposal, vectorized
across merchants) so that causal state carries over: a merchant's mood follows
its realized outcomes and moves its next approval; the legacy system proposes
around the last deal that ran; reps edit proposals by their habit; the outcome
follows the terms that actually ran.

Timeline of one proposal at time t: rep edit and merchant answer within hours
(``approved_at``), the deal starts 1–5 days later, its conversion proxy is
known 3 days after the start and its GP30 30 days after the start. A value not
yet known at the world's as-of date is missing in the tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidg.sim.response import CategoryContext, MerchantContext, override_probability, respond
from aidg.sim.text import THEME_NAMES

HABITS = [
    "discount_up",
    "discount_down",
    "duration_shorter",
    "duration_longer",
    "price_up",
    "price_down",
    "category_switch",
]
HABIT_WEIGHTS = [0.34, 0.10, 0.12, 0.08, 0.12, 0.14, 0.10]
HABIT_FIELD = {
    "discount_up": "discount_pct",
    "discount_down": "discount_pct",
    "duration_shorter": "duration_days",
    "duration_longer": "duration_days",
    "price_up": "price",
    "price_down": "price",
    "category_switch": "category_id",
}
DURATIONS = np.array([7, 14, 21, 30, 45, 60])
OUTCOME_NOISE = 0.3  # lognormal σ of a deal's realized GP30 around its expectation


@dataclass
class RepTraits:
    """Latent override habits of the reps (arrays indexed by rep index)."""

    habit: np.ndarray  # index into HABITS
    magnitude: np.ndarray  # size of the habitual edit
    override_rate: np.ndarray  # base chance of editing a suggestion


def apply_habit(
    habit: np.ndarray,
    magnitude: np.ndarray,
    d: np.ndarray,
    s: np.ndarray,
    dur: np.ndarray,
    cat: np.ndarray,
    primary: np.ndarray,
    secondary: np.ndarray,
    strength: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Terms after a rep's habitual edit (``strength`` 0.5 is the half-nudge of the current system)."""
    h = np.asarray(habit)
    mag = magnitude * strength
    d2 = np.where(h == 0, np.minimum(d + mag, 0.8), np.where(h == 1, np.maximum(d - mag, 0.05), d))
    dur2 = np.where(h == 2, np.maximum(7, dur // 2), np.where(h == 3, np.minimum(90, dur * 2), dur))
    s2 = np.where(h == 4, s * (1 + 2.5 * mag), np.where(h == 5, s / (1 + 2.5 * mag), s))
    cat2 = np.where((h == 6) & (strength >= 1.0), np.where(cat == primary, secondary, primary), cat)
    return np.round(d2, 2), s2, dur2, cat2


def simulate_history(
    rng: np.random.Generator,
    m: MerchantContext,
    cats: CategoryContext,
    reps: RepTraits,
    merchant_rep: np.ndarray,
    n_reps: int,
    start_day: np.ndarray,
    asof_day: int,
    n_props: np.ndarray,
    base: dict[str, np.ndarray],
    epoch: pd.Timestamp,
) -> dict[str, pd.DataFrame]:
    """Generate the history tables (day numbers count from ``epoch``)."""
    n = len(n_props)
    epoch_doy = epoch.day_of_year - 1  # day numbers -> calendar day of year
    kmax = int(n_props.max())
    # proposal times, sorted per merchant, inside [start, as_of - 1]
    u = np.sort(rng.random((n, kmax)), axis=1)
    times = start_day[:, None] + u * (asof_day - 1 - start_day)[:, None]
    mood = m.mood.copy()
    last_d, last_s = base["discount"].copy(), np.ones(n)
    last_dur, last_cat = base["duration"].copy(), m.primary_cat.copy()
    props: list[dict[str, np.ndarray]] = []
    ovs: list[dict[str, np.ndarray]] = []
    notes: list[dict[str, np.ndarray]] = []
    for k in range(kmax):
        act = np.flatnonzero(k < n_props)
        a = len(act)
        mk = m.take(act)
        t = times[act, k]
        # legacy system: mean-revert towards the habitual deal, with noise
        d = np.clip(0.5 * last_d[act] + 0.5 * base["discount"][act] + rng.normal(0, 0.08, a), 0.05, 0.75)
        d = np.round(d, 2)
        s = np.clip(np.exp(0.5 * np.log(last_s[act]) + rng.normal(0, 0.25, a)), 0.4, 2.5)
        dur = np.where(rng.random(a) < 0.6, last_dur[act], rng.choice(DURATIONS, a))
        cat = np.where((rng.random(a) < 0.15) & (mk.secondary_cat >= 0), mk.secondary_cat, mk.primary_cat)
        # who handles it, and do they edit it?
        rep = np.where(rng.random(a) < 0.85, merchant_rep[act], rng.integers(0, n_reps, a))
        p_over = override_probability(reps.override_rate[rep], d, mk.preferred_discount)
        over = rng.random(a) < p_over
        hab = reps.habit[rep]
        d2, s2, dur2, cat2 = apply_habit(
            hab,
            reps.magnitude[rep],
            d,
            s,
            dur,
            cat,
            mk.primary_cat,
            np.where(mk.secondary_cat >= 0, mk.secondary_cat, mk.primary_cat),
        )
        over &= (d2 != d) | (s2 != s) | (dur2 != dur) | (cat2 != cat)  # an edit that changes nothing is none
        fd, fs = np.where(over, d2, d), np.where(over, s2, s)
        fdur, fcat = np.where(over, dur2, dur).astype(int), np.where(over, cat2, cat)
        price = np.round(fs * mk.list_price, 2)
        mk.mood = mood[act]
        doy = (t + epoch_doy) % 365.0
        r_now = respond(mk, cats, fd, price, fdur.astype(float), fcat, doy)
        approved = rng.random(a) < r_now.approval
        start = t + rng.uniform(1, 5, a)
        sdoy = (start + epoch_doy) % 365.0
        r = respond(mk, cats, fd, price, fdur.astype(float), fcat, sdoy)
        rb = respond(
            mk,
            cats,
            base["discount"][act],
            base["price"][act],
            base["duration"][act].astype(float),
            mk.primary_cat,
            sdoy,
        )
        shock = np.exp(rng.normal(-(OUTCOME_NOISE**2) / 2, OUTCOME_NOISE, a))
        gp30 = r.gp30 * shock
        uplift = gp30 / rb.gp30 - 1.0
        units = rng.poisson(np.maximum(r.units * shock, 0))
        redemption = np.clip(rng.normal(0.9 - r.refund_rate - 0.1 * r.saturation, 0.05), 0, 1)
        conv = np.clip(r.conversion * np.exp(rng.normal(0, 0.15, a)), 0, 1)
        props.append(
            dict(
                m=act,
                rep=rep,
                t=t,
                d=fd,
                price=price,
                dur=fdur,
                cat=fcat,
                approved=approved,
                start=start,
                gp30=gp30,
                uplift=uplift,
                units=units,
                redemption=redemption,
                conv=conv,
                sat=r.saturation,
                over=over,
            )
        )
        if over.any():
            i = np.flatnonzero(over)
            old = np.select(
                [hab[i] <= 1, hab[i] <= 3, hab[i] <= 5],
                [d[i], dur[i].astype(float), np.round(s[i] * mk.list_price[i], 2)],
                cat[i].astype(float),
            )
            new = np.select(
                [hab[i] <= 1, hab[i] <= 3, hab[i] <= 5], [fd[i], fdur[i].astype(float), price[i]], fcat[i].astype(float)
            )
            ovs.append(
                dict(
                    k=np.full(len(i), k),
                    m=act[i],
                    rep=rep[i],
                    habit=hab[i],
                    old=old,
                    new=new,
                    t=t[i] + rng.uniform(0.01, 0.1, len(i)),
                )
            )
        # notes: outcome notes by the MM, capacity complaints by merchants, rejection notes
        theme = np.full(a, -1)
        when = np.full(a, np.nan)
        intensity = np.zeros(a)
        author_mm = np.ones(a, dtype=bool)
        good, bad = uplift > 0.1, uplift < -0.15
        out_note = approved & (rng.random(a) < 0.5)
        theme = np.where(out_note, np.where(good, 0, np.where(bad, 1, 2)), theme)
        intensity = np.where(
            out_note,
            np.where(good | bad, np.clip(np.abs(uplift) / 0.6, 0, 1), np.clip(np.abs(uplift) / 0.3, 0, 1)),
            intensity,
        )
        when = np.where(out_note, start + 30 + rng.uniform(0, 5, a), when)
        strain = approved & ~out_note & (r.saturation > 0.85) & (rng.random(a) < 0.6)
        theme = np.where(strain, 3, theme)
        intensity = np.where(strain, np.clip((r.saturation - 0.85) / 0.15, 0, 1), intensity)
        when = np.where(strain, start + rng.uniform(5, 15, a), when)
        author_mm &= ~strain
        happy = approved & ~out_note & ~strain & (uplift > 0.3) & (rng.random(a) < 0.3)
        theme = np.where(happy, 7, theme)
        intensity = np.where(happy, np.clip(uplift / 0.8, 0, 1), intensity)
        when = np.where(happy, start + 30 + rng.uniform(0, 10, a), when)
        author_mm &= ~happy
        rej = ~approved & (rng.random(a) < 0.6)
        gap = fd - mk.preferred_discount
        theme = np.where(rej, np.where(gap > 0.05, 4, np.where(gap < -0.05, 5, 6)), theme)
        intensity = np.where(rej, np.clip(np.abs(gap) / 0.3, 0, 1), intensity)
        when = np.where(rej, t + rng.uniform(0.05, 1.0, a), when)
        keep = (theme >= 0) & (when < asof_day)
        if keep.any():
            i = np.flatnonzero(keep)
            notes.append(
                dict(
                    k=np.full(len(i), k),
                    m=act[i],
                    rep=np.where(author_mm[i], rep[i], -1),
                    theme=theme[i],
                    intensity=intensity[i],
                    t=when[i],
                    d=fd[i],
                    dur=fdur[i],
                    cat=fcat[i],
                    approved=approved[i],
                )
            )
        # state carries over: mood follows outcomes, the legacy system follows the last deal
        mood[act] = np.clip(np.where(approved, 0.7 * mood[act] + 0.3 * np.tanh(2 * uplift), mood[act] - 0.1), -1, 1)
        ra = act[approved]
        last_d[ra], last_s[ra], last_dur[ra], last_cat[ra] = fd[approved], fs[approved], fdur[approved], fcat[approved]
    return _tables(props, ovs, notes, asof_day, epoch) | {"_mood": pd.DataFrame({"mood": mood})}


def _cat(parts: list[dict[str, np.ndarray]], key: str) -> np.ndarray:
    return np.concatenate([p[key] for p in parts]) if parts else np.array([])


def _ts(epoch: pd.Timestamp, days: np.ndarray) -> pd.Series:
    return pd.Series(epoch + pd.to_timedelta(np.round(days * 86400).astype("int64"), unit="s")).astype("datetime64[us]")


def _tables(
    props: list[dict[str, np.ndarray]],
    ovs: list[dict[str, np.ndarray]],
    notes: list[dict[str, np.ndarray]],
    asof_day: int,
    epoch: pd.Timestamp,
) -> dict[str, pd.DataFrame]:
    """Raw (index-coded) history tables; the world gives them ids and names."""
    p = {k: _cat(props, k) for k in props[0]}
    order = np.lexsort((p["m"], p["t"]))
    p = {k: v[order] for k, v in p.items()}
    n = len(order)
    # each (merchant, step) -> proposal row, to link overrides and notes
    step = np.concatenate([np.full(len(x["m"]), i) for i, x in enumerate(props)])[order]
    prop_index = pd.Series(np.arange(n), index=pd.MultiIndex.from_arrays([p["m"], step]))
    approved = p["approved"].astype(bool)
    deal_num = np.full(n, -1)
    deal_num[approved] = np.arange(approved.sum())
    proposals = pd.DataFrame(
        {
            "proposal_num": np.arange(n),
            "m": p["m"],
            "rep": p["rep"],
            "at": _ts(epoch, p["t"]),
            "cat": p["cat"],
            "discount_pct": p["d"],
            "price": p["price"],
            "duration_days": p["dur"].astype(np.int64),
            "approved": approved,
            "approved_at": _ts(epoch, p["t"] + 0.05 + 0.15 * (p["t"] % 1)),
            "deal_num": deal_num,
            "overridden": p["over"].astype(bool),
        }
    )
    a = approved
    gp_known = p["start"][a] + 30 <= asof_day
    conv_known = p["start"][a] + 3 <= asof_day
    deals = pd.DataFrame(
        {
            "deal_num": np.arange(a.sum()),
            "proposal_num": np.flatnonzero(a),
            "m": p["m"][a],
            "rep": p["rep"][a],
            "cat": p["cat"][a],
            "started_at": _ts(epoch, p["start"][a]),
            "discount_pct": p["d"][a],
            "price": p["price"][a],
            "duration_days": p["dur"][a].astype(np.int64),
            "units_sold": pd.Series(p["units"][a], dtype="Int64").where(gp_known),
            "redemption_rate": np.where(gp_known, np.round(p["redemption"][a], 4), np.nan),
            "conversion_proxy": np.where(conv_known, np.round(p["conv"][a], 5), np.nan),
            "gp30": np.where(gp_known, np.round(p["gp30"][a], 2), np.nan),
            "gp30_uplift": np.where(gp_known, np.round(p["uplift"][a], 5), np.nan),
            "gp30_known_at": _ts(epoch, p["start"][a] + 30),
            "saturation": p["sat"][a],
        }
    )
    o = {k: _cat(ovs, k) for k in ovs[0]} if ovs else {}
    if o:
        rows = prop_index.loc[list(zip(o["m"], o["k"], strict=True))].to_numpy()
        overrides = pd.DataFrame(
            {
                "proposal_num": rows,
                "rep": o["rep"],
                "habit": o["habit"],
                "old": o["old"],
                "new": o["new"],
                "at": _ts(epoch, o["t"]),
            }
        )
        overrides["deal_num"] = deal_num[rows]
        overrides = overrides.sort_values("at", kind="stable").reset_index(drop=True)
    else:
        overrides = pd.DataFrame(columns=["proposal_num", "rep", "habit", "old", "new", "at", "deal_num"])
    nt = {k: _cat(notes, k) for k in notes[0]} if notes else {}
    if nt:
        rows = prop_index.loc[list(zip(nt["m"], nt["k"], strict=True))].to_numpy()
        note_df = pd.DataFrame(
            {
                "m": nt["m"],
                "rep": nt["rep"],
                "theme": nt["theme"],
                "intensity": nt["intensity"],
                "at": _ts(epoch, nt["t"]),
                "d": nt["d"],
                "dur": nt["dur"],
                "cat": nt["cat"],
                "deal_num": np.where(nt["approved"].astype(bool), deal_num[rows], -1),
            }
        )
        note_df = note_df.sort_values("at", kind="stable").reset_index(drop=True)
    else:
        note_df = pd.DataFrame(columns=["m", "rep", "theme", "intensity", "at", "d", "dur", "cat", "deal_num"])
    note_df["theme_name"] = np.array(THEME_NAMES, dtype=object)[note_df["theme"].to_numpy(int)] if len(note_df) else []
    return {"proposals": proposals, "deals": deals, "overrides": overrides, "notes": note_df}
