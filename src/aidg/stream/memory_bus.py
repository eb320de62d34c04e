"""The in-process event bus: Redis Streams semantics (groups, pending lists, reclaim, dead letters) in memory.

>>> bus = MemoryBus()
>>> bus.publish("orders", [{"n": 1}, {"n": 2}])
['1', '2']
>>> [(m.id, m.payload, m.deliveries) for m in bus.consume("orders", "g", "c1", block_ms=0)]
[('1', {'n': 1}, 1), ('2', {'n': 2}, 1)]
>>> bus.ack("orders", "g", ["1"]), bus.pending("orders", "g")
(1, 1)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aidg.errors import DataError
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

__all__ = ["MemoryBus"]


@dataclass
class _Pending:
    consumer: str
    delivered_at: float  # clock() seconds
    deliveries: int


@dataclass
class _Group:
    next_seq: int = 1  # the first seq not yet delivered to the group ("last-delivered-id" + 1)
    pel: dict[int, _Pending] = field(default_factory=dict)  # insertion order == seq order


@dataclass
class _Stream:
    entries: dict[int, bytes] = field(default_factory=dict)
    extra: dict[int, tuple[str, int]] = field(default_factory=dict)  # dead letters: (reason, deliveries)
    last_seq: int = 0
    groups: dict[str, _Group] = field(default_factory=dict)


class MemoryBus(EventBus):
    """Thread-safe in-process :class:`~aidg.stream.bus.EventBus`; ids are counters per stream.

    Args:
        max_deliveries: See :class:`~aidg.stream.bus.EventBus`.
        claim_idle_ms: See :class:`~aidg.stream.bus.EventBus`.
        clock: Seconds, for idle times (inject a fake one in tests); blocking waits use real time.
    """

    def __init__(
        self,
        *,
        max_deliveries: int = 5,
        claim_idle_ms: int = 30_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_deliveries=max_deliveries, claim_idle_ms=claim_idle_ms)
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._cond = threading.Condition()

    # -- helpers (hold the lock) -------------------------------------------------------------

    def _stream(self, stream: str) -> _Stream:
        s = self._streams.get(stream)
        if s is None:
            s = self._streams[stream] = _Stream()
        return s

    def _append(self, s: _Stream, data: bytes) -> str:
        s.last_seq += 1
        s.entries[s.last_seq] = data
        return str(s.last_seq)

    def _reclaim(self, stream: str, s: _Stream, g: _Group, consumer: str, count: int) -> tuple[list[Message], int]:
        """XAUTOCLAIM: take over idle pending entries; return them and how many were claimed in all."""
        now = self._clock()
        idle_s = self.claim_idle_ms / 1000.0
        out: list[Message] = []
        claimed = 0
        for seq, p in list(g.pel.items()):
            if claimed >= count:
                break
            if now - p.delivered_at < idle_s:
                continue
            claimed += 1
            data = s.entries.get(seq)
            if data is None:  # deleted entry: Redis drops it from the PEL
                del g.pel[seq]
                continue
            if p.deliveries + 1 > self.max_deliveries:
                dead = self._stream(dead_stream(stream))
                self._append(dead, data)
                dead.extra[dead.last_seq] = (dead_reason(p.deliveries, self.max_deliveries), p.deliveries)
                del g.pel[seq]
                self._cond.notify_all()
                continue
            p.consumer, p.delivered_at, p.deliveries = consumer, now, p.deliveries + 1
            out.append(Message(str(seq), decode(data), p.deliveries))
        return out, claimed

    def _read_new(self, s: _Stream, g: _Group, consumer: str, count: int) -> list[Message]:
        """XREADGROUP ``>``: the next undelivered entries, added to the pending list."""
        out: list[Message] = []
        now = self._clock()
        while g.next_seq <= s.last_seq and len(out) < count:
            seq = g.next_seq
            g.next_seq += 1
            data = s.entries.get(seq)
            if data is None:
                continue
            g.pel[seq] = _Pending(consumer, now, 1)
            out.append(Message(str(seq), decode(data), 1))
        return out

    def _group(self, stream: str, group: str) -> _Group:
        s = self._stream(stream)
        g = s.groups.get(group)
        if g is None:
            g = s.groups[group] = _Group()
        return g

    @staticmethod
    def _seq(entry_id: str) -> int:
        try:
            seq = int(entry_id)
        except (TypeError, ValueError):
            raise DataError(f"not a message id of the in-process bus: {entry_id!r}") from None
        if seq < 1:
            raise DataError(f"not a message id of the in-process bus: {entry_id!r}")
        return seq

    # -- the interface -----------------------------------------------------------------------

    def publish(self, stream: str, payloads: Sequence[Mapping[str, Any]]) -> list[str]:
        check_name("stream", stream)
        encoded = [encode(p) for p in payloads]
        with self._cond:
            s = self._stream(stream)
            ids = [self._append(s, data) for data in encoded]
            if ids:
                self._cond.notify_all()
        return ids

    def ensure_group(self, stream: str, group: str) -> None:
        check_name("stream", stream)
        check_name("group", group)
        with self._cond:
            self._group(stream, group)

    def consume(self, stream: str, group: str, consumer: str, count: int = 100, block_ms: int = 1000) -> list[Message]:
        check_consume(stream, group, consumer, count, block_ms)
        deadline = time.monotonic() + block_ms / 1000.0
        with self._cond:
            s = self._stream(stream)
            g = self._group(stream, group)
            out, claimed = self._reclaim(stream, s, g, consumer, count)
            if count - claimed > 0:
                out += self._read_new(s, g, consumer, count - claimed)
            # like XREADGROUP BLOCK: wait for new entries only when nothing at all was available
            while not out and claimed == 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
                out = self._read_new(s, g, consumer, count)
        return out

    def erase(self, stream: str, match: Callable[[dict[str, Any]], bool], before_ms: int | None = None) -> int:
        """See :meth:`EventBus.erase` (``before_ms`` is not kept here: in-process entries carry no time)."""
        check_name("stream", stream)
        removed = 0
        with self._cond:
            for name in (stream, dead_stream(stream)):
                s = self._streams.get(name)
                if s is None:
                    continue
                gone = [seq for seq, data in s.entries.items() if before_ms is None and match(decode(data))]
                for seq in gone:
                    del s.entries[seq]
                    s.extra.pop(seq, None)
                    for g in s.groups.values():
                        g.pel.pop(seq, None)
                removed += len(gone)
        return removed

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        check_name("stream", stream)
        check_name("group", group)
        seqs = [self._seq(i) for i in ids]
        with self._cond:
            s = self._streams.get(stream)
            g = s.groups.get(group) if s is not None else None
            if g is None:
                return 0
            return sum(g.pel.pop(seq, None) is not None for seq in seqs)

    def pending(self, stream: str, group: str) -> int:
        check_name("stream", stream)
        check_name("group", group)
        with self._cond:
            s = self._streams.get(stream)
            g = s.groups.get(group) if s is not None else None
            return 0 if g is None else len(g.pel)

    def lag(self, stream: str, group: str) -> int:
        check_name("stream", stream)
        check_name("group", group)
        with self._cond:
            s = self._streams.get(stream)
            if s is None:
                return 0
            g = s.groups.get(group)
            start = 1 if g is None else g.next_seq
            return max(0, s.last_seq - start + 1)  # entries are never deleted here

    def trim(self, stream: str) -> int:
        check_name("stream", stream)
        with self._cond:
            s = self._streams.get(stream)
            if s is None or not s.groups:
                return 0
            floor = min(next(iter(g.pel)) if g.pel else g.next_seq for g in s.groups.values())
            old = [seq for seq in s.entries if seq < floor]  # insertion order is seq order: a prefix
            for seq in old:
                del s.entries[seq]
            return len(old)

    def dead_letters(self, stream: str, count: int = 100) -> list[Message]:
        check_name("stream", stream)
        check_count(count)
        with self._cond:
            dead = self._streams.get(dead_stream(stream))
            if dead is None:
                return []
            seqs = sorted(dead.entries)[:count]
            return [Message(str(seq), decode(dead.entries[seq]), dead.extra.get(seq, ("", 0))[1]) for seq in seqs]

    def ping(self) -> None:
        """Always reachable."""
