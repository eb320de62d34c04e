"""Request and response models of the API. Requests forbid unknown fields, so a typo is a 422 naming it, and a
client cannot set what it should not (mass assignment); every string a request carries has a maximum length.
Their types are strict, as their JSON Schema says (``0.0`` is not a boolean, ``"1"`` not a number); only dates and
times are read from their ISO strings."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from aidg.decisionlog.schema import EVENT_ID_MAX, EVENT_ID_PATTERN

if TYPE_CHECKING:
    from aidg.config import Settings


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class GenerateRequest(_Request):
    merchant_id: str = Field(min_length=1, max_length=200, description="the merchant to propose deals for")
    n_variants: int | None = Field(None, ge=1, description="how many variants to score (default 50)")
    as_of: date | None = Field(
        None, strict=False, description="the day the deal would start (default: the model's as-of date)"
    )


class EditedTerms(_Request):
    discount_pct: float | None = Field(None, ge=0, lt=1)
    price: float | None = Field(None, gt=0)
    duration_days: int | None = Field(None, ge=1, le=365)
    category_id: str | None = Field(None, min_length=1, max_length=200)


EVENT_ID_HELP = (
    "unique per event within its decision (a repeat is accepted once): 1-128 letters, digits or . _ : @ -; "
    "ids of different decisions never collide"
)


class FeedbackEvent(_Request):
    """One piece of feedback about a decision; ``event_id`` makes it idempotent."""

    event_id: str = Field(pattern=EVENT_ID_PATTERN, description=EVENT_ID_HELP)
    decision_id: str = Field(min_length=1, max_length=EVENT_ID_MAX)
    kind: Literal["approval", "override", "conversion", "gp30"] = Field(
        description="approval (value 1/0 or approved), override (severity in [0, 1] or edited_terms), "
        "conversion (the early proxy in [0, 1]), gp30 (the GP30 uplift over the habitual deal)"
    )
    value: float | None = Field(None, description="the part's value (see kind)")
    approved: bool | None = Field(None, description="approval events: the MM's answer")
    edited_terms: EditedTerms | None = Field(None, description="override events: the terms after the rep's edit")
    at: datetime | None = Field(None, strict=False, description="when it happened (default: now); naive times are UTC")

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
    score: float | None = Field(description="null in a non-personalized answer (no model ran)")
    components: dict[str, float]
    risk: float | None
    top_features: list[TopFeature]
    refused: str | None = None
    expected: dict[str, float] | None = Field(
        None, description="chosen deal only: the conversion and GP30 uplift to expect, the scorer's corrected by the "
        "merchant's own record (what the rep is shown and judges AIDG against)",
    )


class Verdict(BaseModel):
    keep_current: bool = Field(description="the first line recommends keeping the current deal")
    variant_expected_to_beat_current: bool | None = Field(
        description="some variant's expected score beats the current deal's (null: a decision logged before this)"
    )
    best_variant: int | None
    text: str = Field(description="the first line people read: keep the current deal, or which variant beats it")
    score_gain: float | None = None


class GenerateResponse(BaseModel):
    verdict: Verdict
    decision_id: str | None = Field(description="null in a non-personalized answer: no decision is logged")
    personalized: bool = Field(description="false when the merchant has not consented to personalization")
    why_not_personalized: str | None = None
    merchant_id: str
    as_of: str
    n_variants: int
    model_version: str
    rollout_arm: str = Field(description="champion, challenger (new personalization) or explore (docs/rollout.md)")
    rollout_state: str = Field(description="idle, shadow, ab, ramp, full or rolled_back")
    fallback: str | None = Field(None, description="why the champion answered a challenger arm's request")
    autonomy: dict[str, Any] | None = Field(
        None, description="the merchant's segment and its autonomy level (apprentice: the current deal shown, with "
        "AIDG's predicted edit and pick; copilot; autopilot: applied unless the rep steps in), docs/rollout.md",
    )
    chosen: Variant
    current: Variant = Field(description="the merchant's current deal, scored like the variants (type current)")
    propensity: float
    why_current: str | None
    variants: list[Variant]
    degraded: bool
    degraded_reasons: list[str]
    timing_ms: dict[str, float]


class ConsentRequest(_Request):
    personalization: bool | None = Field(None, description="may AIDG personalize this merchant's suggestions")
    training: bool | None = Field(None, description="may this merchant's data train the next models")


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


class AutonomyPin(_Request):
    """Body of ``POST /v1/rollout/autonomy/{segment}``: hold the segment at a level, or ``null`` to release it."""

    level: Literal["apprentice", "copilot", "autopilot"] | None = Field(
        description="the level to hold the segment at; null hands it back to the dial"
    )
    reason: str = Field("", max_length=2000, description="why: kept in the autonomy log")


class ConsentResponse(BaseModel):
    merchant_id: str
    personalization: bool
    training: bool
    source: Literal["merchants table", "api"] = Field(description="where the flags come from")


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    ready: bool
    model_version: str
    backends: dict[str, str] = Field(description="the kind of each backend (memory, redis, sqlite, …)")
    down: dict[str, str] = Field(description="the backends that do not answer, each with the reason")


ERROR_MEANINGS = {
    400: "the body is not valid JSON",
    401: "no API key, or an unknown one",
    403: "the API key does not cover this merchant, decision or endpoint",
    404: "no such merchant, decision or model version",
    409: "the rollout's state does not allow this action",
    413: "the body (or a feedback batch) is over the configured limit",
    422: "the request does not fit the schema or a configured limit; the message names the field",
    429: "the API key is over its rate limit (Retry-After says when to resend)",
    503: "a backend is down",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: each status with the error body ``{"error", "message", "detail"}``."""
    return {c: {"model": ErrorResponse, "description": ERROR_MEANINGS[c]} for c in codes}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _event_schema(kind: str, value: dict[str, Any], *, value_required: bool, terms: bool) -> dict[str, Any]:
    """One kind of :class:`FeedbackEvent` as JSON Schema, with the rules of its model validator."""
    props: dict[str, Any] = {
        "event_id": {"type": "string", "pattern": EVENT_ID_PATTERN, "description": EVENT_ID_HELP},
        "decision_id": {"type": "string", "minLength": 1, "maxLength": EVENT_ID_MAX},
        "kind": {"type": "string", "enum": [kind]},
        "value": value if value_required else _nullable(value),
        "approved": _nullable({"type": "boolean"}) if kind == "approval" else {"type": "null"},
        "edited_terms": _nullable(EditedTerms.model_json_schema()) if terms else {"type": "null"},
        "at": {**_nullable({"type": "string", "format": "date-time"}), "description": "default: now; naive is UTC"},
    }
    out: dict[str, Any] = {
        "title": f"{kind.capitalize() if kind != 'gp30' else 'GP30'}Event",
        "type": "object",
        "additionalProperties": False,
        "required": ["event_id", "decision_id", "kind", *(["value"] if value_required else [])],
        "properties": props,
    }
    other = {"approval": ("approved", "boolean"), "override": ("edited_terms", "object")}.get(kind)
    if other is not None:  # the value, or the other field, must be there (and not null)
        name, type_ = other
        out["anyOf"] = [
            {"required": ["value"], "properties": {"value": value}},
            {"required": [name], "properties": {name: {"type": type_}}},
        ]
    return out


def feedback_body_schema() -> dict[str, Any]:
    """The body of ``POST /v1/feedback`` as JSON Schema: one event (one schema per kind, so what
    :class:`FeedbackEvent`'s validator refuses is outside the schema too) or ``{"events": [...]}``."""
    number = {"type": "number"}
    events = [
        _event_schema("approval", {"type": "number", "enum": [0, 1]}, value_required=False, terms=False),
        _event_schema("override", {**number, "minimum": 0, "maximum": 1}, value_required=False, terms=True),
        _event_schema("conversion", {**number, "minimum": 0, "maximum": 1}, value_required=True, terms=False),
        _event_schema("gp30", {**number, "minimum": -1}, value_required=True, terms=False),
    ]
    batch: dict[str, Any] = {
        "title": "FeedbackBatch",
        "type": "object",
        "additionalProperties": False,
        "required": ["events"],
        "properties": {"events": {"type": "array", "minItems": 1, "items": {"oneOf": events}}},
    }
    return {"oneOf": [*events, batch]}


API_KEY_SCHEME = "ApiKey"


def document_settings(openapi: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """What the settings decide into an app's OpenAPI (in place): ``n_variants`` at most ``service.max_variants``,
    a feedback batch at most ``service.max_batch_events`` events (422 / 413 above them) and, with API keys, the
    ``X-API-Key`` header every ``/v1`` operation requires (``/healthz``, ``/readyz``, ``/metrics`` need none)."""
    svc = settings.service
    if settings.api_keys:
        scheme = {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "a key of AIDG_API_KEYS"}
        openapi.setdefault("components", {}).setdefault("securitySchemes", {})[API_KEY_SCHEME] = scheme
        for path, ops in openapi.get("paths", {}).items():
            for op in ops.values() if path.startswith("/v1/") else ():
                op["security"] = [{API_KEY_SCHEME: []}]
    comps = openapi.get("components", {}).get("schemas", {})
    n_variants = comps.get("GenerateRequest", {}).get("properties", {}).get("n_variants")
    if n_variants is not None:
        for option in n_variants.get("anyOf", [n_variants]):
            if option.get("type") == "integer":
                option["maximum"] = svc.max_variants
    body = openapi.get("paths", {}).get("/v1/feedback", {}).get("post", {}).get("requestBody", {})
    for option in body.get("content", {}).get("application/json", {}).get("schema", {}).get("oneOf", []):
        if option.get("title") == "FeedbackBatch":
            option["properties"]["events"]["maxItems"] = svc.max_batch_events
    return openapi


__all__ = [
    "ConsentResponse",
    "EditedTerms",
    "ErrorResponse",
    "EventResult",
    "FeedbackBatch",
    "FeedbackEvent",
    "FeedbackResponse",
    "GenerateRequest",
    "GenerateResponse",
    "HealthResponse",
    "ReadyResponse",
    "RolloutRequest",
    "Variant",
    "document_settings",
    "error_responses",
    "feedback_body_schema",
]
