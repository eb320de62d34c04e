"""The merchant–deal bipartite graph (memo §1.1) as tensors, point-in-time correct.

Nodes: every merchant, then every canonical deal configuration
(:func:`aidg.domain.deal_config_keys`). Edges: one per deal started before the
cutoff, merchant → configuration and back. Edge features (memo): **deal
similarity** = exp(−‖z_deal − z̄_merchant‖) with z = (discount ÷ 0.2,
ln(price ÷ list price) ÷ 0.5, duration ÷ 30) and z̄ the merchant's mean over its
deals before the cutoff; **temporal decay** = exp(−age ÷ 180 days). Messages
are weighted by 0.2 + decay. Labels: each edge's GP30 uplift where known
before the cutoff (for training the branch); never a node feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from aidg.domain import DISCOUNT_BUCKET, DURATION_CLASS_EDGES, PRICE_BUCKET_EDGES, deal_config_keys
from aidg.features.context import DAY, UPLIFT_CLIP, FeatureContext, log_price
from aidg.features.panel import to_seconds

DECAY_DAYS = 180.0


@dataclass
class DealGraph:
    x_merchant: torch.Tensor  # (M, F_m)
    x_deal: torch.Tensor  # (C, F_c)
    edge_index: torch.Tensor  # (2, 2E) merchants are 0..M-1, configurations M..M+C-1
    edge_attr: torch.Tensor  # (2E, 2) similarity, decay
    edge_weight: torch.Tensor  # (2E,)
    edge_uplift: torch.Tensor  # (E,) uplift of the merchant→deal edge, NaN when unknown
    edge_merchant: np.ndarray  # (E,) merchant code of each deal edge
    edge_terms: torch.Tensor  # (E, T) the deal's terms (for the edge decoder)
    config_keys: list[str]

    @property
    def n_merchants(self) -> int:
        return int(self.x_merchant.shape[0])


STATIC_NAMES = [
    "log_list_price",
    "list_price_vs_category",
    "habitual_discount",
    "habitual_duration",
    "log_baseline_gp30",
    "log_deal_count",
    "tenure_years",
    "city_demand",
]  # after the category one-hot, in this order


def merchant_static(ctx: FeatureContext, cutoff: int) -> tuple[np.ndarray, list[str]]:
    """Public attributes of each merchant as of the cutoff (also the graph's merchant node features)."""
    m = ctx.tables["merchants"]
    cats = m.category_id.astype(str).map(ctx.category_code).fillna(-1).astype(int).to_numpy()
    lp = m.list_price.astype(float).to_numpy() if "list_price" in m else np.full(len(m), 50.0)
    med = pd.Series(lp).groupby(cats).transform("median").to_numpy()
    cities = ctx.tables.get("cities")
    demand = (
        m.city_id.map(cities.set_index("city_id").demand_index).astype(float).fillna(1.0).to_numpy()
        if cities is not None and "city_id" in m
        else np.ones(len(m))
    )
    n_deals = ctx.deal_stream.count_before(np.arange(len(m)), np.full(len(m), cutoff))
    created = to_seconds(m.created_at) if "created_at" in m else np.full(len(m), cutoff)
    tenure = np.clip((cutoff - created) / DAY / 365.0, 0, 20)

    def col(name: str, default: float) -> np.ndarray:
        return m[name].astype(float).fillna(default).to_numpy() if name in m else np.full(len(m), default)

    x = np.column_stack(
        [
            ctx.one_hot(cats),
            log_price(lp),
            np.log(np.maximum(lp, 1e-3) / np.maximum(med, 1e-3)),
            col("baseline_discount_pct", 0.3),
            col("baseline_duration_days", 30) / 60.0,
            np.log1p(col("baseline_gp30", 0.0)) / 8.0,
            np.log1p(n_deals) / 4.0,
            tenure,
            demand,
        ]
    ).astype(np.float32)
    names = [f"category={c}" for c in ctx.category_ids] + STATIC_NAMES
    return x, names


def build_graph(ctx: FeatureContext, cutoff: int) -> DealGraph:
    """The graph of deals started strictly before ``cutoff`` (seconds)."""
    d = ctx.deals[ctx.deals.t < cutoff].reset_index(drop=True)
    n_m = len(ctx.merchant_ids)
    x_m, _ = merchant_static(ctx, cutoff)
    keys = deal_config_keys(d) if len(d) else pd.Series([], dtype=object)
    codes, uniq = pd.factorize(keys)
    n_c = len(uniq)
    cfg = pd.DataFrame({"k": np.asarray(uniq, dtype=object)})
    parts = cfg.k.str.split("|", expand=True) if n_c else pd.DataFrame(columns=[0, 1, 2, 3])
    cat = parts[0].map(ctx.category_code).fillna(-1).astype(int).to_numpy() if n_c else np.zeros(0, int)
    counts = np.bincount(codes, minlength=n_c) if n_c else np.zeros(0)
    x_c = np.column_stack(
        [
            ctx.one_hot(cat),
            parts[1].str[1:].astype(float).to_numpy() * DISCOUNT_BUCKET if n_c else np.zeros(0),
            parts[2].str[1:].astype(float).to_numpy() / len(PRICE_BUCKET_EDGES) if n_c else np.zeros(0),
            parts[3].str[1:].astype(float).to_numpy() / len(DURATION_CLASS_EDGES) if n_c else np.zeros(0),
            np.log1p(counts) / 6.0,
        ]
    ).astype(np.float32)
    m = d.m.to_numpy(np.int64)
    z = np.column_stack(
        [d.discount_pct.to_numpy(float) / 0.2, d.log_size.to_numpy(float) / 0.5, d.duration_days.to_numpy(float) / 30.0]
    )
    zbar = pd.DataFrame(z).groupby(m).transform("mean").to_numpy() if len(d) else z
    sim = np.exp(-np.linalg.norm(z - zbar, axis=1))
    decay = np.exp(-(cutoff - d.t.to_numpy()) / DAY / DECAY_DAYS)
    attr = np.column_stack([sim, decay]).astype(np.float32)
    src, dst = m, n_m + codes
    known = d.t_known.to_numpy() < cutoff
    uplift = np.where(known, np.clip(d.gp30_uplift.to_numpy(float), *UPLIFT_CLIP), np.nan)
    terms = np.column_stack(
        [
            d.discount_pct.to_numpy(float),
            log_price(d.price.to_numpy(float)),
            d.log_size.to_numpy(float),
            d.duration_days.to_numpy(float) / 60.0,
        ]
    ).astype(np.float32)
    return DealGraph(
        x_merchant=torch.from_numpy(x_m),
        x_deal=torch.from_numpy(x_c.reshape(n_c, -1) if n_c else np.zeros((0, ctx.n_categories + 4), np.float32)),
        edge_index=torch.from_numpy(np.stack([np.concatenate([src, dst]), np.concatenate([dst, src])])),
        edge_attr=torch.from_numpy(np.concatenate([attr, attr])),
        edge_weight=torch.from_numpy(np.concatenate([0.2 + decay, 0.2 + decay]).astype(np.float32)),
        edge_uplift=torch.from_numpy(uplift.astype(np.float32)),
        edge_merchant=m,
        edge_terms=torch.from_numpy(terms),
        config_keys=[str(k) for k in uniq],
    )
