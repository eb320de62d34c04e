"""The API as a client sees it: generate, feedback, explanation, profile, health; bad input never a 500."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from aidg.config import Settings
from aidg.decisionlog.log import DecisionLog
from aidg.service import create_app
from aidg.service.backends import Backends
from aidg.service.prototype_refresh import PrototypeRefresher
from aidg.store.online_memory import MemoryCacheBackend, MemoryOnlineStore
from aidg.stream.redis_bus import RedisBus


def _settings(trained: dict[str, Any], tmp: Path, **extra: Any) -> Settings:
    home = Path(trained["settings"].home)
    return Settings(
        home=home,
        service={"data": trained["data"], **extra.pop("service", {})},
        database_url=f"sqlite:///{tmp / 'decisions.sqlite'}",
        **extra,
    )


@pytest.fixture(scope="module")
def client(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    app = create_app(_settings(trained, tmp_path_factory.mktemp("api")))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def merchant(client: TestClient) -> str:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    return next(str(m) for m in engine.model.ctx.merchant_ids if engine.privacy.personalized(str(m)))  # consented


def _generate(client: TestClient, merchant: str, **body: Any) -> dict[str, Any]:
    r = client.post("/v1/deals/generate", json={"merchant_id": merchant, **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def _wait(pred: Any, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_generate_returns_scored_explained_variants_and_a_logged_choice(client: TestClient, merchant: str) -> None:
    out = _generate(client, merchant)
    assert len(out["variants"]) == out["n_variants"] == 50
    scores = [v["score"] for v in out["variants"]]
    assert scores == sorted(scores, reverse=True)  # best first
    v = out["variants"][0]
    assert {"discount_pct", "price", "duration_days", "type", "score", "components", "risk"} <= v.keys()
    assert v["type"] in ("safe", "hybrid", "explore") and len(v["top_features"]) == 5
    assert 0 < out["propensity"] <= 1 and out["model_version"] and out["rollout_arm"]
    assert out["degraded"] is False and out["timing_ms"]["total"] > 0
    assert out["chosen"]["type"] in ("safe", "hybrid", "explore", "current")
    log: DecisionLog = client.app.state.engine.backends.decisions  # type: ignore[attr-defined]
    rec = log.get(out["decision_id"])
    assert rec is not None and rec.pscore == pytest.approx(out["propensity"], rel=1e-4)
    assert _generate(client, merchant, n_variants=10)["n_variants"] == 10


def test_a_cache_hit_reuses_the_scores_of_the_same_bundle_and_scores_match_a_fresh_pass(
    client: TestClient, merchant: str
) -> None:
    served = client.app.state.engine.champion  # type: ignore[attr-defined]
    served.memo.discard()
    first = _generate(client, merchant, n_variants=12)
    hits = served.memo.hits
    again = _generate(client, merchant, n_variants=12)
    assert served.memo.hits == hits + 1  # the same bytes from the cache: no second forward pass
    served.memo.discard()
    fresh = _generate(client, merchant, n_variants=12)  # scored again from the bundle

    def scores(out: dict[str, Any]) -> dict[int, float]:
        return {v["variant"]: v["score"] for v in out["variants"]}

    assert scores(first) == scores(again) == scores(fresh)


def test_feedback_is_idempotent_and_reaches_the_posterior(client: TestClient, merchant: str) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    d = _generate(client, merchant)["decision_id"]
    eid = uuid.uuid4().hex
    event = {"event_id": eid, "decision_id": d, "kind": "approval", "approved": True}
    r = client.post("/v1/feedback", json=event)
    assert r.status_code == 200 and r.json()["results"] == [{"event_id": eid, "status": "accepted"}]
    again = client.post("/v1/feedback", json=event)
    assert again.status_code == 200 and again.json()["duplicates"] == 1 and again.json()["accepted"] == 0
    before = engine.posterior_version
    batch = {
        "events": [
            {"event_id": uuid.uuid4().hex, "decision_id": d, "kind": "override", "edited_terms": {"discount_pct": 0.5}},
            {"event_id": uuid.uuid4().hex, "decision_id": "no-such-decision", "kind": "gp30", "value": 0.1},
            {"event_id": uuid.uuid4().hex, "decision_id": d, "kind": "conversion", "value": 0.3},
        ]
    }
    r = client.post("/v1/feedback", json=batch)
    assert r.status_code == 404  # one unknown decision ...
    assert [x["status"] for x in r.json()["results"]] == [
        "accepted",
        "unknown_decision",
        "accepted",
    ]  # ... the rest kept
    log = engine.backends.decisions
    assert _wait(lambda: all(applied for _, applied in log.events(d)))  # the inline stream worker joined them
    assert {e.part for e, _ in log.events(d)} == {"approval", "override", "conversion"}
    assert _wait(lambda: engine.posterior_version > before)  # and this replica reloaded the posterior
    # the decision logged its term features; the workers' per-merchant row reached this replica's posterior
    assert len(log.get(d).payload["psi"]) == 7
    online = engine.champion.policy.merchants.parts["approval"].online_
    assert _wait(lambda: merchant in online)
    assert online[merchant].A[0, 0] >= 1  # the approval's ψψᵀ: its intercept counted once
    prof = client.get(f"/v1/merchants/{merchant}/profile").json()
    assert prof["updates_since_materialized"] >= 1  # the online features were updated incrementally


def test_explanation_and_what_if(client: TestClient, merchant: str) -> None:
    out = _generate(client, merchant)
    r = client.get(f"/v1/decisions/{out['decision_id']}/explanation")
    assert r.status_code == 200, r.text
    ex = r.json()
    assert len(ex["attention_top5"]) == 50 and ex["attributions"] and ex["rules"]
    assert isinstance(ex["similar_merchants"], list)
    v = out["variants"][0]["variant"]
    r = client.get(f"/v1/decisions/{out['decision_id']}/explanation", params={"variant": v, "term": "discount_pct",
                                                                            "value": "0.3"})  # fmt: skip
    assert r.status_code == 200 and r.json()["what_if"] is not None
    bad = client.get(f"/v1/decisions/{out['decision_id']}/explanation", params={"variant": v, "term": "colour",
                                                                              "value": "1"})  # fmt: skip
    assert bad.status_code == 422 and "term" in bad.json()["message"]
    assert client.get("/v1/decisions/nope/explanation").status_code == 404


def test_profile_health_ready_metrics(client: TestClient, merchant: str) -> None:
    p = client.get(f"/v1/merchants/{merchant}/profile", params={"embedding": True}).json()
    assert p["merchant_id"] == merchant and len(p["profile"]) == p["profile_dim"] and "override_rate" in p["features"]
    assert client.get("/v1/merchants/nobody/profile").status_code == 404
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["down"] == {}
    text = client.get("/metrics").text
    assert "aidg_http_requests_total" in text and "aidg_cache_hits_total" in text
    assert client.get("/openapi.json").json()["paths"]["/v1/deals/generate"]
    for i in range(5):  # made-up methods share one label: a client cannot grow the metrics registry
        assert client.request(f"BREW{i}", "/healthz").status_code == 405
    text = client.get("/metrics").text
    assert "BREW" not in text and 'method="other"' in text


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"merchant_id": "m", "colour": "red"}, 422, "colour"),
        ({}, 422, "merchant_id"),
        ({"merchant_id": 7}, 422, "merchant_id"),
        ({"merchant_id": "nobody"}, 404, "nobody"),
        ({"merchant_id": "m", "n_variants": 0}, 422, "n_variants"),
        ({"merchant_id": "m", "n_variants": 5000}, 422, "n_variants"),
        ({"merchant_id": "m", "as_of": "yesterday"}, 422, "as_of"),
    ],
)
def test_generate_rejects_bad_input_saying_what_to_fix(
    client: TestClient, merchant: str, body: dict[str, Any], status: int, names: str
) -> None:
    body = {k: (merchant if v == "m" else v) for k, v in body.items()}
    r = client.post("/v1/deals/generate", json=body)
    assert r.status_code == status, r.text
    assert names in r.json()["message"]


@pytest.mark.parametrize(
    ("event", "names"),
    [
        ({"decision_id": "d", "kind": "approval", "approved": True}, "event_id"),
        ({"event_id": "e", "decision_id": "d", "kind": "refund", "value": 1}, "kind"),
        ({"event_id": "e", "decision_id": "d", "kind": "approval", "value": 0.5}, "approval"),
        ({"event_id": "e", "decision_id": "d", "kind": "gp30"}, "value"),
        ({"event_id": "e", "decision_id": "d", "kind": "gp30", "value": 0.1, "extra": 1}, "extra"),
        ({"events": []}, "events"),
    ],
)
def test_feedback_rejects_bad_events(client: TestClient, event: dict[str, Any], names: str) -> None:
    r = client.post("/v1/feedback", json=event)
    assert r.status_code == 422, r.text
    assert names in r.json()["message"]


def test_malformed_and_oversize_bodies(client: TestClient) -> None:
    r = client.post("/v1/deals/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["message"]
    big = b'{"events": [' + b" " * 1_100_000 + b"]}"
    r = client.post("/v1/feedback", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "larger than" in r.json()["message"]
    for junk in (b"[]", b"null", b'"x"', b'{"events": "no"}', b'{"events": [1, 2]}'):
        r = client.post("/v1/feedback", content=junk, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500, (junk, r.status_code)
    assert client.put("/v1/deals/generate", json={}).status_code == 405


def test_api_keys_roles(trained: dict[str, Any], tmp_path: Path, client: TestClient, merchant: str) -> None:
    keys = {"mm-key": {"role": "mm", "merchants": [merchant]}, "admin-key": {"role": "admin"}}
    engine = client.app.state.engine  # type: ignore[attr-defined]
    app = create_app(_settings(trained, tmp_path, api_keys=keys), model=engine.model)
    with TestClient(app, raise_server_exceptions=False) as c:
        body = {"merchant_id": merchant}
        assert c.post("/v1/deals/generate", json=body).status_code == 401
        assert c.post("/v1/deals/generate", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.post("/v1/deals/generate", json=body, headers={"X-API-Key": "mm-key"}).status_code == 200
        other = next(str(m) for m in engine.model.ctx.merchant_ids if str(m) != merchant)
        r = c.post("/v1/deals/generate", json={"merchant_id": other}, headers={"X-API-Key": "mm-key"})
        assert r.status_code == 403 and other in r.json()["message"]  # the id the caller sent, nothing more
        r = c.post("/v1/deals/generate", json={"merchant_id": other}, headers={"X-API-Key": "admin-key"})
        assert r.status_code == 200
        assert c.get("/healthz").status_code == 200  # health stays open for the load balancer


def test_a_backend_down_is_named_by_readyz_and_answers_degraded(
    trained: dict[str, Any], tmp_path: Path, client: TestClient, merchant: str
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    down_bus = RedisBus("redis://127.0.0.1:1/0")  # nothing listens there
    backends = Backends(MemoryOnlineStore(), MemoryCacheBackend(), DecisionLog(f"sqlite:///{tmp_path / 'd.sqlite'}"),
                        down_bus, {"event_bus": "redis", "online_store": "memory"})  # fmt: skip
    app = create_app(_settings(trained, tmp_path), model=engine.model, backends=backends)
    with TestClient(app, raise_server_exceptions=False) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503 and list(ready.json()["down"]) == ["event_bus"]
        out = c.post("/v1/deals/generate", json={"merchant_id": merchant}).json()
        assert out["degraded"] is True and "event bus" in out["degraded_reasons"][0]
        event = {"event_id": uuid.uuid4().hex, "decision_id": out["decision_id"], "kind": "conversion", "value": 0.2}
        r = c.post("/v1/feedback", json=event)
        assert r.status_code == 200 and r.json()["accepted"] == 1 and r.json()["degraded"] is True
        assert backends.decisions.unapplied()  # stored: the outbox republishes it when the bus is back


def test_the_service_decides_with_the_per_merchant_posterior_started_from_the_records(
    client: TestClient, merchant: str
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    served = engine.champion
    records = served.model.package.records
    assert len(records) and set(records.part) == {"approval", "conversion", "gp30_uplift"}
    post = served.policy.merchants
    with_record = set(records.merchant_id.astype(str)) & set(post.parts["gp30_uplift"].merchants_)
    assert with_record  # the replica's posterior starts from the package's records
    m = next(x for x in sorted(with_record) if x != merchant and engine.privacy.personalized(x))
    seen = set()
    for _ in range(6):
        out = _generate(client, m)
        seen.add(out["why_current"] or "")
    # the posterior path's reasons (no minimum-gain margin): a variant, or the current deal by the posterior / gate
    assert not any("by enough for its distance" in w for w in seen)
    # an erasure takes the merchant out of the replica's posterior and the package it starts from
    engine.forget(m)
    assert m not in post.parts["gp30_uplift"].merchants_
    assert m not in set(served.model.package.records.merchant_id.astype(str))
    # one erased through another replica (its audit row in the shared decision log) leaves this one's at the refresh
    other = next(x for x in sorted(with_record) if x not in (m, merchant))
    engine.privacy.store.audit("erasure", engine.privacy.hash(other), "another-replica", {})
    assert other in post.parts["gp30_uplift"].merchants_
    engine.refresh_once()
    assert other not in post.parts["gp30_uplift"].merchants_


# -- the prototypes' 24-hour refresh in a replica (memo §1.2): on schedule by a fake clock, off the request path,
# without erased or non-consenting merchants, and its age in the explanation


def test_refresh_runs_on_schedule_off_the_request_path_and_shows_its_age(
    client: TestClient, trained: dict[str, Any]
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    assert any(t.name == "aidg-prototypes" and t.is_alive() for t in threading.enumerate())  # the replica owns it
    model = engine.model
    old = model.explainer.memory
    assert old is not None and old.refreshed_at is not None
    fitted = old.refreshed_at
    trained_on = {m for c in old.categories() for m in old.prototypes(c)}
    served = [str(m) for m in model.ctx.merchant_ids]
    excluded = {m for m in served if m not in trained_on}  # some merchants the training never saw stay out ...
    excluded = set(sorted(excluded)[: len(excluded) // 2]) | {sorted(trained_on)[0]}  # ... and one it did see
    now = [fitted + timedelta(hours=23, minutes=59)]
    refresher = PrototypeRefresher(engine.settings, lambda: [model], lambda m: m not in excluded, lambda: now[0])

    assert refresher.refresh_once() == 0 and model.explainer.memory is old  # not due before 24 h
    asked = next(m for m in served if engine.privacy.personalized(m))  # consented: its answer is a logged decision
    d = client.post("/v1/deals/generate", json={"merchant_id": asked}).json()["decision_id"]
    engine.prototypes.clock = lambda: now[0]
    ex = client.get(f"/v1/decisions/{d}/explanation").json()
    assert ex["prototypes_age_hours"] == pytest.approx(23.98, abs=0.01)

    # due at 24 h: the refit runs in its own thread; a request meanwhile is answered from the old memory
    now[0] = fitted + timedelta(hours=24)
    embed, entered, release = model.explainer.embedding, threading.Event(), threading.Event()

    def slow_embedding(*args: Any) -> Any:
        if threading.current_thread().name == "refit-under-test":
            entered.set()
            assert release.wait(30)
        return embed(*args)

    model.explainer.embedding = slow_embedding
    done: list[int] = []
    t = threading.Thread(target=lambda: done.append(refresher.refresh_once()), name="refit-under-test")
    try:
        t.start()
        assert entered.wait(30)
        r = client.get(f"/v1/decisions/{d}/explanation")
        assert r.status_code == 200 and r.json()["prototypes_age_hours"] == pytest.approx(24.0, abs=0.01)
        assert model.explainer.memory is old
        release.set()
        t.join(60)
        assert done == [1]
        new = model.explainer.memory
        assert new is not old and new.refreshed_at == now[0]
        chosen = {m for c in new.categories() for m in new.prototypes(c)}
        assert chosen and not chosen & excluded  # erased / withdrawn merchants are not prototypes
        assert chosen - trained_on  # merchants the training never saw can be prototypes now
        assert client.get(f"/v1/decisions/{d}/explanation").json()["prototypes_age_hours"] == 0.0
        now[0] += timedelta(hours=23)
        assert refresher.refresh_once() == 0  # the next one is due 24 h after this one
        now[0] += timedelta(hours=1)
        assert refresher.refresh_once() == 1 and refresher.refits == 2
    finally:
        release.set()
        del model.explainer.embedding  # the instance attribute: back to the method
        model.explainer.memory = old


def test_only_consenting_merchants_that_were_not_erased_may_be_prototypes(client: TestClient) -> None:
    privacy = client.app.state.engine.privacy  # type: ignore[attr-defined]
    m = str(client.app.state.engine.model.ctx.merchant_ids[-1])  # type: ignore[attr-defined]  # no other test's
    assert privacy.may_be_prototype(m)
    privacy.set_personalization(m, True, training=False)  # withdrew consent to training
    assert not privacy.may_be_prototype(m)
    privacy.set_personalization(m, True, training=True)
    assert privacy.may_be_prototype(m)
    privacy.forget(m)
    assert not privacy.may_be_prototype(m)
