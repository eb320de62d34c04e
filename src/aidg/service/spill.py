"""The feedback spill: accepted feedback is kept on local disk while the decision log is down, then replayed.

``append`` writes a batch as one JSON line and ``fsync``-s it before the answer, so an event the service
answered ``accepted`` survives a crash of the process too. ``replay`` hands every spilled batch, oldest
first, to a callback (the engine's own feedback path: stored idempotently by event id, then published)
and removes what went through; it stops at the first failure (the log is still down) and keeps the rest.
Each file is locked (``flock``) while it is written or replayed, so several worker processes sharing
``AIDG_HOME`` replay every file once, including those a crashed process left behind.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson


class FeedbackSpill:
    """Durable local spill of feedback batches under ``folder`` (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / f"feedback-{os.getpid()}.jsonl"
        self._lock = threading.Lock()

    @contextmanager
    def _locked(self, path: Path, mode: str) -> Iterator[Any]:
        with open(path, mode) as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                yield f
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def append(self, events: list[dict[str, Any]]) -> None:
        """Keep a batch durably (written and fsync-ed before this returns)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        line = orjson.dumps(events, default=str) + b"\n"
        with self._lock, self._locked(self.path, "ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def pending(self) -> int:
        """How many spilled batches wait for the decision log."""
        if not self.folder.is_dir():
            return 0
        n = 0
        for p in self.folder.glob("feedback-*.jsonl"):
            with open(p, "rb") as f:
                n += sum(1 for line in f if line.strip())
        return n

    def replay(self, send: Callable[[list[dict[str, Any]]], Any]) -> int:
        """Send every spilled batch, oldest first; returns how many went through (the rest stay on failure)."""
        if not self.folder.is_dir():
            return 0
        sent = 0
        for p in sorted(self.folder.glob("feedback-*.jsonl")):
            with self._lock, self._locked(p, "r+b") as f:
                lines = [line for line in f.read().splitlines() if line.strip()]
                done = 0
                try:
                    for line in lines:
                        send([_revive(e) for e in orjson.loads(line)])
                        done += 1
                finally:
                    f.seek(0)
                    f.truncate()
                    f.write(b"".join(line + b"\n" for line in lines[done:]))
                    f.flush()
                    os.fsync(f.fileno())
                sent += done
            if p != self.path and p.stat().st_size == 0:
                p.unlink(missing_ok=True)
        return sent


def _revive(event: dict[str, Any]) -> dict[str, Any]:
    at = event.get("at")
    if isinstance(at, str):
        event["at"] = datetime.fromisoformat(at)
    return event


__all__ = ["FeedbackSpill"]
