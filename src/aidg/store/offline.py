"""The offline store: one Parquet (or CSV) file per table in a folder, queried with DuckDB.

>>> import tempfile
>>> from aidg.sim import simulate
>>> store = OfflineStore(tempfile.mkdtemp())
>>> store.write(simulate("tiny", seed=1).tables)
>>> int(store.query("SELECT count(*) AS n FROM merchants").n[0])
150
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pandas as pd

from aidg.domain import TABLES
from aidg.errors import DataValidationError, MissingTableError, NotFoundError, Problem
from aidg.sim.world import World
from aidg.store.validate import OnError, validate_tables

MAX_SHOWN_PROBLEMS = 50


class OfflineStore:
    """Tables of the data contract (DESIGN §2) in a folder: ``<table>.parquet`` or ``<table>.csv``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()

    def path(self, table: str) -> Path | None:
        """The file holding ``table`` (Parquet preferred), or None."""
        for ext in ("parquet", "csv"):
            p = self.root / f"{table}.{ext}"
            if p.exists():
                return p
        return None

    def tables(self) -> list[str]:
        """Names of the contract tables present in the folder."""
        return [t for t in TABLES if self.path(t) is not None]

    def write(self, tables: dict[str, pd.DataFrame]) -> None:
        """Write each table as Parquet, atomically (a reader never sees half a file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for name, df in tables.items():
            if name not in TABLES:
                raise NotFoundError(f"unknown table {name!r}; tables are {', '.join(TABLES)}")
            tmp = self.root / f".{name}.parquet.tmp"
            df.to_parquet(tmp, index=False)
            tmp.replace(self.root / f"{name}.parquet")

    def read_raw(self, table: str) -> pd.DataFrame:
        """A table as stored, without validation."""
        p = self.path(table)
        if p is None:
            raise MissingTableError(f"table {table!r} not found: expected {self.root}/{table}.parquet (or .csv)")
        return pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p)

    def load(
        self, tables: list[str] | None = None, on_error: OnError = "raise", required: tuple[str, ...] = ()
    ) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
        """Read and validate tables (default: all present).

        ``on_error="raise"`` raises :class:`DataValidationError` listing the
        problems; ``"drop"`` drops the offending rows, keeps going and returns
        the problems.
        """
        if not self.root.is_dir():
            raise MissingTableError(f"data folder {self.root} does not exist")
        names = tables or self.tables()
        missing = [t for t in (*required, *(tables or [])) if self.path(t) is None]
        if missing:
            raise MissingTableError(
                f"missing table(s) in {self.root}: {', '.join(sorted(set(missing)))} "
                "(each as <table>.parquet or <table>.csv; see docs/data-schema.md)"
            )
        raw = {t: self.read_raw(t) for t in names}
        out, problems = validate_tables(raw, on_error=on_error)
        if problems and on_error == "raise":
            raise DataValidationError(problems[:MAX_SHOWN_PROBLEMS], more=max(0, len(problems) - MAX_SHOWN_PROBLEMS))
        return out, problems

    def query(self, sql: str) -> pd.DataFrame:
        """Run DuckDB SQL with one view per table present (``SELECT … FROM deals``)."""
        con = duckdb.connect()
        try:
            for t in self.tables():
                p = self.path(t)
                reader = "read_parquet" if p is not None and p.suffix == ".parquet" else "read_csv_auto"
                con.execute(f"CREATE VIEW {t} AS SELECT * FROM {reader}('{p}')")
            return con.execute(sql).df()
        finally:
            con.close()


def load_world(folder: str | os.PathLike[str]) -> World:
    """A simulated world from a folder written by ``aidg simulate`` (tables + truth), validated."""
    store = OfflineStore(folder)
    truth, meta = World.load_truth(store.root)
    tables, _ = store.load(required=tuple(t for t, s in TABLES.items() if s.from_history))
    return World(tables=tables, truth=truth, meta=meta)


def save_world(world: World, folder: str | os.PathLike[str]) -> OfflineStore:
    """Write a world: its public tables through the store, its truth beside them."""
    store = OfflineStore(folder)
    store.write(world.tables)
    world.save_truth(store.root)
    return store
