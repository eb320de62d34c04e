"""Rollouts through the API: shadow answers never reach a client, a failing challenger is rolled back by the
monitor, promotion swaps the champion, and the admin endpoints refuse everyone else."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aidg.config import Settings
from aidg.demo.challengers import register_variant
from aidg.service import create_app

ADMIN, MM = "admin-key-for-tests", "mm-key-for-tests"


@pytest.fixture(scope="module")
def challenger(trained: dict[str, Any]) -> str:
    return register_variant(trained["settings"], "1", "copy")


@pytest.fixture(scope="module")
def client(trained: dict[str, Any], challenger: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("rollout")
    settings = Settings(
        home=Path(trained["settings"].home),
        # traffic-heavy: the admin key's limit well above what the test sends
        service={"data": trained["data"], "model_version": "1", "rate_limit_per_second": 1e4,
                 "rate_limit_burst": 10**4},
        database_url=f"sqlite:///{tmp / 'decisions.sqlite'}",
        rollout={"ab_personalization_share": 0.25, "ab_exploration_share": 0.25, "gate_min_decisions": 20},
        monitor={"min_samples": 30, "bucket_seconds": 1.0, "eval_seconds": 0.3, "flush_seconds": 0.3},
        api_keys={ADMIN: {"role": "admin"}, MM: {"role": "mm", "merchants": ["m-000001"]}},
    )
    with TestClient(create_app(settings), raise_server_exceptions=False, headers={"X-API-Key": ADMIN}) as c:
        yield c


def _merchants(client: TestClient) -> list[str]:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    return [str(m) for m in engine.model.ctx.merchant_ids if engine.privacy.personalized(str(m))]  # with consent


def _act(client: TestClient, action: str, **body: Any) -> dict[str, Any]:
    r = client.post(f"/v1/rollout/{action}", json={"reason": f"test {action}", **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _wait_loaded(client: TestClient, seconds: float = 120.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if client.get("/v1/rollout").json()["challenger_loaded"]:
            return
        time.sleep(0.2)
    raise AssertionError("the challenger did not load")


def _traffic(client: TestClient, merchants: list[str], n: int, feedback: bool = True) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        d = client.post("/v1/deals/generate", json={"merchant_id": merchants[i % len(merchants)]}).json()
        out.append(d)
        if feedback and "decision_id" in d:
            events = [{"event_id": uuid.uuid4().hex, "decision_id": d["decision_id"], "kind": k, "value": v}
                      for k, v in (("approval", 1.0), ("override", 0.0), ("conversion", 0.2))]  # fmt: skip
            client.post("/v1/feedback", json={"events": events})
    return out


def test_admin_endpoints_refuse_other_keys_and_bad_bodies(client: TestClient) -> None:
    assert client.get("/v1/rollout", headers={"X-API-Key": MM}).status_code == 403
    assert client.get("/v1/monitor", headers={"X-API-Key": ""}).status_code == 401
    assert client.post("/v1/rollout/start", json={"challenger": "2"}, headers={"X-API-Key": MM}).status_code == 403
    r = client.post("/v1/rollout/start", json={"challenger": "2", "sneaky": 1})
    assert r.status_code == 422 and "sneaky" in r.json()["message"]
    r = client.post("/v1/rollout/start", json={"reason": "no version"})
    assert r.status_code == 422 and "challenger" in r.json()["message"]
    r = client.post("/v1/rollout/promote", json={})
    assert r.status_code == 409 and "idle" in r.json()["message"]
    assert client.post("/v1/rollout/start", json={"challenger": "99"}).status_code == 404
    assert client.post("/v1/rollout/jump", json={}).status_code == 422


def test_in_shadow_no_challenger_answer_reaches_a_client(client: TestClient, challenger: str) -> None:
    _act(client, "start", challenger=challenger)
    _wait_loaded(client)
    answers = _traffic(client, _merchants(client), 60)
    served = {(a["model_version"], a["rollout_arm"], a["rollout_state"]) for a in answers}
    assert served == {("1", "champion", "shadow")}
    engine = client.app.state.engine  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while len(engine.monitor.store.shadow(challenger)) < 60 and time.monotonic() < deadline:
        time.sleep(0.1)
    rows = engine.monitor.store.shadow(challenger)
    assert len(rows) == 60 and all(0 <= r.choice <= len(r.estimates) - 1 for r in rows)
    gate = client.post("/v1/rollout/advance", json={"reason": "gate?"})
    # the gate judged the shadow decisions (an identical copy cannot beat the champion's own lower bound reliably)
    assert gate.status_code in (200, 409)
    assert client.get("/v1/rollout").json()["gate"]["n"] >= 20


def test_a_failing_challenger_is_rolled_back_by_the_monitor(client: TestClient, challenger: str) -> None:
    state = client.get("/v1/rollout").json()["state"]
    if state != "rolled_back":
        _act(client, "rollback")
    _act(client, "start", challenger=challenger, drill_fault_rate=0.2)
    _wait_loaded(client)
    assert _act(client, "advance", force=True)["state"] == "ab"
    merchants = _merchants(client)
    deadline, answers = time.monotonic() + 60, []
    while time.monotonic() < deadline and client.get("/v1/rollout").json()["state"] != "rolled_back":
        answers += _traffic(client, merchants, 10)
    st = client.get("/v1/rollout").json()
    assert st["state"] == "rolled_back", st
    t = st["transitions"][0]
    assert t["action"] == "auto_rollback" and t["actor"] == "monitor"
    assert t["detail"]["triggers"][0]["rule"] == "error_rate" and t["detail"]["detected_at"]
    assert any(a["rollout_arm"] != "champion" for a in answers)  # the challenger did serve before
    assert any("fallback" in a for a in answers) and all(a.get("decision_id") for a in answers)  # no failed answer
    after = _traffic(client, merchants, 30, feedback=False)
    assert {a["rollout_arm"] for a in after} == {"champion"}
    m = client.get("/v1/monitor").json()
    assert any(a["rule"] == "error_rate" for a in m["alerts"]) or m["rollout"]["state"] == "rolled_back"
    assert m["series"]["arms"]["challenger"]["decisions"] and m["thresholds"]["error_rate"] == 0.05
    prom = client.get("/metrics").text
    assert 'aidg_rollout_state{state="rolled_back"} 1.0' in prom and 'aidg_kpi{arm="champion"' in prom


def test_promotion_makes_the_challenger_the_champion(client: TestClient, challenger: str) -> None:
    _act(client, "start", challenger=challenger)
    _wait_loaded(client)
    _act(client, "advance", force=True)
    st = _act(client, "promote")
    assert (st["state"], st["champion"], st["challenger"]) == ("idle", challenger, None)
    who = st["transitions"][0]["actor"]
    assert who.startswith("admin key #") and ADMIN not in who  # who, without the secret
    assert st["transitions"][0]["reason"] == "test promote"
    answers = _traffic(client, _merchants(client), 20, feedback=False)
    assert {(a["model_version"], a["rollout_arm"]) for a in answers} == {(challenger, "champion")}
    recent = client.get("/v1/decisions?limit=5").json()["decisions"]
    assert len(recent) == 5 and recent[0]["model_version"] == challenger
