"""``/v1/merchants/{id}``: the profile, consent flags, and erasure (the right to deletion).

A method a path does not have is 405 with an ``Allow`` header naming every method the path has (Starlette's
router names only those of the first route of the path: ``GET`` alone for ``/consent``, which has ``PUT`` too)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from aidg.compliance.erasure import Stores, erase_merchant
from aidg.errors import NotFoundError
from aidg.privacy.ids import hash_key
from aidg.service.deps import CallerDep, EngineDep, require_admin, require_merchant
from aidg.service.responses import JSON
from aidg.service.schemas import ConsentRequest, ConsentResponse, error_responses


class _AllowEveryMethod(APIRoute):
    """A route whose 405 names, in ``Allow``, the methods of every route of this router on the same path."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.methods and scope["method"] not in self.methods:
            same = [r for r in router.routes if isinstance(r, APIRoute) and r.path == self.path]
            allowed = {m for r in same for m in r.methods or ()}
            raise HTTPException(405, headers={"Allow": ", ".join(sorted(allowed))})
        await super().handle(scope, receive, send)


router = APIRouter(prefix="/v1/merchants", tags=["merchants"], route_class=_AllowEveryMethod)
CONSENT_LINK = {"operationRef": "#/paths/~1v1~1merchants~1{merchant_id}~1consent/get",
                "parameters": {"path.merchant_id": "$response.body#/merchant_id"}}  # fmt: skip


@router.get("/{merchant_id}/profile", responses=error_responses(401, 403, 404, 422, 429, 503))
async def merchant_profile(
    merchant_id: str,
    engine: EngineDep,
    caller: CallerDep,
    embedding: bool = Query(False, description="include the 512-d profile and the 64-d override intent"),
) -> JSON:
    """The merchant's readable online features (as the stream workers keep them), its override record and profile."""
    require_merchant(caller, merchant_id)
    return JSON(engine.profile(merchant_id, embedding))


@router.get(
    "/{merchant_id}/consent", response_model=ConsentResponse, responses=error_responses(401, 403, 404, 429, 503)
)
async def get_consent(merchant_id: str, engine: EngineDep, caller: CallerDep) -> JSON:
    """The merchant's consent flags (personalization, use in training) and where they come from."""
    require_merchant(caller, merchant_id)
    engine.privacy.check(merchant_id)
    return JSON(engine.privacy.consent_of(merchant_id))


@router.put(
    "/{merchant_id}/consent",
    response_model=ConsentResponse,
    responses={200: {"links": {"read": CONSENT_LINK}}, **error_responses(400, 401, 403, 404, 413, 422, 429, 503)},
)
async def set_consent(merchant_id: str, body: ConsentRequest, engine: EngineDep, caller: CallerDep) -> JSON:
    """Set the merchant's consent. Without personalization, ``generate`` answers the current system's deal,
    unscored; without training, the next ``aidg train`` leaves the merchant out of its data and manifest."""
    require_merchant(caller, merchant_id)
    engine.privacy.check(merchant_id)
    current = engine.privacy.consent_of(merchant_id)
    personalization = current["personalization"] if body.personalization is None else body.personalization
    training = current["training"] if body.training is None else body.training
    engine.privacy.store.set_consent(merchant_id, personalization, training)
    engine.privacy.set_personalization(merchant_id, personalization, training)
    return JSON(engine.privacy.consent_of(merchant_id))


@router.delete("/{merchant_id}", responses=error_responses(401, 403, 404, 413, 429, 503))
async def delete_merchant(merchant_id: str, request: Request, engine: EngineDep, caller: CallerDep) -> JSON:
    """Erase the merchant everywhere AIDG keeps it (admin): decisions, events, bandit state (unlearned),
    online store, cache, stream entries, offline tables, model manifests and prototypes, snapshots and log
    lines. Answers the audit record: the merchant's keyed hash and what was removed where, never the id."""
    require_admin(caller)
    engine.privacy.check(merchant_id)
    stores = Stores.of(engine.backends, engine.settings)
    actor = hash_key(request.headers.get("x-api-key", "")) if caller is not None else "local"
    if merchant_id not in engine.model.ctx.merchant_code.index and not engine.privacy.store.decision_ids(merchant_id):
        raise NotFoundError(f"unknown merchant {merchant_id!r}: not in the served data nor the decision log")
    engine.forget(merchant_id)  # this replica refuses it at once; the others see the tombstone
    report = await asyncio.to_thread(
        erase_merchant, engine.settings, merchant_id, stores, data_dirs=[engine.model.data], actor=actor,
        known=lambda _: True,
    )  # fmt: skip
    return JSON(report)
