"""The scorer's outputs for the bundles a replica served most recently, so a cache hit skips the forward pass.

A merchant's bundle for a day is the same bytes on every request until the
stream worker patches it or the cache reloads it (``aidg.store.cache``), and
the scorer is a pure function of those bytes for one model version. Unpacking
the bundle and the forward pass (with its top-5 attention and the projection
φ) were about a third of a generate request's CPU on a cache hit
(``bench/service.py`` under py-spy, 2026-12-06); the memo keeps what the caller
computes from the bytes (the service: the scores, the policy's inputs, the
response rows) per cache key and hands it back only when the bytes read are
the very bytes it was computed from (identity, else equality: a patched or
reloaded bundle is computed again). The policy's draws, the guard and the gate
still run on every request.

Bounded by bytes (least recently used first out, each value's size as the
caller estimates it), so a marketplace with many merchants keeps its hottest
ones. What it hands out is shared between requests: the caller makes its
arrays read-only, so code that would modify a shared result fails loudly
instead of corrupting the next answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

from aidg.errors import ConfigError

T = TypeVar("T")


class ScoreMemo(Generic[T]):
    """``key -> (bytes, value)``, least recently used out first beyond ``max_bytes``; thread-safe.

    Args:
        max_bytes: Memory budget; 0 turns the memo off (every request computes).
        size: A value's size in bytes (with the bytes it came from), as the budget counts it.
    """

    def __init__(self, max_bytes: int, size: Callable[[bytes, T], int]) -> None:
        if max_bytes < 0:
            raise ConfigError(f"the score memo's budget must be ≥ 0 bytes, got {max_bytes!r}")
        self.max_bytes = int(max_bytes)
        self._size = size
        self._entries: OrderedDict[str, tuple[bytes, T, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: str, raw: bytes, compute: Callable[[bytes], T]) -> T:
        """The value for ``raw`` (read under ``key``): the memo's when ``raw`` is the bytes it came from, else
        ``compute(raw)``, remembered (an exception in ``compute`` remembers nothing)."""
        if self.max_bytes:
            with self._lock:
                hit = self._entries.get(key)
                if hit is not None and (hit[0] is raw or hit[0] == raw):
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return hit[1]
        value = compute(raw)
        if not self.max_bytes:
            return value
        size = self._size(raw, value)
        with self._lock:
            self.misses += 1
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            if size <= self.max_bytes:
                self._entries[key] = (raw, value, size)
                self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= self._entries.popitem(last=False)[1][2]
        return value

    def discard(self, prefix: str = "") -> int:
        """Forget the entries whose key starts with ``prefix`` (all by default); how many."""
        with self._lock:
            keys = [k for k in self._entries if k.startswith(prefix)]
            for k in keys:
                self._bytes -= self._entries.pop(k)[2]
        return len(keys)


__all__ = ["ScoreMemo"]
