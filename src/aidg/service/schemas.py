"""Request and response models of the API. Requests forbid unknown fields, so a typo is a 422 naming it."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerateRequest(_Request):
    merchant_id: str = Field(min_length=1, max_length=200, description="the merchant to propose deals for")
    n_variants: int | None = Field(None, ge=1, description="how many variants to score (default 50)")
    as_of: date | None = Field(None, description="the day the deal would start (default: the model's as-of date)")


class EditedTerms(_Request):
    discount_pct: float | None = Field(None, ge=0, lt=1)
    price: float | None = Field(None, gt=0)
    duration_days: int | None = Field(None, ge=1, le=365)
    category_id: str | None = Field(None, min_length=1)


class FeedbackEvent(_Request):
    """One piece of feedback about a decision; ``event_id`` makes it idempotent."""

    event_id: str = Field(min_length=1, max_length=200, description="unique per event: a repeat is accepted once")
    decision_id: str = Field(min_length=1, max_length=200)
    kind: Literal["approval", "override", "conversion", "gp30"] = Field(
        description="approval (value 1/0 or approved), override (severity in [0, 1] or edited_terms), "
        "conversion (the early proxy in [0, 1]), gp30 (the GP30 uplift over the habitual deal)"
    )
    value: float | None = Field(None, description="the part's value (see kind)")
    approved: bool | None = Field(None, description="approval events: the MM's answer")
    edited_terms: EditedTerms | None = Field(None, description="override events: the terms after the rep's edit")
    at: datetime | None = Field(None, description="when it happened (default: now); naive times are UTC")

    @field_validator("at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v

    @model_validator(mode="after")
    def _value_fits_kind(self) -> FeedbackEvent:
        v = self.value
        if v is not None and not math.isfinite(v):
            raise ValueError("value must be a finite number")
        if self.kind == "approval":
            if v is None and self.approved is None:
                raise ValueError("an approval event needs approved (true/false) or value (1/0)")
            if v is not None and v not in (0.0, 1.0):
                raise ValueError("an approval's value is 1 (approved) or 0 (rejected)")
        elif self.approved is not None:
            raise ValueError(f"approved belongs to approval events, not {self.kind}")
        if self.kind == "override" and v is None and self.edited_terms is None:
            raise ValueError("an override event needs value (severity in [0, 1]) or edited_terms")
        if self.kind in ("override", "conversion") and v is not None and not 0 <= v <= 1:
            raise ValueError(f"a {self.kind} value lies in [0, 1]")
        if self.kind in ("conversion", "gp30") and v is None:
            raise ValueError(f"a {self.kind} event needs a value")
        if self.kind == "gp30" and v is not None and v < -1:
            raise ValueError("a GP30 uplift is at least -1 (all GP lost)")
        if self.edited_terms is not None and self.kind != "override":
            raise ValueError(f"edited_terms belong to override events, not {self.kind}")
        return self


class FeedbackBatch(_Request):
    events: list[FeedbackEvent] = Field(min_length=1, description="one or more events")


class EventResult(BaseModel):
    event_id: str
    status: Literal["accepted", "duplicate", "unknown_decision"]


class FeedbackResponse(BaseModel):
    results: list[EventResult]
    accepted: int
    duplicates: int
    unknown_decisions: int
    degraded: bool = Field(description="true when the bus was down: events are stored and republished later")


class TopFeature(BaseModel):
    feature: str
    value: Any
    weight: float


class Variant(BaseModel):
    variant: int
    discount_pct: float
    price: float
    duration_days: int
    category_id: str
    focus: str
    type: str
    score: float
    components: dict[str, float]
    risk: float
    top_features: list[TopFeature]
    refused: str | None = None


class GenerateResponse(BaseModel):
    decision_id: str
    merchant_id: str
    as_of: str
    n_variants: int
    model_version: str
    rollout_arm: str = Field(description="champion, challenger (new personalization) or explore (docs/rollout.md)")
    rollout_state: str = Field(description="idle, shadow, ab, ramp, full or rolled_back")
    fallback: str | None = Field(None, description="why the champion answered a challenger arm's request")
    chosen: Variant
    propensity: float
    why_current: str | None
    variants: list[Variant]
    degraded: bool
    degraded_reasons: list[str]
    timing_ms: dict[str, float]


class ErrorResponse(BaseModel):
    error: str
    message: str
    detail: Any = None



class RolloutRequest(_Request):
    """Body of ``POST /v1/rollout/{action}``: why (recorded with who and when), and the action's options."""

    reason: str = Field("", max_length=2000, description="why: kept in the rollout's transition log")
    challenger: str | None = Field(None, min_length=1, max_length=64, description="start: the version to roll out")
    force: bool = Field(False, description="advance: past a refusing promotion gate (recorded as forced)")
    drill_fault_rate: float = Field(
        0.0, ge=0, le=0.5, description="start: a rollback drill, failing this share of the challenger's requests"
    )

__all__ = [
    "EditedTerms",
    "ErrorResponse",
    "EventResult",
    "FeedbackBatch",
    "FeedbackEvent",
    "FeedbackResponse",
    "GenerateRequest",
    "GenerateResponse",
    "RolloutRequest",
    "Variant",
]
