"""The service's backends, chosen by settings (``AIDG_BACKENDS__STORE|LOG|BUS``, see ``BackendSettings``):
embedded defaults, or Redis / PostgreSQL / Kafka servers, each client an install extra.

| what | embedded (no server) | with a server |
|---|---|---|
| online features | in-process | Redis (``AIDG_REDIS_URL``) |
| embedding cache (TTL 1 h) | in-process | Redis (``AIDG_REDIS_URL``) |
| decision log, reward joins | SQLite under ``AIDG_HOME`` | any SQLAlchemy URL (``AIDG_DATABASE_URL``) |
| event bus | in-process | Redis Streams, or Kafka (``AIDG_KAFKA_BOOTSTRAP``) |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aidg.config import Settings
from aidg.decisionlog.log import DecisionLog, decision_log_url
from aidg.errors import AIDGError
from aidg.extras import require
from aidg.store.online import CacheBackend, OnlineStore
from aidg.store.online_memory import MemoryCacheBackend, MemoryOnlineStore
from aidg.stream.bus import EventBus, make_bus


@dataclass
class Backends:
    online: OnlineStore
    cache: CacheBackend
    decisions: DecisionLog
    bus: EventBus
    kinds: dict[str, str] = field(default_factory=dict)

    @property
    def embedded_bus(self) -> bool:
        return self.kinds.get("event_bus") == "memory"

    def down(self) -> dict[str, str]:
        """Backends that do not answer now, each with the reason (what ``/readyz`` reports)."""
        out = {}
        checks: dict[str, Callable[[], None]] = {
            "online_store": self.online.ping,
            "cache": self.cache.ping,
            "decision_log": self.decisions.ping,
            "event_bus": self.bus.ping,
        }
        for name, ping in checks.items():
            try:
                ping()
            except AIDGError as exc:
                out[name] = f"{self.kinds.get(name, '?')}: {exc}"
            except Exception as exc:  # a backend's own failure, reported rather than raised
                out[name] = f"{self.kinds.get(name, '?')}: {type(exc).__name__}: {exc}"
        return out

    def close(self) -> None:
        for c in (self.online, self.cache, self.bus):
            c.close()
        self.decisions.close()


def make_backends(settings: Settings) -> Backends:
    """Build the backends the settings name (nothing is contacted beyond creating clients and tables)."""
    kinds = settings.backend_kinds()
    if kinds["store"] == "redis":
        require("redis", "the redis online store and cache (AIDG_BACKENDS__STORE=redis)")
        from aidg.store.online_redis import RedisCacheBackend, RedisOnlineStore

        assert settings.redis_url is not None  # Settings checks that a redis kind has its URL
        ns = settings.redis_namespace
        online: OnlineStore = RedisOnlineStore(settings.redis_url, namespace=f"{ns}:feat")
        cache: CacheBackend = RedisCacheBackend(settings.redis_url, namespace=f"{ns}:emb")
        store_kind = "redis"
    else:
        online, cache, store_kind = MemoryOnlineStore(), MemoryCacheBackend(), "memory"
    if kinds["log"] == "postgres":
        require("postgres", "the PostgreSQL decision log (AIDG_BACKENDS__LOG=postgres)")
    db = decision_log_url(settings)
    if db.startswith("sqlite"):
        settings.paths.home.mkdir(parents=True, exist_ok=True)
    decisions = DecisionLog(db)
    s = settings.stream
    bus_kind = {"embedded": "memory"}.get(kinds["bus"], kinds["bus"])
    if bus_kind in ("redis", "kafka"):
        require(bus_kind, f"the {bus_kind} event bus (AIDG_BACKENDS__BUS={bus_kind})")
    bus = make_bus(
        settings.redis_url if bus_kind == "redis" else None,
        settings.kafka_bootstrap if bus_kind == "kafka" else None,
        max_deliveries=s.max_deliveries,
        claim_idle_ms=s.claim_idle_ms,
    )
    described = {
        "online_store": store_kind,
        "cache": store_kind,
        "decision_log": "postgresql" if db.startswith("postgresql") else db.split(":", 1)[0],
        "event_bus": bus_kind,
    }
    return Backends(online, cache, decisions, bus, described)


__all__ = ["Backends", "make_backends"]
