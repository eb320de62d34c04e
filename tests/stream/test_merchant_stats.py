"""The per-merchant posterior's online part: the stream workers' per-merchant rows, exactly once and in any order,
equal to the in-process posterior fed the same events; an erasure deletes them; a replica loads them by replacing."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aidg.compliance.erasure import residual_of
from aidg.config import RewardSettings, Settings, StreamSettings
from aidg.decisionlog.log import DecisionLog, DecisionRecord, RewardEvent
from aidg.decisionlog.privacy import PrivacyStore
from aidg.online.worker import (
    MERCHANT_PARTS,
    WORKER_LOCK,
    StreamWorker,
    merchant_stats_name,
    posterior_name,
    posterior_of,
    reward_message,
)
from aidg.policy.merchant_posterior import MerchantPosterior
from aidg.policy.pooled import K, term_features
from aidg.store.online_memory import MemoryOnlineStore
from aidg.stream.memory_bus import MemoryBus
from tests.stream.test_worker import _decisions, _events

CATEGORY = {"m0": "food", "m1": "food", "m2": "spa"}


def _with_psi(decisions: list[DecisionRecord]) -> list[DecisionRecord]:
    rng = np.random.default_rng(4)
    out = []
    for d in decisions:
        psi = term_features(rng.uniform(0.1, 0.6, 1), rng.uniform(10, 60, 1), rng.choice([7, 14, 30], 1),
                            rng.integers(0, 2, 1), (0.3, 30.0, 14.0))[0]  # fmt: skip
        out.append(DecisionRecord(**{**d.__dict__, "payload": {**d.payload, "psi": psi.tolist()}}))
    return out


def _run(log: DecisionLog, events: list[RewardEvent], batch: int) -> None:
    bus, settings = MemoryBus(), StreamSettings(batch_size=batch)
    worker = StreamWorker(bus, log, MemoryOnlineStore(), settings, RewardSettings())
    bus.publish(settings.stream, [reward_message(e) for e in events])
    while worker.run_once(block_ms=10):
        pass


def _reference(decisions: list[DecisionRecord], events: list[RewardEvent]) -> MerchantPosterior:
    mp = MerchantPosterior()
    for d in decisions:
        pred = {"approval": d.predicted["approval"], "conversion": d.predicted["conversion"],
                "uplift": d.predicted["gp30_uplift"]}  # fmt: skip
        mp.register(d.decision_id, d.merchant_id, CATEGORY[d.merchant_id], np.array(d.payload["psi"]), pred)
    for e in sorted(events, key=lambda e: (e.at, e.event_id)):
        mp.update_params(e.decision_id, e.part, e.value)
    return mp


def _loaded(log: DecisionLog) -> MerchantPosterior:
    """A replica's posterior loaded from the workers' rows (twice: loading the same sums again changes nothing)."""
    mp = MerchantPosterior()
    prefix = merchant_stats_name(posterior_name("1"), "")
    for _ in range(2):
        for row in log.posteriors_since(prefix):
            m = row.name[len(prefix) :]
            mp.set_online(m, CATEGORY[m], row.A, row.b)
    return mp


def test_the_workers_merchant_rows_equal_the_posterior_fed_the_same_events_once(tmp_path: Path) -> None:
    decisions = _with_psi(_decisions(9))
    events = _events(decisions)
    corrected = RewardEvent("d4-gp30-fix", "d4", "gp30_uplift", 0.77, events[-1].at)  # a later corrected value
    log = DecisionLog(f"sqlite:///{tmp_path / 'd.sqlite'}")
    for d in decisions:
        log.record(d)
    log.receive([*events, corrected])
    shuffled = [events[i] for i in np.random.default_rng(0).permutation(len(events))]
    _run(log, shuffled + shuffled[:7] + [corrected], batch=5)  # redelivered duplicates, any order
    rows = log.posteriors_since(merchant_stats_name(posterior_name("1"), ""))
    assert {r.name.rsplit("|", 1)[1] for r in rows} == {"m0", "m1", "m2"}
    assert all(r.A.shape == (K * len(MERCHANT_PARTS),) * 2 for r in rows)
    ref, got = _reference(decisions, [*events, corrected]), _loaded(log)
    for m, c in CATEGORY.items():
        for part, (mean, cov) in ref.part_posteriors(m, c).items():
            np.testing.assert_allclose(got.part_posteriors(m, c)[part][0], mean, atol=1e-10)
            np.testing.assert_allclose(got.part_posteriors(m, c)[part][1], cov, atol=1e-10)
    # an erasure deletes the merchant's own rows with its decisions
    counts = PrivacyStore(log).forget_merchant("m1", residual_of(Settings()), posterior_of, WORKER_LOCK)
    assert counts["merchant_posteriors"] == 1
    left = log.posteriors_since(merchant_stats_name(posterior_name("1"), ""))
    assert {r.name.rsplit("|", 1)[1] for r in left} == {"m0", "m2"}
    log.close()
