"""Column specifications derived from the domain records (the single source of the data contract)."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import annotated_types as at
import pandera.pandas as pa

from aidg.domain import TABLES, Record


@dataclass(frozen=True)
class ColumnSpec:
    """One column: its kind, whether it may be empty, its range or allowed values, and its docs."""

    name: str
    kind: Literal["str", "float", "int", "bool", "datetime"]
    nullable: bool
    description: str
    unit: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    allowed: tuple[str, ...] | None = None
    min_length: int | None = None

    def range_text(self) -> str:
        """The allowed values in words, e.g. ``[0, 1)`` or ``one of a, b``."""
        if self.allowed:
            return "one of " + ", ".join(self.allowed)
        lo = f"[{self.ge:g}" if self.ge is not None else (f"({self.gt:g}" if self.gt is not None else "(-∞")
        hi = f"{self.le:g}]" if self.le is not None else (f"{self.lt:g})" if self.lt is not None else "∞)")
        return "" if lo == "(-∞" and hi == "∞)" else f"{lo}, {hi}"


_KINDS: dict[Any, Any] = {str: "str", float: "float", int: "int", bool: "bool", datetime: "datetime"}


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, nullable) of ``X | None``."""
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return inner[0], len(inner) < len(args)
    return annotation, False


def column_specs(record: type[Record]) -> list[ColumnSpec]:
    """The columns of a table record, in order."""
    out = []
    for name, info in record.model_fields.items():
        inner, nullable = _unwrap(info.annotation)
        allowed = None
        if typing.get_origin(inner) is Literal:
            allowed = tuple(str(a) for a in typing.get_args(inner))
            inner = str
        bounds: dict[str, Any] = {}
        for meta in info.metadata:
            for attr, cls in (("ge", at.Ge), ("gt", at.Gt), ("le", at.Le), ("lt", at.Lt), ("min_length", at.MinLen)):
                if isinstance(meta, cls):
                    bounds[attr] = getattr(meta, attr)
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        out.append(
            ColumnSpec(
                name=name,
                kind=_KINDS[inner],
                nullable=nullable,
                description=info.description or "",
                unit=str(extra.get("unit", "")),
                allowed=allowed,
                **bounds,
            )
        )
    return out


def pandera_schema(table: str) -> pa.DataFrameSchema:
    """Row-level checks of a table (ranges, allowed values, nulls, text length, key uniqueness).

    Types are coerced before these checks run (see :mod:`aidg.store.validate`).
    """
    spec = TABLES[table]
    cols = {}
    for c in column_specs(spec.record):
        checks = []
        if c.ge is not None:
            checks.append(pa.Check.ge(c.ge, error=f"must be ≥ {c.ge:g}"))
        if c.gt is not None:
            checks.append(pa.Check.gt(c.gt, error=f"must be > {c.gt:g}"))
        if c.le is not None:
            checks.append(pa.Check.le(c.le, error=f"must be ≤ {c.le:g}"))
        if c.lt is not None:
            checks.append(pa.Check.lt(c.lt, error=f"must be < {c.lt:g}"))
        if c.allowed:
            checks.append(pa.Check.isin(list(c.allowed), error=f"must be one of {', '.join(c.allowed)}"))
        if c.min_length:
            checks.append(pa.Check.str_length(min_value=c.min_length, error="must not be empty"))
        cols[c.name] = pa.Column(
            checks=checks, nullable=c.nullable, unique=c.name == spec.key, required=True, coerce=False
        )
    return pa.DataFrameSchema(cols, strict=False, name=table)


def schema_markdown() -> str:
    """``docs/data-schema.md``, generated from the records (a test keeps the file in sync)."""
    lines = [
        "# Data schema",
        "",
        "Generated from `src/aidg/domain.py` by `aidg schema > docs/data-schema.md`; do not edit by hand.",
        "",
        "A data folder holds one file per table, `<table>.parquet` (or `<table>.csv`).",
        "Column names are the contract: columns may be added, never renamed. Timestamps are UTC.",
        "A nullable column may be left out of a file entirely; it then reads as empty.",
        "`aidg validate DIR` checks a folder and names the table, row and column of each problem.",
        "",
    ]
    for name, spec in TABLES.items():
        doc = (spec.record.__doc__ or "").strip().splitlines()[0] if spec.record.__doc__ else ""
        when = "before any decision (the simulator writes it)" if spec.from_history else "written by the service"
        lines += [f"## `{name}`", ""]
        if doc and not doc.startswith("Base"):
            lines += [doc, ""]
        lines += [f"Key: `{spec.key}`. Exists: {when}.", ""]
        lines += ["| column | type | unit | range | nullable | meaning |", "|---|---|---|---|---|---|"]
        for c in column_specs(spec.record):
            ref = spec.references.get(c.name)
            meaning = c.description + (f" (references `{ref}`)" if ref and "→" not in c.description else "")
            lines.append(
                f"| `{c.name}` | {c.kind} | {c.unit} | {c.range_text()} | {'yes' if c.nullable else 'no'} | {meaning} |"
            )
        lines.append("")
    return "\n".join(lines)
