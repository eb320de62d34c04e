"""In-process online store and cache backend: dictionaries behind a lock.

The default when ``AIDG_REDIS_URL`` is unset, and the fast backend of tests and
benchmarks. :class:`MemoryCacheBackend` reads time from an injectable clock, so
expiry can be tested (and replayed) without sleeping.

>>> now = [0.0]
>>> cache = MemoryCacheBackend(clock=lambda: now[0])
>>> cache.set_many({"m1": b"vec"}, ttl_s=10)
>>> cache.get_many(["m1", "m2"])
[b'vec', None]
>>> now[0] = 10.0
>>> cache.get_many(["m1"]), cache.ttl("m1")
([None], None)
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from aidg.errors import ConfigError
from aidg.store.online import CacheBackend, Change, OnlineStore


class MemoryOnlineStore(OnlineStore):
    """Feature rows in a dict (no expiry), safe to share between threads."""

    def __init__(self) -> None:
        self._rows: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def read(self, keys: Sequence[str]) -> list[bytes | None]:
        """See :meth:`OnlineStore.read`."""
        rows = self._rows
        with self._lock:
            return [rows.get(k) for k in keys]

    def write(self, items: Mapping[str, bytes]) -> None:
        """See :meth:`OnlineStore.write`."""
        with self._lock:
            self._rows.update(items)

    def delete(self, keys: Sequence[str]) -> int:
        """See :meth:`OnlineStore.delete`."""
        rows = self._rows
        with self._lock:
            return sum(rows.pop(k, None) is not None for k in set(keys))

    def update(self, keys: Sequence[str], change: Change) -> dict[str, bytes]:
        """See :meth:`OnlineStore.update` (under the store's lock)."""
        out = {}
        with self._lock:
            for k in dict.fromkeys(keys):
                old = self._rows.get(k)
                new = None if old is None else change(k, old)
                if new is not None:
                    self._rows[k] = out[k] = new
        return out

    def scan(self, pattern: str) -> list[str]:
        """See :meth:`OnlineStore.scan`."""
        with self._lock:
            keys = list(self._rows)
        return fnmatch.filter(keys, pattern)

    def count(self) -> int:
        """See :meth:`OnlineStore.count`."""
        with self._lock:
            return len(self._rows)

    def ping(self) -> None:
        """Always up."""

    def close(self) -> None:
        """Nothing to release (the rows stay readable)."""


class MemoryCacheBackend(CacheBackend):
    """Expiring values in a dict, timed by ``clock``, safe to share between threads.

    Expired entries are dropped when read (lazily) and by a purge of the whole
    dict that runs inside :meth:`set_many` once the writes since the last purge
    outnumber the entries that purge kept (and at least ``purge_every``), so
    memory stays within about twice the live entries at O(1) per write.

    Args:
        clock: Seconds, monotonic (``time.monotonic`` by default; a fake clock in tests).
        purge_every: The least number of writes between two purges.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, purge_every: int = 1024) -> None:
        self._clock = clock
        self._data: dict[str, tuple[float, bytes]] = {}  # key -> (expires_at, value)
        self._lock = threading.Lock()
        self._purge_every = purge_every
        self._writes = 0  # since the last purge
        self._kept = 0  # entries the last purge kept

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """See :meth:`CacheBackend.get_many`."""
        now = self._clock()
        out: list[bytes | None] = []
        with self._lock:
            data = self._data  # read under the lock: a purge replaces the dict
            for key in keys:
                entry = data.get(key)
                if entry is None:
                    out.append(None)
                elif entry[0] > now:
                    out.append(entry[1])
                else:
                    del data[key]
                    out.append(None)
        return out

    def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        """See :meth:`CacheBackend.set_many`."""
        if not ttl_s > 0:
            raise ConfigError(f"ttl_s must be positive, got {ttl_s!r}")
        now = self._clock()
        expires = now + ttl_s
        with self._lock:
            data = self._data
            for key, value in items.items():
                data[key] = (expires, value)
            self._writes += len(items)
            if self._writes >= max(self._purge_every, self._kept):
                self._purge(now)

    def _purge(self, now: float) -> None:
        """Drop every expired entry (the lock is held)."""
        self._data = {k: e for k, e in self._data.items() if e[0] > now}
        self._writes = 0
        self._kept = len(self._data)

    def delete(self, keys: Sequence[str]) -> int:
        """See :meth:`CacheBackend.delete`."""
        now = self._clock()
        removed = 0
        with self._lock:
            data = self._data
            for key in set(keys):
                entry = data.pop(key, None)
                removed += entry is not None and entry[0] > now
        return removed

    def scan(self, pattern: str) -> list[str]:
        """See :meth:`CacheBackend.scan` (expired entries left out)."""
        now = self._clock()
        with self._lock:
            keys = [k for k, e in self._data.items() if e[0] > now]
        return fnmatch.filter(keys, pattern)

    def ttl(self, key: str) -> float | None:
        """See :meth:`CacheBackend.ttl`."""
        now = self._clock()
        with self._lock:
            entry = self._data.get(key)
        if entry is None or entry[0] <= now:
            return None
        return entry[0] - now

    def __len__(self) -> int:
        """Entries held, expired ones not yet purged included."""
        return len(self._data)

    def ping(self) -> None:
        """Always up."""

    def close(self) -> None:
        """Nothing to release."""
