"""``POST /v1/deals/generate``: score a merchant's variants and choose one."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException

from aidg.service.deps import CallerDep, EngineDep, require_merchant
from aidg.service.responses import JSON
from aidg.service.schemas import GenerateRequest, GenerateResponse, error_responses

router = APIRouter(prefix="/v1/deals", tags=["deals"])

# OpenAPI links: where a client (and schemathesis's stateful phase) goes from an answer
_DECISION = "$response.body#/decision_id"
_MERCHANT = "$response.body#/merchant_id"
LINKS = {
    "explanation": {"operationRef": "#/paths/~1v1~1decisions~1{decision_id}~1explanation/get",
                    "parameters": {"path.decision_id": _DECISION}, "description": "why the variants scored so"},
    "feedback": {"operationRef": "#/paths/~1v1~1feedback/post", "requestBody": {"decision_id": _DECISION},
                 "description": "the MM's answer and the outcomes of the decision"},
    "profile": {"operationRef": "#/paths/~1v1~1merchants~1{merchant_id}~1profile/get",
                "parameters": {"path.merchant_id": _MERCHANT}},
    "consent": {"operationRef": "#/paths/~1v1~1merchants~1{merchant_id}~1consent/get",
                "parameters": {"path.merchant_id": _MERCHANT}},
}  # fmt: skip


@router.post(
    "/generate",
    response_model=GenerateResponse,
    responses={200: {"links": LINKS}, **error_responses(400, 401, 403, 404, 413, 422, 429, 503)},
)
async def generate_deals(body: GenerateRequest, engine: EngineDep, caller: CallerDep) -> JSON:
    """Deal variants for a merchant (terms, score, components, risk, type, top-5 explanation) and the chosen one,
    with its propensity, the model version, the rollout arm, a ``degraded`` flag and timings. An ``mm`` key may ask
    only for its merchants (403 otherwise, whether the merchant exists or not)."""
    require_merchant(caller, body.merchant_id)
    limit = engine.settings.service.max_variants
    if body.n_variants is not None and body.n_variants > limit:
        raise HTTPException(422, f"n_variants: at most {limit} (got {body.n_variants})")
    out = engine.generate(body.merchant_id, body.n_variants, str(body.as_of) if body.as_of else None)
    return JSON(out)
