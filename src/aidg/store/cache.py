"""The embedding cache's policy: read-through with a TTL, hit/miss counting and refresh-ahead.

:class:`EmbeddingCache` fronts any :class:`~aidg.store.online.CacheBackend`: a miss
calls the loader (once for all the misses of a batch) and stores the result for
``ttl_s``; :meth:`~EmbeddingCache.refresh_due` (a background thread runs it)
reloads warm entries before they expire, so hot keys do not miss at each expiry.

>>> now = [0.0]
>>> clock = lambda: now[0]
>>> from aidg.store.online_memory import MemoryCacheBackend
>>> cache = EmbeddingCache(MemoryCacheBackend(clock), lambda keys: {k: k.encode() for k in keys},
...                        ttl_s=3600, refresh_ahead_s=300, clock=clock)
>>> cache.get("m1"), cache.get("m1")
(b'm1', b'm1')
>>> now[0] = 3400.0
>>> cache.refresh_due()  # m1 expires at 3600, within 300 s, and was read: reloaded
1
>>> now[0] = 4000.0
>>> cache.get("m1"), cache.stats.hit_rate
(b'm1', 0.6666666666666666)
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from aidg.errors import ConfigError, NotFoundError
from aidg.store.online import CacheBackend

log = logging.getLogger(__name__)

Loader = Callable[[list[str]], dict[str, bytes]]
_NEVER = float("inf")


@dataclass(frozen=True)
class CacheStats:
    """Counters since construction or :meth:`EmbeddingCache.reset_stats`.

    Attributes:
        hits: Reads answered by the backend.
        misses: Reads that went to the loader.
        refreshes: Entries reloaded ahead of expiry by :meth:`EmbeddingCache.refresh_due`.
        evictions_expired: Misses on keys this cache had loaded whose TTL had run out
            (the misses refresh-ahead exists to avoid).
        hit_rate: ``hits / (hits + misses)``, 0.0 before any read.
    """

    hits: int
    misses: int
    refreshes: int
    evictions_expired: int
    hit_rate: float


class EmbeddingCache:
    """Read-through cache of ``key -> bytes`` with a TTL and refresh-ahead; thread-safe.

    Staleness guarantee: an entry is never served more than ``ttl_s`` after it was
    loaded (the backend expires it; refresh-ahead reloads a warm entry *before*
    that, it never extends one). A loader result fetched before a concurrent
    :meth:`put` or :meth:`invalidate` of its key is dropped, not written over it.

    In process, the cache keeps each key's expiry and last read time, to know what
    is due without asking the backend; the backend stays the truth (a ``None`` from
    it is a miss, whatever the bookkeeping says). :meth:`refresh_due` forgets keys
    not read within ``keep_warm_s``, so the bookkeeping stays bounded.

    Args:
        backend: Where the values live (its clock must be ``clock``'s, for the in-process one).
        loader: Called with a list of missing keys; returns ``key -> value`` for those that exist.
        ttl_s: Time to live of every stored entry, seconds.
        refresh_ahead_s: Reload warm entries that expire within this many seconds; 0: pure TTL.
        keep_warm_s: An entry is refreshed only if read within this many seconds.
        clock: Seconds, monotonic.

    Raises:
        ConfigError: ``ttl_s`` or ``keep_warm_s`` not positive, or ``refresh_ahead_s`` outside ``[0, ttl_s)``.
    """

    def __init__(
        self,
        backend: CacheBackend,
        loader: Loader,
        ttl_s: float = 3600,
        refresh_ahead_s: float = 300,
        keep_warm_s: float = 86_400,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not ttl_s > 0 or not keep_warm_s > 0:
            raise ConfigError(f"ttl_s and keep_warm_s must be positive, got {ttl_s!r} and {keep_warm_s!r}")
        if not 0 <= refresh_ahead_s < ttl_s:
            raise ConfigError(f"refresh_ahead_s must be in [0, ttl_s={ttl_s!r}), got {refresh_ahead_s!r}")
        self._backend = backend
        self._loader = loader
        self.ttl_s = float(ttl_s)
        self.refresh_ahead_s = float(refresh_ahead_s)
        self.keep_warm_s = float(keep_warm_s)
        self._clock = clock
        self._expires: dict[str, float] = {}  # key -> when its stored value expires (by our clock)
        self._read: dict[str, float] = {}  # key -> last read
        self._gen: dict[str, int] = {}  # key -> sequence number of its last put/invalidate
        self._seq = itertools.count(1)
        self._lock = threading.Lock()  # bookkeeping and counters
        self._write_lock = threading.Lock()  # orders backend writes (put/invalidate vs. loader results)
        self._hits = self._misses = self._refreshes = self._expired = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()  # one per refresher thread
        self._thread_lock = threading.Lock()

    def get(self, key: str) -> bytes:
        """The value of ``key``: from the backend, else loaded and stored for ``ttl_s`` (NotFoundError if none)."""
        value = self._backend.get_many((key,))[0]
        now = self._clock()
        if value is not None:
            with self._lock:
                self._read[key] = now
                self._hits += 1
            return value
        return self._fill([key], now, 1)[key]

    def get_many(self, keys: Sequence[str]) -> list[bytes]:
        """The values of ``keys`` in order: one backend call, one loader call for all misses.

        Raises:
            NotFoundError: the loader does not return some keys (those it returned are stored).
        """
        if not keys:
            return []
        values = self._backend.get_many(keys)
        now = self._clock()
        missing = [k for k, v in zip(keys, values, strict=True) if v is None]
        with self._lock:
            self._hits += len(keys) - len(missing)
            read = self._read
            for k, v in zip(keys, values, strict=True):
                if v is not None:
                    read[k] = now
        if not missing:
            return cast("list[bytes]", values)
        loaded = self._fill(list(dict.fromkeys(missing)), now, len(missing))
        return [loaded[k] if v is None else v for k, v in zip(keys, values, strict=True)]

    def _fill(self, keys: list[str], now: float, misses: int) -> dict[str, bytes]:
        """Load missing ``keys`` (unique), store them, count the misses; NotFoundError for any not returned."""
        with self._lock:
            self._misses += misses
            for k in keys:
                exp = self._expires.get(k)
                if exp is not None and exp <= now:
                    self._expired += 1
                self._read[k] = now
            snapshot = {k: self._gen.get(k) for k in keys}
        loaded = self._loader(keys)
        found = {k: loaded[k] for k in keys if k in loaded}
        self._store(found, snapshot)
        if len(found) < len(keys):
            absent = [k for k in keys if k not in found]
            shown = ", ".join(map(repr, absent[:5])) + (f" and {len(absent) - 5} more" if len(absent) > 5 else "")
            raise NotFoundError(f"the cache's loader has no value for {shown}")
        return found

    def _store(self, values: dict[str, bytes], snapshot: Mapping[str, int | None]) -> int:
        """Write loader results but those whose key was put/invalidated since ``snapshot``; how many were written."""
        with self._write_lock:
            with self._lock:
                fresh = {k: v for k, v in values.items() if self._gen.get(k) == snapshot[k]}
            self._set(fresh)
        return len(fresh)

    def _set(self, items: Mapping[str, bytes]) -> None:
        """Store ``items`` in the backend and note their expiry (``_write_lock`` is held)."""
        if not items:
            return
        stored_at = self._clock()  # read before the write: the backend's expiry is never earlier than ours
        self._backend.set_many(items, self.ttl_s)
        expires = stored_at + self.ttl_s
        with self._lock:
            for k in items:
                self._expires[k] = expires

    def put(self, items: Mapping[str, bytes]) -> None:
        """Write through after a source update: store ``items`` now with a fresh ``ttl_s``."""
        with self._write_lock:
            with self._lock:
                for k in items:
                    self._gen[k] = next(self._seq)
            self._set(items)

    def scan(self, pattern: str) -> list[str]:
        """The backend's keys matching a glob ``pattern`` (erasure jobs; O(n))."""
        return self._backend.scan(pattern)

    def invalidate(self, keys: Sequence[str]) -> int:
        """Remove ``keys`` from the cache (the next read loads them); returns how many were there."""
        if not keys:
            return 0
        with self._write_lock:
            with self._lock:
                for k in keys:
                    self._gen[k] = next(self._seq)
                    self._expires.pop(k, None)
            return self._backend.delete(keys)

    def refresh_due(self, now: float | None = None) -> int:
        """Reload (one loader call) the entries expiring within ``refresh_ahead_s`` and read within ``keep_warm_s``.

        Also forgets keys not read within ``keep_warm_s``. ``refresh_ahead_s == 0``:
        nothing is reloaded (pure TTL). Left to expire: keys the loader no longer
        returns, and keys this cache did not store (hits on entries another process
        loaded: that process refreshes them). ``now``: the time to judge by (default:
        the clock). Returns how many entries were reloaded (added to ``stats.refreshes``).
        """
        now = self._clock() if now is None else now
        cold_before = now - self.keep_warm_s
        horizon = now + self.refresh_ahead_s if self.refresh_ahead_s > 0 else -_NEVER
        cold: list[str] = []
        due: list[str] = []
        with self._lock:  # one pass over the read keys, one over the expiries
            read, expires, gen = self._read, self._expires, self._gen
            for k, t in read.items():
                if t < cold_before:
                    cold.append(k)
                elif expires.get(k, _NEVER) <= horizon:
                    due.append(k)
            for k in cold:
                del read[k]
                expires.pop(k, None)
            for k in [k for k, e in expires.items() if e <= now and k not in read]:
                del expires[k]  # stored by put() and never read
            for k in [k for k in gen if k not in read and k not in expires]:
                del gen[k]
            snapshot = {k: gen.get(k) for k in due}
        if not due:
            return 0
        loaded = self._loader(due)
        written = self._store({k: loaded[k] for k in due if k in loaded}, snapshot)
        with self._lock:
            self._refreshes += written
        return written

    def start_refresher(self, interval_s: float) -> None:
        """Run :meth:`refresh_due` every ``interval_s`` seconds in a daemon thread (no-op if one runs).

        Raises:
            ConfigError: ``interval_s`` not positive, or not below ``refresh_ahead_s`` (entries would
                expire between two runs).
        """
        if not interval_s > 0 or (self.refresh_ahead_s > 0 and interval_s >= self.refresh_ahead_s):
            raise ConfigError(
                f"the refresher's interval_s must be positive and below refresh_ahead_s={self.refresh_ahead_s}, "
                f"got {interval_s!r}"
            )
        with self._thread_lock:
            if self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._run, args=(float(interval_s), self._stop), name="aidg-cache-refresher", daemon=True
            )
            self._thread.start()

    def _run(self, interval_s: float, stop: threading.Event) -> None:
        while not stop.wait(interval_s):
            try:
                self.refresh_due()
            except Exception:  # keep refreshing: a loader or backend hiccup must not end the thread
                log.exception("embedding cache refresh failed; retrying in %.0f s", interval_s)

    def stop(self) -> None:
        """Stop the refresher thread and wait for it; idempotent."""
        with self._thread_lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join()

    @property
    def stats(self) -> CacheStats:
        """The counters now."""
        with self._lock:
            hits, misses = self._hits, self._misses
            total = hits + misses
            return CacheStats(hits, misses, self._refreshes, self._expired, hits / total if total else 0.0)

    def reset_stats(self) -> None:
        """Zero the counters (the cached entries and bookkeeping stay)."""
        with self._lock:
            self._hits = self._misses = self._refreshes = self._expired = 0

    @property
    def tracked_keys(self) -> int:
        """How many keys the in-process bookkeeping holds (bounded by :meth:`refresh_due`)."""
        with self._lock:
            return len(self._read.keys() | self._expires.keys())
