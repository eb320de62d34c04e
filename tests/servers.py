"""Reaching the real servers tests need: skip when missing locally, fail when CI=true."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def _missing(message: str) -> None:
    """Skip locally; fail under CI=true (where every dependency must be there)."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def require_binary(name: str, install: str, also: tuple[str, ...] = ()) -> None:
    """Return if the program ``name`` is on PATH (or matches one of the ``also`` globs); otherwise skip, or fail
    under CI=true."""
    if shutil.which(name) is None and not any(glob.glob(g) for g in also):
        _missing(f"{name} is not installed ({install}); .ci/run installs it")


def require_server(name: str, host: str, port: int, timeout: float = 1.0) -> None:
    """Return if ``host:port`` accepts connections; otherwise skip, or fail under CI=true."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        _missing(f"{name} is not reachable at {host}:{port} ({exc}); .ci/run starts it")


REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"


@contextmanager
def private_servers() -> Iterator[dict[str, str]]:
    """A private Redis namespace and stream, and a private PostgreSQL schema, removed afterwards.

    Yields ``ns``, ``stream``, ``schema`` and ``db`` (a URL whose search_path is the schema)."""
    require_server("Redis", "127.0.0.1", 6379)
    require_server("PostgreSQL", "127.0.0.1", 5432)
    import redis
    import sqlalchemy as sa

    tag = uuid.uuid4().hex[:10]
    engine = sa.create_engine(PG_URL)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA aidg_t_{tag}"))
    try:
        yield {"ns": f"aidg-t-{tag}", "stream": f"aidg-t-{tag}.events", "schema": f"aidg_t_{tag}",
               "db": f"{PG_URL}?options=-csearch_path%3Daidg_t_{tag}"}  # fmt: skip
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA aidg_t_{tag} CASCADE"))
        engine.dispose()
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"aidg-t-{tag}*"))
        if keys:
            client.delete(*keys)
        client.close()
