"""``GET /v1/decisions`` (the newest) and ``GET /v1/decisions/{id}/explanation``: why a decision's variants scored as
they did.

An ``mm`` key lists only its merchants' decisions, and asking for the explanation of a decision outside its grant
(another merchant's, or an id that does not exist) is 403 with one generic message either way (``deps``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query

from aidg.domain import DEAL_TERMS
from aidg.service.deps import CallerDep, EngineDep, decision_for, scoped
from aidg.service.responses import JSON
from aidg.service.schemas import error_responses

router = APIRouter(prefix="/v1/decisions", tags=["decisions"])
WHAT_IF_TERMS = DEAL_TERMS


@router.get("", responses=error_responses(401, 422, 429, 503))
def recent_decisions(
    engine: EngineDep, caller: CallerDep, limit: int = Query(20, ge=1, le=200, description="how many, newest first")
) -> JSON:
    """The newest decisions (an ``mm`` key sees only its merchants): id, merchant, time, arm, version, type, score,
    risk."""
    merchants = caller.merchants if caller is not None and caller.role == "mm" else None
    return JSON({"decisions": engine.monitor.store.recent_decisions(limit, merchants)})


@router.get(
    "/{decision_id}/explanation",
    responses=error_responses(401, 403, 404, 422, 429, 503),
)
async def explain_decision(
    decision_id: str,
    engine: EngineDep,
    caller: CallerDep,
    variant: int | None = Query(None, description="what-if: the variant to change"),
    term: str | None = Query(
        None,
        description=f"what-if: the term to change ({', '.join(WHAT_IF_TERMS)})",
        json_schema_extra={"enum": list(WHAT_IF_TERMS)},  # checked below, after the caller's grant
    ),
    value: str | None = Query(None, description="what-if: its new value"),
) -> JSON:
    """Attention top-5 of every variant, Integrated-Gradients attributions, similar merchants, IF-THEN rules and,
    with ``variant``, ``term`` and ``value``, a what-if with its interval."""
    rec = decision_for(engine, caller, decision_id)  # before anything else is looked at: 403 says nothing more
    change: tuple[int, str, Any] | None = None
    given = [q is not None for q in (variant, term, value)]
    if any(given):
        if not all(given):
            raise HTTPException(422, "a what-if needs all of variant, term and value")
        if term not in WHAT_IF_TERMS:
            raise HTTPException(422, f"term: one of {', '.join(WHAT_IF_TERMS)} (got {term!r})")
        ids = {int(v["variant"]) for v in rec.payload["variants"]}
        if variant not in ids:
            raise HTTPException(404, f"variant: decision {decision_id} has no variant {variant}")
        parsed: Any = value
        if term != "category_id":
            try:
                parsed = float(value)  # type: ignore[arg-type]
            except ValueError:
                raise HTTPException(422, f"value: {term} takes a number (got {value!r})") from None
        change = (int(variant), str(term), parsed)  # type: ignore[arg-type]
    return JSON(engine.explanation(rec, change, reveal_ids=not scoped(caller)))
