"""What every Redis client of AIDG shares (the online store, the cache, the bus, the rate limit): bounded retries
with jittered backoff, and a circuit breaker that fails calls at once for a second after a failure."""

from __future__ import annotations

import threading
import time

import redis
import redis.exceptions
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def retry_policy() -> Retry:
    """Two retries on connection and timeout errors, jittered exponential backoff from 10 ms, capped at 100 ms."""
    return Retry(ExponentialWithJitterBackoff(cap=0.1, base=0.01), 2,
                 supported_errors=(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))  # fmt: skip


class Breaker:
    """Fails calls at once for ``open_s`` seconds after a failure (a circuit breaker with one probe after it)."""

    def __init__(self, open_s: float = 1.0) -> None:
        self.open_s = open_s
        self._until = 0.0
        self._lock = threading.Lock()
        self.last_error = ""

    def check(self) -> str | None:
        """None when calls may go ahead, else why not (the last failure)."""
        if time.monotonic() < self._until:
            return self.last_error
        return None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._until = time.monotonic() + self.open_s
            self.last_error = str(exc)


__all__ = ["UNREACHABLE", "Breaker", "retry_policy"]
