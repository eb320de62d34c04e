"""The same API on the real servers: Redis (features, cache, Redis Streams) and PostgreSQL (decision log)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aidg.config import Settings
from aidg.service import create_app
from tests.servers import REDIS_URL, private_servers


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    with private_servers() as found:
        yield found


@pytest.fixture(scope="module")
def client(trained: dict[str, Any], servers: dict[str, str]) -> Iterator[TestClient]:
    settings = Settings(
        home=Path(trained["settings"].home),
        redis_url=REDIS_URL,
        redis_namespace=servers["ns"],
        database_url=servers["db"],
        stream={"stream": servers["stream"]},
        service={"data": trained["data"], "inline_worker": True},  # a stream worker consuming Redis Streams
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def test_generate_feedback_and_learning_through_redis_and_postgresql(client: TestClient) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    ready = client.get("/readyz").json()
    assert ready["ready"] and ready["backends"]["decision_log"] == "postgresql"
    assert ready["backends"]["online_store"] == ready["backends"]["event_bus"] == "redis"
    merchant = str(engine.model.ctx.merchant_ids[3])
    first = client.post("/v1/deals/generate", json={"merchant_id": merchant}).json()
    second = client.post("/v1/deals/generate", json={"merchant_id": merchant}).json()
    assert first["degraded"] is False and len(second["variants"]) == 50
    assert engine.cache.stats.hits >= 1  # the second request read the bundle back from Redis
    d = second["decision_id"]
    events = [
        {"event_id": uuid.uuid4().hex, "decision_id": d, "kind": "approval", "approved": True},
        {"event_id": uuid.uuid4().hex, "decision_id": d, "kind": "override", "value": 0.6},
        {"event_id": uuid.uuid4().hex, "decision_id": d, "kind": "gp30", "value": 0.25},
    ]
    before = engine.posterior_version
    r = client.post("/v1/feedback", json={"events": events})
    assert r.status_code == 200 and r.json()["accepted"] == 3
    assert client.post("/v1/feedback", json={"events": events}).json()["duplicates"] == 3
    log = engine.backends.decisions
    end = time.monotonic() + 20
    while time.monotonic() < end and not (all(a for _, a in log.events(d)) and engine.posterior_version > before):
        time.sleep(0.1)
    assert all(a for _, a in log.events(d)) and engine.posterior_version > before
    profile = client.get(f"/v1/merchants/{merchant}/profile").json()
    assert profile["overrides"] >= 1 and profile["updates_since_materialized"] >= 2  # features kept in Redis
