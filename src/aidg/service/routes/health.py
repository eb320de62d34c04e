"""``/healthz`` (the process answers), ``/readyz`` (every backend answers; names those that do not), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aidg.service.deps import EngineDep
from aidg.service.responses import JSON
from aidg.service.schemas import HealthResponse, ReadyResponse, error_responses

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthResponse, responses=error_responses(429))
async def healthz() -> JSON:
    return JSON({"status": "ok"})


@router.get(
    "/readyz",
    response_model=ReadyResponse,
    responses={**error_responses(429), 503: {"model": ReadyResponse, "description": "some backend is down"}},
)
async def readyz(engine: EngineDep) -> JSON:
    down = engine.backends.down()
    body = {
        "ready": not down,
        "model_version": engine.model.version,
        "backends": engine.backends.kinds,
        "down": down,
    }
    return JSON(body, status_code=503 if down else 200)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}, "description": "Prometheus text"},
        **error_responses(429),
    },
)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/v1/noop", include_in_schema=False)
async def noop() -> JSON:
    """Does nothing: the benchmark's reference for what the framework alone costs."""
    return JSON({"ok": True})
