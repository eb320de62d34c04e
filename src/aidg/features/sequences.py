"""Sequence features, point-in-time correct: deal history, override steps, and chronological events.

Each builder takes queries ``(merchant code, cutoff seconds)`` and returns a
:class:`SeqBatch` holding only what was known before each cutoff: a deal's
redemption and GP30 uplift appear only once ``gp30_known_at`` has passed, its
conversion proxy three days after its start, a proposal's answer once it came.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidg.features.context import DAY, OVERRIDE_FIELDS, OVERRIDE_TYPES, UPLIFT_CLIP, FeatureContext, log_price
from aidg.features.panel import gather

OVERRIDE_STEP_DIM = 64  # memo §1.1: override steps of 64 features


@dataclass
class SeqBatch:
    """A padded batch of sequences: ``x`` (Q, L, F) float32, ``mask`` (Q, L) True where an event is."""

    x: np.ndarray
    mask: np.ndarray
    age_days: np.ndarray  # (Q, L) days between the event and the cutoff (0 on padding)


def deal_feature_names(ctx: FeatureContext) -> list[str]:
    return [
        "discount",
        *[f"category={c}" for c in ctx.category_ids],
        "log_price",
        "log_price_x_list",
        "duration",
        "redemption_rate",
        "gp30_uplift",
        "outcome_known",
        "conversion_proxy",
        "age_years",
    ]


def deal_sequences(ctx: FeatureContext, q_m: np.ndarray, q_t: np.ndarray, length: int = 50) -> SeqBatch:
    """The ``length`` latest deals before each cutoff (memo: 50): discount, 20-d category, log price, …

    Features per deal (see :func:`deal_feature_names`): discount (0–1), category
    one-hot, log-normalised price, log of price ÷ list price, duration ÷ 60,
    redemption rate and GP30 uplift (0 until known), a known flag, the 3-day
    conversion proxy (0 until known), age in years.
    """
    d = ctx.deals
    s = ctx.deal_stream
    idx = s.last_before(q_m, q_t, length)
    rows = np.where(idx >= 0, s.order[np.maximum(idx, 0)], -1)
    static = np.column_stack(
        [
            d.discount_pct.to_numpy(float),
            ctx.one_hot(d.c.to_numpy()),
            log_price(d.price.to_numpy(float)),
            d.log_size.to_numpy(float),
            d.duration_days.to_numpy(float) / 60.0,
        ]
    ).astype(np.float32)
    x_static = gather(static, rows)
    t_known = gather(d.t_known.to_numpy()[:, None], rows)[..., 0]
    t_conv = gather(d.t_conv.to_numpy()[:, None], rows)[..., 0]
    t_start = gather(d.t.to_numpy()[:, None], rows)[..., 0]
    known = (t_known < q_t[:, None]) & (rows >= 0)
    conv_known = (t_conv < q_t[:, None]) & (rows >= 0)
    redemption = np.nan_to_num(gather(d.redemption_rate.to_numpy(float)[:, None], rows)[..., 0])
    uplift = np.clip(np.nan_to_num(gather(d.gp30_uplift.to_numpy(float)[:, None], rows)[..., 0]), *UPLIFT_CLIP)
    conv = np.nan_to_num(gather(d.conversion_proxy.to_numpy(float)[:, None], rows)[..., 0])
    age = np.where(rows >= 0, (q_t[:, None] - t_start) / DAY, 0.0)
    dyn = np.stack([redemption * known, uplift * known, known.astype(float), conv * conv_known, age / 365.0], -1)
    x = np.concatenate([x_static, dyn.astype(np.float32)], axis=-1)
    return SeqBatch(x=x, mask=rows >= 0, age_days=age.astype(np.float32))


def term_features(
    ctx: FeatureContext,
    discount: np.ndarray,
    price: np.ndarray,
    duration: np.ndarray,
    category_code: np.ndarray,
    log_size: np.ndarray,
) -> np.ndarray:
    """Features of candidate deal terms: discount, log price, log price ÷ list, duration ÷ 60, category one-hot."""
    return np.column_stack(
        [
            discount,
            log_price(price),
            log_size,
            np.asarray(duration, dtype=float) / 60.0,
            ctx.one_hot(category_code),
        ]
    ).astype(np.float32)


def terms_of(ctx: FeatureContext, frame: pd.DataFrame) -> np.ndarray:
    """:func:`term_features` of a deals- or proposals-shaped frame (coded by :class:`FeatureContext`)."""
    return term_features(
        ctx,
        frame.discount_pct.to_numpy(float),
        frame.price.to_numpy(float),
        frame.duration_days.to_numpy(float),
        frame.c.to_numpy(),
        frame.log_size.to_numpy(float),
    )


def override_feature_names(ctx: FeatureContext) -> list[str]:
    names = ["discount", "log_price", "duration", *[f"category={c}" for c in ctx.category_ids]]
    names += [f"override={t}" for t in OVERRIDE_TYPES] + [f"field={f}" for f in OVERRIDE_FIELDS]
    names += ["delta", "approved", "gp30_uplift", "outcome_known", "by_account_rep", "same_rep_as_previous"]
    names += [f"rep_habit={t}" for t in OVERRIDE_TYPES] + ["rep_overrides_log", "days_since_previous", "age_years"]
    return names + [f"reserved_{i}" for i in range(OVERRIDE_STEP_DIM - len(names))]


def override_sequences(ctx: FeatureContext, q_m: np.ndarray, q_t: np.ndarray, length: int = 32) -> SeqBatch:
    """The latest override steps before each cutoff, 64 features each (memo: deal params → override type → outcome).

    A step: the edited terms (discount, log price, duration, category), the
    override type and field one-hot and the signed size of the edit, the outcome
    (approved; the deal's GP30 uplift once known), whether the account rep made
    it and whether the same rep made the previous one, that rep's own mix of
    override types before the step, and timing; zero-padded to 64.
    """
    o = ctx.overrides
    s = ctx.override_stream
    idx = s.last_before(q_m, q_t, length)
    rows = np.where(idx >= 0, s.order[np.maximum(idx, 0)], -1)
    n_types, n_fields = len(OVERRIDE_TYPES), len(OVERRIDE_FIELDS)
    type_code, field_code = o["type"].to_numpy(np.int64), o["field"].to_numpy(np.int64)
    type_oh = (type_code[:, None] == np.arange(n_types)[None, :]).astype(np.float32)
    field_oh = (field_code[:, None] == np.arange(n_fields)[None, :]).astype(np.float32)
    prev = o[[f"rep_prev_{i}" for i in range(n_types)]].to_numpy(float)
    total = prev.sum(1, keepdims=True)
    habit = np.where(total > 0, prev / np.maximum(total, 1), 0.0)
    by_deal = ctx.deals.set_index("deal_id")
    deal_uplift = by_deal.gp30_uplift.reindex(o.deal_id).to_numpy(float)
    deal_known = by_deal.t_known.reindex(o.deal_id).to_numpy(float)
    static = np.column_stack(
        [
            o.discount.to_numpy(float),
            o.log_price.to_numpy(float),
            o.duration.to_numpy(float),
            ctx.one_hot(o.c.to_numpy(np.int64)),
            type_oh,
            field_oh,
            o.delta.to_numpy(float),
            o.approved.to_numpy(float),
        ]
    ).astype(np.float32)
    static = np.nan_to_num(static)
    x_static = gather(static, rows)
    up = np.clip(np.nan_to_num(gather(np.asarray(deal_uplift, dtype=float)[:, None], rows)[..., 0]), *UPLIFT_CLIP)
    t_known = gather(np.nan_to_num(np.asarray(deal_known, dtype=float), nan=np.inf)[:, None], rows)[..., 0]
    known = (t_known < q_t[:, None]) & (rows >= 0)
    t_step = gather(o.t.to_numpy(np.int64)[:, None], rows)[..., 0]
    rep_ids = o.rep_id.to_numpy(dtype=object)
    reps = np.where(rows >= 0, rep_ids[np.maximum(rows, 0)] if len(o) else "", "")
    same = np.zeros(rows.shape, dtype=np.float32)
    same[:, 1:] = (reps[:, 1:] == reps[:, :-1]) & (rows[:, :-1] >= 0)
    account = gather(o.is_account_rep.to_numpy(float)[:, None], rows)[..., 0]
    hab = gather(habit.astype(np.float32), rows)
    n_prev = gather(np.log1p(total).astype(np.float32) / 5.0, rows)[..., 0]
    gap = np.zeros(rows.shape)
    gap[:, 1:] = np.where(rows[:, :-1] >= 0, (t_step[:, 1:] - t_step[:, :-1]) / DAY / 90.0, 0.0)
    age = np.where(rows >= 0, (q_t[:, None] - t_step) / DAY, 0.0)
    dyn = np.concatenate(
        [
            np.stack([up * known, known.astype(float), account, same], -1),
            hab,
            n_prev[..., None],
            np.stack([gap, age / 365.0], -1),
        ],
        axis=-1,
    )
    x = np.concatenate([x_static, dyn.astype(np.float32)], axis=-1)
    if x.shape[-1] > OVERRIDE_STEP_DIM:
        raise ValueError(f"{x.shape[-1]} override features exceed the {OVERRIDE_STEP_DIM}-d step (too many categories)")
    x = np.concatenate([x, np.zeros((*x.shape[:2], OVERRIDE_STEP_DIM - x.shape[-1]), np.float32)], -1)
    x[rows < 0] = 0
    return SeqBatch(x=x.astype(np.float32), mask=rows >= 0, age_days=age.astype(np.float32))


EVENT_KINDS = ["proposal", "outcome", "conversion", "override"]


def event_sequences(ctx: FeatureContext, q_m: np.ndarray, q_t: np.ndarray, length: int = 48) -> SeqBatch:
    """Chronological deal/override events before each cutoff, for the sequence branch.

    Events, each at the moment it became known: a proposal's answer (its terms,
    approved or not, whether a rep edited it), a deal's 3-day conversion proxy,
    a deal's GP30 outcome (uplift, redemption), and an override (its type). One
    row per event: kind one-hot, terms, category one-hot, values; ``age_days``
    carries recency for the positional encoding.
    """
    parts = _event_table(ctx)
    m, t, feats = parts
    from aidg.features.panel import EventStream

    stream = EventStream(m, t)
    idx = stream.last_before(q_m, q_t, length)
    rows = np.where(idx >= 0, stream.order[np.maximum(idx, 0)], -1)
    x = gather(feats, rows)
    tt = gather(t[:, None], rows)[..., 0]
    age = np.where(rows >= 0, (q_t[:, None] - tt) / DAY, 0.0)
    return SeqBatch(x=x, mask=rows >= 0, age_days=age.astype(np.float32))


def event_feature_dim(ctx: FeatureContext) -> int:
    return len(EVENT_KINDS) + 5 + ctx.n_categories + 4 + len(OVERRIDE_TYPES)


def _event_table(ctx: FeatureContext) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cached = getattr(ctx, "_events_cache", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    k, c = len(EVENT_KINDS), ctx.n_categories
    dim = event_feature_dim(ctx)
    blocks_m, blocks_t, blocks_x = [], [], []
    p = ctx.proposals
    if len(p):
        x = np.zeros((len(p), dim), np.float32)
        x[:, 0] = 1
        x[:, k : k + 5] = np.column_stack(
            [
                p.discount_pct.to_numpy(float),
                log_price(p.price.to_numpy(float)),
                p.log_size.to_numpy(float),
                p.duration_days.to_numpy(float) / 60,
                p.approved.astype(float).to_numpy(),
            ]
        )
        x[:, k + 5 : k + 5 + c] = ctx.one_hot(p.c.to_numpy())
        blocks_m.append(p.m.to_numpy(np.int64))
        blocks_t.append(p.t_known.to_numpy(np.int64))
        blocks_x.append(x)
    d = ctx.deals
    for kind, tcol in ((1, "t_known"), (2, "t_conv")):
        x = np.zeros((len(d), dim), np.float32)
        x[:, kind] = 1
        x[:, k : k + 4] = np.column_stack(
            [
                d.discount_pct.to_numpy(float),
                log_price(d.price.to_numpy(float)),
                d.log_size.to_numpy(float),
                d.duration_days.to_numpy(float) / 60,
            ]
        )
        x[:, k + 5 : k + 5 + c] = ctx.one_hot(d.c.to_numpy())
        if kind == 1:
            x[:, k + 5 + c] = np.clip(np.nan_to_num(d.gp30_uplift.to_numpy(float)), *UPLIFT_CLIP)
            x[:, k + 5 + c + 1] = np.nan_to_num(d.redemption_rate.to_numpy(float))
            x[:, k + 5 + c + 2] = np.log1p(np.nan_to_num(d.units_sold.astype(float).to_numpy())) / 5
        else:
            x[:, k + 5 + c + 3] = np.nan_to_num(d.conversion_proxy.to_numpy(float))
        ok = ~np.isnan(d.gp30_uplift.to_numpy(float)) if kind == 1 else ~np.isnan(d.conversion_proxy.to_numpy(float))
        blocks_m.append(d.m.to_numpy(np.int64)[ok])
        blocks_t.append(d[tcol].to_numpy(np.int64)[ok])
        blocks_x.append(x[ok])
    o = ctx.overrides
    if len(o):
        x = np.zeros((len(o), dim), np.float32)
        x[:, 3] = 1
        ok = o["type"].to_numpy() >= 0
        x[np.flatnonzero(ok), k + 5 + c + 4 + o["type"].to_numpy()[ok]] = 1
        x[:, k : k + 1] = np.nan_to_num(o.discount.to_numpy(float))[:, None]
        blocks_m.append(o.m.to_numpy(np.int64))
        blocks_t.append(o.t.to_numpy(np.int64))
        blocks_x.append(x)
    if not blocks_m:
        out = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, dim), np.float32))
    else:
        out = (np.concatenate(blocks_m), np.concatenate(blocks_t), np.concatenate(blocks_x))
    object.__setattr__(ctx, "_events_cache", out)
    return out
