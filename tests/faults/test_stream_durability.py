"""Stream durability (bench/stream_durability.py, small): events through Redis Streams while workers are kill -9'd
and Redis restarts, every stored event applied exactly once; and each protection shown to matter by removing it.

The harness starts its own ``redis-server`` (AOF, ``appendfsync always``) on a free port in a temp folder and
its own worker processes, and stops only those, by PID; the decision log is SQLite in the same folder (and once
PostgreSQL on 127.0.0.1:5432, in a private schema: the service's multi-worker setup). The
workers are this bench's Python entry point (a ``StreamWorker`` like ``aidg stream-worker``'s, with a short
outbox cadence and the faults injected by the tests below), each forked from one process that imported the
modules once (``entry="fork"``): a killed worker is back in milliseconds, so a short test can kill it often.

Which protection each test guards:

* ``test_every_event_applied_once_...``: all of them together (claim-before-ack, reclaim of a dead
  worker's pending entries, the outbox, the Redis AOF), with one worker and with two in one group, on SQLite
  (its write lock serialises the workers) and on PostgreSQL (the lock row ``FOR UPDATE``); two workers on SQLite
  is ``heavy`` (``make faults``, whose ``bench/faults.py`` also runs both worker counts at 100k events), and so is one
  worker on SQLite and the outbox pair (each over ~20 s: ``make test`` keeps two workers on PostgreSQL);
* ``test_a_redis_that_lost_everything_...``: the outbox alone, when Redis comes back without its data;
* ``test_without_the_outbox_...``: the outbox (events stored while the bus was down are republished);
* ``test_acking_only_after_the_commit_...``: ack only after the decision log's commit, with the reclaim of a
  dead worker's pending entries (with the ack first, a kill loses the batch; the outbox is off here, as it
  would otherwise republish the lost events after its delay and hide the fault);
* ``test_idempotent_claims_...``: ``Tx.claim`` marking each event applied once (else redeliveries and
  outbox republishes are double counted) — and that the posterior and KPI checks catch it.

``test_idempotent_claims_...`` runs with the protection in place in ``make test`` and without it (which must
double-count events) as ``heavy``; both halves of ``test_acking_only_...`` are ``heavy`` (``make test`` keeps the
combined run, whose kills need the ack after the commit too).

Each protection test runs the same setup with the protection (it passes) and without it (the check fails).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.benches import load_bench
from tests.servers import require_binary, require_server

BENCH = Path(__file__).resolve().parents[2] / "bench" / "stream_durability.py"
FAST = {"entry": "fork", "claim_idle_ms": 1000, "outbox_every_s": 2.0, "outbox_age_s": 3.0, "progress": False}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    require_binary("redis-server", "apt-get install redis-server")  # the harness runs its own
    mod = load_bench("stream_durability.py")
    yield mod
    sys.modules.pop(mod.__name__, None)


def _summary(out: dict[str, Any]) -> str:
    keys = ("events_produced", "events_applied", "events_missing", "events_double_counted", "worker_kills",
            "worker_exits", "redis_restarts", "events_unpublished", "pending_after_s",
            "posterior_rel_error")  # fmt: skip
    return ", ".join(f"{k}={out[k]}" for k in keys)


@pytest.mark.parametrize(
    ("workers", "database"),
    [pytest.param(1, "sqlite", marks=pytest.mark.heavy), pytest.param(2, "sqlite", marks=pytest.mark.heavy),
     (2, "postgresql")],
)  # fmt: skip
def test_every_event_applied_once_through_kills_and_a_redis_restart(
    bench: ModuleType, workers: int, database: str
) -> None:
    if database == "postgresql":  # a private schema, dropped afterwards
        require_server("PostgreSQL", "127.0.0.1", 5432)
    out = bench.run(events=3000, kills=12, workers=workers, redis_restart=True, seed=workers, database=database,
                    **FAST, kill_delay_s=(0.05, 1.0), drain_timeout_s=60, timeout_s=120)  # fmt: skip
    why = _summary(out)
    assert not out["timed_out"], why
    assert out["events_produced"] == 3000 and out["events_applied"] == 3000 and out["events_missing"] == 0, why
    assert out["events_double_counted"] == 0 and out["duplicate_applications"] == 0, why
    assert out["posterior_matches"] and out["posterior_rel_error"] <= 1e-6, why
    assert out["worker_kills"] == 12 and out["redis_restarts"] == 1, why
    assert out["events_unpublished"] > 0, why  # the restart did cost publishes: the outbox had work to do
    assert out["redis_kept_acked_writes"] is True, why  # appendfsync always: nothing Redis acknowledged was lost
    assert out["pending_after_s"] is not None and out["pending_after_s"] <= 60 and out["pending_final"] == 0, why


@pytest.mark.heavy  # over ~20 s: make faults / make test-all (make test stays under 10 minutes)
def test_a_redis_that_lost_everything_is_refilled_by_the_outbox(bench: ModuleType) -> None:
    """Beyond the AOF: the restarted Redis comes back empty (stream, group and pending list gone)."""
    out = bench.run(events=3000, kills=12, workers=2, redis_restart=True, redis_lose_data=True, seed=3, **FAST,
                    kill_delay_s=(0.05, 1.0), drain_timeout_s=60, timeout_s=120)  # fmt: skip
    why = _summary(out)
    assert out["redis_lost_data"] and out["redis_restarts"] == 1 and out["worker_kills"] == 12, why
    assert out["events_applied"] == out["events_produced"] == 3000 and out["events_double_counted"] == 0, why
    assert out["posterior_matches"] and out["pending_after_s"] is not None and out["pending_after_s"] <= 60, why


@pytest.mark.heavy  # over ~20 s: make faults / make test-all (make test stays under 10 minutes)
def test_without_the_outbox_a_redis_restart_loses_the_events_it_could_not_take(bench: ModuleType) -> None:
    out = bench.run(events=600, kills=0, workers=1, redis_restart=True, **{**FAST, "outbox": False},
                    drain_timeout_s=5, timeout_s=60)  # fmt: skip
    why = _summary(out)
    assert out["events_unpublished"] > 0, why
    assert out["events_applied"] == out["events_produced"] - out["events_unpublished"], why  # exactly those lost
    assert out["pending_after_s"] is None, why  # the harness's "quiet" check never passes: they stay unapplied


# both halves run in make faults / make test-all (make test keeps the combined run above, whose kills also need the
# ack after the commit)
@pytest.mark.heavy
@pytest.mark.parametrize("fault", ["none", "ack_before_commit"])
def test_acking_only_after_the_commit_is_what_keeps_a_killed_batch(bench: ModuleType, fault: str) -> None:
    """Outbox off, so only the ack order and the reclaim of a dead worker's pending entries can save a batch.

    Every event is produced first and a batch takes 1 s (5 ms per event): both kills land inside a batch."""
    out = bench.run(events=800, kills=2, workers=1, redis_restart=False, backlog=True, apply_delay_ms=5.0,
                    kill_delay_s=(0.3, 0.8), **{**FAST, "outbox": False, "fault": fault},
                    drain_timeout_s=5 if fault != "none" else 60, timeout_s=90)  # fmt: skip
    why = _summary(out)
    assert out["worker_kills"] == 2 and out["events_double_counted"] == 0, why
    if fault == "none":  # the killed batches stayed pending, were reclaimed and applied once
        assert out["events_applied"] == out["events_produced"] and out["pending_after_s"] is not None, why
    else:  # acknowledged, never committed, never delivered again
        assert out["events_applied"] <= out["events_produced"] - 200, why  # a whole batch acked, never committed


@pytest.mark.parametrize("fault", ["none", pytest.param("no_dedupe", marks=pytest.mark.heavy)])
def test_idempotent_claims_are_what_keeps_redeliveries_from_counting_twice(bench: ModuleType, fault: str) -> None:
    """Redeliveries on purpose: every event produced first, two slow workers (2 ms per event, 0.4 s a batch)
    reclaiming each other's entries after 100 ms, and an outbox republishing every unapplied event (still in
    the stream) each second."""
    out = bench.run(events=600, kills=0, workers=2, redis_restart=False, backlog=True, apply_delay_ms=2.0,
                    **{**FAST, "claim_idle_ms": 100, "outbox_every_s": 1.0, "outbox_age_s": 0.0, "fault": fault},
                    drain_timeout_s=30, timeout_s=60)  # fmt: skip
    why = _summary(out) + f", stream_entries_added={out['stream_entries_added']}"
    assert out["events_applied"] == out["events_produced"], why  # nothing lost either way
    if fault == "none":
        assert out["stream_entries_added"] > out["events_produced"], why  # duplicates were there to absorb
        assert out["events_double_counted"] == 0 and out["posterior_matches"], why
    else:
        assert out["duplicate_applications"] > 0 and out["events_double_counted"] > 0, why
        assert not out["posterior_matches"] and out["posterior_rel_error"] > 1e-6, why  # the reference check sees it
