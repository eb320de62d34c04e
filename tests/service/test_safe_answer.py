"""A model that fails on a request (NaN scores, an exception) gives the safe answer, degraded, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from aidg.config import Settings
from aidg.service import create_app


@pytest.fixture(scope="module")
def client(trained: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp = tmp_path_factory.mktemp("safe")
    settings = Settings(
        home=Path(trained["settings"].home), service={"data": trained["data"]},
        database_url=f"sqlite:///{tmp / 'd.sqlite'}",
    )  # fmt: skip
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("fault", ["nan", "exception"])
def test_a_failing_model_answers_the_current_deal_degraded(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    engine = client.app.state.engine  # type: ignore[attr-defined]
    mid = next(str(m) for m in engine.model.ctx.merchant_ids if engine.privacy.personalized(str(m)))
    assert client.post("/v1/deals/generate", json={"merchant_id": mid}).json()["degraded"] is False
    score = engine.model.score

    def broken(*args: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        if fault == "exception":
            raise RuntimeError("simulated scorer crash")
        out = dict(score(*args, **kwargs))
        out["score"] = np.full_like(out["score"], np.nan)
        return out

    monkeypatch.setattr(engine.model, "score", broken)
    engine.champion.memo.discard()  # the first answer's scores are memoised for the same bundle: score again
    decisions = engine.counters["decisions"]
    r = client.post("/v1/deals/generate", json={"merchant_id": mid})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["degraded"] is True and "model failed" in out["degraded_reasons"][0]
    assert out["decision_id"] is None and out["variants"] == [] and out["chosen"]["type"] == "current"
    assert out["chosen"]["category_id"] and out["chosen"]["price"] > 0
    assert engine.counters["decisions"] == decisions  # nothing logged, nothing learned, no exploration
    monkeypatch.undo()
    assert client.post("/v1/deals/generate", json={"merchant_id": mid}).json()["degraded"] is False


def test_no_exploration_while_a_backend_is_down(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from aidg.errors import BackendUnavailableError

    engine = client.app.state.engine  # type: ignore[attr-defined]
    mid = next(str(m) for m in engine.model.ctx.merchant_ids if engine.privacy.personalized(str(m)))
    seen: list[bool] = []
    select_action = engine.champion.policy.select_action

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(bool(kwargs.get("explore", True)))
        return select_action(*args, **kwargs)

    monkeypatch.setattr(engine.champion.policy, "select_action", spy)
    client.post("/v1/deals/generate", json={"merchant_id": mid})
    assert seen == [True]

    def down(*_: Any, **__: Any) -> Any:
        raise BackendUnavailableError("simulated: Redis is not reachable")

    monkeypatch.setattr(engine.champion.cache, "get", down)
    out = client.post("/v1/deals/generate", json={"merchant_id": mid}).json()
    assert out["degraded"] is True and "snapshot" in out["degraded_reasons"][0]
    assert seen == [True, False] and out["chosen"]["type"] != "explore"


def test_with_the_decision_log_down_generate_is_safe_and_feedback_is_spilled_then_replayed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time
    import uuid

    from aidg.errors import BackendUnavailableError

    engine = client.app.state.engine  # type: ignore[attr-defined]
    log = engine.backends.decisions
    mid = next(str(m) for m in engine.model.ctx.merchant_ids if engine.privacy.personalized(str(m)))
    before = client.post("/v1/deals/generate", json={"merchant_id": mid}).json()
    assert before["decision_id"]

    def down(*_: Any, **__: Any) -> Any:
        raise BackendUnavailableError("simulated: PostgreSQL is not reachable")

    for name in ("record", "receive", "get", "ping"):
        monkeypatch.setattr(log, name, down)
    out = client.post("/v1/deals/generate", json={"merchant_id": mid}).json()
    assert out["degraded"] is True and "decision log unavailable" in out["degraded_reasons"][-1]
    assert out["decision_id"] is None and out["chosen"]["type"] == "current"
    events = [{"event_id": uuid.uuid4().hex, "decision_id": before["decision_id"], "kind": kind, "value": v}
              for kind, v in (("approval", 1.0), ("conversion", 0.3))]  # fmt: skip
    r = client.post("/v1/feedback", json={"events": events})
    assert r.status_code == 200 and r.json()["accepted"] == 2 and r.json()["degraded"] is True
    assert engine.spill.pending() == 1
    time.sleep(1.5)  # the replayer keeps trying while the log is down: nothing is lost
    assert engine.spill.pending() == 1
    monkeypatch.undo()  # the decision log is back
    deadline = time.monotonic() + 10
    while engine.spill.pending() and time.monotonic() < deadline:
        time.sleep(0.1)
    stored = {e.event_id for e, _ in log.events(before["decision_id"])}
    assert engine.spill.pending() == 0 and {e["event_id"] for e in events} <= stored
    again = client.post("/v1/feedback", json={"events": events}).json()
    assert again["duplicates"] == 2  # replayed exactly once: the same events are now duplicates
