"""The event bus on Redis Streams: consumer groups, XAUTOCLAIM for stuck entries, a dead-letter stream.

Each entry holds its JSON payload in one field, ``e``. Dead letters go to ``f"{stream}.dead"`` with
the fields ``e`` (the payload), ``dead_reason``, ``deliveries`` and ``source_id``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aidg.errors import BackendUnavailableError, DataError, redact
from aidg.redis_client import Breaker, retry_policy
from aidg.stream.bus import (
    EventBus,
    Message,
    check_consume,
    check_count,
    check_name,
    dead_reason,
    dead_stream,
    decode,
    encode,
)

__all__ = ["RedisBus"]

_STREAM_ID = re.compile(r"^\d+(-\d+)?$")
_MAX_CLAIM_SCANS = 8  # XAUTOCLAIM calls per consume (each scans up to 10 × count pending entries)


def _entries(reply: Any, stream: str) -> list[tuple[str, dict[str, str] | None]]:
    """The (id, fields) pairs of one stream in an XREADGROUP reply (RESP2 list or RESP3 dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.get(stream, [[]])[0])
    for name, entries in reply:
        if name == stream:
            return list(entries)
    return []


class RedisBus(EventBus):
    """:class:`~aidg.stream.bus.EventBus` on Redis Streams (Redis >= 6.2; ``lag`` needs 7.0).

    Args:
        url: ``redis://host:port/db`` (no connection is made until the first call).
        max_deliveries: See :class:`~aidg.stream.bus.EventBus`.
        claim_idle_ms: See :class:`~aidg.stream.bus.EventBus`.
        connect_timeout_s: Seconds to wait for a TCP connection.
    """

    def __init__(
        self,
        url: str,
        *,
        max_deliveries: int = 5,
        claim_idle_ms: int = 30_000,
        connect_timeout_s: float = 2.0,
    ) -> None:
        super().__init__(max_deliveries=max_deliveries, claim_idle_ms=claim_idle_ms)
        self.url = url
        try:
            self._r: redis.Redis = redis.Redis.from_url(
                url, decode_responses=True, socket_connect_timeout=connect_timeout_s, socket_keepalive=True,
                retry=retry_policy(),
            )  # fmt: skip
        except ValueError as exc:
            raise DataError(f"not a Redis URL: {redact(url)!r} ({exc}); fix AIDG_REDIS_URL") from exc
        self._groups: set[tuple[str, str]] = set()
        self._breaker = Breaker()  # after a failure, calls fail at once for a second (the request path stays fast)

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn connection failures into BackendUnavailableError and refusals into DataError."""
        why = self._breaker.check()
        if why is not None:
            raise BackendUnavailableError(
                f"Redis at {redact(self.url)} is not reachable ({why}; tried again within a second): start it or "
                "unset AIDG_REDIS_URL"
            )
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError) as exc:
            self._breaker.failed(exc)
            raise BackendUnavailableError(
                f"Redis at {redact(self.url)} is not reachable ({exc}): start it or unset AIDG_REDIS_URL"
            ) from exc
        except ResponseError as exc:
            raise DataError(f"Redis at {redact(self.url)} refused {what}: {exc}") from exc

    # -- the interface -----------------------------------------------------------------------

    def publish(self, stream: str, payloads: Sequence[Mapping[str, Any]]) -> list[str]:
        check_name("stream", stream)
        encoded = [encode(p) for p in payloads]
        if not encoded:
            return []
        with self._guard(f"XADD to {stream!r}"):
            pipe = self._r.pipeline(transaction=False)
            for data in encoded:
                pipe.xadd(stream, {"e": data})
            return [str(i) for i in pipe.execute()]

    def ensure_group(self, stream: str, group: str) -> None:
        check_name("stream", stream)
        check_name("group", group)
        with self._guard(f"XGROUP CREATE {group!r} on {stream!r}"):
            try:
                self._r.xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._groups.add((stream, group))

    def consume(self, stream: str, group: str, consumer: str, count: int = 100, block_ms: int = 1000) -> list[Message]:
        check_consume(stream, group, consumer, count, block_ms)
        if (stream, group) not in self._groups:
            self.ensure_group(stream, group)
        try:
            return self._consume(stream, group, consumer, count, block_ms)
        except DataError as exc:
            if "NOGROUP" not in str(exc):  # the stream was deleted under us: recreate the group once
                raise
            self.ensure_group(stream, group)
            return self._consume(stream, group, consumer, count, block_ms)

    def _consume(self, stream: str, group: str, consumer: str, count: int, block_ms: int) -> list[Message]:
        out, claimed = self._reclaim(stream, group, consumer, count)
        if claimed >= count:
            return out
        block = block_ms if claimed == 0 and block_ms > 0 else None  # BLOCK 0 would wait forever
        with self._guard(f"XREADGROUP on {stream!r}"):
            reply = self._r.xreadgroup(group, consumer, {stream: ">"}, count=count - claimed, block=block)
        for entry_id, fields in _entries(reply, stream):
            if fields and "e" in fields:
                out.append(Message(entry_id, decode(fields["e"]), 1))
        return out

    def _reclaim(self, stream: str, group: str, consumer: str, count: int) -> tuple[list[Message], int]:
        """XAUTOCLAIM idle entries; dead-letter those delivered too often. Returns them and the claimed count."""
        claimed: list[tuple[str, dict[str, str] | None]] = []
        cursor = "0-0"
        with self._guard(f"XAUTOCLAIM on {stream!r}"):
            for _ in range(_MAX_CLAIM_SCANS):
                reply = self._r.xautoclaim(
                    stream, group, consumer, self.claim_idle_ms, cursor, count=count - len(claimed)
                )
                cursor = str(reply[0])
                claimed += list(reply[1])
                if cursor == "0-0" or len(claimed) >= count:
                    break
            if not claimed:
                return [], 0
            pipe = self._r.pipeline(transaction=False)
            for entry_id, _ in claimed:
                pipe.xpending_range(stream, group, entry_id, entry_id, 1)
            infos = pipe.execute()
        out: list[Message] = []
        dead: list[tuple[str, str, int]] = []  # (id, payload, deliveries made)
        gone: list[str] = []
        for (entry_id, fields), info in zip(claimed, infos, strict=True):
            if not info:  # acknowledged meanwhile
                continue
            if not fields or "e" not in fields:  # deleted entry (Redis 6.2 reports it as nil)
                gone.append(entry_id)
                continue
            times = int(info[0]["times_delivered"])
            if times > self.max_deliveries:
                dead.append((entry_id, fields["e"], times - 1))
            else:
                out.append(Message(entry_id, decode(fields["e"]), times))
        if dead or gone:
            with self._guard(f"dead-lettering on {stream!r}"):
                pipe = self._r.pipeline(transaction=True)
                for entry_id, data, made in dead:
                    fields_out = {
                        "e": data,
                        "dead_reason": dead_reason(made, self.max_deliveries),
                        "deliveries": str(made),
                        "source_id": entry_id,
                    }
                    pipe.xadd(dead_stream(stream), fields_out)  # type: ignore[arg-type]
                pipe.xack(stream, group, *[d[0] for d in dead], *gone)
                pipe.execute()
        return out, len(claimed)

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        check_name("stream", stream)
        check_name("group", group)
        for i in ids:
            if not isinstance(i, str) or not _STREAM_ID.match(i):
                raise DataError(f"not a Redis stream id ('<ms>-<seq>'): {i!r}")
        if not ids:
            return 0
        with self._guard(f"XACK on {stream!r}"):
            return int(self._r.xack(stream, group, *ids))

    def pending(self, stream: str, group: str) -> int:
        check_name("stream", stream)
        check_name("group", group)
        try:
            with self._guard(f"XPENDING on {stream!r}"):
                return int(self._r.xpending(stream, group)["pending"])
        except DataError as exc:
            if "NOGROUP" in str(exc):
                return 0
            raise

    def lag(self, stream: str, group: str) -> int:
        check_name("stream", stream)
        check_name("group", group)
        with self._guard(f"XINFO GROUPS on {stream!r}"):
            if not self._r.exists(stream):
                return 0
            for info in self._r.xinfo_groups(stream):
                if info.get("name") == group:
                    return int(info.get("lag") or 0)
            return int(self._r.xlen(stream))  # a new group would read the whole stream

    def trim(self, stream: str) -> int:
        """``XTRIM MINID``: below every group's oldest pending entry, or past its last delivered one."""
        check_name("stream", stream)
        with self._guard(f"XTRIM on {stream!r}"):
            if not self._r.exists(stream):
                return 0
            floors: list[tuple[int, int]] = []
            for info in self._r.xinfo_groups(stream):
                # the pending count and its lowest id are two reads: a worker may acknowledge in between
                lowest = self._r.xpending(stream, info["name"])["min"] if int(info.get("pending") or 0) else None
                if lowest is not None:
                    ms, seq = (int(x) for x in str(lowest).split("-"))
                else:
                    ms, seq = (int(x) for x in str(info["last-delivered-id"]).split("-"))
                    seq += 1  # everything up to the last delivered id is acknowledged
                floors.append((ms, seq))
            if not floors:
                return 0
            ms, seq = min(floors)
            return int(self._r.xtrim(stream, minid=f"{ms}-{seq}", approximate=False))

    def erase(self, stream: str, match: Callable[[dict[str, Any]], bool], before_ms: int | None = None) -> int:
        """See :meth:`EventBus.erase`: ``XRANGE`` in pages, then ``XACK`` in every group and ``XDEL``."""
        check_name("stream", stream)
        removed = 0
        for name in (stream, dead_stream(stream)):
            with self._guard(f"XRANGE on {name!r}"):
                if not self._r.exists(name):
                    continue
                groups = [str(g["name"]) for g in self._r.xinfo_groups(name)] if name == stream else []
                start, gone = "-", []
                while True:
                    raw: Any = self._r.xrange(name, start, "+" if before_ms is None else f"{before_ms - 1}", count=1000)
                    page: list[tuple[str, dict[str, str] | None]] = list(raw or [])
                    if not page:
                        break
                    for i, f in page:
                        if before_ms is not None or (f and "e" in f and match(decode(f["e"]))):
                            gone.append(i)
                    if len(page) < 1000:
                        break
                    start = "(" + page[-1][0]
                for k in range(0, len(gone), 1000):
                    chunk = gone[k : k + 1000]
                    for g in groups:
                        self._r.xack(name, g, *chunk)
                    removed += int(self._r.xdel(name, *chunk))
        return removed

    def dead_letters(self, stream: str, count: int = 100) -> list[Message]:
        check_name("stream", stream)
        check_count(count)
        with self._guard(f"XRANGE on {dead_stream(stream)!r}"):
            raw: Any = self._r.xrange(dead_stream(stream), "-", "+", count=count)
        entries: list[tuple[str, dict[str, str] | None]] = list(raw or [])
        return [Message(i, decode(f["e"]), int(f.get("deliveries", 0))) for i, f in entries if f and "e" in f]

    def ping(self) -> None:
        with self._guard("PING"):
            self._r.ping()

    def close(self) -> None:
        self._r.close()
