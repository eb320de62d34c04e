"""``POST /v1/feedback``: one event or a batch; idempotent by event id; accepted events are never lost.

An ``mm`` key may send feedback only about its merchants' decisions: a request with any event whose decision is
outside the key's grant (another merchant's, or an unknown id: alike, so no id can be probed) is refused 403 as a
whole, and none of its events is stored. Admin keys (and a service without keys) get the per-event
``unknown_decision`` status instead, the other events of the batch kept."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from aidg.service.deps import CallerDep, EngineDep, uncovered_decisions
from aidg.service.responses import JSON
from aidg.service.schemas import (
    FeedbackBatch,
    FeedbackEvent,
    FeedbackResponse,
    error_responses,
    feedback_body_schema,
)

router = APIRouter(prefix="/v1", tags=["feedback"])
BODY_SCHEMA = feedback_body_schema()


def _parse(body: Any, limit: int) -> list[FeedbackEvent]:
    if not isinstance(body, dict):
        raise HTTPException(422, 'the body is one event object or {"events": [...]}')
    try:
        events = FeedbackBatch.model_validate(body).events if "events" in body else [FeedbackEvent.model_validate(body)]
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
    if len(events) > limit:
        raise HTTPException(413, f"a batch carries at most {limit} events (got {len(events)}): split it")
    return events


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses={
        **error_responses(400, 401, 403, 413, 422, 429, 503),
        404: {"model": FeedbackResponse, "description": "some event names an unknown decision (the others are kept)"},
    },
    # the body is parsed by hand (one event or a batch; 413 over the batch limit): its schema is written out
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": BODY_SCHEMA}}}},
)
async def post_feedback(engine: EngineDep, caller: CallerDep, body: Any = Body(...)) -> JSON:
    """Approval, override (with the edited terms), conversion proxy or GP30 outcome of decisions.

    Each event is stored before the answer (``accepted``), or reported as ``duplicate`` (its event id was seen) or
    ``unknown_decision``. Any unknown decision makes the status 404; the other events of the batch are kept.
    With an ``mm`` key, an event about a decision outside the key's grant (or unknown) makes it 403, nothing stored."""
    events = _parse(body, engine.settings.service.max_batch_events)
    refused = uncovered_decisions(engine, caller, (e.decision_id for e in events))
    if refused:
        ids = [e.event_id for e in events if e.decision_id in refused]
        shown = ", ".join(map(repr, ids[:5])) + (", …" if len(ids) > 5 else "")
        which = f"events {shown} name decisions" if len(ids) > 1 else f"event {shown} names a decision"
        raise HTTPException(
            403,
            f"nothing was stored: {which} this API key does not cover (another merchant's, or no decision has that "
            "id); send them with the key of the decision's merchant or correct their decision_id, and resend the "
            "others without them",
        )
    results, published = engine.feedback([e.model_dump() for e in events])
    counts = {s: sum(r["status"] == s for r in results) for s in ("accepted", "duplicate", "unknown_decision")}
    out = {
        "results": results,
        "accepted": counts["accepted"],
        "duplicates": counts["duplicate"],
        "unknown_decisions": counts["unknown_decision"],
        "degraded": not published,
    }
    return JSON(out, status_code=404 if counts["unknown_decision"] else 200)
