"""Reaching the real servers tests need: skip when missing locally, fail when CI=true."""

from __future__ import annotations

import os
import socket

import pytest


def require_server(name: str, host: str, port: int, timeout: float = 1.0) -> None:
    """Return if ``host:port`` accepts connections; otherwise skip, or fail under CI=true."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        message = f"{name} is not reachable at {host}:{port} ({exc}); .ci/run starts it"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
