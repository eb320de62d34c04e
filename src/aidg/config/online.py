"""Settings of the online system: cache, backends, the event stream, API keys, the service, rollout, monitoring
and alerts (memo §1.3, §3)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from aidg.config.base import Group


class CacheSettings(Group):
    """Embedding cache and online features (memo §1.3)."""

    ttl_seconds: int = Field(3600, gt=0, description="memo §1.3: merchant embeddings TTL 1 hour")
    refresh_ahead_seconds: int = Field(
        300, ge=0, description="entries expiring within this are reloaded ahead of expiry (0: pure TTL)"
    )
    keep_warm_hours: float = Field(
        24.0, gt=0, description="only entries read within this window are refreshed ahead (the rest expire)"
    )
    refresh_interval_seconds: float = Field(60.0, gt=0, description="how often the refresher sweeps the cache")
    score_memo_mb: float = Field(
        128.0, ge=0, description="per served version and worker: the scorer's outputs for the bundles read most "
        "recently, reused while the cache returns the same bytes (0: score every request)"
    )


class BackendSettings(Group):
    """Which backend serves each online part (DESIGN §6); each server kind needs its URL and its install extra.

    ``auto`` (the default) is the shorthand of earlier versions: the part goes to the server whose URL is set
    (``AIDG_REDIS_URL``, ``AIDG_DATABASE_URL``, ``AIDG_KAFKA_BOOTSTRAP``), else it is embedded. Naming the kind
    says what you mean, and a kind without its URL is refused with the variable to set.
    """

    store: Literal["auto", "embedded", "redis"] = Field(
        "auto", description="online features and the embedding cache: in-process, or Redis (AIDG_REDIS_URL)"
    )
    log: Literal["auto", "embedded", "postgres"] = Field(
        "auto", description="the decision log: SQLite under AIDG_HOME, or PostgreSQL (AIDG_DATABASE_URL)"
    )
    bus: Literal["auto", "embedded", "redis", "kafka"] = Field(
        "auto", description="the event bus: in-process, Redis Streams (AIDG_REDIS_URL) or Kafka (AIDG_KAFKA_BOOTSTRAP)"
    )


class StreamSettings(Group):
    """The event bus and stream workers (memo §1.3 Kafka → Flink → Redis; DESIGN §6)."""

    stream: str = Field("aidg.events", min_length=1, description="the stream feedback and decision events go to")
    group: str = Field("aidg-workers", min_length=1, description="consumer group the stream workers share")
    batch_size: int = Field(200, ge=1, le=10_000, description="events a worker takes per read")
    block_ms: int = Field(1000, ge=1, description="how long a read waits for new events")
    linger_ms: float = Field(
        20.0, ge=0, le=1000, description="after a batch smaller than batch_size, wait this long before the next read "
        "(under load a worker then wakes ~50 times a second, not once per event; Kafka's fetch.wait idea)"
    )
    claim_idle_ms: int = Field(30_000, ge=1, description="an unacknowledged event idle this long is reclaimed")
    max_deliveries: int = Field(5, ge=1, description="deliveries after which an event goes to the dead-letter stream")
    apply_delay_ms: float = Field(
        0.0, ge=0, le=1000, description="fault-test knob: a pause per event inside a batch's transaction (0 in use)"
    )


class ApiKey(Group):
    """One API key's grant: ``mm`` keys reach only their merchants; ``admin`` keys reach everything."""

    role: Literal["mm", "admin"]
    merchants: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _merchants_only_for_mm(self) -> ApiKey:
        if self.role == "admin" and self.merchants:
            raise ValueError("admin keys reach every merchant: give merchants only to mm keys")
        return self


class ServiceSettings(Group):
    """The online API (DESIGN §6)."""

    max_body_bytes: int = Field(1_000_000, ge=1024, description="larger request bodies get 413")
    max_batch_events: int = Field(1000, ge=1, description="feedback events one request may carry")
    max_variants: int = Field(200, ge=1, le=1000, description="n_variants one generate request may ask for")
    rate_limit_per_second: float = Field(
        50.0, gt=0, description="requests per second one API key may make (429 above it)"
    )
    rate_limit_burst: int = Field(100, ge=1, description="requests one API key may make at once above that rate")
    data: Path | None = Field(
        None, description="the data folder served (tables of aidg simulate or your own); None: AIDG_HOME/demo/world"
    )
    model_version: str = Field("latest", min_length=1, description="the registered model version served")
    inline_worker: bool | None = Field(
        None, description="run a stream worker inside each service process; None: only with the in-process bus"
    )
    compile: bool = Field(
        False,
        description="TorchInductor-compile the scorer for the default number of variants (`aidg serve` turns it on: "
        "~25 s per worker the first time, cached on disk after; about −40 % forward time on this CPU)",
    )
    posterior_refresh_seconds: float = Field(
        0.5, gt=0, description="how often a replica reloads the bandit posterior the stream workers write"
    )


class RolloutSettings(Group):
    """Rollout plan (memo §3.1) and auto-rollback triggers (memo §2.3)."""

    ab_personalization_share: float = Field(0.05, ge=0, le=1, description="memo §3.1: 5 % to new personalization")
    ab_exploration_share: float = Field(0.10, ge=0, le=1, description="memo §3.1: 10 % to exploration")
    ramp_step: float = Field(0.10, gt=0, le=1, description="memo §3.1: +10 % traffic per step")
    ramp_interval_hours: float = Field(48.0, gt=0, description="memo §3.1: a step every 2 days")
    rollback_gp30_drop: float = Field(0.20, gt=0, le=1, description="memo §2.3: GP30 (proxy) drop > 20 %")
    rollback_gp30_window_hours: float = Field(2.0, gt=0, description="memo §2.3: … over 2 hours")
    rollback_override_spike: float = Field(0.30, gt=0, le=1, description="memo §2.3: override rate > 30 %")
    rollback_override_window_hours: float = Field(1.0, gt=0, description="memo §2.3: … in any 1-hour window")
    rollback_error_rate: float = Field(0.05, gt=0, le=1, description="memo §2.3: system errors > 5 %")
    gate_alpha: float = Field(0.05, gt=0, lt=1, description="promotion gate: the DR bounds' two-sided level")
    gate_min_decisions: int = Field(200, ge=10, description="promotion gate: shadow decisions with rewards needed")
    gate_estimator: Literal["censoring_aware", "plug_in"] = Field(
        "censoring_aware", description="promotion gate: complete a GP30 not landed yet by the prediction and its "
        "measured error (censoring_aware), or by the prediction alone (plug_in, the earlier gate)"
    )
    hash_salt: str = Field("aidg-rollout", min_length=1, description="salt of the merchant-id hash → arm")
    reload_seconds: float = Field(0.5, gt=0, description="how often a replica re-reads the rollout state")

    @model_validator(mode="after")
    def _shares_fit(self) -> RolloutSettings:
        if self.ab_personalization_share + self.ab_exploration_share > 1:
            raise ValueError("A/B shares of personalization and exploration add up to more than 1")
        return self


class MonitorSettings(Group):
    """Rolling windows and trigger statistics of the monitor (memo §2.3 dashboard and triggers)."""

    time_scale: float = Field(
        1.0, gt=0, description="simulated seconds per real second: windows and the ramp interval shrink by it"
    )
    bucket_seconds: float = Field(60.0, gt=0, description="real seconds per KPI bucket of the decision log")
    flush_seconds: float = Field(1.0, gt=0, description="how often a replica adds its counters to the KPI table")
    eval_seconds: float = Field(1.0, gt=0, description="how often the alert rules and rollback triggers run")
    realtime_minutes: float = Field(5.0, gt=0, description="the 'real-time' window, in simulated minutes")
    min_samples: int = Field(100, ge=1, description="answered decisions per arm before a trigger may fire")
    rollout_false_alarm: float = Field(
        0.01, gt=0, lt=1, description="designed chance that a rollback trigger fires on a rollout within its thresholds"
    )
    series_points: int = Field(120, ge=10, le=2000, description="points of the dashboard's time series")
    shadow_queue: int = Field(1000, ge=1, description="shadow requests waiting for the challenger (more are dropped)")


class AlertSettings(Group):
    """Alerting strategy (memo §3.2) and technical KPIs."""

    p1_override_rate: float = Field(0.30, gt=0, le=1, description="memo §3.2 P1: override rate > 30 %")
    p1_latency_ms: float = Field(500.0, gt=0, description="memo §3.2 P1: latency > 500 ms")
    p2_cache_hit_rate: float = Field(0.90, ge=0, le=1, description="memo §3.2 P2: cache hit rate < 90 %")
