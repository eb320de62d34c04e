"""One router per resource: deals, feedback, decisions, merchants, health."""

from aidg.service.routes import deals, decisions, feedback, health, merchants

__all__ = ["deals", "decisions", "feedback", "health", "merchants"]
