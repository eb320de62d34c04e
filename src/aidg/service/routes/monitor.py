"""``GET /v1/monitor`` (admin): rolling windows, time series, alerts, risk histogram, exploration, rollout."""

from __future__ import annotations

from fastapi import APIRouter

from aidg.service.deps import CallerDep, EngineDep, require_admin
from aidg.service.responses import JSON
from aidg.service.schemas import error_responses

router = APIRouter(prefix="/v1/monitor", tags=["monitor"])


@router.get("", responses=error_responses(401, 403, 429, 503))
def monitor_report(engine: EngineDep, caller: CallerDep) -> JSON:
    """What the dashboard draws (docs/monitor-api.md): KPIs per arm over the real-time, 1 h, 2 h and 7-day windows,
    their series with the alert thresholds, firing alerts, the risk-score histogram and exploration figures."""
    require_admin(caller)
    return JSON(engine.monitor.report())
