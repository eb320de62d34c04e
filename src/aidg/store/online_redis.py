"""Redis online store and cache backend (redis-py), used when ``AIDG_REDIS_URL`` is set.

Every key is stored as ``f"{namespace}:{key}"``, so several stores share one
server without clashing. Batch reads are one ``MGET``; batch writes are one
pipeline without a transaction; the cache sets each value with ``PX`` (its time
to live in milliseconds). A server that cannot be reached raises
:class:`~aidg.errors.BackendUnavailableError` naming the URL (password hidden)
and saying how to fix it; redis-py's own connection errors never leak out.
Clients connect lazily: constructing one does not need the server.

Faults: every call has a socket timeout (5 s; 2 s to connect) and up to two retries with jittered
exponential backoff (10 ms doubling, at most 100 ms: a blip is absorbed, an outage is not waited out).
After a failure, a :class:`Breaker` fails calls at once for one second instead of trying again, so a
request path that can do without Redis (the service serves from its in-memory snapshot) stays fast
during an outage, and the first call after the second finds out whether Redis is back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

import redis
import redis.exceptions

from aidg.errors import BackendUnavailableError, ConfigError, redact
from aidg.redis_client import UNREACHABLE, Breaker, retry_policy
from aidg.store.online import CacheBackend, Change, OnlineStore

UPDATE_ATTEMPTS = 50  # optimistic transactions of one batch before giving up (each conflict means progress elsewhere)
UPDATE_MAX_BACKOFF_S = 0.05  # the longest random wait after a conflict (doubling from 0.5 ms)
_GLOB = str.maketrans({c: "\\" + c for c in "\\*?[]"})


class _RedisClient:
    """Shared plumbing: one redis-py client, the key prefix and the error translation."""

    _what = "Redis"

    def __init__(self, url: str, namespace: str, *, connect_timeout_s: float = 2.0, timeout_s: float = 5.0) -> None:
        if not namespace:
            raise ConfigError("a Redis namespace must not be empty")
        self.url = url
        self.namespace = namespace
        self._prefix = namespace + ":"
        self._breaker = Breaker()
        try:
            self._client = redis.Redis.from_url(
                url, socket_connect_timeout=connect_timeout_s, socket_timeout=timeout_s, retry=retry_policy()
            )
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL {redact(url)!r}: {exc} (expected redis://host:port/db)") from None

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn redis-py's connection failures into BackendUnavailableError (at once while the breaker is open)."""
        why = self._breaker.check()
        if why is not None:
            raise BackendUnavailableError(
                f"{self._what} is not reachable at {redact(self.url)} ({why}; tried again within a second); start "
                "Redis or unset AIDG_REDIS_URL to use the in-process backend"
            )
        try:
            yield
        except UNREACHABLE as exc:
            self._breaker.failed(exc)
            raise BackendUnavailableError(
                f"{self._what} is not reachable at {redact(self.url)} ({exc}); start Redis or unset AIDG_REDIS_URL "
                "to use the in-process backend"
            ) from exc

    def _names(self, keys: Sequence[str]) -> list[str]:
        prefix = self._prefix
        return [prefix + k for k in keys]

    def _mget(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        with self._guard():
            return cast("list[bytes | None]", self._client.mget(self._names(keys)))

    def _delete(self, keys: Sequence[str]) -> int:
        if not keys:
            return 0
        with self._guard():
            return int(cast(Any, self._client.delete(*self._names(list(dict.fromkeys(keys))))))

    def _pipeline_set(self, items: Mapping[str, bytes], px: int | None) -> None:
        if not items:
            return
        prefix = self._prefix
        with self._guard(), self._client.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(prefix + key, value, px=px)
            pipe.execute()

    def scan(self, pattern: str) -> list[str]:
        """The keys under this namespace matching the glob ``pattern`` (``SCAN MATCH``), without the prefix."""
        n = len(self._prefix)
        match = self.namespace.translate(_GLOB) + ":" + pattern
        with self._guard():
            return [k.decode()[n:] if isinstance(k, bytes) else str(k)[n:]
                    for k in self._client.scan_iter(match=match, count=1000)]  # fmt: skip

    def ping(self) -> None:
        """Raise :class:`~aidg.errors.BackendUnavailableError` unless the server answers."""
        with self._guard():
            self._client.ping()

    def close(self) -> None:
        """Close the client's connections; idempotent."""
        self._client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({redact(self.url)!r}, namespace={self.namespace!r})"


class RedisOnlineStore(_RedisClient, OnlineStore):
    """Feature rows in Redis under ``namespace`` (no expiry).

    Args:
        url: ``redis://host:port/db``.
        namespace: Key prefix (``"{namespace}:{key}"``).
    """

    _what = "Redis (online feature store)"

    def __init__(self, url: str, namespace: str = "aidg:feat") -> None:
        super().__init__(url, namespace)

    def read(self, keys: Sequence[str]) -> list[bytes | None]:
        """See :meth:`OnlineStore.read` (one ``MGET``)."""
        return self._mget(keys)

    def write(self, items: Mapping[str, bytes]) -> None:
        """See :meth:`OnlineStore.write` (one pipeline of ``SET``)."""
        self._pipeline_set(items, None)

    def delete(self, keys: Sequence[str]) -> int:
        """See :meth:`OnlineStore.delete` (one ``DEL``)."""
        return self._delete(keys)

    def update(self, keys: Sequence[str], change: Change) -> dict[str, bytes]:
        """See :meth:`OnlineStore.update`: ``WATCH`` the rows, read them, ``MULTI`` the new ones, ``EXEC``; a row
        another client wrote in between fails the ``EXEC`` and, after a random wait (exponential backoff with
        jitter, so hot rows do not starve a writer), the whole batch is read and changed again."""
        unique = list(dict.fromkeys(keys))
        if not unique:
            return {}
        names = self._names(unique)
        with self._guard(), self._client.pipeline(transaction=True) as raw:
            pipe = cast(Any, raw)  # redis-py's pipeline is untyped
            for attempt in range(UPDATE_ATTEMPTS):
                try:
                    pipe.watch(*names)
                    out = {}
                    for k, old in zip(unique, pipe.mget(names), strict=True):
                        new = None if old is None else change(k, old)
                        if new is not None:
                            out[k] = new
                    pipe.multi()
                    for k, new in out.items():
                        pipe.set(self._prefix + k, new)
                    pipe.execute()
                    return out
                except redis.exceptions.WatchError:  # another client won: back off a random while, read again
                    time.sleep(random.uniform(0.0, min(UPDATE_MAX_BACKOFF_S, 0.0005 * 2**attempt)))
                    continue
                finally:
                    pipe.reset()
        raise BackendUnavailableError(
            f"Redis at {redact(self.url)}: {len(unique)} feature rows kept changing under {UPDATE_ATTEMPTS} attempts "
            "to update them; try again"
        )

    def count(self) -> int:
        """See :meth:`OnlineStore.count` (``SCAN`` over ``namespace:*``)."""
        pattern = self.namespace.translate(_GLOB) + ":*"
        with self._guard():
            return sum(1 for _ in self._client.scan_iter(match=pattern, count=1000))


class RedisCacheBackend(_RedisClient, CacheBackend):
    """Expiring values in Redis under ``namespace``; Redis itself expires them.

    Args:
        url: ``redis://host:port/db``.
        namespace: Key prefix (``"{namespace}:{key}"``).
    """

    _what = "Redis (embedding cache)"

    def __init__(self, url: str, namespace: str = "aidg:emb") -> None:
        super().__init__(url, namespace)

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """See :meth:`CacheBackend.get_many` (one ``MGET``)."""
        return self._mget(keys)

    def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        """See :meth:`CacheBackend.set_many` (one pipeline of ``SET ... PX``; the TTL is rounded down to ms)."""
        if not ttl_s > 0:
            raise ConfigError(f"ttl_s must be positive, got {ttl_s!r}")
        self._pipeline_set(items, max(1, int(ttl_s * 1000)))

    def delete(self, keys: Sequence[str]) -> int:
        """See :meth:`CacheBackend.delete` (one ``DEL``)."""
        return self._delete(keys)

    def ttl(self, key: str) -> float | None:
        """See :meth:`CacheBackend.ttl` (``PTTL``)."""
        with self._guard():
            ms = int(cast(Any, self._client.pttl(self._prefix + key)))
        if ms == -2:
            return None
        if ms == -1:
            return float("inf")
        return ms / 1000.0
