"""Request dependencies: the engine of this app, and the caller's API key (roles ``mm`` and ``admin``).

Object-level authorization: an ``mm`` key reaches only the merchants it
manages, and the decisions of those merchants. Anything outside its grant is
answered **403 with the same generic body whether it exists or not**: an
unknown merchant or decision id and another merchant's one look alike, so an
``mm`` key cannot probe which ids exist (a decision refused never names its
merchant, nor echoes its id). Admin keys, and a service without keys, get 404
for what does not exist. Admin-only endpoints answer 401 without a key and
403 to an ``mm`` key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from aidg.config import ApiKey
from aidg.decisionlog.schema import DecisionRecord
from aidg.service.engine import DealEngine

DECISION_REFUSED = (
    "this API key does not cover that decision: it is another merchant's, or no decision has that id; "
    "use the key of the merchant the decision was made for"
)


# the dependencies are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, two thread hops per
# request for two attribute reads (≈ 5 % of a generate's time on the event loop, measured with py-spy)
async def get_engine(request: Request) -> DealEngine:
    engine: DealEngine = request.app.state.engine
    return engine


async def get_caller(request: Request) -> ApiKey | None:
    """The key's grant; None when the service runs without keys (then it listens on 127.0.0.1 only)."""
    keys: dict[str, ApiKey] | None = request.app.state.api_keys
    if not keys:
        return None
    key = request.headers.get("x-api-key")
    if not key:
        raise HTTPException(401, "missing API key: send it in the X-API-Key header")
    grant = keys.get(key)
    if grant is None:
        raise HTTPException(401, "unknown API key: check the X-API-Key header against AIDG_API_KEYS")
    return grant


def scoped(caller: ApiKey | None) -> bool:
    """Whether the caller is limited to its merchants (an ``mm`` key)."""
    return caller is not None and caller.role == "mm"


def covers(caller: ApiKey | None, merchant_id: str) -> bool:
    """Whether the caller may act for this merchant (admins and key-less services may for every merchant)."""
    return caller is None or caller.role != "mm" or merchant_id in caller.merchants


def require_merchant(caller: ApiKey | None, merchant_id: str) -> None:
    """403 unless the caller may act for this merchant (the caller's own input is echoed, nothing else)."""
    if not covers(caller, merchant_id):
        raise HTTPException(403, f"this API key does not cover merchant {merchant_id!r}")


def require_decision(caller: ApiKey | None, rec: DecisionRecord | None) -> None:
    """For an ``mm`` key: 403 (generic) unless ``rec`` exists and is one of its merchants' decisions."""
    if scoped(caller) and (rec is None or not covers(caller, rec.merchant_id)):
        raise HTTPException(403, DECISION_REFUSED)


def decision_for(engine: DealEngine, caller: ApiKey | None, decision_id: str) -> DecisionRecord:
    """The decision the caller may read: 404 if unknown (admins, no keys), 403 for an ``mm`` key outside it."""
    if not scoped(caller):
        return engine.decision(decision_id)
    require_decision(caller, engine.backends.decisions.get(decision_id))
    return engine.decision(decision_id)  # the engine's own checks too (an erased merchant's decision is 404)


def uncovered_decisions(engine: DealEngine, caller: ApiKey | None, decision_ids: Iterable[str]) -> set[str]:
    """The ids among ``decision_ids`` an ``mm`` key may not write to (another merchant's, or unknown)."""
    if not scoped(caller):
        return set()
    out = set()
    for d in set(decision_ids):
        rec = engine.backends.decisions.get(d)
        if rec is None or not covers(caller, rec.merchant_id):
            out.add(d)
    return out


def require_admin(caller: ApiKey | None) -> None:
    """403 unless the caller holds an admin key (401 for a missing key comes from :func:`get_caller`)."""
    if caller is not None and caller.role != "admin":
        raise HTTPException(403, "this endpoint needs an admin API key")


EngineDep = Annotated[DealEngine, Depends(get_engine)]
CallerDep = Annotated[ApiKey | None, Depends(get_caller)]

__all__ = [
    "DECISION_REFUSED",
    "CallerDep",
    "EngineDep",
    "covers",
    "decision_for",
    "get_caller",
    "get_engine",
    "require_admin",
    "require_decision",
    "require_merchant",
    "scoped",
    "uncovered_decisions",
]
