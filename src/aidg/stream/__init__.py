"""Event-bus backends: in-process, Redis Streams and Kafka behind one interface (the learning loop is ``aidg.online``).

The Redis and Kafka buses load on first use: their clients are install extras (``aidg[redis]``, ``aidg[kafka]``).
"""

from typing import Any

from aidg.stream.bus import EventBus, Message, dead_stream, make_bus
from aidg.stream.memory_bus import MemoryBus


def __getattr__(name: str) -> Any:
    if name == "RedisBus":
        from aidg.stream.redis_bus import RedisBus

        return RedisBus
    if name == "KafkaBus":
        from aidg.stream.kafka_bus import KafkaBus

        return KafkaBus
    raise AttributeError(name)


__all__ = ["EventBus", "KafkaBus", "MemoryBus", "Message", "RedisBus", "dead_stream", "make_bus"]
