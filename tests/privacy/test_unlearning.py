"""Erasure's bandit side and retention: the posterior forgets a merchant exactly; old data is purged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from aidg.compliance.erasure import Stores, residual_of
from aidg.compliance.retention import purge_log_file, run_retention
from aidg.config import RewardSettings, Settings, StreamSettings
from aidg.decisionlog.log import DecisionLog, DecisionRecord, RewardEvent
from aidg.decisionlog.privacy import PrivacyStore
from aidg.online.worker import WORKER_LOCK, StreamWorker, posterior_name, posterior_of, reward_message
from aidg.policy.bandit import RiskAwareThompsonSampling
from aidg.privacy.consent import drop_merchants
from aidg.store.online_memory import MemoryCacheBackend, MemoryOnlineStore
from aidg.stream.memory_bus import MemoryBus
from tests.stream.test_worker import _decisions, _events, _reference


def _applied(log: DecisionLog, decisions: list[DecisionRecord], events: list[RewardEvent]) -> None:
    for d in decisions:
        log.record(d)
    assert set(log.receive(events)) == {"accepted"}
    bus, settings = MemoryBus(), StreamSettings(batch_size=5)
    worker = StreamWorker(bus, log, MemoryOnlineStore(), settings, RewardSettings())
    bus.publish(settings.stream, [reward_message(e) for e in events])
    while worker.run_once(block_ms=10):
        pass


def test_forgetting_a_merchant_leaves_the_posterior_it_would_have_had_without_it(tmp_path: Path) -> None:
    decisions = _decisions(9)  # merchants m0, m1, m2
    # some decisions only partly answered: a missing part is the scorer's prediction in the residual
    events = [e for e in _events(decisions) if not (e.decision_id == "d3" and e.part != "approval")]
    log = DecisionLog(f"sqlite:///{tmp_path / 'all.sqlite'}")
    _applied(log, decisions, events)
    before = log.posterior(posterior_name("1"))
    counts = PrivacyStore(log).forget_merchant("m0", residual_of(Settings()), posterior_of, WORKER_LOCK)
    assert counts["decisions"] == 3 and counts["unlearned"] == 3 and counts["posteriors"] == 1
    assert counts["events"] == 4 + 1 + 4
    kept = [d for d in decisions if d.merchant_id != "m0"]
    ref = _reference(kept, [e for e in events if e.decision_id in {d.decision_id for d in kept}])
    after = log.posterior(posterior_name("1"))
    assert after is not None and before is not None
    assert not np.allclose(before.A, ref.A_)  # the merchant had moved it
    np.testing.assert_allclose(after.A, ref.A_, atol=1e-10)  # ...and it is exactly as if it never had
    np.testing.assert_allclose(after.b, ref.b_, atol=1e-10)
    assert PrivacyStore(log).decision_ids("m0") == set() and log.counts()["applied"] == len(events) - counts["events"]
    log.close()


def test_drop_merchants_follows_every_reference(tiny_world) -> None:  # type: ignore[no-untyped-def]
    t = tiny_world.tables
    with_override = t["proposals"].proposal_id.isin(t["overrides"].proposal_id)
    mid = str(t["proposals"].merchant_id[with_override].iloc[0])
    out = drop_merchants(t, [mid])
    props = set(t["proposals"].proposal_id[t["proposals"].merchant_id == mid])
    assert len(out["merchants"]) == len(t["merchants"]) - 1
    for name, df in out.items():
        if "merchant_id" in df.columns:
            assert not (df.merchant_id == mid).any(), name
    assert not out["overrides"].proposal_id.isin(props).any()  # the overrides of its proposals went too
    assert len(out["overrides"]) < len(t["overrides"]) and len(out["reps"]) == len(t["reps"])
    assert drop_merchants(t, [])["deals"] is t["deals"]


def test_retention_purges_what_is_older_than_the_window(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    log = DecisionLog(f"sqlite:///{tmp_path / 'r.sqlite'}")
    now = datetime(2026, 12, 1, tzinfo=UTC)
    old = [DecisionRecord(**{**d.__dict__, "created_at": now - timedelta(days=40)}) for d in _decisions(4)]
    new = [DecisionRecord(**{**d.__dict__, "decision_id": f"n{i}", "created_at": now - timedelta(days=2)})
           for i, d in enumerate(_decisions(3, seed=5))]  # fmt: skip
    for d in old + new:
        log.record(d)
    log.receive(_events(old))
    settings.paths.logs.mkdir(parents=True)
    lines = [
        f"{(now - timedelta(days=45)):%Y-%m-%d %H:%M:%S},001 INFO aidg 1 old line\n",
        "Traceback (most recent call last): continuation of the old record\n",
        f"{(now - timedelta(days=1)):%Y-%m-%d %H:%M:%S},001 INFO aidg 1 recent line\n",
    ]
    (settings.paths.logs / "aidg.log").write_text("".join(lines))
    stores = Stores(log, MemoryOnlineStore(), MemoryCacheBackend(), MemoryBus(), "aidg.events")
    report = run_retention(settings, stores, 30, now=now)
    assert report["removed"]["decisions"] == 4 and report["removed"]["events"] == 16
    assert report["removed"]["log_lines"] == 2
    assert (settings.paths.logs / "aidg.log").read_text() == lines[2]
    assert PrivacyStore(log).decision_ids("m0") == {"n0"}
    rec = PrivacyStore(log).audit_records("retention")[0]
    assert rec["detail"]["days"] == 30 and rec["subject"] is None
    assert run_retention(settings, stores, 30, now=now)["removed"]["decisions"] == 0
    log.close()
    assert purge_log_file(settings.paths.logs / "aidg.log", now) == 1


def test_bandit_and_worker_share_the_residual() -> None:
    """The residual the erasure subtracts is what the bandit added: r(parts) − score, missing parts predicted."""
    d = _decisions(1)[0]
    bandit = RiskAwareThompsonSampling(len(d.phi), reward=RewardSettings())
    bandit.register(d.decision_id, d.phi, d.score, d.predicted)
    bandit.update_params(d.decision_id, "approval", 1.0)
    bandit.update_params(d.decision_id, "gp30_uplift", 0.4)
    r = residual_of(Settings())(d, {"approval": 1.0, "gp30_uplift": 0.4})
    np.testing.assert_allclose(bandit.b_, d.phi * r, atol=1e-12)
