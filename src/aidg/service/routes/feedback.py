"""``POST /v1/feedback``: one event or a batch; idempotent by event id; accepted events are never lost."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, HTTPException
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from aidg.service.deps import CallerDep, EngineDep, require_merchant
from aidg.service.responses import JSON
from aidg.service.schemas import ErrorResponse, FeedbackBatch, FeedbackEvent, FeedbackResponse

router = APIRouter(prefix="/v1", tags=["feedback"])


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
    responses={404: {"model": FeedbackResponse}, 413: {"model": ErrorResponse}, 422: {"model": ErrorResponse}},
)
async def post_feedback(engine: EngineDep, caller: CallerDep, body: Any = Body(...)) -> JSON:
    """Approval, override (with the edited terms), conversion proxy or GP30 outcome of decisions.

    Each event is stored before the answer (``accepted``), or reported as ``duplicate`` (its event id was seen) or
    ``unknown_decision``. Any unknown decision makes the status 404; the other events of the batch are kept."""
    events = _parse(body, engine.settings.service.max_batch_events)
    if caller is not None and caller.role == "mm":
        for e in events:
            rec = engine.backends.decisions.get(e.decision_id)
            if rec is not None:
                require_merchant(caller, rec.merchant_id)
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
