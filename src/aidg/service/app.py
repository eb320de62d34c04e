"""``create_app(settings)``: the FastAPI app with everything it needs built in; nothing global at import time.

OpenAPI at ``/docs``; routes under ``/v1``; ``/healthz``, ``/readyz``, ``/metrics``.
Errors are JSON ``{"error", "message", "detail"}`` with a 4xx that says what to
fix (unknown field → 422 naming it, unknown merchant or decision → 404,
body over ``max_body_bytes`` → 413, a key over its rate limit → 429, a backend
down → 503); an unexpected failure is logged and answered 500 without a
traceback. Middlewares, outermost first: ``Observe`` (metrics, so 413 and 429
are counted too), ``RateLimit`` (only with API keys: ``aidg.service.ratelimit``),
``BodyLimit``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aidg.config import Settings
from aidg.decisionlog.rollout import RolloutStore
from aidg.errors import AIDGError, BackendUnavailableError, ConflictError, DataError, NotFoundError
from aidg.online.serving_model import ServingModel
from aidg.privacy.ids import install as install_redaction
from aidg.service.backends import Backends, make_backends
from aidg.service.engine import DealEngine
from aidg.service.metrics import Metrics
from aidg.service.ratelimit import RateLimit, make_limiter
from aidg.service.responses import JSON
from aidg.service.schemas import document_settings

log = logging.getLogger("aidg.service")


def _error(status: int, kind: str, message: str, detail: Any = None) -> JSON:
    return JSON({"error": kind, "message": message, "detail": detail}, status_code=status)


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")] if isinstance(loc, list | tuple) else [str(loc)]
    return ".".join(parts) or "body"


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes is answered 413 before the app reads it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await self._too_large(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                break
            chunks.append(msg.get("body", b""))
            size += len(chunks[-1])
            more = msg.get("more_body", False)
            if size > self.limit:
                await self._too_large(scope, receive, send)
                return
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        msg = f"the request body is larger than {self.limit:,} bytes: send less (split a feedback batch)"
        await _error(413, "payload_too_large", msg)(scope, receive, send)


class Observe:
    """ASGI middleware: each request's route, status and latency into the app's metrics (a plain ASGI wrapper:
    Starlette's ``@app.middleware("http")`` costs a task and a stream per request)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.observe(route, scope["method"], status, time.perf_counter() - t)


def create_app(settings: Settings, *, model: ServingModel | None = None, backends: Backends | None = None) -> FastAPI:
    """Build the service: the served version, its backends, the engine, routes, error handlers and metrics."""
    from aidg.service.routes import dashboard, deals, decisions, feedback, health, merchants, monitor, rollout

    # merchant ids appear in this process's logs only as keyed hashes; INFO and above also go to AIDG_HOME/logs
    install_redaction(settings.privacy.id_hash_key, settings.privacy.id_pattern, settings.paths.logs / "aidg.log")
    data = settings.service.data or settings.paths.home / "demo" / "world"
    owned = backends is None  # backends made here are closed at shutdown; a caller's stay the caller's
    backends = backends or make_backends(settings)
    if model is None:
        if not Path(data).exists():
            raise DataError(f"no data folder to serve at {data}: pass --data DIR (or run `aidg demo` first)")
        # the champion of an earlier rollout (kept in the decision log) serves, else the configured version
        row = RolloutStore(backends.decisions).get()
        version = row.champion if row is not None and row.champion else settings.service.model_version
        model = ServingModel(settings, Path(data), version)
        if settings.service.compile:
            model.compile()
    engine = DealEngine(settings, model, backends)
    metrics = Metrics(engine)
    limiter = make_limiter(settings)  # None without API keys

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.start(settings.service.inline_worker)
        try:
            yield
        finally:
            engine.stop()
            if limiter is not None:
                limiter.close()
            if owned:
                engine.backends.close()

    app = FastAPI(
        title="AIDG, the AI Deal Generator",
        version="1",
        description="Proposes, scores, explains and safely explores deal variants for a merchant.",
        lifespan=lifespan,
        default_response_class=JSON,
    )
    app.state.engine, app.state.metrics, app.state.api_keys = engine, metrics, settings.api_keys
    app.state.limiter = limiter
    for r in (deals, feedback, decisions, merchants, rollout, monitor, dashboard, health):
        app.include_router(r.router)
    build_openapi = app.openapi  # then what the settings decide into it (limits, the API key header)
    app.openapi = lambda: document_settings(build_openapi(), settings)  # type: ignore[method-assign]

    app.add_middleware(BodyLimit, limit=settings.service.max_body_bytes)  # the last added runs first
    if limiter is not None and settings.api_keys:
        app.add_middleware(RateLimit, limiter=limiter, keys=list(settings.api_keys))
    app.add_middleware(Observe, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSON:
        errs = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errs):
            return _error(400, "malformed_json", "the body is not valid JSON: " + "; ".join(e["msg"] for e in errs))
        text = "; ".join(f"{_field(e.get('loc'))}: {e.get('msg')}" for e in errs)
        detail = [{"field": _field(e.get("loc")), "message": e.get("msg"), "type": e.get("type")} for e in errs]
        return _error(422, "invalid_request", text, detail)

    @app.exception_handler(HTTPException)  # Starlette's: FastAPI's too, and the router's 404 / 405, a body unread
    async def http_error(_: Request, exc: HTTPException) -> JSON:
        kinds = {400: "malformed_json", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                 405: "method_not_allowed", 413: "too_large", 429: "rate_limited"}  # fmt: skip
        out = _error(exc.status_code, kinds.get(exc.status_code, "invalid_request"), str(exc.detail))
        out.headers.update(exc.headers or {})  # a 405's Allow
        return out

    @app.exception_handler(AIDGError)
    async def aidg_error(_: Request, exc: AIDGError) -> JSON:
        if isinstance(exc, NotFoundError):
            return _error(404, "not_found", str(exc))
        if isinstance(exc, ConflictError):
            return _error(409, "conflict", str(exc))
        if isinstance(exc, BackendUnavailableError):
            return _error(503, "backend_unavailable", str(exc))
        return _error(422, "invalid_request", str(exc))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSON:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal", f"unexpected {type(exc).__name__}; the service log has the details")

    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory (``aidg serve`` with several worker processes): settings from the environment."""
    from aidg.config import load_settings

    return create_app(load_settings())


__all__ = ["create_app"]
