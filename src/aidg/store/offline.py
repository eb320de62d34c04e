"""The offline store: one Parquet (or CSV) file per table in a folder, queried with DuckDB.

With an encryption key (``AIDG_PRIVACY__ENCRYPTION_KEY``, :mod:`aidg.privacy.crypto`) every table is written
encrypted; reads decrypt into memory, and SQL sees an encrypted table as an in-memory Arrow table registered
under its name (DuckDB cannot read an encrypted file itself). Plain files read either way.

>>> import tempfile
>>> from aidg.sim import simulate
>>> store = OfflineStore(tempfile.mkdtemp())
>>> store.write(simulate("tiny", seed=1).tables)
>>> int(store.query("SELECT count(*) AS n FROM merchants").n[0])
150
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import duckdb
import pandas as pd

from aidg.domain import TABLES
from aidg.errors import DataValidationError, MissingTableError, NotFoundError, Problem
from aidg.privacy.crypto import MAGIC, Cipher, is_encrypted
from aidg.store.validate import OnError, validate_tables

MAX_SHOWN_PROBLEMS = 50


class OfflineStore:
    """Tables of the data contract (DESIGN §2) in a folder: ``<table>.parquet`` or ``<table>.csv``.

    ``cipher``: how tables are encrypted at rest; None: the key of the settings in the environment
    (:meth:`Cipher.from_env`, read when first needed), :meth:`Cipher.plain` for none.
    """

    def __init__(self, root: str | os.PathLike[str], cipher: Cipher | None = None) -> None:
        self.root = Path(root).expanduser()
        self.cipher = cipher or Cipher.from_env()

    def content_hash(self) -> str:
        """A digest of the contract tables' files as stored (a version's precomputed serving inputs are valid for
        the folder they were computed from, not a changed one)."""
        h = hashlib.blake2b(digest_size=12)
        for table in self.tables():
            path = self.path(table)
            assert path is not None
            h.update(f"{path.name}|{path.stat().st_size}|".encode())
            h.update(path.read_bytes())
        return h.hexdigest()

    def write_file(self, relative: str, data: bytes) -> None:
        """Write a file under the folder (encrypted with the store's key, atomically), e.g. the simulator's truth."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.cipher.enabled:
            self.cipher.write_bytes(path, data)
            return
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)

    def read_file(self, relative: str) -> bytes:
        """A file written by :meth:`write_file` (encrypted or plain), decrypted."""
        return self.cipher.read_bytes(self.root / relative)

    def encrypted(self, table: str) -> bool:
        """Whether ``table``'s file is encrypted (False when absent)."""
        p = self.path(table)
        if p is None:
            return False
        with p.open("rb") as f:
            return is_encrypted(f.read(len(MAGIC)))

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
            if self.cipher.enabled:
                buf = io.BytesIO()
                df.to_parquet(buf, index=False)
                self.cipher.write_bytes(self.root / f"{name}.parquet", buf.getvalue())
                continue
            tmp = self.root / f".{name}.parquet.tmp"
            df.to_parquet(tmp, index=False)
            tmp.replace(self.root / f"{name}.parquet")

    def read_raw(self, table: str) -> pd.DataFrame:
        """A table as stored, without validation."""
        p = self.path(table)
        if p is None:
            raise MissingTableError(f"table {table!r} not found: expected {self.root}/{table}.parquet (or .csv)")
        if self.encrypted(table):
            buf = io.BytesIO(self.cipher.read_bytes(p))
            return pd.read_parquet(buf) if p.suffix == ".parquet" else pd.read_csv(buf)
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
        """Run DuckDB SQL with one view per table present (``SELECT … FROM deals``).

        An encrypted table is decrypted into memory and registered as an Arrow table of that name.
        """
        con = duckdb.connect()
        try:
            for t in self.tables():
                p = self.path(t)
                if p is not None and self.encrypted(t):
                    import pyarrow as pa  # type: ignore[import-untyped]
                    import pyarrow.csv as pacsv  # type: ignore[import-untyped]
                    import pyarrow.parquet as pq  # type: ignore[import-untyped]

                    raw = pa.BufferReader(self.cipher.read_bytes(p))
                    con.register(t, pq.read_table(raw) if p.suffix == ".parquet" else pacsv.read_csv(raw))
                    continue
                reader = "read_parquet" if p is not None and p.suffix == ".parquet" else "read_csv_auto"
                con.execute(f"CREATE VIEW {t} AS SELECT * FROM {reader}('{p}')")
            return con.execute(sql).df()
        finally:
            con.close()
