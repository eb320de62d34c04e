"""Event bus backends and stream workers."""

from aidg.stream.bus import EventBus, Message, dead_stream, make_bus
from aidg.stream.kafka_bus import KafkaBus
from aidg.stream.memory_bus import MemoryBus
from aidg.stream.redis_bus import RedisBus

__all__ = ["EventBus", "KafkaBus", "MemoryBus", "Message", "RedisBus", "dead_stream", "make_bus"]
