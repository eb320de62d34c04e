"""Consent flags and removing merchants from the data contract's tables.

Each merchant carries two flags (DESIGN §2, ``merchants`` table): ``consent_personalization`` (may AIDG
personalize its suggestions) and ``consent_training`` (may its data train models). A flag set through the
API (``PUT /v1/merchants/{id}/consent``, kept in the decision log) wins over the table's column. A merchant
without a value is taken to have consented: that is the marketplace's contract when it feeds AIDG its data.

:func:`drop_merchants` removes merchants from a set of tables together with everything that refers to
them, following the references of :data:`aidg.domain.TABLES` to a fixed point (a merchant's proposals,
the overrides of those proposals, its deals, notes, locations...): the erasure job and the training
exclusion share it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import pandas as pd

from aidg.domain import TABLES

Flags = Mapping[str, tuple[bool, bool]]  # merchant → (personalization, training), from the API


def _flag(merchants: pd.DataFrame, column: str) -> pd.Series:
    if column not in merchants.columns:
        return pd.Series(True, index=merchants.merchant_id.astype(str).to_numpy())
    values = merchants[column].astype("boolean").fillna(True).astype(bool)
    return pd.Series(values.to_numpy(), index=merchants.merchant_id.astype(str).to_numpy())


def consent_flags(merchants: pd.DataFrame, overrides: Flags | None = None) -> pd.DataFrame:
    """``personalization`` and ``training`` per merchant id (index): the table's columns, then the API's."""
    out = pd.DataFrame(
        {
            "personalization": _flag(merchants, "consent_personalization"),
            "training": _flag(merchants, "consent_training"),
        }
    )
    for mid, (personalization, training) in (overrides or {}).items():
        if mid in out.index:
            out.loc[mid] = (personalization, training)
    return out


def drop_merchants(tables: Mapping[str, pd.DataFrame], merchant_ids: Iterable[str]) -> dict[str, pd.DataFrame]:
    """The tables without ``merchant_ids`` and without any row that refers, directly or not, to a removed row."""
    removed: dict[str, set[str]] = {"merchants": {str(m) for m in merchant_ids}}
    out = dict(tables)
    if not removed["merchants"]:
        return out
    changed = True
    while changed:
        changed = False
        for name, df in out.items():
            spec = TABLES.get(name)
            if spec is None or df.empty:
                continue
            gone = pd.Series(False, index=df.index)
            if name in removed and spec.key in df.columns:
                gone |= df[spec.key].astype(str).isin(removed[name])
            for column, target in spec.references.items():
                if target in removed and column in df.columns:
                    gone |= df[column].astype(str).isin(removed[target]) & df[column].notna()
            if gone.any():
                keys = set(df.loc[gone, spec.key].astype(str)) if spec.key in df.columns else set()
                if keys - removed.get(name, set()):
                    removed.setdefault(name, set()).update(keys)
                out[name] = df.loc[~gone].reset_index(drop=True)
                changed = True
    return out


__all__ = ["Flags", "consent_flags", "drop_merchants"]
