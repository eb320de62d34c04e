"""The online service: ``create_app(settings)`` builds the FastAPI app (API under /v1, OpenAPI at /docs)."""

from aidg.service.app import create_app

__all__ = ["create_app"]
