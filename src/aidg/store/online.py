"""The online stores' interfaces: per-merchant feature rows and an expiring value cache.

Both hold opaque ``bytes`` under ``str`` keys (use :mod:`aidg.store.arrays` to
put arrays in them) and have two implementations with the same contract,
checked by one suite (``tests/contract/test_online.py``): in process
(:mod:`aidg.store.online_memory`) and Redis (:mod:`aidg.store.online_redis`).

Contract common to both:

* batch calls take any number of keys, including none (a no-op: no round trip);
* a server that cannot be reached raises
  :class:`~aidg.errors.BackendUnavailableError` naming its URL, never a
  client library's exception;
* implementations are safe to share between threads;
* ``close()`` releases connections and may be called more than once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

Change = Callable[[str, bytes], bytes | None]  # (key, its stored row) -> the new row, or None to leave it


class OnlineStore(ABC):
    """Per-merchant feature rows: ``key -> bytes``, kept until overwritten or deleted (no expiry)."""

    @abstractmethod
    def read(self, keys: Sequence[str]) -> list[bytes | None]:
        """Read several rows at once (Redis: one ``MGET`` round trip).

        Args:
            keys: The keys, in any order; duplicates are allowed.

        Returns:
            A list of the same length and order as ``keys``: each row's bytes, or
            ``None`` where the key is not stored.
        """

    @abstractmethod
    def write(self, items: Mapping[str, bytes]) -> None:
        """Store (insert or overwrite) several rows at once (Redis: one pipeline, not a transaction)."""

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> int:
        """Remove several rows; returns how many of them existed."""

    @abstractmethod
    def update(self, keys: Sequence[str], change: Change) -> dict[str, bytes]:
        """Read-modify-write each stored row of ``keys`` atomically: no concurrent :meth:`update` or :meth:`write`
        of the same key is lost in between (Redis: ``WATCH`` / ``MULTI`` / ``EXEC``, retried on a conflict). A key
        not stored is skipped, so is one ``change`` answers None for. Returns the rows written, by key."""

    def scan(self, pattern: str) -> list[str]:
        """The stored keys matching a glob ``pattern`` (``*``, ``?``, ``[...]``); O(n): erasure jobs, not requests."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its keys")

    @abstractmethod
    def count(self) -> int:
        """How many rows are stored (Redis: a ``SCAN`` over this store's namespace, O(n))."""

    @abstractmethod
    def ping(self) -> None:
        """Return if the store is usable; raise :class:`~aidg.errors.BackendUnavailableError` when it is down."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; idempotent."""


class CacheBackend(ABC):
    """Values that expire: ``key -> bytes`` with a time to live set per write.

    An expired entry behaves exactly as an absent one (``get_many`` gives
    ``None``, ``ttl`` gives ``None``, ``delete`` does not count it).
    """

    @abstractmethod
    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Read several values at once (Redis: one ``MGET``).

        Returns:
            A list of the same length and order as ``keys``: the value, or
            ``None`` where the key is absent or expired.
        """

    @abstractmethod
    def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        """Store several values, each expiring ``ttl_s`` seconds from now (Redis: ``SET ... PX`` in one pipeline).

        Raises:
            ConfigError: ``ttl_s`` is not positive.
        """

    @abstractmethod
    def delete(self, keys: Sequence[str]) -> int:
        """Remove several values; returns how many of them existed (and had not expired)."""

    def scan(self, pattern: str) -> list[str]:
        """The stored keys matching a glob ``pattern`` (``*``, ``?``, ``[...]``); O(n): erasure jobs, not requests."""
        raise NotImplementedError(f"{type(self).__name__} cannot list its keys")

    @abstractmethod
    def ttl(self, key: str) -> float | None:
        """Seconds until ``key`` expires; ``None`` if it is absent or expired (``math.inf`` if it never expires)."""

    @abstractmethod
    def ping(self) -> None:
        """Return if the cache is usable; raise :class:`~aidg.errors.BackendUnavailableError` when it is down."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; idempotent."""
