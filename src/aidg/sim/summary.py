"""Figures that describe a world: table sizes, the merchant–deal graph, how much personalization matters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aidg.domain import DISCOUNT_BUCKET, deal_config_keys
from aidg.sim.oracle import Oracle, RelativeGrid
from aidg.sim.world import World

CHUNK = 4_000


@dataclass(frozen=True)
class GraphSize:
    """The merchant–deal bipartite graph (memo §1.1).

    Nodes: every merchant, plus every canonical deal configuration that ran
    (category × 5-point discount bucket × price bucket × duration class, see
    :func:`aidg.domain.deal_config_keys`). Edges: one per deal that ran, from its
    merchant to its configuration (parallel edges keep each run's date, for
    temporal decay).
    """

    merchant_nodes: int
    deal_nodes: int
    edges: int

    @property
    def nodes(self) -> int:
        return self.merchant_nodes + self.deal_nodes


def graph_size(tables: dict[str, pd.DataFrame]) -> GraphSize:
    deals = tables["deals"]
    return GraphSize(
        merchant_nodes=len(tables["merchants"]), deal_nodes=int(deal_config_keys(deals).nunique()), edges=len(deals)
    )


@dataclass(frozen=True)
class Personalization:
    """How much per-merchant deal terms beat one-size-fits-all terms, by the oracle.

    ``gain`` = mean over merchants of the expected GP30 of each merchant's
    oracle-best terms ÷ the same mean for the single relative terms (discount,
    price as a multiple of list price, duration, primary/secondary focus) that are
    best on average across all merchants, minus 1.
    """

    gain: float
    distinct_best_discount_buckets: int
    best_discount_counts: dict[float, int]
    global_best: dict[str, float]
    mean_best_gp30: float
    mean_global_gp30: float


def personalization(
    world: World, oracle: Oracle | None = None, at: object | None = None, grid: RelativeGrid | None = None
) -> Personalization:
    """Compute :class:`Personalization` over all merchants at ``at`` (default: the world's as-of date)."""
    o = oracle or Oracle(world)
    g = grid or RelativeGrid.default()
    when = world.as_of if at is None else at
    n = len(world.truth["merchants"])
    best = np.empty(n)
    best_k = np.empty(n, dtype=np.int64)
    col_sum = np.zeros(len(g))
    for lo in range(0, n, CHUNK):
        rows = np.arange(lo, min(n, lo + CHUNK))
        gp = o.grid_gp30(rows, g, when)
        best[rows] = gp.max(axis=1)
        best_k[rows] = gp.argmax(axis=1)
        col_sum += gp.sum(axis=0)
    k_global = int(col_sum.argmax())
    mean_global = col_sum[k_global] / n
    buckets = np.round(np.floor(g.discount[best_k] / DISCOUNT_BUCKET + 1e-9) * DISCOUNT_BUCKET, 2)
    values, counts = np.unique(buckets, return_counts=True)
    return Personalization(
        gain=float(best.mean() / mean_global - 1.0),
        distinct_best_discount_buckets=len(values),
        best_discount_counts={float(v): int(c) for v, c in zip(values, counts, strict=True)},
        global_best={
            "discount_pct": float(g.discount[k_global]),
            "price_x_list": float(g.size[k_global]),
            "duration_days": float(g.duration[k_global]),
            "secondary_focus": float(g.focus[k_global]),
        },
        mean_best_gp30=float(best.mean()),
        mean_global_gp30=float(mean_global),
    )
