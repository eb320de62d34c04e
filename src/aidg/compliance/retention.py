"""Retention: ``aidg retention --days 30`` purges the personal data older than the window (memo: 30 days).

What is purged (each older than ``now − days``):

* the decision log's decisions with their reward events and shadow records, and KPI rows;
* the event bus's entries (Redis Streams ids are millisecond times: ``XRANGE - <cutoff>`` then ``XDEL``,
  pending ones acknowledged); the in-process bus lives only as long as its process;
* the lines of the log files under ``AIDG_HOME/logs`` (their lines start with a timestamp).

What is kept: the bandit posteriors (an aggregate over many merchants, naming none), the rollout's state
and transition log (no merchant data), the privacy audit trail (hashes and counts), the registered models,
and the offline tables: those are the marketplace's own records (its feed decides their retention) and
AIDG's training history; a merchant who asks to be forgotten is erased from them by ``aidg
delete-merchant``. Every run appends a ``retention`` audit record with the cutoff and the counts.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aidg.compliance.erasure import Stores
from aidg.config import Settings
from aidg.decisionlog.privacy import PrivacyStore
from aidg.errors import DataError

_STAMP = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")


def purge_log_file(path: Path, cutoff: datetime) -> int:
    """Drop the lines of a log file stamped before ``cutoff`` (continuation lines go with their record)."""
    kept: list[str] = []
    dropped, keep = 0, True
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _STAMP.match(line)
            if m:
                keep = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) >= cutoff
            if keep:
                kept.append(line)
            else:
                dropped += 1
    if dropped:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(kept), encoding="utf-8")
        tmp.replace(path)
    return dropped


def run_retention(
    settings: Settings, stores: Stores, days: int | None = None, *, actor: str = "cli", now: datetime | None = None
) -> dict[str, Any]:
    """Purge what is older than ``days`` (default ``privacy.retention_days``); returns the audit record's content."""
    window = settings.privacy.retention_days if days is None else days
    if window < 1:
        raise DataError(f"--days must be at least 1 (got {window})")
    t0 = time.perf_counter()
    cutoff = (now or datetime.now(UTC)) - timedelta(days=window)
    pstore = PrivacyStore(stores.decisions)
    removed: dict[str, int] = pstore.purge_before(cutoff)
    try:
        before_ms = int(cutoff.timestamp() * 1000)
        removed["stream_entries"] = stores.bus.erase(stores.stream, lambda _: False, before_ms=before_ms)
    except NotImplementedError:
        removed["stream_entries"] = 0  # Kafka: the topic's retention.ms does it
    logs = sorted(settings.paths.logs.glob("*.log*")) if settings.paths.logs.is_dir() else []
    removed["log_lines"] = sum(purge_log_file(p, cutoff) for p in logs)
    seconds = round(time.perf_counter() - t0, 3)
    detail = {"days": window, "cutoff": cutoff.isoformat(), "removed": removed, "seconds": seconds}
    audit_id = pstore.audit("retention", None, actor, detail)
    return {"audit_id": audit_id, **detail}


__all__ = ["purge_log_file", "run_retention"]
