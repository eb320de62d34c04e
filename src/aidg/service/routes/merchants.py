"""``GET /v1/merchants/{id}/profile``: what the service knows about a merchant now."""

from __future__ import annotations

from fastapi import APIRouter, Query

from aidg.service.deps import CallerDep, EngineDep, require_merchant
from aidg.service.responses import JSON
from aidg.service.schemas import ErrorResponse

router = APIRouter(prefix="/v1/merchants", tags=["merchants"])


@router.get("/{merchant_id}/profile", responses={404: {"model": ErrorResponse}})
async def merchant_profile(
    merchant_id: str,
    engine: EngineDep,
    caller: CallerDep,
    embedding: bool = Query(False, description="include the 512-d profile and the 64-d override intent"),
) -> JSON:
    """The merchant's readable online features (as the stream workers keep them), its override record and profile."""
    require_merchant(caller, merchant_id)
    return JSON(engine.profile(merchant_id, embedding))
