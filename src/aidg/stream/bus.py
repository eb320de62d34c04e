"""The event bus interface: append-only streams read by consumer groups, with acks and dead letters.

Three backends implement :class:`EventBus` with the same semantics (``tests/contract/test_bus.py``
runs one suite against each): :class:`~aidg.stream.memory_bus.MemoryBus` (in-process),
:class:`~aidg.stream.redis_bus.RedisBus` (Redis Streams) and :class:`~aidg.stream.kafka_bus.KafkaBus`.
:func:`make_bus` picks one from the settings.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from aidg.errors import DataError

__all__ = ["EventBus", "Message", "dead_stream", "make_bus"]

try:  # orjson is faster and stricter; json is the fallback
    import orjson

    def _dumps(obj: Mapping[str, Any]) -> bytes:
        return orjson.dumps(obj)

    def _loads(data: str | bytes) -> Any:
        return orjson.loads(data)

except ImportError:  # pragma: no cover - orjson is a dependency

    def _dumps(obj: Mapping[str, Any]) -> bytes:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    def _loads(data: str | bytes) -> Any:
        return json.loads(data)


@dataclass(frozen=True)
class Message:
    """One entry delivered to a consumer group.

    Attributes:
        id: The backend's id: a Redis stream id, ``"partition:offset"`` for Kafka, a counter for memory.
        payload: The JSON-serialisable event as it was published.
        deliveries: Times the entry was delivered to the group, this delivery included (1 the first time).
    """

    id: str
    payload: dict[str, Any]
    deliveries: int


class EventBus(ABC):
    """Streams of JSON events read by consumer groups with at-least-once delivery.

    The contract every backend keeps (``tests/contract/test_bus.py`` checks it):

    * :meth:`publish` appends payloads to a stream and returns their ids in order.
    * :meth:`ensure_group` creates a consumer group that reads from the start of the stream;
      calling it again is a no-op. :meth:`consume` calls it itself.
    * :meth:`consume` first reclaims entries delivered to *any* consumer of the group and left
      unacknowledged for at least ``claim_idle_ms``, then reads entries never delivered to the
      group, up to ``count`` in all. Consumers of one group split the entries: none is delivered
      twice except by such a reclaim. An entry whose delivery count would exceed
      ``max_deliveries`` is not returned: it is copied to the dead-letter stream
      ``f"{stream}.dead"`` (its payload, a ``dead_reason`` and its ``deliveries``) and acknowledged.
      It blocks up to ``block_ms`` only when nothing at all is available (``block_ms=0``: never).
    * :meth:`ack` marks entries done; :meth:`pending` counts delivered-but-unacked entries and
      :meth:`lag` published entries the group has not been given yet.
    * :meth:`dead_letters` reads the dead-letter stream, oldest first; each message has the
      original payload and the deliveries made before it was given up.
    * A server that cannot be reached raises :class:`~aidg.errors.BackendUnavailableError` naming
      it and its URL; bad arguments (empty names, ``count < 1``, unknown ids, payloads that are not
      JSON objects) raise :class:`~aidg.errors.DataError`.

    Args:
        max_deliveries: Deliveries after which an unacked entry goes to the dead-letter stream (>= 1).
        claim_idle_ms: How long (ms) an entry stays unacked before another consumer may reclaim it (>= 0).
    """

    def __init__(self, *, max_deliveries: int = 5, claim_idle_ms: int = 30_000) -> None:
        if max_deliveries < 1:
            raise DataError(f"max_deliveries must be >= 1, got {max_deliveries}")
        if claim_idle_ms < 0:
            raise DataError(f"claim_idle_ms must be >= 0, got {claim_idle_ms}")
        self.max_deliveries = max_deliveries
        self.claim_idle_ms = claim_idle_ms

    @abstractmethod
    def publish(self, stream: str, payloads: Sequence[Mapping[str, Any]]) -> list[str]:
        """Append ``payloads`` to ``stream`` (one round trip) and return their ids in order."""

    @abstractmethod
    def ensure_group(self, stream: str, group: str) -> None:
        """Create ``group`` on ``stream`` (and the stream) if missing; a new group reads from the start."""

    @abstractmethod
    def consume(self, stream: str, group: str, consumer: str, count: int = 100, block_ms: int = 1000) -> list[Message]:
        """Reclaim idle entries, then read new ones, up to ``count``; see the class docstring."""

    @abstractmethod
    def ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        """Acknowledge ``ids``; return how many of them were pending."""

    @abstractmethod
    def pending(self, stream: str, group: str) -> int:
        """Entries delivered to ``group`` and not acknowledged yet."""

    @abstractmethod
    def lag(self, stream: str, group: str) -> int:
        """Published entries not yet delivered to ``group`` (0 if the backend cannot tell)."""

    @abstractmethod
    def dead_letters(self, stream: str, count: int = 100) -> list[Message]:
        """Up to ``count`` entries of ``f"{stream}.dead"``, oldest first."""

    @abstractmethod
    def ping(self) -> None:
        """Raise :class:`~aidg.errors.BackendUnavailableError` if the server cannot be reached."""

    def trim(self, stream: str) -> int:
        """Drop the entries that every group of ``stream`` was delivered and acknowledged; returns how many.

        A stream without groups keeps everything (nobody has read it yet). The default keeps everything too:
        Kafka trims by its own retention.
        """
        check_name("stream", stream)
        return 0

    def erase(self, stream: str, match: Callable[[dict[str, Any]], bool], before_ms: int | None = None) -> int:
        """Delete the entries of ``stream`` (and its dead-letter stream) whose payload ``match``-es, or, with
        ``before_ms``, every entry older than that Unix time in ms; pending ones are acknowledged in every
        group. Returns how many were deleted. For the erasure and retention jobs (O(stream length)).

        The default (Kafka) cannot delete single records: its topic retention is the only way out.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot delete entries; rely on the topic's retention")

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections; the bus must not be used afterwards."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dead_stream(stream: str) -> str:
    """The dead-letter stream of ``stream``."""
    return f"{stream}.dead"


def dead_reason(deliveries: int, max_deliveries: int) -> str:
    """Why an entry was dead-lettered, in words."""
    return f"delivered {deliveries} times without an ack (max_deliveries={max_deliveries})"


def check_name(what: str, value: str) -> None:
    """Raise DataError unless ``value`` is a non-empty string."""
    if not isinstance(value, str) or not value:
        raise DataError(f"{what} must be a non-empty string, got {value!r}")


def check_consume(stream: str, group: str, consumer: str, count: int, block_ms: int) -> None:
    """Validate the arguments of :meth:`EventBus.consume`."""
    check_name("stream", stream)
    check_name("group", group)
    check_name("consumer", consumer)
    check_count(count)
    if block_ms < 0:
        raise DataError(f"block_ms must be >= 0, got {block_ms}")


def check_count(count: int) -> None:
    """Raise DataError unless ``count >= 1``."""
    if count < 1:
        raise DataError(f"count must be >= 1, got {count}")


def encode(payload: Mapping[str, Any]) -> bytes:
    """Serialise one payload to JSON; DataError if it is not a JSON object."""
    if not isinstance(payload, Mapping):
        raise DataError(f"a payload must be a mapping (a JSON object), got {type(payload).__name__}")
    try:
        return _dumps(dict(payload))
    except (TypeError, ValueError) as exc:
        raise DataError(f"payload is not JSON-serialisable ({exc}): {payload!r:.200}") from exc


def decode(data: str | bytes) -> dict[str, Any]:
    """Parse one stored payload."""
    value = _loads(data)
    if not isinstance(value, dict):
        raise DataError(f"stored payload is not a JSON object: {data!r:.200}")
    return value


def make_bus(
    redis_url: str | None = None,
    kafka_bootstrap: str | None = None,
    *,
    max_deliveries: int = 5,
    claim_idle_ms: int = 30_000,
) -> EventBus:
    """Kafka when kafka_bootstrap, else Redis Streams when redis_url, else the in-process bus.

    No connection is made here: call :meth:`EventBus.ping` to check the server.
    """
    if kafka_bootstrap:
        from aidg.stream.kafka_bus import KafkaBus

        return KafkaBus(kafka_bootstrap, max_deliveries=max_deliveries, claim_idle_ms=claim_idle_ms)
    if redis_url:
        from aidg.stream.redis_bus import RedisBus

        return RedisBus(redis_url, max_deliveries=max_deliveries, claim_idle_ms=claim_idle_ms)
    from aidg.stream.memory_bus import MemoryBus

    return MemoryBus(max_deliveries=max_deliveries, claim_idle_ms=claim_idle_ms)
