"""Domain records: one typed, frozen record per table of DESIGN §2, plus deal terms.

The records are the data contract. The offline store derives its validation
schema from them and ``docs/data-schema.md`` is generated from them, so the
three cannot drift. Column names of DESIGN §2 are never renamed; columns may be
added. Every timestamp is UTC (naive in files). Money is in the marketplace's
currency units.

>>> DealTerms(discount_pct=0.3, price=40.0, duration_days=30, category_id="spa").discount_pct
0.3
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field


def _col(description: str, unit: str = "", **kwargs: Any) -> Any:
    """A column: its description and unit travel into the schema docs."""
    return Field(description=description, json_schema_extra={"unit": unit}, **kwargs)


class Record(BaseModel):
    """Base of the table records: frozen, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")


OverrideType = Literal[
    "discount_up",
    "discount_down",
    "price_up",
    "price_down",
    "duration_longer",
    "duration_shorter",
    "category_switch",
]
OverrideField = Literal["discount_pct", "price", "duration_days", "category_id"]
Sentiment = Literal["positive", "negative", "neutral"]
OutcomeKind = Literal["approval", "override", "conversion_proxy", "gp30"]
ActionType = Literal["safe", "explore", "hybrid"]


class City(Record):
    city_id: str = _col("city key")
    name: str = _col("city name")
    lat: float = _col("latitude of the centre", "degrees", ge=-90, le=90)
    lon: float = _col("longitude of the centre", "degrees", ge=-180, le=180)
    population: int = _col("inhabitants", "people", ge=1)
    demand_index: float = _col("relative demand for local deals (1 = average city)", "index", gt=0, le=100)


class Category(Record):
    category_id: str = _col("category key (a slug such as 'restaurant')")
    name: str = _col("display name")
    is_high_risk: bool = _col("never proposed by AIDG (gambling, tobacco, adult, …)")


class Merchant(Record):
    merchant_id: str = _col("merchant key")
    category_id: str = _col("primary category → categories")
    secondary_category_id: str | None = _col("second category a deal may focus on → categories")
    city_id: str = _col("city → cities")
    rep_id: str | None = _col("account owner (sales rep / MM) → reps")
    lat: float = _col("location", "degrees", ge=-90, le=90)
    lon: float = _col("location", "degrees", ge=-180, le=180)
    created_at: datetime = _col("joined the marketplace", "UTC")
    list_price: float = _col("regular price of the merchant's main service", "currency", gt=0)
    baseline_discount_pct: float = _col("discount of the merchant's habitual deal", "fraction", ge=0, lt=1)
    baseline_price: float = _col("regular price of the habitual deal's option", "currency", gt=0)
    baseline_duration_days: int = _col("duration of the habitual deal", "days", ge=1, le=365)
    baseline_gp30: float = _col(
        "expected GP30 of the habitual deal (reference for uplift and the safety guard)", "currency", ge=0
    )
    consent_personalization: bool = _col("merchant allows personalized suggestions")
    consent_training: bool = _col("merchant's data may be used to train models")


class MerchantLocation(Record):
    """Where a merchant does business: its primary city, plus any further cities of a multi-location business."""

    location_id: str = _col("location key")
    merchant_id: str = _col("→ merchants")
    city_id: str = _col("city of this location → cities")
    is_primary: bool = _col("the merchant's primary city (the one in merchants.city_id)")


class Rep(Record):
    rep_id: str = _col("sales rep / merchant manager key")
    city_id: str = _col("home city → cities")
    hired_at: datetime = _col("start date", "UTC")


class Proposal(Record):
    """A suggestion the legacy (pre-AIDG) system showed a merchant, after any rep edit."""

    proposal_id: str = _col("proposal key")
    merchant_id: str = _col("→ merchants")
    rep_id: str = _col("rep who handled it → reps")
    at: datetime = _col("when the merchant was asked", "UTC")
    category_id: str = _col("category focus → categories")
    discount_pct: float = _col("discount as shown to the merchant", "fraction", ge=0, lt=1)
    price: float = _col("regular price of the deal option (before discount)", "currency", gt=0)
    duration_days: int = _col("how long the deal runs", "days", ge=1, le=365)
    approved: bool = _col("merchant approved it (approval arrives within hours)")
    approved_at: datetime | None = _col("when the answer came", "UTC")
    deal_id: str | None = _col("the deal that ran, if approved → deals")


class Deal(Record):
    deal_id: str = _col("deal key")
    merchant_id: str = _col("→ merchants")
    rep_id: str = _col("→ reps")
    category_id: str = _col("category focus of the deal → categories")
    started_at: datetime = _col("start of the deal", "UTC")
    discount_pct: float = _col("discount off the regular price", "fraction", ge=0, lt=1)
    price: float = _col("regular price of the deal option (customer pays price × (1 − discount))", "currency", gt=0)
    duration_days: int = _col("how long the deal runs", "days", ge=1, le=365)
    units_sold: int | None = _col("vouchers sold in the first 30 days (known after 30 days)", "vouchers", ge=0)
    redemption_rate: float | None = _col(
        "share of sold vouchers redeemed (known after 30 days)", "fraction", ge=0, le=1
    )
    conversion_proxy: float | None = _col(
        "3-day view→purchase rate, the early proxy (known after 3 days)", "fraction", ge=0, le=1
    )
    gp30: float | None = _col("gross profit to the marketplace in the first 30 days (known after 30 days)", "currency")
    gp30_uplift: float | None = _col(
        "gp30 ÷ expected GP30 of the merchant's habitual deal at that date − 1", "ratio", ge=-1
    )
    gp30_known_at: datetime = _col("when gp30 becomes known (started_at + 30 days)", "UTC")
    proposal_id: str | None = _col("the proposal it came from → proposals")


class Override(Record):
    override_id: str = _col("override key")
    deal_id: str | None = _col("deal the edit ended in, if it ran → deals")
    decision_id: str | None = _col("AIDG decision edited, for live overrides → decisions")
    proposal_id: str | None = _col("legacy proposal edited → proposals")
    rep_id: str = _col("rep who edited → reps")
    field: OverrideField = _col("which term was changed")
    old_value: str = _col("value before the edit (numbers as decimal text)")
    new_value: str = _col("value after the edit")
    delta: float = _col("new − old for numeric terms; 1 for a category switch", "term units")
    override_type: OverrideType = _col("kind of edit")
    at: datetime = _col("when", "UTC")


class FeedbackNote(Record):
    note_id: str = _col("note key")
    merchant_id: str = _col("→ merchants")
    rep_id: str | None = _col("author if an MM wrote it → reps")
    author: Literal["mm", "merchant"] = _col("who wrote it")
    text: str = _col("free text", min_length=1)
    at: datetime = _col("when written", "UTC")
    deal_id: str | None = _col("deal it is about → deals")
    sentiment: Sentiment | None = _col("label, where a person labelled it")
    intensity: float | None = _col("strength of the sentiment, where labelled", "fraction", ge=0, le=1)
    template_id: int | None = _col("simulator only: phrasing the text came from", ge=0)
    template_heldout: bool | None = _col("simulator only: phrasing kept out of training")


class Decision(Record):
    decision_id: str = _col("decision key")
    merchant_id: str = _col("→ merchants")
    model_version: str = _col("model that scored it")
    arm: str = _col("rollout arm (champion, challenger, exploration, …)")
    variants: str = _col("JSON list of the variants shown")
    chosen: int = _col("index of the chosen variant", ge=0)
    propensity: float = _col("probability the policy chose it", "probability", gt=0, le=1)
    at: datetime = _col("when", "UTC")


class Outcome(Record):
    event_id: str = _col("the event within its decision: (decision_id, event_id) is unique (idempotency)")
    decision_id: str = _col("→ decisions")
    kind: OutcomeKind = _col("which reward part")
    value: float = _col("approval 0/1, override severity, conversion rate, or GP30 uplift", "per kind")
    at: datetime = _col("when it arrived", "UTC")


class DealTerms(Record):
    """The terms a deal variant sets: what candidates vary and the oracle prices."""

    discount_pct: float = Field(ge=0, lt=1, description="discount off the regular price")
    price: float = Field(gt=0, description="regular price of the option")
    duration_days: int = Field(ge=1, le=365, description="how long the deal runs")
    category_id: str = Field(description="category focus")


DEAL_TERMS = tuple(DealTerms.model_fields)  # discount_pct, price, duration_days, category_id: the one list of them
NUMERIC_TERMS = DEAL_TERMS[:3]


@dataclass(frozen=True)
class TableSpec:
    """A table of the data contract: its record, key and references."""

    name: str
    record: type[Record]
    key: str
    references: dict[str, str]  # column -> referenced table (by its key)
    from_history: bool  # True: exists before any AIDG decision (the simulator writes it)


TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in [
        TableSpec("cities", City, "city_id", {}, True),
        TableSpec("categories", Category, "category_id", {}, True),
        TableSpec(
            "merchants",
            Merchant,
            "merchant_id",
            {"category_id": "categories", "secondary_category_id": "categories", "city_id": "cities", "rep_id": "reps"},
            True,
        ),
        TableSpec(
            "merchant_locations",
            MerchantLocation,
            "location_id",
            {"merchant_id": "merchants", "city_id": "cities"},
            True,
        ),
        TableSpec("reps", Rep, "rep_id", {"city_id": "cities"}, True),
        TableSpec(
            "proposals",
            Proposal,
            "proposal_id",
            {"merchant_id": "merchants", "rep_id": "reps", "category_id": "categories", "deal_id": "deals"},
            True,
        ),
        TableSpec(
            "deals",
            Deal,
            "deal_id",
            {"merchant_id": "merchants", "rep_id": "reps", "category_id": "categories", "proposal_id": "proposals"},
            True,
        ),
        TableSpec(
            "overrides",
            Override,
            "override_id",
            {"deal_id": "deals", "proposal_id": "proposals", "rep_id": "reps", "decision_id": "decisions"},
            True,
        ),
        TableSpec(
            "feedback_notes",
            FeedbackNote,
            "note_id",
            {"merchant_id": "merchants", "rep_id": "reps", "deal_id": "deals"},
            True,
        ),
        TableSpec("decisions", Decision, "decision_id", {"merchant_id": "merchants"}, False),
        TableSpec("outcomes", Outcome, "event_id", {"decision_id": "decisions"}, False),
    ]
}

# Canonical deal configurations: the deal nodes of the merchant–deal graph.
# A configuration is (category, 5-point discount bucket, price bucket, duration
# class); every deal that ran is an edge from its merchant to its configuration.
# the scorer's outputs per variant, and the five a decision is made from (policies, the service, the arena)
SCORER_OUTPUTS = ("score", "uplift", "approval", "conversion", "p_override", "severity", "risk")
PREDICTED = ("score", "risk", "uplift", "approval", "conversion")
DISCOUNT_BUCKET = 0.05
PRICE_BUCKET_EDGES = np.array([10, 15, 20, 30, 45, 65, 100, 150, 250, 400, 700], dtype=float)
DURATION_CLASS_EDGES = np.array([7, 14, 30], dtype=float)


def deal_config_keys(deals: pd.DataFrame) -> pd.Series:
    """Canonical configuration key of each deal (the deal node it links to).

    >>> df = pd.DataFrame({"category_id": ["spa"], "discount_pct": [0.32], "price": [80.0],
    ...                    "duration_days": [30]})
    >>> deal_config_keys(df).iloc[0]
    'spa|d6|p6|t2'
    """
    d = np.floor(deals["discount_pct"].to_numpy(float) / DISCOUNT_BUCKET + 1e-9).astype(int)
    p = np.searchsorted(PRICE_BUCKET_EDGES, deals["price"].to_numpy(float), side="right")
    t = np.searchsorted(DURATION_CLASS_EDGES, deals["duration_days"].to_numpy(float), side="left")
    parts = pd.DataFrame({"c": deals["category_id"].astype(str).to_numpy(), "d": d, "p": p, "t": t})
    return parts["c"] + "|d" + parts["d"].astype(str) + "|p" + parts["p"].astype(str) + "|t" + parts["t"].astype(str)
