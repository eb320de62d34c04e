"""Latent merchant traits drawn from personality types (never written to the public tables)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from aidg.sim.catalog import PERSONALITIES, PERSONALITY_WEIGHTS

# Per personality: (low, high) of uniform draws, or a fixed value.
_TRAITS: dict[str, dict[str, tuple[float, float]]] = {
    # price elasticity ε, preferred package size s*, deep-discount distrust κ,
    # capacity headroom (capacity ÷ the merchant's 30-day demand at list price), preferred discount,
    # refund risk, sales decay τ (days), urgency u, seasonality multiplier, price tier
    "bargain": dict(
        eps=(2.4, 3.4),
        size=(0.45, 0.75),
        kappa=(2.0, 5.0),
        headroom=(4.0, 12.0),
        dpref=(0.40, 0.60),
        risk=(0.04, 0.12),
        tau=(6, 15),
        urg=(0.3, 1.0),
        seas=(0.6, 1.2),
        tier=(0.5, 0.9),
    ),
    "premium": dict(
        eps=(1.2, 1.7),
        size=(1.5, 2.5),
        kappa=(8.0, 16.0),
        headroom=(1.15, 1.9),
        dpref=(0.10, 0.25),
        risk=(0.01, 0.05),
        tau=(15, 40),
        urg=(0.0, 0.3),
        seas=(0.5, 1.0),
        tier=(1.5, 2.8),
    ),
    "experimental": dict(
        eps=(1.6, 2.6),
        size=(0.6, 1.6),
        kappa=(2.0, 6.0),
        headroom=(1.5, 5.0),
        dpref=(0.20, 0.55),
        risk=(0.03, 0.10),
        tau=(2, 6),
        urg=(1.5, 3.0),
        seas=(0.6, 1.4),
        tier=(0.8, 1.4),
    ),
    "conservative": dict(
        eps=(1.3, 1.9),
        size=(0.8, 1.3),
        kappa=(4.0, 10.0),
        headroom=(1.2, 2.0),
        dpref=(0.10, 0.25),
        risk=(0.02, 0.06),
        tau=(20, 45),
        urg=(0.0, 0.2),
        seas=(0.5, 1.0),
        tier=(0.9, 1.3),
    ),
    "seasonal": dict(
        eps=(1.5, 2.4),
        size=(0.7, 1.4),
        kappa=(3.0, 8.0),
        headroom=(1.5, 4.0),
        dpref=(0.25, 0.45),
        risk=(0.03, 0.08),
        tau=(8, 25),
        urg=(0.2, 0.8),
        seas=(2.0, 3.5),
        tier=(0.8, 1.3),
    ),
}


def draw_merchant_latent(
    rng: np.random.Generator, n: int, category_price: np.ndarray, category_idx: np.ndarray
) -> pd.DataFrame:
    """Draw the hidden traits of ``n`` merchants (one row each, in merchant order)."""
    ptype = rng.choice(len(PERSONALITIES), size=n, p=np.array(PERSONALITY_WEIGHTS) / sum(PERSONALITY_WEIGHTS))
    out: dict[str, np.ndarray] = {"personality": np.array(PERSONALITIES, dtype=object)[ptype]}
    for key in _TRAITS["bargain"]:
        lo = np.array([_TRAITS[p][key][0] for p in PERSONALITIES])[ptype]
        hi = np.array([_TRAITS[p][key][1] for p in PERSONALITIES])[ptype]
        out[key] = rng.uniform(lo, hi)
    quality = np.clip(rng.lognormal(0.0, 0.25, n), 0.4, 2.5)
    base_demand = rng.lognormal(np.log(1.2), 0.5, n)  # list-price units per day
    list_price = category_price[category_idx] * out["tier"] * rng.lognormal(0.0, 0.2, n)
    return pd.DataFrame(
        {
            "personality": out["personality"],
            "list_price": np.round(list_price, 2),
            "quality": quality,
            "elasticity": out["eps"],
            "preferred_size": out["size"],
            "distrust": out["kappa"],
            # capacity = headroom × the merchant's own 30-day demand for a list-price
            # deal; the world multiplies in the city's demand once the city is known
            "capacity": out["headroom"] * base_demand * quality * out["tau"] * (1 - np.exp(-30 / out["tau"])),
            "headroom": out["headroom"],
            "base_demand": base_demand,
            "decay_days": out["tau"],
            "urgency": out["urg"],
            "secondary_fit": np.clip(rng.lognormal(np.log(0.75), 0.3, n), 0.2, 1.6),
            "preferred_discount": out["dpref"],
            "refund_risk": out["risk"],
            "take_rate": rng.uniform(0.30, 0.50, n),
            "season_mult": out["seas"],
        }
    )
