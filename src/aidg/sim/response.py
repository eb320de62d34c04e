"""The world's response to deal terms: the causal core of the simulator.

Everything here is a pure, vectorized numpy function of a merchant's latent
traits, its context and the deal terms, so the oracle and the history
generator share one definition. Notation (per merchant *m*, deal terms
*d* discount, *p* option price, *D* duration in days, *c* category focus,
date with day-of-year *doy*):

- package size ``s = p / list_price_m``
- season ``S = exp(amp_c · seas_m · cos(2π (doy − peak_c) / 365))``
- fit ``F = 1`` (primary category), ``fit2_m`` (secondary), ``0.3`` (other)
- competition ``K = 1 / (1 + 0.12 · n_c)``, *n_c* same-category merchants within 3 km
- demand rate at list price (list-price units/day) ``λ = D0_m · city_m · q_m · F · K · S``
- price response ``R = (1−d)^(−ε_m) · exp(−κ_m · max(0, d − 0.3)²) · exp(−ω (ln s − ln s*_m)²)``
  (deep discounts sell more; customers distrust very deep ones, premium customers
  most; each merchant's customers have a package size s*_m they buy most, ω = 1.5)
- time profile over the first 30 days, sales decaying with time constant τ_m and
  short deals creating urgency ``T = (1 + u_m · e^(−D/7)) · τ_m · (1 − e^(−min(D,30)/τ_m))``
- uncapped sales ``U = λ · R · T`` (customers spend most on packages near s*);
  capacity ``C = cap_m`` (vouchers the merchant can honour from one deal, in
  list-price units; redemption runs past the selling window)
- sold (list-price units) ``V = C · (1 − e^(−U/C))`` (saturates at capacity)
- revenue ``rev = V · list_price_m · (1 − d)``; refunds ``ρ = r_m · (0.4 + 1.2 d) + 0.02 · max(0, s − 1)``
- **GP30** ``= take_m · rev · (1 − ρ)``: deep discounts sell more but earn less per
  unit and hit capacity, so the best discount is interior and differs by merchant.
- **uplift** ``= GP30 / GP30(habitual deal of m at the same date) − 1``
- **approval** ``= σ(2.2 − 8·|d − dpref_m| − 1.0·|ln s| − 0.8·[c ≠ primary] + 1.2·mood_m)``
- **conversion proxy** (3-day view→purchase rate) ``= 1 − exp(−0.05 · U / (D0_m · T))``:
  it follows demand and price response but ignores capacity and unit margin.
- **override probability** of the handling rep ``= σ(logit ρ_rep + 3·|d − dpref_m|)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

FloatArray = np.ndarray
OTHER_CATEGORY_FIT = 0.3
COMPETITION_WEIGHT = 0.12
SIZE_WEIGHT = 1.5


@dataclass
class MerchantContext:
    """Latent traits and context of merchants, one array entry per merchant."""

    list_price: FloatArray
    quality: FloatArray
    elasticity: FloatArray  # ε: price elasticity of demand
    preferred_size: FloatArray  # s*: package size (× list price) customers buy most
    distrust: FloatArray  # κ: penalty for very deep discounts
    capacity: FloatArray  # vouchers (list-price units) per 30 days
    base_demand: FloatArray  # D0: list-price units per day at list price
    decay_days: FloatArray  # τ: sales time constant
    urgency: FloatArray  # u: boost of short deals
    secondary_fit: FloatArray  # fit of the secondary category
    preferred_discount: FloatArray  # dpref: merchant's discount appetite
    refund_risk: FloatArray  # r
    take_rate: FloatArray
    season_mult: FloatArray  # how seasonal this merchant is
    city_demand: FloatArray
    primary_cat: np.ndarray  # category index
    secondary_cat: np.ndarray  # category index (-1: none)
    comp_primary: FloatArray  # same-category merchants within 3 km
    comp_secondary: FloatArray
    mood: FloatArray  # in [-1, 1]

    def take(self, idx: np.ndarray) -> MerchantContext:
        """The rows ``idx`` (fancy indexing), as a new context."""
        return MerchantContext(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def column(self) -> MerchantContext:
        """Every array reshaped to a column (M, 1), to broadcast against (M, K) terms."""
        return MerchantContext(**{f.name: getattr(self, f.name)[:, None] for f in fields(self)})


@dataclass
class CategoryContext:
    """Seasonality of each category (indexed by category index)."""

    amplitude: FloatArray
    peak_doy: FloatArray


@dataclass
class Response:
    """Expected outcomes of deal terms (arrays broadcast over merchants × terms)."""

    units: FloatArray  # vouchers sold in 30 days
    sold_equiv: FloatArray  # list-price units sold
    saturation: FloatArray  # V / C in [0, 1)
    revenue: FloatArray
    refund_rate: FloatArray
    gp30: FloatArray
    conversion: FloatArray
    approval: FloatArray


def _sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)))


def respond(
    m: MerchantContext,
    cats: CategoryContext,
    discount: FloatArray,
    price: FloatArray,
    duration: FloatArray,
    category: np.ndarray,
    doy: FloatArray | float,
) -> Response:
    """Expected outcomes of the terms for the merchants (see the module docstring).

    Shapes: every merchant array and every term array broadcast together; pass
    ``m.column()`` with (1, K) or (M, K) terms to price K variants for M merchants.
    """
    d = np.clip(discount, 0.0, 0.95)
    s = np.maximum(price / m.list_price, 1e-3)
    dur = np.asarray(duration, dtype=float)
    is_primary = category == m.primary_cat
    is_secondary = (category == m.secondary_cat) & ~is_primary
    fit = np.where(is_primary, 1.0, np.where(is_secondary, m.secondary_fit, OTHER_CATEGORY_FIT))
    n_comp = np.where(is_primary, m.comp_primary, np.where(is_secondary, m.comp_secondary, 0.0))
    comp = 1.0 / (1.0 + COMPETITION_WEIGHT * n_comp)
    cat_idx = np.clip(category, 0, len(cats.amplitude) - 1)
    season = np.exp(
        cats.amplitude[cat_idx] * m.season_mult * np.cos(2 * np.pi * (doy - cats.peak_doy[cat_idx]) / 365.0)
    )
    lam = m.base_demand * m.city_demand * m.quality * fit * comp * season
    price_resp = (
        (1.0 - d) ** (-m.elasticity)
        * np.exp(-m.distrust * np.maximum(0.0, d - 0.3) ** 2)
        * np.exp(-SIZE_WEIGHT * (np.log(s) - np.log(m.preferred_size)) ** 2)
    )
    window = np.minimum(dur, 30.0)
    time_profile = (1.0 + m.urgency * np.exp(-dur / 7.0)) * m.decay_days * (1.0 - np.exp(-window / m.decay_days))
    uncapped = lam * price_resp * time_profile
    cap = m.capacity
    sold = cap * (1.0 - np.exp(-uncapped / cap))
    revenue = sold * m.list_price * (1.0 - d)
    refund = np.clip(m.refund_risk * (0.4 + 1.2 * d) + 0.02 * np.maximum(0.0, s - 1.0), 0.0, 0.9)
    gp30 = m.take_rate * revenue * (1.0 - refund)
    conversion = 1.0 - np.exp(-0.05 * uncapped / (m.base_demand * time_profile))
    approval = _sigmoid(
        2.2 - 8.0 * np.abs(d - m.preferred_discount) - 1.0 * np.abs(np.log(s)) - 0.8 * (~is_primary) + 1.2 * m.mood
    )
    return Response(
        units=sold / s,
        sold_equiv=sold,
        saturation=sold / cap,
        revenue=revenue,
        refund_rate=refund,
        gp30=gp30,
        conversion=conversion,
        approval=approval,
    )


def override_probability(rep_rate: FloatArray, discount: FloatArray, preferred: FloatArray) -> FloatArray:
    """Chance the handling rep edits a suggestion: their habit plus distance from the merchant's taste."""
    r = np.clip(rep_rate, 1e-4, 1 - 1e-4)
    return _sigmoid(np.log(r / (1 - r)) + 3.0 * np.abs(discount - preferred))
