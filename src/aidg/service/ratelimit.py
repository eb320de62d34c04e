"""Per-API-key rate limits: GCRA (a token bucket kept as one timestamp), in process or shared through Redis.

Each API key may make ``service.rate_limit_per_second`` requests a second on
average and ``service.rate_limit_burst`` at once (a bucket of that many tokens
refilled at the rate). Over it, :class:`RateLimit` answers 429 with
``Retry-After`` (whole seconds) and the app's error body
``{"error": "rate_limited", "message", "detail": {"retry_after_s", ...}}``.

The generic cell rate algorithm keeps one number per key, its *theoretical
arrival time* ``tat``: a request at ``now`` is let through when
``max(tat, now) + T - burst·T <= now`` (``T = 1 / rate``), which then moves
``tat`` to ``max(tat, now) + T``. Times are whole microseconds, so a burst of
exactly ``burst`` requests is never cut short by rounding.

- **In process** (:class:`MemoryLimiter`, one worker): the buckets live in
  the process.
- **Shared by the workers of one** ``aidg serve --workers N`` **without Redis**
  (:class:`SharedLimiter`): ``aidg serve`` makes one array of bucket times in
  shared memory before it starts the workers (one slot per API key, under one
  lock), so the N workers keep one limit per key, not N. Separate ``aidg serve``
  processes (replicas) share a limit only through Redis.
- **Redis** (:class:`RedisLimiter`, when ``AIDG_REDIS_URL`` is set): one Lua
  script does the GCRA step atomically on the server with the server's clock
  (``TIME``), so every worker process and replica shares one limit per key.
  The key is ``<AIDG_REDIS_NAMESPACE>:rl:<hash>`` (``aidg:rl:…`` by default)
  with an expiry of when its bucket is full again; ``<hash>`` is a BLAKE2b of
  the API key keyed by the service's whole key set: Redis never holds an API
  key nor anything one could be recovered from by guessing.
  When Redis does not answer (a 100 ms timeout) the limiter fails open: the
  request proceeds, limited only by this process's own in-process bucket
  (which never refuses what the shared limit would allow from this process),
  Redis is left alone for a second, a warning is logged once per outage, and
  never a 5xx.

Only requests that carry a *known* key are counted (a missing or unknown key
passes through and the route answers 401, so 401 always comes before 429;
routes that need no key, like ``/healthz``, are counted only when a key is
sent). A service without API keys (``AIDG_API_KEYS`` unset: it then listens
on 127.0.0.1 only) has no rate limit at all. The check is a plain ASGI
wrapper run before the body is read: no task, no stream, a dictionary lookup
and (with Redis) one ``EVALSHA`` per request.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from aidg.config import Settings
from aidg.errors import ConfigError, redact
from aidg.extras import require
from aidg.service.responses import JSON

log = logging.getLogger("aidg.service.ratelimit")

US = 1_000_000

# KEYS[1] the bucket; ARGV[1] the emission interval T and ARGV[2] the burst's width burst·T, both in µs.
# Returns 0 (go) or the µs until a request would be let through. TIME is the server's clock: every client
# shares it. A script that reads TIME and then writes is replicated by its effects (Redis >= 5 does so).
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local width = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + interval
local wait = new - width - now
if wait > 0 then return wait end
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.ceil((new - now) / 1000) + 1)
return 0
"""


class Limiter(Protocol):
    """Decides one request of a bucket: 0.0 to let it through, else the seconds until one would be."""

    rate: float
    burst: int

    def wait(self, bucket: str) -> float: ...

    def close(self) -> None: ...


def _interval_us(rate: float) -> int:
    if not (rate > 0 and math.isfinite(rate)):
        raise ConfigError(f"a rate limit must be a positive number of requests per second (got {rate!r})")
    return max(1, round(US / rate))


def _monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class MemoryLimiter:
    """GCRA buckets in this process (thread-safe); ``clock`` returns microseconds (injectable for tests)."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], int] = _monotonic_us) -> None:
        if burst < 1:
            raise ConfigError(f"a rate limit's burst must be at least 1 (got {burst!r})")
        self.rate, self.burst, self.clock = rate, burst, clock
        self.interval = _interval_us(rate)
        self.width = burst * self.interval
        self._tat: dict[str, int] = {}
        self._lock = threading.Lock()

    def wait(self, bucket: str) -> float:
        now = self.clock()
        with self._lock:
            tat = max(self._tat.get(bucket, now), now)
            new = tat + self.interval
            wait = new - self.width - now
            if wait > 0:
                return wait / US
            self._tat[bucket] = new  # one entry per bucket: the service's buckets are its configured keys
        return 0.0

    def close(self) -> None:
        return None


_shared_tat: Any = None  # set in each `aidg serve` worker (share_across_workers): the bucket times all workers share


def share_across_workers(tat: Any) -> None:
    """Use ``tat`` (a ``multiprocessing`` ``Array("q", n)`` with its lock, made by the parent ``aidg serve``) for
    the buckets of every limiter this process makes (:func:`make_limiter`)."""
    global _shared_tat
    _shared_tat = tat


def shared_slots(settings: Settings) -> int:
    """How many bucket slots the workers of one ``aidg serve`` share (0: no API keys, nothing to share)."""
    return len(bucket_ids(settings.api_keys)) if settings.api_keys else 0


class SharedLimiter:
    """GCRA buckets in memory shared by processes: ``tat`` a ``multiprocessing`` ``Array("q", ≥ len(buckets))``
    with its lock, ``buckets`` every bucket id (each gets the slot of its rank). The clock is the system's
    monotonic clock, the same in every process of the machine."""

    def __init__(
        self, tat: Any, buckets: Iterable[str], rate: float, burst: int, clock: Callable[[], int] = _monotonic_us
    ) -> None:
        if burst < 1:
            raise ConfigError(f"a rate limit's burst must be at least 1 (got {burst!r})")
        self.slot = {b: i for i, b in enumerate(sorted(set(buckets)))}
        if len(tat) < len(self.slot):
            raise ConfigError(f"the shared rate-limit array has {len(tat)} slots for {len(self.slot)} API keys")
        self.tat, self.rate, self.burst, self.clock = tat, rate, burst, clock
        self.interval = _interval_us(rate)
        self.width = burst * self.interval

    def wait(self, bucket: str) -> float:
        i = self.slot.get(bucket)
        if i is None:  # not a configured key's bucket: the middleware never asks
            raise ConfigError("a rate-limit bucket that is not one of the service's API keys")
        now = self.clock()
        with self.tat.get_lock():
            tat = max(self.tat[i] or now, now)  # 0: never used
            new = tat + self.interval
            wait = new - self.width - now
            if wait > 0:
                return wait / US
            self.tat[i] = new
        return 0.0

    def close(self) -> None:
        return None


class RedisLimiter:
    """GCRA buckets in Redis, shared by every process that uses the same server and namespace.

    A Redis that does not answer (or errs) never fails a request: ``fallback`` decides it (None: let it
    through), and Redis is not tried again for ``retry_s``.
    """

    def __init__(
        self,
        url: str,
        rate: float,
        burst: int,
        *,
        namespace: str = "aidg",
        fallback: Limiter | None = None,
        timeout_s: float = 0.1,
        retry_s: float = 1.0,
    ) -> None:
        redis = require("redis", "the rate limit shared in Redis")
        if burst < 1:
            raise ConfigError(f"a rate limit's burst must be at least 1 (got {burst!r})")
        self.url, self.rate, self.burst = url, rate, burst
        self.interval = _interval_us(rate)
        self.width = burst * self.interval
        self.prefix = f"{namespace}:rl:"
        self.fallback, self.retry_s = fallback, retry_s
        try:
            self._client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL {redact(url)!r}: {exc} (expected redis://host:port/db)") from None
        self._script = self._client.register_script(GCRA_LUA)
        self._skip_until = 0.0
        self._down = False
        self.failures = 0  # requests decided without Redis because it did not answer

    def wait(self, bucket: str) -> float:
        import redis.exceptions

        if self._skip_until and time.monotonic() < self._skip_until:
            return self._without_redis(bucket)
        try:
            us = self._script(keys=[self.prefix + bucket], args=[self.interval, self.width])
        except (redis.exceptions.RedisError, OSError) as exc:
            self._skip_until = time.monotonic() + self.retry_s
            if not self._down:
                self._down = True
                log.warning(
                    "rate limits: Redis at %s did not answer (%s); requests proceed under this process's own "
                    "limit until it does", redact(self.url), exc,
                )  # fmt: skip
            return self._without_redis(bucket)
        if self._down:
            self._down, self._skip_until = False, 0.0
            log.warning("rate limits: Redis at %s answers again; the shared limit applies", redact(self.url))
        return float(us) / US

    def _without_redis(self, bucket: str) -> float:
        self.failures += 1
        return 0.0 if self.fallback is None else self.fallback.wait(bucket)

    def close(self) -> None:
        self._client.close()


def make_limiter(settings: Settings) -> Limiter | None:
    """The limiter the settings call for: None without API keys, shared in Redis when the store is Redis, else
    shared by this ``aidg serve``'s workers (:func:`share_across_workers`), else in process."""
    if not settings.api_keys:
        return None
    s = settings.service
    local: Limiter = (
        SharedLimiter(_shared_tat, bucket_ids(settings.api_keys).values(), s.rate_limit_per_second, s.rate_limit_burst)
        if _shared_tat is not None
        else MemoryLimiter(s.rate_limit_per_second, s.rate_limit_burst)
    )
    if settings.backend_kinds()["store"] == "redis" and settings.redis_url:
        return RedisLimiter(
            settings.redis_url, s.rate_limit_per_second, s.rate_limit_burst,
            namespace=settings.redis_namespace, fallback=local,
        )  # fmt: skip
    return local


def bucket_ids(keys: Iterable[str]) -> dict[bytes, str]:
    """Header value → bucket id of every key: a BLAKE2b of the key, keyed by the whole set of keys.

    >>> ids = bucket_ids(["k1", "k2"])
    >>> sorted(ids) == [b"k1", b"k2"] and len(set(ids.values())) == 2 and "k1" not in ids[b"k1"]
    True
    """
    keys = sorted(set(keys))
    salt = hashlib.blake2b("\n".join(keys).encode(), digest_size=32).digest()
    out = {}
    for k in keys:
        try:
            raw = k.encode("latin-1")  # how HTTP headers carry it (a key outside latin-1 cannot be sent at all)
        except UnicodeEncodeError:
            continue
        out[raw] = hashlib.blake2b(raw, key=salt, digest_size=16).hexdigest()
    return out


class RateLimit:
    """ASGI middleware: 429 once a known API key goes over its limit (see the module docstring)."""

    def __init__(self, app: ASGIApp, limiter: Limiter, keys: Iterable[str]) -> None:
        self.app, self.limiter = app, limiter
        self.buckets = bucket_ids(keys)
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-api-key":
                    bucket = self.buckets.get(value)
                    if bucket is not None:
                        wait = self.limiter.wait(bucket)
                        if wait > 0:
                            self.refused += 1
                            await self._refuse(wait)(scope, receive, send)
                            return
                    break  # the first X-API-Key is the one the routes read
        await self.app(scope, receive, send)

    def _refuse(self, wait: float) -> JSON:
        lim = self.limiter
        msg = (
            f"too many requests with this API key: it may make {lim.rate:g} a second (bursts of {lim.burst}); "
            f"wait {wait:.3g} s (Retry-After) and send more slowly, or ask the operator for a higher limit "
            "(AIDG_SERVICE__RATE_LIMIT_PER_SECOND, AIDG_SERVICE__RATE_LIMIT_BURST)"
        )
        # rounded up to the millisecond: a wait under 0.5 ms must not read as "retry after 0 s"
        detail = {"retry_after_s": math.ceil(wait * 1000) / 1000, "limit_per_second": lim.rate, "burst": lim.burst}
        return JSON(
            {"error": "rate_limited", "message": msg, "detail": detail},
            status_code=429,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )


__all__ = [
    "GCRA_LUA", "Limiter", "MemoryLimiter", "RateLimit", "RedisLimiter", "SharedLimiter", "bucket_ids", "make_limiter",
    "share_across_workers", "shared_slots",
]  # fmt: skip
