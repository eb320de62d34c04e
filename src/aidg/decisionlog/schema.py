"""The records and tables of the decision log (SQLAlchemy Core), and the codecs between them.

The tables carry no schema name: :class:`aidg.decisionlog.log.DecisionLog` puts them in
a PostgreSQL schema with ``schema_translate_map``. Four tables:

* ``aidg_decisions``: one row per served decision (the played deal's context ``phi`` as raw float64 bytes).
* ``aidg_events``: reward events; ``applied_at`` is NULL until a worker has folded the event into the posterior.
* ``aidg_posteriors``: the bandit posteriors ``(A, b)`` by name, with a version bumped by every save.
* ``aidg_kpis``: ``(bucket, name) -> (count, total)`` aggregates the monitor reads.
* ``aidg_rollout`` (one row per rollout name), ``aidg_rollout_log`` (every transition: who, when, why) and
  ``aidg_shadow`` (the challenger's choice and reward estimates for a logged decision, for the promotion gate).
* ``aidg_autonomy_log``: every autonomy level change of a segment (the dial's or an admin's pin), with evidence.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    TypeDecorator,
)

from aidg.errors import DataError

__all__ = [
    "AUTONOMY_LOG",
    "CHUNK",
    "DECISIONS",
    "EVENTS",
    "KPIS",
    "PARTS",
    "POSTERIORS",
    "ROLLOUT",
    "ROLLOUT_LOG",
    "SHADOW",
    "Array",
    "DecisionRecord",
    "Posterior",
    "RewardEvent",
    "UTCDateTime",
    "check_aware",
    "chunks",
    "decode_array",
    "encode_array",
    "metadata",
    "posterior_values",
    "row_event",
    "row_posterior",
    "row_record",
    "utcnow",
]

PARTS = ("approval", "conversion", "gp30_uplift", "override")
# a posterior's per-merchant rows are named "<posterior><MERCHANT_SEP><merchant id>" (aidg.online.worker)
MERCHANT_SEP = "|merchant|"
EVENT_ID_MAX = 128  # an event id's length limit (the column's); the API checks it with EVENT_ID_PATTERN
EVENT_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"  # letters, digits and . _ : @ - (UUIDs, ULIDs, "src:123")
EventKey = tuple[str, str]  # (decision_id, event_id): an event's identity
CHUNK = 500  # rows per multi-row statement / ids per IN list (well under SQLite's variable limit)
_T = TypeVar("_T")
Array = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class DecisionRecord:
    """One served decision: the played deal, its propensity, bandit context and the whole response."""

    decision_id: str
    merchant_id: str
    created_at: datetime
    model_version: str
    arm: str
    variant: dict[str, Any]
    pscore: float
    phi: Array
    score: float
    predicted: dict[str, float]
    payload: dict[str, Any]


@dataclass(frozen=True)
class RewardEvent:
    """One observed reward part of a decision (``part`` is one of :data:`PARTS`); its identity is
    :attr:`key`, the event id within its decision."""

    event_id: str
    decision_id: str
    part: str
    value: float
    at: datetime
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> EventKey:
        return (self.decision_id, self.event_id)


@dataclass(frozen=True)
class Posterior:
    """A linear bandit posterior ``(A, b)``; ``version`` is bumped by every save."""

    name: str
    A: Array
    b: Array
    version: int
    updated_at: datetime


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def chunks(items: Sequence[_T]) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most :data:`CHUNK`."""
    for i in range(0, len(items), CHUNK):
        yield items[i : i + CHUNK]


def check_aware(value: datetime, what: str) -> None:
    """Raise :class:`~aidg.errors.DataError` if ``value`` (named ``what``) is a naive datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise DataError(f"{what} must be timezone-aware (UTC), got naive {value.isoformat()}")


def row_record(row: Row[Any]) -> DecisionRecord:
    """The record of a row of :data:`DECISIONS`."""
    m = row._mapping
    return DecisionRecord(
        decision_id=m["decision_id"], merchant_id=m["merchant_id"], created_at=m["created_at"],
        model_version=m["model_version"], arm=m["arm"], variant=m["variant"], pscore=m["pscore"],
        phi=decode_array(m["phi"], (m["phi_dim"],)), score=m["score"], predicted=m["predicted"], payload=m["payload"],
    )  # fmt: skip


def row_event(row: Row[Any]) -> RewardEvent:
    """The event of a row of :data:`EVENTS`."""
    m = row._mapping
    return RewardEvent(m["event_id"], m["decision_id"], m["part"], m["value"], m["at"], m["detail"])


def row_posterior(row: Row[Any]) -> Posterior:
    """The posterior of a row of :data:`POSTERIORS`."""
    m = row._mapping
    d = m["dim"]
    return Posterior(m["name"], decode_array(m["A"], (d, d)), decode_array(m["b"], (d,)), m["version"], m["updated_at"])


def posterior_values(A: Array, b: Array) -> dict[str, Any]:
    """The column values of a posterior ``(A, b)`` (checked: shapes ``(d, d)`` and ``(d,)``, finite)."""
    A, b = np.asarray(A, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if b.ndim != 1 or A.shape != (b.shape[0], b.shape[0]):
        raise DataError(f"a posterior needs A of shape (d, d) and b of shape (d,), got {A.shape} and {b.shape}")
    if not (np.isfinite(A).all() and np.isfinite(b).all()):
        raise DataError("a posterior must be finite (A or b holds NaN or inf)")
    return {"dim": b.shape[0], "A": encode_array(A), "b": encode_array(b), "updated_at": utcnow()}


class UTCDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` that always gives back timezone-aware UTC (SQLite keeps no zone).

    Values are converted to UTC before they are stored, so on SQLite (text storage) they also sort
    and compare in time order. A naive value is taken to be UTC already.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def encode_array(a: np.ndarray[Any, Any]) -> bytes:
    """The raw little-endian float64 bytes of ``a`` (C order)."""
    return np.ascontiguousarray(a, dtype="<f8").tobytes()


def decode_array(raw: bytes, shape: tuple[int, ...]) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The float64 array of ``shape`` stored by :func:`encode_array` (a writable copy)."""
    return np.frombuffer(raw, dtype="<f8").astype(np.float64).reshape(shape)


metadata = MetaData()

DECISIONS = Table(
    "aidg_decisions",
    metadata,
    Column("decision_id", String(128), primary_key=True),
    Column("merchant_id", String(128), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("model_version", String(128), nullable=False),
    Column("arm", String(64), nullable=False),
    Column("variant", JSON(), nullable=False),
    Column("pscore", Float(), nullable=False),
    Column("phi", LargeBinary(), nullable=False),
    Column("phi_dim", Integer(), nullable=False),
    Column("score", Float(), nullable=False),
    Column("predicted", JSON(), nullable=False),
    Column("payload", JSON(), nullable=False),
    Index("ix_aidg_decisions_merchant", "merchant_id", "created_at"),
    Index("ix_aidg_decisions_created", "created_at"),
)

EVENTS = Table(
    "aidg_events",
    metadata,
    # an event id is its decision's: (decision_id, event_id) is the key, so one client's ids can neither collide
    # with nor probe another merchant's (a repeat of the same pair is the same event)
    Column("decision_id", String(128), ForeignKey("aidg_decisions.decision_id"), primary_key=True),
    Column("event_id", String(EVENT_ID_MAX), primary_key=True),
    Column("part", String(32), nullable=False),
    Column("value", Float(), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("detail", JSON(), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    Column("applied_at", UTCDateTime(), nullable=True),
    Index("ix_aidg_events_id", "event_id"),
)
# the outbox of received-but-not-applied events, kept small by being partial on both dialects
Index(
    "ix_aidg_events_unapplied",
    EVENTS.c.applied_at,
    EVENTS.c.received_at,
    postgresql_where=EVENTS.c.applied_at.is_(None),
    sqlite_where=EVENTS.c.applied_at.is_(None),
)

POSTERIORS = Table(
    "aidg_posteriors",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("dim", Integer(), nullable=False),
    Column("A", LargeBinary(), nullable=False),
    Column("b", LargeBinary(), nullable=False),
    Column("version", Integer(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

KPIS = Table(
    "aidg_kpis",
    metadata,
    Column("bucket", UTCDateTime(), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("count", Integer(), nullable=False),
    Column("total", Float(), nullable=False),
)

ROLLOUT = Table(
    "aidg_rollout",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("state", String(32), nullable=False),
    Column("champion", String(64), nullable=True),
    Column("challenger", String(64), nullable=True),
    Column("step", Integer(), nullable=False),
    Column("paused", Boolean(), nullable=False),
    Column("revision", Integer(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("step_started_at", UTCDateTime(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("gate", JSON(), nullable=True),
    Column("drill_fault_rate", Float(), nullable=False),  # a rollback drill: challenger requests failed on purpose
)

ROLLOUT_LOG = Table(
    "aidg_rollout_log",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("from_state", String(32), nullable=False),
    Column("to_state", String(32), nullable=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", String(2000), nullable=False),
    Column("detail", JSON(), nullable=False),
    Index("ix_aidg_rollout_log_name", "name", "id"),
)

# the autonomy dial's log (aidg.policy.autonomy): every level change of a segment, by the dial or an admin's pin;
# a segment's level now is its newest row's ``to_level`` (no row: the service's starting level)
AUTONOMY_LOG = Table(
    "aidg_autonomy_log",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("segment", String(128), nullable=False),
    Column("at", UTCDateTime(), nullable=False),
    Column("from_level", String(16), nullable=False),
    Column("to_level", String(16), nullable=False),
    Column("pinned", Boolean(), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", String(2000), nullable=False),
    Column("evidence", JSON(), nullable=False),
    Index("ix_aidg_autonomy_log_segment", "segment", "id"),
)

SHADOW = Table(
    "aidg_shadow",
    metadata,
    Column("decision_id", String(128), primary_key=True),
    Column("challenger", String(64), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("choice", Integer(), nullable=False),  # the challenger's pick (n: the current deal)
    Column("logged", Integer(), nullable=False),  # what the champion played, same indexing
    Column("n", Integer(), nullable=False),
    Column("estimates", LargeBinary(), nullable=False),  # (n + 1,) the challenger's predicted reward of each
    Index("ix_aidg_shadow_challenger", "challenger", "created_at"),
)

# per-merchant consent set through the API (it wins over the merchants table's columns); erased with the merchant
CONSENT = Table(
    "aidg_consent",
    metadata,
    Column("merchant_id", String(128), primary_key=True),
    Column("personalization", Boolean(), nullable=False),
    Column("training", Boolean(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
)

# the privacy jobs' audit trail: erasures and retention runs; ``subject`` is a keyed hash, never a raw id
PRIVACY_AUDIT = Table(
    "aidg_privacy_audit",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # "erasure" or "retention"
    Column("at", UTCDateTime(), nullable=False),
    Column("subject", String(64), nullable=True),
    Column("actor", String(128), nullable=False),
    Column("detail", JSON(), nullable=False),
    Index("ix_aidg_privacy_audit_kind", "kind", "subject"),
)
