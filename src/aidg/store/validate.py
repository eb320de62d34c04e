"""Validation of tables against the data contract, with problems named by table, row and column."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa

from aidg.domain import TABLES
from aidg.errors import Problem
from aidg.store.schema import ColumnSpec, column_specs, pandera_schema

OnError = Literal["raise", "drop"]
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}


def _coerce(df: pd.DataFrame, table: str, c: ColumnSpec, problems: list[Problem]) -> None:
    """Convert column ``c`` of ``df`` in place to its kind; a value that will not convert is a problem."""
    s = df[c.name]
    if c.kind in ("float", "int"):
        if pd.api.types.is_bool_dtype(s):
            s = s.astype(float)
        conv = pd.to_numeric(s, errors="coerce")
        if c.kind == "int":
            non_int = conv.notna() & (conv.astype(float) % 1 != 0)
            for i in np.flatnonzero(non_int.to_numpy())[:10]:
                problems.append(Problem(table, c.name, int(i), s.iloc[i], "must be a whole number"))
            conv = conv.where(~non_int)
            conv = conv.astype("Int64") if (c.nullable or conv.isna().any()) else conv.astype(np.int64)
    elif c.kind == "datetime":
        conv = (
            pd.to_datetime(s, errors="coerce", utc=False, format="mixed")
            if not pd.api.types.is_datetime64_any_dtype(s)
            else s
        )
        if isinstance(conv.dtype, pd.DatetimeTZDtype):
            conv = conv.dt.tz_convert("UTC").dt.tz_localize(None)
    elif c.kind == "bool":
        if pd.api.types.is_bool_dtype(s):
            conv = s
        else:
            text = s.astype("string").str.strip().str.lower()
            conv = pd.Series([None] * len(s), index=s.index, dtype=object)
            conv[text.isin(_TRUE).fillna(False)] = True
            conv[text.isin(_FALSE).fillna(False)] = False
    else:
        conv = s if pd.api.types.is_string_dtype(s.dtype) else s.astype("string")
    bad = conv.isna() & s.notna()
    for i in np.flatnonzero(bad.to_numpy())[:10]:
        problems.append(Problem(table, c.name, int(i), s.iloc[i], f"is not a valid {c.kind}"))
    df[c.name] = conv


def check_table(table: str, df: pd.DataFrame) -> tuple[pd.DataFrame, list[Problem]]:
    """Coerce and check one table; returns the coerced frame and every row-level problem.

    Missing nullable columns are added empty; a missing required column is one
    problem for the whole table.
    """
    if table not in TABLES:
        raise KeyError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
    problems: list[Problem] = []
    out = df.reset_index(drop=True).copy()
    specs = column_specs(TABLES[table].record)
    for c in specs:
        if c.name not in out.columns:
            if c.nullable:
                out[c.name] = pd.Series([None] * len(out), dtype=object)
            else:
                problems.append(Problem(table, c.name, None, None, "required column is missing"))
    if problems:
        return out, problems
    for c in specs:
        _coerce(out, table, c, problems)
    try:
        pandera_schema(table).validate(out, lazy=True)
    except pa.errors.SchemaErrors as exc:
        fc = exc.failure_cases
        for row in fc.itertuples(index=False):
            idx = None if pd.isna(row.index) else int(row.index)
            check = str(row.check)
            if check == "not_nullable":
                msg = "must not be empty"
            elif check == "field_uniqueness":
                msg = "duplicate key"
            else:
                msg = check
            if idx is not None and any(p.row == idx and p.column == row.column for p in problems):
                continue  # already reported as not convertible
            problems.append(
                Problem(
                    table,
                    str(row.column) if pd.notna(row.column) else None,
                    idx,
                    None if pd.isna(row.failure_case) else row.failure_case,
                    msg,
                )
            )
    return out, problems


def check_references(tables: dict[str, pd.DataFrame]) -> list[Problem]:
    """Every reference (e.g. ``deals.category_id`` → ``categories``) points at an existing key."""
    problems: list[Problem] = []
    for name, df in tables.items():
        for col, target in TABLES[name].references.items():
            if target not in tables or col not in df.columns:
                continue
            keys = tables[target][TABLES[target].key]
            vals = df[col]
            bad = vals.notna() & ~vals.isin(keys)
            noun = TABLES[target].key.removesuffix("_id")
            for i in np.flatnonzero(bad.to_numpy())[:20]:
                problems.append(Problem(name, col, int(i), vals.iloc[i], f"unknown {noun} (not in {target})"))
            extra = int(bad.sum()) - 20
            if extra > 0:
                problems.append(Problem(name, col, None, None, f"{extra} more rows reference an unknown {noun}"))
    return problems


def validate_tables(
    tables: dict[str, pd.DataFrame], on_error: OnError = "raise"
) -> tuple[dict[str, pd.DataFrame], list[Problem]]:
    """Check every table and the references between them.

    Returns the coerced tables and the problems found. With ``on_error="drop"``
    the rows that have a problem are removed from the returned tables (the load
    goes on); with ``"raise"`` nothing is removed and the caller decides.
    """
    out: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    for name, df in tables.items():
        fixed, p = check_table(name, df)
        out[name] = fixed
        problems += p
    problems += check_references(out)
    if on_error == "drop":
        pending = problems
        for _ in range(len(TABLES)):  # dropping a row can orphan rows that referenced it
            if not pending:
                break
            for name in out:
                bad_rows = [p.row for p in pending if p.table == name and p.row is not None]
                if bad_rows:
                    out[name] = out[name].drop(index=bad_rows, errors="ignore").reset_index(drop=True)
            pending = check_references(out)
            problems += pending
    return out, problems
