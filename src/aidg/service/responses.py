"""The JSON response class: orjson (numpy-aware), without FastAPI's deprecated ORJSONResponse.

A ``JSONResponse`` subclass, so FastAPI's OpenAPI documents each route's response model (for any other response
class it writes ``{"type": "string"}``, which the service's JSON objects do not fit)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse


class JSON(JSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


__all__ = ["JSON"]
