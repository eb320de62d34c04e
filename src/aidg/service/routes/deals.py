"""``POST /v1/deals/generate``: score a merchant's variants and choose one."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from aidg.service.deps import CallerDep, EngineDep, require_merchant
from aidg.service.responses import JSON
from aidg.service.schemas import ErrorResponse, GenerateRequest, GenerateResponse

router = APIRouter(prefix="/v1/deals", tags=["deals"])


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={404: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
)
async def generate_deals(body: GenerateRequest, engine: EngineDep, caller: CallerDep) -> JSON:
    """Deal variants for a merchant (terms, score, components, risk, type, top-5 explanation) and the chosen one,
    with its propensity, the model version, the rollout arm, a ``degraded`` flag and timings."""
    require_merchant(caller, body.merchant_id)
    limit = engine.settings.service.max_variants
    if body.n_variants is not None and body.n_variants > limit:
        raise HTTPException(422, f"n_variants: at most {limit} (got {body.n_variants})")
    out = engine.generate(body.merchant_id, body.n_variants, str(body.as_of) if body.as_of else None)
    return JSON(out)
