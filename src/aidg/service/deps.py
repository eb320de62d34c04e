"""Request dependencies: the engine of this app, and the caller's API key (roles ``mm`` and ``admin``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from aidg.config import ApiKey
from aidg.service.engine import DealEngine


def get_engine(request: Request) -> DealEngine:
    engine: DealEngine = request.app.state.engine
    return engine


def get_caller(request: Request) -> ApiKey | None:
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


def require_merchant(caller: ApiKey | None, merchant_id: str) -> None:
    """403 unless the caller may act for this merchant (admins and key-less services may)."""
    if caller is not None and caller.role == "mm" and merchant_id not in caller.merchants:
        raise HTTPException(403, f"this API key does not cover merchant {merchant_id!r}")


def require_admin(caller: ApiKey | None) -> None:
    if caller is not None and caller.role != "admin":
        raise HTTPException(403, "this endpoint needs an admin API key")


EngineDep = Annotated[DealEngine, Depends(get_engine)]
CallerDep = Annotated[ApiKey | None, Depends(get_caller)]

__all__ = ["CallerDep", "EngineDep", "get_caller", "get_engine", "require_admin", "require_merchant"]
