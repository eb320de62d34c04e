"""The decision log: served decisions, their reward events, the bandit posteriors and KPI aggregates.

One class, :class:`DecisionLog`, on SQLite (a file, for one machine) or PostgreSQL (shared by service
replicas and stream workers), written in SQLAlchemy Core. The records and tables are in
:mod:`aidg.decisionlog.schema`, the worker's transaction :class:`Tx` in :mod:`aidg.decisionlog.tx`.
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, create_engine, delete, event, func, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateSchema

from aidg.config import Settings
from aidg.decisionlog.schema import (
    DECISIONS,
    EVENTS,
    KPIS,
    PARTS,
    POSTERIORS,
    SHADOW,
    DecisionRecord,
    EventKey,
    Posterior,
    RewardEvent,
    check_aware,
    chunks,
    encode_array,
    metadata,
    row_event,
    row_posterior,
    row_record,
    utcnow,
)
from aidg.decisionlog.tx import Tx
from aidg.errors import BackendUnavailableError, ConfigError, ConflictError, DataError


def decision_log_url(settings: Settings) -> str:
    """The decision log's SQLAlchemy URL: the server's for ``postgres``, else SQLite (a ``sqlite:`` URL if one is set,
    else ``AIDG_HOME/decisions.sqlite``)."""
    url = settings.database_url
    if settings.backend_kinds()["log"] == "postgres" and url:
        return url
    return url if url and url.startswith("sqlite") else f"sqlite:///{settings.paths.decisions_db}"


__all__ = ["PARTS", "DecisionLog", "DecisionRecord", "Posterior", "RewardEvent", "Tx", "decision_log_url"]

_log = logging.getLogger("aidg.decisionlog")
_DDL_LOCK = 0x41494447  # "AIDG": the advisory lock held while creating the tables on PostgreSQL


def _scope_event_ids(conn: Connection, backend: str, schema: str | None) -> None:
    """Move a log created before event ids were scoped to their decision (primary key ``event_id`` alone) to the
    key ``(decision_id, event_id)``; rows are kept. Nothing to do on a log created since."""
    pk = inspect(conn).get_pk_constraint(EVENTS.name, schema=schema)
    if list(pk.get("constrained_columns") or []) != ["event_id"]:
        return
    _log.warning("decision log: event ids become their decision's (key decision_id, event_id); rows are kept")
    if backend == "postgresql":
        table = f'"{schema}".{EVENTS.name}' if schema else EVENTS.name
        name = pk.get("name") or f"{EVENTS.name}_pkey"
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}", ADD PRIMARY KEY (decision_id, event_id)'))
        conn.execute(text(f"CREATE INDEX IF NOT EXISTS ix_aidg_events_id ON {table} (event_id)"))
        return
    # SQLite cannot change a primary key: copy the rows into the table as it is defined now
    conn.execute(text(f"ALTER TABLE {EVENTS.name} RENAME TO {EVENTS.name}_unscoped"))
    for index in EVENTS.indexes:
        conn.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
    EVENTS.create(conn)
    cols = ", ".join(c.name for c in EVENTS.columns)
    conn.execute(text(f"INSERT INTO {EVENTS.name} ({cols}) SELECT {cols} FROM {EVENTS.name}_unscoped"))
    conn.execute(text(f"DROP TABLE {EVENTS.name}_unscoped"))


class DecisionLog:
    """The decision log on SQLite or PostgreSQL (SQLAlchemy Core, one engine, ``pool_pre_ping``).

    Contract:

    * ``DecisionLog(url, schema=...)`` creates the tables if missing (and, on PostgreSQL, the schema);
      an unreachable database raises :class:`~aidg.errors.BackendUnavailableError` naming the URL
      (password masked) and the fix, here and from every method.
    * ``record`` stores a decision once (:class:`~aidg.errors.ConflictError` on a reused id); ``get`` gives
      it back exactly (``phi`` bit for bit, datetimes timezone-aware UTC on both backends).
    * ``receive`` classifies each event, in order, as ``"accepted"`` (stored and committed before return),
      ``"duplicate"`` (its ``event_id`` was stored for its decision before, or earlier in the batch: an event
      id is its decision's, so ids of different decisions never collide) or ``"unknown_decision"``
      (not stored); the others of the batch are stored regardless. A part not in :data:`PARTS`, a non-finite
      value or a naive time raises :class:`~aidg.errors.DataError` before anything is stored.
    * An event is *applied* once a :class:`Tx` has ``claim``-ed it and committed: ``claim`` marks each stored
      event at most once across all processes, and a transaction that rolls back (exception, crash) marks
      nothing. ``unapplied`` is the outbox of received, not yet applied events, oldest first.
    * ``Tx.lock_posterior`` serialises workers on a posterior (a row lock on PostgreSQL; on SQLite every
      write transaction starts with ``BEGIN IMMEDIATE`` in WAL mode with a 30 s busy timeout, so writers queue
      instead of failing); ``save_posterior`` bumps the version; ``posterior`` reads without locking.
    * Reads (``get``, ``known``, ``events``, ``posterior``, ``counts``, ``kpis``) take no write lock.

    Args:
        url: A SQLAlchemy URL, ``sqlite:///<path>`` or ``postgresql+psycopg://user@host:port/db``
            (a bare ``postgresql://`` uses psycopg 3).
        schema: The PostgreSQL schema of the tables (created if missing); ``None`` for the default one.
    """

    def __init__(self, url: str, *, schema: str | None = None) -> None:
        parsed = make_url(url)
        self._backend = parsed.get_backend_name()
        if self._backend == "postgresql":
            if parsed.drivername == "postgresql":
                parsed = parsed.set(drivername="postgresql+psycopg")
            connect_args: dict[str, Any] = {"connect_timeout": 5}
        elif self._backend == "sqlite":
            if schema is not None:
                raise ConfigError("the decision log's schema argument is for PostgreSQL only, not SQLite")
            connect_args = {"timeout": 30.0}
        else:
            masked = parsed.render_as_string(hide_password=True)
            raise ConfigError(f"the decision log runs on SQLite or PostgreSQL, not {self._backend!r} ({masked})")
        self._url = parsed.render_as_string(hide_password=True)
        options = {"schema_translate_map": {None: schema}} if schema else {}
        self._engine = create_engine(
            parsed,
            pool_pre_ping=self._backend == "postgresql",  # a server can restart under the pool; a file cannot
            connect_args=connect_args,
            execution_options=options,
            json_serializer=_json_dumps,  # decision payloads are ~15 kB: orjson is ~10× the standard library
        )
        if self._backend == "sqlite":
            event.listen(self._engine, "connect", _sqlite_connect)
            event.listen(self._engine, "begin", _sqlite_begin)
        self._insert: Callable[[Any], Any] = postgresql.insert if self._backend == "postgresql" else sqlite.insert
        # built once: a statement built per decision cost more Python than the insert itself
        self._record_stmt = (
            self._insert(DECISIONS)
            .on_conflict_do_nothing(index_elements=["decision_id"])
            .returning(DECISIONS.c.decision_id)
        )
        # SQLite: the same statement run on the pooled DBAPI connection with the columns' own bind processors;
        # SQLAlchemy's execution around it (begin, execute, commit) was ~3/4 of a decision's logging time
        self._sqlite_record: tuple[str, list[tuple[str, Any]]] | None = None
        if self._backend == "sqlite":
            dialect = self._engine.dialect
            compiled = self._record_stmt.compile(dialect=dialect)
            names = list(compiled.positiontup or ())
            binds = [(n, DECISIONS.c[n].type.dialect_impl(dialect).bind_processor(dialect)) for n in names]
            self._sqlite_record = (compiled.string, binds)
        try:
            with self._session(write=True) as conn:
                if self._backend == "postgresql":  # replicas starting together must not race on the DDL
                    conn.execute(select(func.pg_advisory_xact_lock(_DDL_LOCK)))
                if schema:
                    conn.execute(CreateSchema(schema, if_not_exists=True))
                metadata.create_all(conn)
                _scope_event_ids(conn, self._backend, schema)
        except BaseException:
            self._engine.dispose()
            raise
        # SQLite's automatic checkpoint runs inside the commit that fills 1,000 WAL pages: every ~70th decision
        # waited 20-35 ms for it. Here a thread checkpoints every second instead (see _sqlite_connect).
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if self._backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, args=(parsed.database, 1.0), name="aidg-sqlite-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def __repr__(self) -> str:
        return f"DecisionLog({self._url!r})"

    # -- connections ---------------------------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        fix = (
            "start PostgreSQL or unset AIDG_DATABASE_URL"
            if self._backend == "postgresql"
            else "check that the folder exists and is writable, or unset AIDG_DATABASE_URL"
        )
        cause = str(getattr(exc, "orig", exc)).strip().splitlines()
        return BackendUnavailableError(
            f"the decision log database at {self._url} cannot be reached ({cause[0] if cause else exc!r}); {fix}"
        )

    @contextmanager
    def _session(self, *, write: bool) -> Iterator[Connection]:
        """A connection in one transaction (``BEGIN IMMEDIATE`` on SQLite when ``write``), committed on exit."""
        try:
            conn = self._engine.connect()
        except DBAPIError as exc:
            raise self._unavailable(exc) from exc
        try:
            with conn:
                conn.execution_options(aidg_write=write)
                with conn.begin():
                    yield conn
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise self._unavailable(exc) from exc
            raise

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """One write transaction as a :class:`Tx`: committed on normal exit, rolled back on an exception."""
        with self._session(write=True) as conn:
            yield Tx(conn, self._insert)

    # -- decisions -----------------------------------------------------------------------------------------------

    def record(self, rec: DecisionRecord) -> None:
        """Store a served decision; :class:`~aidg.errors.ConflictError` if its id is already stored."""
        check_aware(rec.created_at, "DecisionRecord.created_at")
        phi = np.asarray(rec.phi, dtype=np.float64)
        if phi.ndim != 1:
            raise DataError(f"DecisionRecord.phi must be one-dimensional, got shape {phi.shape}")
        if not (math.isfinite(rec.pscore) and 0.0 < rec.pscore <= 1.0):
            raise DataError(f"DecisionRecord.pscore must be in (0, 1], got {rec.pscore!r}")
        values = {
            "decision_id": rec.decision_id, "merchant_id": rec.merchant_id, "created_at": rec.created_at,
            "model_version": rec.model_version, "arm": rec.arm, "variant": rec.variant, "pscore": float(rec.pscore),
            "phi": encode_array(phi), "phi_dim": phi.shape[0], "score": float(rec.score),
            "predicted": rec.predicted, "payload": rec.payload,
        }  # fmt: skip
        if self._sqlite_record is not None:
            stored = self._record_sqlite(values)
        else:
            with self._session(write=True) as conn:
                if self._backend == "postgresql":
                    # a decision's commit does not wait for its WAL flush (≈ 2 ms here): a database crash can lose
                    # the last fraction of a second of decisions, never a reward event (receive() commits
                    # synchronously)
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                stored = conn.execute(self._record_stmt, values).first() is not None
        if not stored:
            raise ConflictError(f"decision id {rec.decision_id!r} is already recorded; use a new id")

    def _record_sqlite(self, values: dict[str, Any]) -> bool:
        """SQLite: the insert in its own ``BEGIN IMMEDIATE`` transaction on a pooled connection; False when the id
        was already there. A database that cannot be opened or written is unavailable, as on the other path."""
        import sqlite3

        assert self._sqlite_record is not None
        sql, binds = self._sqlite_record
        params = [values[n] if bind is None else bind(values[n]) for n, bind in binds]
        try:
            dbapi = self._engine.raw_connection()
        except DBAPIError as exc:
            raise self._unavailable(exc) from exc
        try:
            cur = dbapi.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                try:
                    cur.execute(sql, params)
                    stored = cur.fetchone() is not None
                    cur.execute("COMMIT")
                except BaseException:
                    dbapi.driver_connection.rollback()  # type: ignore[union-attr]
                    raise
            finally:
                cur.close()
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from exc
        finally:
            dbapi.close()  # back to the pool
        return stored

    def get(self, decision_id: str) -> DecisionRecord | None:
        """The decision ``decision_id``, or ``None``."""
        with self._session(write=False) as conn:
            row = conn.execute(select(DECISIONS).where(DECISIONS.c.decision_id == decision_id)).first()
        return None if row is None else row_record(row)

    def known(self, decision_ids: Sequence[str]) -> set[str]:
        """The ids among ``decision_ids`` that are recorded."""
        with self._session(write=False) as conn:
            return self._known(conn, list(dict.fromkeys(decision_ids)))

    @staticmethod
    def _known(conn: Connection, ids: Sequence[str]) -> set[str]:
        out: set[str] = set()
        for chunk in chunks(ids):
            out.update(conn.scalars(select(DECISIONS.c.decision_id).where(DECISIONS.c.decision_id.in_(chunk))))
        return out

    def delete_merchant(self, merchant_id: str) -> int:
        """Delete the merchant's decisions and their events; return the number of rows removed."""
        ids = select(DECISIONS.c.decision_id).where(DECISIONS.c.merchant_id == merchant_id)
        with self._session(write=True) as conn:
            removed = conn.execute(delete(EVENTS).where(EVENTS.c.decision_id.in_(ids))).rowcount
            removed += conn.execute(delete(SHADOW).where(SHADOW.c.decision_id.in_(ids))).rowcount
            removed += conn.execute(delete(DECISIONS).where(DECISIONS.c.merchant_id == merchant_id)).rowcount
        return int(removed)

    # -- reward events -------------------------------------------------------------------------------------------

    def receive(self, events: Sequence[RewardEvent]) -> list[str]:
        """Store reward events; per event, in order: ``"accepted"``, ``"duplicate"`` (its id was stored for its
        decision before, or earlier in the batch) or ``"unknown_decision"``."""
        for ev in events:
            if ev.part not in PARTS:
                raise DataError(f"event {ev.event_id!r}: part {ev.part!r} is not one of {', '.join(PARTS)}")
            if not isinstance(ev.value, numbers.Real) or not math.isfinite(ev.value):
                raise DataError(f"event {ev.event_id!r}: value must be a finite number, got {ev.value!r}")
            check_aware(ev.at, f"event {ev.event_id!r}: at")
        status = [""] * len(events)
        if not events:
            return status
        now = utcnow()
        with self._session(write=True) as conn:
            known = self._known(conn, list(dict.fromkeys(ev.decision_id for ev in events)))
            pending: dict[EventKey, int] = {}  # event key -> position of its first (to be inserted) occurrence
            rows: list[dict[str, Any]] = []
            for i, ev in enumerate(events):
                if ev.decision_id not in known:
                    status[i] = "unknown_decision"
                elif ev.key in pending:
                    status[i] = "duplicate"
                else:
                    pending[ev.key] = i
                    rows.append({
                        "event_id": ev.event_id, "decision_id": ev.decision_id, "part": ev.part,
                        "value": float(ev.value), "at": ev.at, "detail": dict(ev.detail), "received_at": now,
                    })  # fmt: skip
            stored: set[EventKey] = set()
            for chunk in chunks(rows):
                ins = self._insert(EVENTS).values(list(chunk))
                ins = ins.on_conflict_do_nothing(index_elements=["decision_id", "event_id"])
                stored.update(tuple(r) for r in conn.execute(ins.returning(EVENTS.c.decision_id, EVENTS.c.event_id)))
        for key, i in pending.items():
            status[i] = "accepted" if key in stored else "duplicate"
        return status

    def unapplied(self, limit: int = 1000, received_before: datetime | None = None) -> list[RewardEvent]:
        """Received events not applied yet, oldest first (the outbox a worker re-publishes after a crash)."""
        query = select(EVENTS).where(EVENTS.c.applied_at.is_(None))
        if received_before is not None:
            check_aware(received_before, "received_before")
            query = query.where(EVENTS.c.received_at < received_before)
        query = query.order_by(EVENTS.c.received_at, EVENTS.c.event_id).limit(limit)
        with self._session(write=False) as conn:
            return [row_event(row) for row in conn.execute(query)]

    def events(self, decision_id: str) -> list[tuple[RewardEvent, bool]]:
        """Every event of a decision, by ``at`` then ``event_id``, each with whether it is applied."""
        query = select(EVENTS).where(EVENTS.c.decision_id == decision_id).order_by(EVENTS.c.at, EVENTS.c.event_id)
        with self._session(write=False) as conn:
            return [(row_event(row), row.applied_at is not None) for row in conn.execute(query)]

    def event_status(self, event_ids: Sequence[str]) -> dict[str, bool]:
        """For each of these event ids that is stored: whether it is applied (the fault drills' loss check)."""
        out: dict[str, bool] = {}
        ids = list(dict.fromkeys(event_ids))
        with self._session(write=False) as conn:
            for i in range(0, len(ids), 500):
                query = select(EVENTS.c.event_id, EVENTS.c.applied_at).where(EVENTS.c.event_id.in_(ids[i : i + 500]))
                out.update((row.event_id, row.applied_at is not None) for row in conn.execute(query))
        return out

    # -- posteriors, KPIs, health --------------------------------------------------------------------------------

    def posterior(self, name: str) -> Posterior | None:
        """The posterior ``name`` as last committed (no lock), or ``None``."""
        with self._session(write=False) as conn:
            row = conn.execute(select(POSTERIORS).where(POSTERIORS.c.name == name)).first()
        return None if row is None else row_posterior(row)

    def posteriors_since(self, prefix: str, since: datetime | None = None) -> list[Posterior]:
        """Every posterior whose name starts with ``prefix`` (``|`` separated: the per-merchant statistics of
        :data:`aidg.online.worker.MERCHANT_SEP`), saved after ``since`` when given, oldest first."""
        query = select(POSTERIORS).where(POSTERIORS.c.name.startswith(prefix, autoescape=True))
        if since is not None:
            check_aware(since, "since")
            query = query.where(POSTERIORS.c.updated_at > since)
        with self._session(write=False) as conn:
            rows = conn.execute(query.order_by(POSTERIORS.c.updated_at, POSTERIORS.c.name)).all()
        return [row_posterior(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """``{"decisions": ..., "events": ..., "applied": ...}`` row counts."""
        query = select(
            select(func.count()).select_from(DECISIONS).scalar_subquery().label("decisions"),
            select(func.count()).select_from(EVENTS).scalar_subquery().label("events"),
            select(func.count(EVENTS.c.applied_at)).scalar_subquery().label("applied"),
        )
        with self._session(write=False) as conn:
            row = conn.execute(query).one()
        return {key: int(value) for key, value in row._mapping.items()}

    def kpis(self, since: datetime | None = None) -> list[dict[str, Any]]:
        """The KPI rows ``{bucket, name, count, total}`` (buckets at or after ``since``), by bucket then name."""
        query = select(KPIS)
        if since is not None:
            check_aware(since, "since")
            query = query.where(KPIS.c.bucket >= since)
        with self._session(write=False) as conn:
            rows = conn.execute(query.order_by(KPIS.c.bucket, KPIS.c.name)).all()
        return [dict(row._mapping) for row in rows]

    def ping(self) -> None:
        """Return if the database answers; :class:`~aidg.errors.BackendUnavailableError` if it does not."""
        with self._session(write=False) as conn:
            conn.execute(select(1))

    def _checkpoint_loop(self, path: str, every_s: float) -> None:
        """SQLite: fold the write-ahead log into the database off the request path (PASSIVE: never blocks).

        Its own autocommit connection (a checkpoint cannot run inside the transaction SQLAlchemy would open).
        """
        import sqlite3

        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0.1)
        try:
            while not self._stop.wait(every_s):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:  # busy or gone: the next round tries again
                    continue
        finally:
            conn.close()

    def close(self) -> None:
        """Stop the checkpointer (SQLite) and dispose of the engine (its pooled connections)."""
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join(5)
        self._engine.dispose()


def _json_dumps(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    """Take transaction control from pysqlite (BEGIN comes from :func:`_sqlite_begin`); WAL and a busy timeout."""
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a commit survives the process dying (kill -9); only a power cut can lose the last ones
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA wal_autocheckpoint = 0")  # DecisionLog's thread checkpoints, off the request path
        cursor.execute("PRAGMA journal_size_limit = 67108864")  # a reset WAL is cut back to 64 MB
        cursor.execute("PRAGMA foreign_keys = ON")
    finally:
        cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """Start write transactions with ``BEGIN IMMEDIATE`` so concurrent writers queue on the busy timeout."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("aidg_write") else "BEGIN")
