"""The event bus on Kafka (confluent-kafka), with the semantics of Redis Streams kept in the bus.

Kafka has no per-message ack or pending list, so this bus keeps them itself, per ``(topic, group)``:
every delivered-unacked message, its consumer, delivery time and count. :meth:`KafkaBus.ack` commits,
per partition, the lowest unacked offset (everything below it is acked). Idle entries are reclaimed from
that table and dead letters go to the topic ``f"{stream}.dead"`` (value: the payload; headers:
``dead_reason``, ``deliveries``, ``source_id``). Ids are ``"partition:offset"``.

Limits: pending entries, delivery counts and reclaims are known to this process only; after a crash
or a rebalance to another process, uncommitted messages are redelivered by Kafka with ``deliveries=1``.
Consumers of one group split work by partition, so a topic with one partition feeds one consumer.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aidg.errors import BackendUnavailableError, DataError
from aidg.stream import bus as b
from aidg.stream.bus import EventBus, Message

__all__ = ["KafkaBus"]

_log = logging.getLogger(__name__)
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


@dataclass
class _Pending:
    partition: int
    offset: int
    value: bytes
    consumer: str
    delivered_at: float
    deliveries: int


@dataclass
class _Group:
    pending: dict[str, _Pending] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)  # partition -> highest offset delivered
    committed: dict[int, int] = field(default_factory=dict)  # partition -> offset committed


class KafkaBus(EventBus):
    """:class:`~aidg.stream.bus.EventBus` on Kafka; see the module docstring for what differs.

    Args:
        bootstrap: ``host:port[,host:port...]`` of the brokers (nothing connects until the first call).
        max_deliveries: See :class:`~aidg.stream.bus.EventBus`.
        claim_idle_ms: See :class:`~aidg.stream.bus.EventBus`.
        timeout_s: Seconds to wait for the brokers (metadata, flushes, commits).
        partitions: Partitions of the topics this bus creates.
        session_timeout_ms: The consumers' group session: how long the group waits for a silent consumer before
            it moves that consumer's partitions to another (Kafka's default, 45 s; a broker may also wait part
            of it for more members when a consumer joins). Heartbeats go every third of it.
        clock: Seconds, for idle times.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        max_deliveries: int = 5,
        claim_idle_ms: int = 30_000,
        timeout_s: float = 10.0,
        partitions: int = 1,
        session_timeout_ms: int = 45_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(max_deliveries=max_deliveries, claim_idle_ms=claim_idle_ms)
        import confluent_kafka
        import confluent_kafka.admin

        self._ck: Any = confluent_kafka
        self._admin_mod: Any = confluent_kafka.admin
        self.bootstrap = bootstrap
        self.timeout_s = timeout_s
        self.partitions = partitions
        self.session_timeout_ms = session_timeout_ms
        self._clock = clock
        self._conf: dict[str, Any] = {"bootstrap.servers": bootstrap, "logger": _log}
        self._lock = threading.RLock()
        self._producer: Any = None
        self._admin: Any = None
        self._topics: set[str] = set()
        self._consumers: dict[tuple[str, str, str], Any] = {}
        self._groups: dict[tuple[str, str], _Group] = {}

    # -- plumbing ------------------------------------------------------------------------------

    def _unavailable(self, exc: object) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"Kafka at {self.bootstrap} is not reachable ({exc}): start it or unset AIDG_KAFKA_BOOTSTRAP"
        )

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        E = self._ck.KafkaError
        down = {E._TRANSPORT, E._ALL_BROKERS_DOWN, E._TIMED_OUT, E._MSG_TIMED_OUT, E._RESOLVE,
                E.BROKER_NOT_AVAILABLE, E.NETWORK_EXCEPTION, E.REQUEST_TIMED_OUT}  # fmt: skip
        try:
            yield
        except self._ck.KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is None or not hasattr(err, "code") or err.code() in down:
                raise self._unavailable(exc) from exc
            raise DataError(f"Kafka at {self.bootstrap} refused {what}: {err}") from exc
        except TimeoutError as exc:
            raise self._unavailable(f"{what} timed out after {self.timeout_s} s") from exc

    def _admin_client(self) -> Any:
        if self._admin is None:
            self._admin = self._admin_mod.AdminClient(dict(self._conf))
        return self._admin

    def _get_producer(self) -> Any:
        if self._producer is None:
            conf = {**self._conf, "enable.idempotence": True, "message.timeout.ms": int(self.timeout_s * 1000)}
            self._producer = self._ck.Producer(conf)
        return self._producer

    def _ensure_topic(self, topic: str) -> None:
        if topic in self._topics:
            return
        if not _TOPIC.match(topic):
            raise DataError(f"not a valid Kafka topic name (letters, digits, '._-', <= 249): {topic!r}")
        new = self._admin_mod.NewTopic(topic, num_partitions=self.partitions, replication_factor=-1)
        with self._guard(f"creating topic {topic!r}"):
            future = self._admin_client().create_topics([new], request_timeout=self.timeout_s)[topic]
            try:
                future.result(timeout=self.timeout_s)
            except self._ck.KafkaException as exc:
                if exc.args[0].code() != self._ck.KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        self._topics.add(topic)

    def _consumer(self, topic: str, group: str, consumer: str) -> Any:
        key = (topic, group, consumer)
        with self._lock:
            if key in self._consumers:
                return self._consumers[key]
            conf = {**self._conf, "group.id": group, "client.id": consumer, "enable.auto.commit": False,
                    "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
                    "session.timeout.ms": self.session_timeout_ms,
                    "heartbeat.interval.ms": max(1, self.session_timeout_ms // 3),
                    "max.poll.interval.ms": max(300_000, self.session_timeout_ms)}  # fmt: skip
            c = self._ck.Consumer(conf)
            c.subscribe([topic])
            self._consumers[key] = c
            return c

    def _state(self, stream: str, group: str) -> _Group:
        return self._groups.setdefault((stream, group), _Group())

    def _parse(self, entry_id: str) -> tuple[int, int]:
        try:
            p, o = entry_id.split(":")
            return int(p), int(o)
        except (AttributeError, ValueError):
            raise DataError(f"not a Kafka message id ('partition:offset'): {entry_id!r}") from None

    # -- the interface -----------------------------------------------------------------------

    def publish(self, stream: str, payloads: Sequence[Mapping[str, Any]]) -> list[str]:
        b.check_name("stream", stream)
        encoded = [b.encode(p) for p in payloads]
        if not encoded:
            return []
        return self._produce(stream, [(data, None) for data in encoded])

    def _produce(self, topic: str, items: Sequence[tuple[bytes, Mapping[str, str] | None]]) -> list[str]:
        self._ensure_topic(topic)
        producer = self._get_producer()
        ids: list[str | None] = [None] * len(items)
        errors: list[object] = []

        def report(i: int, err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err)
            else:
                ids[i] = f"{msg.partition()}:{msg.offset()}"

        with self._guard(f"producing to {topic!r}"):
            for i, (data, headers) in enumerate(items):
                while True:
                    try:
                        producer.produce(topic, value=data, headers=headers, on_delivery=partial(report, i))
                        break
                    except BufferError:  # local queue full: let deliveries drain
                        producer.poll(0.1)
            left = producer.flush(self.timeout_s)
        if left or errors or None in ids:
            raise self._unavailable(f"{left} message(s) undelivered to {topic!r}; errors: {errors[:3]}")
        return [i for i in ids if i is not None]

    def ensure_group(self, stream: str, group: str) -> None:
        b.check_name("stream", stream)
        b.check_name("group", group)
        self._ensure_topic(stream)  # the group itself appears when a consumer joins; it starts at "earliest"
        with self._lock:
            self._state(stream, group)

    def consume(self, stream: str, group: str, consumer: str, count: int = 100, block_ms: int = 1000) -> list[Message]:
        b.check_consume(stream, group, consumer, count, block_ms)
        self.ensure_group(stream, group)
        out, claimed = self._reclaim(stream, group, consumer, count)
        if claimed >= count:
            return out
        c = self._consumer(stream, group, consumer)
        deadline = time.monotonic() + (block_ms / 1000.0 if claimed == 0 else 0.0)
        while True:
            with self._guard(f"consuming {stream!r}"):
                msgs = list(c.consume(num_messages=count - claimed - len(out), timeout=0))
                if not msgs and not out and time.monotonic() < deadline:
                    first = c.poll(max(0.0, deadline - time.monotonic()))  # returns as soon as one arrives
                    msgs = [] if first is None else [first]
            out += self._accept(stream, group, consumer, msgs)
            if out or claimed or time.monotonic() >= deadline:
                return out

    def _accept(self, stream: str, group: str, consumer: str, msgs: list[Any]) -> list[Message]:
        """Record new messages as pending; skip errors and offsets this group has already seen."""
        out: list[Message] = []
        with self._lock:
            state = self._state(stream, group)
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.fatal():
                        raise self._unavailable(err)
                    continue
                p, o = m.partition(), m.offset()
                if o <= state.seen.get(p, -1):  # redelivered after a rebalance: already pending or acked here
                    continue
                state.seen[p] = o
                entry_id = f"{p}:{o}"
                state.pending[entry_id] = _Pending(p, o, m.value(), consumer, self._clock(), 1)
                out.append(Message(entry_id, b.decode(m.value()), 1))
        return out

    def _reclaim(self, stream: str, group: str, consumer: str, count: int) -> tuple[list[Message], int]:
        out: list[Message] = []
        dead: list[tuple[str, _Pending]] = []
        with self._lock:
            state, now = self._state(stream, group), self._clock()
            for entry_id, p in sorted(state.pending.items(), key=lambda kv: (kv[1].offset, kv[1].partition)):
                if len(out) + len(dead) >= count:
                    break
                if (now - p.delivered_at) * 1000.0 < self.claim_idle_ms:
                    continue
                if p.deliveries + 1 > self.max_deliveries:
                    dead.append((entry_id, p))
                    continue
                p.consumer, p.delivered_at, p.deliveries = consumer, now, p.deliveries + 1
                out.append(Message(entry_id, b.decode(p.value), p.deliveries))
        if dead:
            items = [(p.value, {"dead_reason": b.dead_reason(p.deliveries, self.max_deliveries),
                                "deliveries": str(p.deliveries), "source_id": i}) for i, p in dead]  # fmt: skip
            self._produce(b.dead_stream(stream), items)
            self.ack(stream, group, [i for i, _ in dead])
        return out, len(out) + len(dead)

    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        b.check_name("stream", stream)
        b.check_name("group", group)
        for i in ids:
            self._parse(i)
        with self._lock:
            state = self._groups.get((stream, group))
            if state is None:
                return 0
            n = sum(state.pending.pop(i, None) is not None for i in ids)
            if n:
                self._commit(stream, group, state)
        return n

    def _commit(self, stream: str, group: str, state: _Group) -> None:
        """Commit, per partition, the lowest unacked offset (or the one after the last seen)."""
        owners: dict[int, Any] = {}
        for (topic, grp, _), c in self._consumers.items():
            if (topic, grp) == (stream, group):
                with self._guard("reading the assignment"):
                    owners.update({tp.partition: c for tp in c.assignment() if tp.topic == stream})
        for partition, last in state.seen.items():
            unacked = [p.offset for p in state.pending.values() if p.partition == partition]
            offset = min(unacked) if unacked else last + 1
            c = owners.get(partition)
            if c is None or offset <= state.committed.get(partition, -1):
                continue  # not ours now (a rebalance): the new owner re-reads from the last commit
            try:
                with self._guard(f"committing {stream!r}[{partition}]"):
                    done = c.commit(offsets=[self._ck.TopicPartition(stream, partition, offset)], asynchronous=False)
                failed = [tp.error for tp in done or [] if getattr(tp, "error", None) is not None]
                if failed:
                    raise DataError(str(failed[0]))
                state.committed[partition] = offset
            except DataError as exc:  # rebalance in progress, fenced member...: the next ack retries
                _log.warning("Kafka commit of %s[%d] failed: %s", stream, partition, exc)

    def pending(self, stream: str, group: str) -> int:
        b.check_name("stream", stream)
        b.check_name("group", group)
        with self._lock:
            state = self._groups.get((stream, group))
            return 0 if state is None else len(state.pending)

    def lag(self, stream: str, group: str) -> int:
        b.check_name("stream", stream)
        b.check_name("group", group)
        with self._lock:
            seen = dict(self._groups[(stream, group)].seen) if (stream, group) in self._groups else {}
        c = self._ck.Consumer({**self._conf, "group.id": group, "enable.auto.commit": False})
        try:
            with self._guard(f"reading the offsets of {stream!r}"):
                meta = c.list_topics(stream, timeout=self.timeout_s).topics.get(stream)
                if meta is None or meta.error is not None:
                    return 0
                tps = [self._ck.TopicPartition(stream, p) for p in meta.partitions]
                total = 0
                for tp in c.committed(tps, timeout=self.timeout_s):
                    low, high = c.get_watermark_offsets(tp, timeout=self.timeout_s)
                    start = max(tp.offset if tp.offset >= 0 else low, seen.get(tp.partition, -1) + 1)
                    total += max(0, high - start)
                return total
        finally:
            c.close()

    def dead_letters(self, stream: str, count: int = 100) -> list[Message]:
        b.check_name("stream", stream)
        b.check_count(count)
        topic = b.dead_stream(stream)
        c = self._ck.Consumer({**self._conf, "group.id": f"aidg-dead-{uuid.uuid4().hex}", "enable.auto.commit": False})
        out: list[Message] = []
        try:
            with self._guard(f"reading {topic!r}"):
                meta = c.list_topics(topic, timeout=self.timeout_s).topics.get(topic)
                if meta is None or meta.error is not None:
                    return []
                ends = {p: c.get_watermark_offsets(self._ck.TopicPartition(topic, p), timeout=self.timeout_s)
                        for p in meta.partitions}  # fmt: skip
                left = {p: hi for p, (lo, hi) in ends.items() if hi > lo}
                c.assign([self._ck.TopicPartition(topic, p, self._ck.OFFSET_BEGINNING) for p in left])
                deadline = time.monotonic() + self.timeout_s
                while left and len(out) < count and time.monotonic() < deadline:
                    m = c.poll(0.2)
                    if m is None or m.error() is not None:
                        continue
                    headers = {k: (v or b"").decode() for k, v in (m.headers() or [])}
                    out.append(Message(f"{m.partition()}:{m.offset()}", b.decode(m.value()),
                                       int(headers.get("deliveries", "0"))))  # fmt: skip
                    if m.offset() + 1 >= left.get(m.partition(), 0):
                        left.pop(m.partition(), None)
        finally:
            c.close()
        return out[:count]

    def ping(self) -> None:
        with self._guard("listing topics"):
            self._admin_client().list_topics(timeout=self.timeout_s)

    def close(self) -> None:
        with self._lock:
            consumers, self._consumers = list(self._consumers.values()), {}
            for c in consumers:
                c.close()
            if self._producer is not None:
                self._producer.flush(self.timeout_s)
                self._producer = None
            self._admin = None
