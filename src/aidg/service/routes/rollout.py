"""``/v1/rollout`` (admin): the rollout's state, and start / advance / pause / resume / promote / rollback."""

from __future__ import annotations

import hashlib
from typing import Literal

from fastapi import APIRouter, HTTPException, Request

from aidg.service.deps import CallerDep, EngineDep, require_admin
from aidg.service.responses import JSON
from aidg.service.schemas import AutonomyPin, RolloutRequest, error_responses

router = APIRouter(prefix="/v1/rollout", tags=["rollout"])
Action = Literal["start", "advance", "pause", "resume", "promote", "rollback"]


def _actor(request: Request, caller: object) -> str:
    """Who, for the transition log: the admin key by a short hash of it (never the key itself)."""
    if caller is None:
        return "admin (service without keys)"
    key = request.headers.get("x-api-key", "")
    return f"admin key #{hashlib.blake2b(key.encode(), digest_size=4).hexdigest()}"


@router.get("", responses=error_responses(401, 403, 429, 503))
def rollout_state(engine: EngineDep, caller: CallerDep) -> JSON:
    """The rollout: state, versions, arms' shares, gate verdict, transitions (newest first)."""
    require_admin(caller)
    c = engine.monitor.controller
    c.reload()
    return JSON({**c.to_dict(), "challenger_loaded": engine.challenger_ready()})


@router.get("/autonomy", responses=error_responses(401, 403, 429, 503))
def autonomy_state(engine: EngineDep, caller: CallerDep, days: int = 30) -> JSON:
    """Each segment's autonomy level (apprentice / copilot / autopilot), pin, and day by day its decisions,
    agreement and override rate over the last ``days``; every level change with its evidence (newest first)."""
    require_admin(caller)
    if not 1 <= days <= 365:
        raise HTTPException(422, f"days: between 1 and 365, got {days}")
    return JSON(engine.autonomy.state(days))


@router.post("/autonomy/{segment}", responses=error_responses(401, 403, 404, 413, 422, 429, 503))
def autonomy_pin(segment: str, body: AutonomyPin, request: Request, engine: EngineDep, caller: CallerDep) -> JSON:
    """Pin a segment at a level (``{"level": "apprentice"}``) or release it (``{"level": null}``); logged with who
    and why. 404 names the segments when there is no such one."""
    require_admin(caller)
    row = engine.autonomy.pin(segment, body.level, _actor(request, caller), body.reason.strip())
    return JSON(row.to_dict())


@router.post(
    "/{action}",
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429, 503),
)
def rollout_action(
    action: Action, body: RolloutRequest, request: Request, engine: EngineDep, caller: CallerDep
) -> JSON:
    """Change the rollout; 409 says why the state does not allow it (or by how much the gate refused)."""
    require_admin(caller)
    c, who, why = engine.monitor.controller, _actor(request, caller), body.reason.strip()
    if action == "start":
        if not body.challenger:
            raise HTTPException(422, "challenger: start needs the version to roll out, e.g. {\"challenger\": \"2\"}")
        engine.verify_version(body.challenger)  # 404 for no such version, 409 for unreadable or non-finite weights
        c.start(body.challenger, who, why or f"start version {body.challenger}", body.drill_fault_rate)
    elif action == "advance":
        c.advance(who, why, force=body.force, gate=engine.monitor.gate)
    elif action == "pause":
        c.pause(who, why)
    elif action == "resume":
        c.resume(who, why)
    elif action == "promote":
        c.promote(who, why)
    else:
        c.rollback(who, why or "admin rollback")
    engine.monitor.changed()
    return JSON({**c.to_dict(), "challenger_loaded": engine.challenger_ready()})
