"""``aidg score-all``: every merchant's variants scored by a served version, written to Parquet.

For nightly refreshes and for a cache to warm from. Each merchant goes through
the very path a request takes when the cache has nothing
(:meth:`~aidg.online.serving_model.ServingModel.bundle_from_snapshot`, then
:meth:`~aidg.online.serving_model.ServingModel.score`), so the rows equal the
service's answers for the same version, day and number of variants (a test
checks it). One row per variant and one for the current deal (``variant`` −1,
``type`` "current"); rows are written in chunks of ``chunk`` merchants, so memory
stays flat whatever the number of merchants.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aidg.config import Settings
from aidg.domain import PREDICTED
from aidg.errors import DataError
from aidg.online.serving_model import ServingModel

COLUMNS = ("merchant_id", "variant", "type", "focus", "category_id", "discount_pct", "price", "duration_days",
           *PREDICTED)  # fmt: skip


def _rows(model: ServingModel, merchant_id: str, at: pd.Timestamp, n: int) -> pd.DataFrame:
    b = model.bundle_from_snapshot(merchant_id, at, n)
    s = model.score(b)
    frame = pd.DataFrame({
        "merchant_id": merchant_id, "variant": np.append(np.asarray(b.terms["variant"][: b.n]).astype(np.int64), -1),
        "type": [*b.labels["type"][: b.n], "current"], "focus": list(b.labels["focus"]),
        "category_id": list(b.labels["category_id"]), "discount_pct": b.terms["discount_pct"],
        "price": b.terms["price"], "duration_days": b.terms["duration_days"],
    })  # fmt: skip
    for k in PREDICTED:
        frame[k] = s[k]
    return frame


def score_all(
    settings: Settings,
    data: Path,
    out: Path,
    version: str = "latest",
    n: int | None = None,
    merchants: list[str] | None = None,
    chunk: int = 500,
    progress: Callable[[str, float], None] | None = None,
) -> dict[str, Any]:
    """Score every merchant (or ``merchants``) of ``data`` with ``version``; write ``out`` (Parquet, zstd)."""
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    if out.suffix != ".parquet":
        raise DataError(f"--out names a Parquet file (…/scores.parquet), got {out}")
    say = progress or (lambda s, f: None)
    t0 = time.perf_counter()
    say("loading the version", 0.0)
    model = ServingModel(settings, data, version)
    n = n or settings.bandit.n_candidates
    known = [str(m) for m in model.ctx.merchant_ids]
    ids = known if merchants is None else merchants
    missing = sorted(set(ids) - set(known))
    if missing:
        raise DataError(f"unknown merchant(s) {', '.join(missing[:5])}: not in {data}")
    if not ids:
        raise DataError(f"{data} has no merchants to score")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    t_load = time.perf_counter() - t0
    writer = None
    rows = 0
    t1 = time.perf_counter()
    try:
        for start in range(0, len(ids), chunk):
            part = pd.concat([_rows(model, m, model.as_of, n) for m in ids[start : start + chunk]], ignore_index=True)
            table = pa.Table.from_pandas(part, preserve_index=False)
            if writer is None:
                meta = {b"aidg.model_version": str(model.version).encode(), b"aidg.as_of": str(model.as_of).encode()}
                writer = pq.ParquetWriter(tmp, table.schema.with_metadata(meta), compression="zstd")
            writer.write_table(table)
            rows += len(part)
            say(f"scored {min(start + chunk, len(ids)):,} of {len(ids):,} merchants", (start + chunk) / len(ids))
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(out)  # all or nothing: a reader never sees half a file
    scoring = time.perf_counter() - t1
    return {
        "out": str(out), "model_version": model.version, "as_of": str(model.as_of.date()), "merchants": len(ids),
        "variants_per_merchant": n, "rows": rows, "candidates": len(ids) * n, "load_seconds": round(t_load, 2),
        "scoring_seconds": round(scoring, 2), "candidates_per_s": round(len(ids) * n / max(scoring, 1e-9), 1),
    }  # fmt: skip


__all__ = ["COLUMNS", "score_all"]
