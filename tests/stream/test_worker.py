"""Stream workers: reward parts joined exactly once, the posterior equal to the bandit's own, and surviving kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from aidg.config import RewardSettings, StreamSettings
from aidg.decisionlog.log import DecisionLog, DecisionRecord, RewardEvent
from aidg.features.merchant_view import MERCHANT_NAMES
from aidg.online.feature_row import FeatureRow
from aidg.online.worker import StreamWorker, posterior_name, reward_message
from aidg.policy.bandit import PARTS, RiskAwareThompsonSampling
from aidg.store.online_memory import MemoryOnlineStore
from aidg.stream.memory_bus import MemoryBus
from tests.servers import require_server

DIM = 4
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _decisions(n: int, seed: int = 0) -> list[DecisionRecord]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        predicted = {"approval": 0.6, "conversion": 0.2, "gp30_uplift": 0.1, "override": 0.05}
        out.append(
            DecisionRecord(
                f"d{i}", f"m{i % 3}", T0, "1", "full", {"variant": 0}, 0.5, rng.normal(size=DIM), 0.3, predicted,
                {"as_of": "2026-03-01", "n_variants": 50},
            )
        )  # fmt: skip
    return out


def _events(decisions: list[DecisionRecord], seed: int = 1) -> list[RewardEvent]:
    rng = np.random.default_rng(seed)
    events = []
    for d in decisions:
        for k, part in enumerate(PARTS):
            value = float(rng.integers(0, 2)) if part == "approval" else float(np.round(rng.uniform(0, 1), 3))
            events.append(RewardEvent(f"{d.decision_id}-{part}", d.decision_id, part, value, T0 + timedelta(hours=k)))
    return events


def _reference(decisions: list[DecisionRecord], events: list[RewardEvent]) -> RiskAwareThompsonSampling:
    """The in-process bandit fed the same events once each, in time order: what the workers must reproduce."""
    bandit = RiskAwareThompsonSampling(DIM, reward=RewardSettings())
    for d in decisions:
        bandit.register(d.decision_id, d.phi, d.score, d.predicted)
    for e in sorted(events, key=lambda e: (e.at, e.event_id)):
        bandit.update_params(e.decision_id, e.part, e.value)
    return bandit


def _setup(log: DecisionLog, n: int = 6) -> tuple[list[DecisionRecord], list[RewardEvent]]:
    decisions = _decisions(n)
    for d in decisions:
        log.record(d)
    events = _events(decisions)
    assert log.receive(events) == ["accepted"] * len(events)
    return decisions, events


def test_worker_posterior_equals_the_bandits_and_repeats_change_nothing(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'd.sqlite'}")
    decisions, events = _setup(log)
    bus = MemoryBus()
    online = MemoryOnlineStore()
    settings = StreamSettings(batch_size=7)
    worker = StreamWorker(bus, log, online, settings, RewardSettings())
    bus.publish(settings.stream, [reward_message(e) for e in events])
    bus.publish(settings.stream, [reward_message(e) for e in events[:5]])  # redelivered duplicates
    while worker.run_once(block_ms=10):
        pass
    post = log.posterior(posterior_name("1"))
    assert post is not None
    ref = _reference(decisions, events)
    np.testing.assert_allclose(post.A, ref.A_, atol=1e-12)
    np.testing.assert_allclose(post.b, ref.b_, atol=1e-12)
    assert worker.applied == len(events)
    assert log.counts()["applied"] == len(events)
    log.close()


def test_worker_updates_the_merchants_online_features(tmp_path: Path) -> None:
    log = DecisionLog(f"sqlite:///{tmp_path / 'd.sqlite'}")
    _setup(log, n=1)
    online = MemoryOnlineStore()
    row = FeatureRow("m0", "1", 0, -1, np.zeros(40, np.float32), np.zeros(8), np.zeros(4), np.zeros((2, 3)),
                     np.ones(2, bool), n_proposals=3, n_overrides=0)  # fmt: skip
    online.write({"m0": row.to_bytes()})
    dropped: list[str] = []
    bus = MemoryBus()
    settings = StreamSettings()
    worker = StreamWorker(
        bus, log, online, settings, RewardSettings(), on_update=lambda row, p: dropped.append(row.merchant_id)
    )
    bus.publish(
        settings.stream,
        [{"kind": "reward", "event_id": i, "decision_id": "d0"} for i in ("d0-approval", "d0-override")],
    )
    assert worker.run_once(block_ms=10) == 2
    new = FeatureRow.from_bytes(online.read(["m0"])[0] or b"")
    override = next(e.value for e, _ in log.events("d0") if e.part == "override")
    assert new.n_proposals == 4 and new.n_overrides == (1 if override > 0 else 0)
    assert new.x[MERCHANT_NAMES.index("override_rate")] == pytest.approx(new.n_overrides / 4)
    assert dropped and set(dropped) == {"m0"}  # its cached serving bundle is refreshed
    log.close()


def _worker_cmd(env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("aidg")
    with log_file.open("ab") as err:  # the child keeps its own handle
        cmd = [str(exe), "stream-worker", "--idle-exit", "30"]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)


@pytest.mark.heavy  # over ~20 s: make faults / make test-all (make test stays under 10 minutes)
def test_killed_worker_mid_batch_applies_every_event_exactly_once(tmp_path: Path) -> None:
    """Two workers share the stream; one is kill -9'd inside a batch's transaction and restarted."""
    require_server("Redis", "127.0.0.1", 6379)
    from aidg.stream.redis_bus import RedisBus

    db = f"sqlite:///{tmp_path / 'd.sqlite'}"
    log = DecisionLog(db)
    decisions, events = _setup(log, n=40)  # 160 events
    stream = f"aidg-test-{uuid.uuid4().hex[:8]}"
    bus = RedisBus("redis://127.0.0.1:6379/0")
    bus.publish(stream, [reward_message(e) for e in events])
    env = {
        **os.environ,
        "AIDG_HOME": str(tmp_path / "home"),
        "AIDG_REDIS_URL": "redis://127.0.0.1:6379/0",
        "AIDG_DATABASE_URL": db,
        "AIDG_STREAM__STREAM": stream,
        "AIDG_STREAM__BATCH_SIZE": "10",
        "AIDG_STREAM__CLAIM_IDLE_MS": "1000",
        "AIDG_STREAM__APPLY_DELAY_MS": "40",  # 0.4 s inside each batch's transaction: room to kill it there
    }
    procs = [_worker_cmd(env, tmp_path / "workers.log"), _worker_cmd(env, tmp_path / "workers.log")]
    try:
        deadline = time.monotonic() + 60
        while log.counts()["applied"] < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert log.counts()["applied"] >= 30, "the workers did not start applying events"
        procs[0].send_signal(signal.SIGKILL)  # mid-batch: most of its 0.4 s batches are inside the transaction
        procs[0].wait(10)
        assert procs[0].returncode == -signal.SIGKILL
        procs[0] = _worker_cmd({**env, "AIDG_STREAM__APPLY_DELAY_MS": "0"}, tmp_path / "workers.log")
        while log.counts()["applied"] < len(events) and time.monotonic() < deadline + 30:
            time.sleep(0.1)
        assert log.counts()["applied"] == len(events)
        for _ in range(50):  # acks follow the commits
            if bus.pending(stream, "aidg-workers") == 0:
                break
            time.sleep(0.1)
        assert bus.pending(stream, "aidg-workers") == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
        for p in procs:
            if p.stderr is not None:
                p.stderr.close()
    post = log.posterior(posterior_name("1"))
    assert post is not None
    ref = _reference(decisions, events)
    np.testing.assert_allclose(post.A, ref.A_, atol=1e-9)  # an event applied twice, or lost, would move A or b
    np.testing.assert_allclose(post.b, ref.b_, atol=1e-9)
    bus.close()
    import redis

    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    client.delete(stream, f"{stream}.dead")
    client.close()
    log.close()
