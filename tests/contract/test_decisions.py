"""The decision log's contract, run against SQLite and PostgreSQL alike."""

from __future__ import annotations

import math
import multiprocessing as mp
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from aidg.decisionlog.log import PARTS, DecisionLog, DecisionRecord, RewardEvent
from aidg.errors import BackendUnavailableError, ConflictError, DataError
from tests.servers import require_server

PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
WHERE = pytest.StashKey[tuple[str, str | None]]()
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DecisionLog]:
    """A fresh decision log: a SQLite file, or a private PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        where: tuple[str, str | None] = (f"sqlite:///{tmp_path / 'decisions.db'}", None)
    else:
        require_server("PostgreSQL", "127.0.0.1", 5432)
        where = (PG_URL, f"aidg_t_{secrets.token_hex(6)}")
    request.node.stash[WHERE] = where
    dlog = DecisionLog(where[0], schema=where[1])
    try:
        yield dlog
    finally:
        dlog.close()
        if where[1] is not None:
            engine = create_engine(PG_URL)
            with engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{where[1]}" CASCADE'))
            engine.dispose()


def decision(i: int | str, merchant: str = "m1", dim: int = 3) -> DecisionRecord:
    return DecisionRecord(
        decision_id=f"d{i}",
        merchant_id=merchant,
        created_at=T0,
        model_version="v1",
        arm="treatment",
        variant={"discount": 0.2, "terms": ["a", "b"]},
        pscore=0.25,
        phi=np.arange(dim, dtype=np.float64) / 3.0,
        score=0.5,
        predicted=dict.fromkeys(PARTS, 0.1),
        payload={"variants": [{"id": 1}], "explanations": {"x": "y"}},
    )


def ev(eid: str, did: str = "d1", part: str = "approval", value: float = 1.0, minutes: int = 0) -> RewardEvent:
    return RewardEvent(eid, did, part, value, T0 + timedelta(minutes=minutes), {"k": eid})


def test_record_get_round_trip(log: DecisionLog) -> None:
    phi = np.array([0.1, -1e-300, 1 / 3, math.pi, 5e-324, -0.0])
    created = datetime(2025, 3, 1, 14, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    rec = DecisionRecord(
        "d1", "m1", created, "v1", "control", {"a": [1, 2]}, 0.5, phi, 0.7, {"approval": 0.9}, {"p": 1}
    )
    log.record(rec)
    got = log.get("d1")
    assert got is not None
    assert got.phi.tobytes() == phi.tobytes() and got.phi.dtype == np.float64 and got.phi.shape == (6,)
    assert got.created_at == created and got.created_at.utcoffset() == timedelta(0)
    assert (got.variant, got.predicted, got.payload) == (rec.variant, rec.predicted, rec.payload)
    assert (got.decision_id, got.merchant_id, got.model_version, got.arm, got.pscore, got.score) == (
        "d1", "m1", "v1", "control", 0.5, 0.7,
    )  # fmt: skip
    assert log.get("nope") is None


def test_duplicate_decision_conflicts_and_known(log: DecisionLog) -> None:
    log.record(decision(1))
    log.record(decision(2))
    with pytest.raises(ConflictError, match="d1"):
        log.record(decision(1))
    assert log.known(["d1", "d2", "d3", "d1"]) == {"d1", "d2"}
    assert log.known([]) == set()
    with pytest.raises(DataError):
        log.record(DecisionRecord(**{**decision(3).__dict__, "created_at": datetime(2025, 1, 1)}))  # naive
    assert log.counts()["decisions"] == 2


def test_receive_statuses(log: DecisionLog) -> None:
    log.record(decision(1))
    assert log.receive([ev("e1"), ev("e2", part="conversion")]) == ["accepted", "accepted"]
    batch = [ev("e1"), ev("e3"), ev("e3"), ev("e4", did="missing"), ev("e5", part="override")]
    assert log.receive(batch) == ["duplicate", "accepted", "duplicate", "unknown_decision", "accepted"]
    assert log.receive([]) == []
    assert log.counts() == {"decisions": 1, "events": 4, "applied": 0}
    assert [e.event_id for e, _ in log.events("d1")] == ["e1", "e2", "e3", "e5"]
    first, applied = log.events("d1")[0]
    assert first == ev("e1") and not applied and first.at.utcoffset() == timedelta(0)


def test_an_event_id_is_its_decisions(log: DecisionLog) -> None:
    log.record(decision(1))
    log.record(decision(2))
    # the same id in two decisions: two events (one client's ids can neither collide with nor probe another's)
    assert log.receive([ev("same"), ev("same", did="d2", value=0.0)]) == ["accepted", "accepted"]
    assert log.receive([ev("same", did="d2")]) == ["duplicate"]
    with log.transaction() as tx:
        assert [(e.decision_id, e.value) for e in tx.claim([("d2", "same")])] == [("d2", 0.0)]
    assert [applied for _, applied in log.events("d1")] == [False]
    assert [applied for _, applied in log.events("d2")] == [True]


def test_a_log_from_before_scoped_event_ids_is_moved_with_its_rows(
    log: DecisionLog, request: pytest.FixtureRequest
) -> None:
    url, schema = request.node.stash[WHERE]
    log.record(decision(1))
    log.record(decision(2))
    log.receive([ev("e1"), ev("e2", did="d2")])
    log.close()
    engine = create_engine(url)
    table = f'"{schema}".aidg_events' if schema else "aidg_events"
    with engine.begin() as conn:  # the old key: event_id alone
        if schema:
            name = conn.execute(text("SELECT constraint_name FROM information_schema.table_constraints WHERE "
                                     "table_schema = :s AND table_name = 'aidg_events' AND constraint_type = "
                                     "'PRIMARY KEY'"), {"s": schema}).scalar_one()  # fmt: skip
            conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}", ADD PRIMARY KEY (event_id)'))
        else:
            ddl = conn.execute(text("SELECT sql FROM sqlite_master WHERE name = 'aidg_events'")).scalar_one()
            old = ddl.replace("PRIMARY KEY (decision_id, event_id)", "PRIMARY KEY (event_id)")
            assert old != ddl
            conn.execute(text("ALTER TABLE aidg_events RENAME TO aidg_events_new"))
            conn.execute(text("DROP INDEX IF EXISTS ix_aidg_events_id"))
            conn.execute(text("DROP INDEX IF EXISTS ix_aidg_events_unapplied"))
            conn.execute(text(old))
            conn.execute(text("INSERT INTO aidg_events SELECT * FROM aidg_events_new"))
            conn.execute(text("DROP TABLE aidg_events_new"))
    engine.dispose()
    moved = DecisionLog(url, schema=schema)
    try:
        assert [e.event_id for e, _ in moved.events("d1")] == ["e1"]
        assert [e.event_id for e, _ in moved.events("d2")] == ["e2"]
        assert moved.receive([ev("e2"), ev("e2", did="d2")]) == ["accepted", "duplicate"]
        with moved.transaction() as tx:
            assert [e.key for e in tx.claim([("d1", "e2"), ("d2", "e2")])] == [("d1", "e2"), ("d2", "e2")]
    finally:
        moved.close()


def _keys(*event_ids: str, decision: str = "d1") -> list[tuple[str, str]]:
    return [(decision, e) for e in event_ids]


NAIVE = RewardEvent("x", "d1", "approval", 1.0, datetime(2025, 1, 1))


@pytest.mark.parametrize("bad", [ev("x", part="clicks"), ev("x", value=math.nan), ev("x", value=math.inf), NAIVE])
def test_invalid_event_stores_nothing(log: DecisionLog, bad: RewardEvent) -> None:
    log.record(decision(1))
    with pytest.raises(DataError):
        log.receive([ev("ok"), bad])
    assert log.counts()["events"] == 0


def test_claim_marks_applied_exactly_once(log: DecisionLog) -> None:
    log.record(decision(1))
    log.receive([ev("e1", value=1.0), ev("e2", value=2.0), ev("e3", value=3.0)])
    with log.transaction() as tx:
        claimed = tx.claim([*_keys("e3", "nope", "e1", "e3"), ("d9", "e2")])  # e2 of another decision: not it
    assert [e.event_id for e in claimed] == ["e3", "e1"] and claimed[0] == ev("e3", value=3.0)
    with log.transaction() as tx:
        assert tx.claim(_keys("e1", "e3")) == []
        assert [e.event_id for e in tx.claim(_keys("e1", "e2"))] == ["e2"]
    assert [applied for _, applied in log.events("d1")] == [True, True, True]
    assert log.counts()["applied"] == 3


def test_raising_transaction_leaves_nothing_applied(log: DecisionLog) -> None:
    log.record(decision(1))
    log.receive([ev("e1"), ev("e2")])
    with log.transaction() as tx:
        tx.save_posterior("p", np.eye(2), np.zeros(2))
    with pytest.raises(RuntimeError, match="boom"), log.transaction() as tx:
        tx.lock_posterior("p", lambda: (np.eye(2), np.zeros(2)))
        assert len(tx.claim(_keys("e1", "e2"))) == 2
        tx.save_posterior("p", np.eye(2) * 5, np.ones(2))
        tx.lock_posterior("q", lambda: (np.eye(2), np.zeros(2)))  # created, then rolled back too
        raise RuntimeError("boom")
    post = log.posterior("p")
    assert post is not None and post.version == 1 and np.array_equal(post.A, np.eye(2))
    assert log.posterior("q") is None
    assert [e.event_id for e in log.unapplied()] == ["e1", "e2"] and log.counts()["applied"] == 0


def test_posteriors_by_prefix_and_since_take_the_prefix_literally(log: DecisionLog) -> None:
    with log.transaction() as tx:
        for name in ("p_1|merchant|a", "p_1|merchant|b%", "pX1|merchant|c", "p_1"):  # _ and % are LIKE wildcards
            tx.save_posterior(name, np.eye(2), np.ones(2))
    rows = log.posteriors_since("p_1|merchant|")
    assert sorted(r.name for r in rows) == ["p_1|merchant|a", "p_1|merchant|b%"]
    newest = max(r.updated_at for r in rows)
    assert log.posteriors_since("p_1|merchant|", since=newest) == []
    with log.transaction() as tx:
        tx.save_posterior("p_1|merchant|a", np.eye(2) * 2, np.ones(2))
    later = log.posteriors_since("p_1|merchant|", since=newest)
    assert [r.name for r in later] == ["p_1|merchant|a"] and later[0].version == 2
    with pytest.raises(DataError, match="timezone-aware"):
        log.posteriors_since("p", since=datetime(2025, 1, 1))


def test_lock_posterior_creates_then_returns_saved(log: DecisionLog) -> None:
    calls: list[int] = []

    def init() -> tuple[np.ndarray, np.ndarray]:
        calls.append(1)
        return np.eye(3), np.full(3, 0.5)

    with log.transaction() as tx:
        post = tx.lock_posterior("lin", init)
        assert post.version == 0 and np.array_equal(post.A, np.eye(3)) and np.array_equal(post.b, np.full(3, 0.5))
        assert tx.save_posterior("lin", post.A * 2, post.b + 1) == 1
    read = log.posterior("lin")
    assert read is not None and read.version == 1 and read.updated_at.utcoffset() == timedelta(0)
    assert np.array_equal(read.A, np.eye(3) * 2) and np.array_equal(read.b, np.full(3, 1.5))
    with log.transaction() as tx:
        again = tx.lock_posterior("lin", init)
        assert again.version == 1 and np.array_equal(again.b, np.full(3, 1.5))
        assert tx.save_posterior("lin", again.A, again.b) == 2
    assert calls == [1] and log.posterior("missing") is None
    with pytest.raises(DataError), log.transaction() as tx:
        tx.save_posterior("lin", np.eye(2), np.zeros(3))


def test_applied_parts_and_decisions(log: DecisionLog) -> None:
    log.record(decision(1))
    log.record(decision(2))
    log.receive([ev("a1", value=1.0, minutes=1), ev("a0", value=0.0, minutes=5), ev("c1", part="conversion")])
    log.receive([ev("g2", did="d2", part="gp30_uplift", value=7.5)])
    with log.transaction() as tx:
        tx.claim(_keys("a1", "a0"))
    with log.transaction() as tx:
        claimed = tx.claim([("d1", "c1"), ("d2", "g2")])
        parts = tx.applied_parts(["d1", "d2", "d9"], exclude=[e.key for e in claimed])
        assert parts == {"d1": {"approval": 0.0}, "d2": {}, "d9": {}}
        assert tx.applied_parts(["d1"]) == {"d1": {"approval": 0.0, "conversion": 1.0}}
        recs = tx.decisions(["d1", "d9"])
        assert list(recs) == ["d1"] and recs["d1"].phi.tobytes() == decision(1).phi.tobytes()


def test_unapplied_lists_received_not_applied(log: DecisionLog) -> None:
    log.record(decision(1))
    log.receive([ev("e1"), ev("e2"), ev("e3")])
    with log.transaction() as tx:
        tx.claim(_keys("e2"))
    assert [e.event_id for e in log.unapplied()] == ["e1", "e3"]
    assert [e.event_id for e in log.unapplied(limit=1)] == ["e1"]
    assert log.unapplied(received_before=datetime.now(UTC) - timedelta(hours=1)) == []
    assert len(log.unapplied(received_before=datetime.now(UTC) + timedelta(hours=1))) == 2


def test_kpi_upsert_adds_up(log: DecisionLog) -> None:
    b1, b2 = T0, T0 + timedelta(minutes=1)
    with log.transaction() as tx:
        tx.add_kpi(b1, "approval", 1.0)
        tx.add_kpi(b1, "approval", 0.0)
        tx.add_kpi(b1, "gp30", 2.5, count=3)
    with log.transaction() as tx:
        tx.add_kpi(b1.astimezone(timezone(timedelta(hours=-5))), "approval", 1.0)  # same bucket, other zone
        tx.add_kpi(b2, "approval", 1.0)
    rows = log.kpis()
    assert [(r["bucket"], r["name"], r["count"], r["total"]) for r in rows] == [
        (b1, "approval", 3, 2.0), (b1, "gp30", 3, 2.5), (b2, "approval", 1, 1.0),
    ]  # fmt: skip
    assert rows[0]["bucket"].utcoffset() == timedelta(0)
    assert [r["bucket"] for r in log.kpis(since=b2)] == [b2]
    with pytest.raises(DataError), log.transaction() as tx:
        tx.add_kpi(b1, "approval", math.nan)


def test_delete_merchant(log: DecisionLog) -> None:
    log.record(decision(1, merchant="m1"))
    log.record(decision(2, merchant="m1"))
    log.record(decision(3, merchant="m2"))
    log.receive([ev("e1", did="d1"), ev("e2", did="d1"), ev("e3", did="d3")])
    assert log.delete_merchant("m1") == 4
    assert log.get("d1") is None and log.events("d1") == [] and log.get("d3") is not None
    assert log.counts() == {"decisions": 1, "events": 1, "applied": 0}
    assert log.delete_merchant("m1") == 0


def test_reopen_keeps_data_and_pings(log: DecisionLog, request: pytest.FixtureRequest) -> None:
    log.record(decision(1))
    log.ping()
    url, schema = request.node.stash[WHERE]
    again = DecisionLog(url, schema=schema)
    try:
        again.ping()
        assert again.known(["d1"]) == {"d1"}
    finally:
        again.close()


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_unreachable_database(kind: str, tmp_path: Path) -> None:
    url = (
        "postgresql+psycopg://root:s3cret@127.0.0.1:1/test"
        if kind == "postgresql"
        else f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'x.db'}"
    )
    with pytest.raises(BackendUnavailableError) as info:
        DecisionLog(url).ping()
    message = str(info.value)
    assert "s3cret" not in message and "AIDG_DATABASE_URL" in message
    assert ("127.0.0.1:1" in message and "start PostgreSQL" in message) if kind == "postgresql" else "x.db" in message


N_EVENTS = 20


def _worker(url: str, schema: str | None, worker: int, barrier: Any) -> None:
    """Run 20 small transactions claiming overlapping event windows; fold each value into b."""
    dlog = DecisionLog(url, schema=schema)
    try:
        barrier.wait(timeout=15)
        for k in range(20):
            start = k if worker == 0 else N_EVENTS - 1 - k
            ids = _keys(*(f"e{(start + j) % N_EVENTS}" for j in range(3)))
            with dlog.transaction() as tx:
                post = tx.lock_posterior("conc", lambda: (np.eye(2), np.zeros(2)))
                claimed = tx.claim(ids)
                b = post.b + np.array([sum(e.value for e in claimed), len(claimed)])
                tx.save_posterior("conc", post.A, b)
    finally:
        dlog.close()


def test_concurrent_workers_apply_each_event_once(log: DecisionLog, request: pytest.FixtureRequest) -> None:
    url, schema = request.node.stash[WHERE]
    log.record(decision(1))
    values = [0.5 * i + 0.25 for i in range(N_EVENTS)]
    assert set(log.receive([ev(f"e{i}", value=v) for i, v in enumerate(values)])) == {"accepted"}
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_worker, args=(url, schema, w, barrier)) for w in range(2)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(timeout=20)
        assert [p.exitcode for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    post = log.posterior("conc")
    assert post is not None and post.version == 40
    assert post.b[1] == N_EVENTS and post.b[0] == pytest.approx(sum(values))
    assert log.counts()["applied"] == N_EVENTS and log.unapplied() == []


def test_autonomy_outcomes_read_segment_level_and_answers_in_the_database(log: DecisionLog) -> None:
    """The autonomy review's read (aidg.decisionlog.autonomy): segment, level and predicted edit come out of the
    decision's ``variant`` on both dialects; ``answered_only`` keeps the decisions with an override or GP30."""
    from dataclasses import replace

    from aidg.decisionlog.autonomy import AutonomyStore

    seg = {"discount": 0.2, "autonomy_segment": "cafe|1", "autonomy_level": "copilot"}
    log.record(replace(decision(1), variant=seg))
    log.record(replace(decision(2), variant={**seg, "autonomy_level": "apprentice", "predicted_edit": 0.75},
                       created_at=T0 + timedelta(minutes=1)))  # fmt: skip
    log.record(replace(decision(3), created_at=T0 + timedelta(minutes=2)))  # no segment: not the dial's
    assert log.receive([ev("a", "d1"), ev("o", "d1", "override", 0.0), ev("g", "d1", "gp30_uplift", 0.3),
                        ev("a2", "d2")]) == ["accepted"] * 4  # fmt: skip
    store = AutonomyStore(log)
    got = store.outcomes(T0 - timedelta(days=1))
    assert [(o.decision_id, o.segment, o.level, o.predicted_edit, o.approved, o.edited, o.uplift) for o in got] == [
        ("d1", "cafe|1", "copilot", None, True, False, pytest.approx(0.3)),
        ("d2", "cafe|1", "apprentice", 0.75, True, None, None),
    ]
    assert [o.decision_id for o in store.outcomes(T0 - timedelta(days=1), answered_only=True)] == ["d1"]
    assert store.outcomes(T0 + timedelta(seconds=30)) == [got[1]]
