"""Settings: every threshold and weight of the design memo, in one place.

Each field carries the memo's value as its default and says where it comes
from. Settings are read from the environment with the prefix ``AIDG_``; nested
groups use ``__`` (``AIDG_BANDIT__RISK_THRESHOLD=0.2``). Nothing is built at
import time: construct ``Settings()`` where you need it.

All state AIDG writes (models, registry, SQLite files, logs, caches, demo
worlds) lives under :attr:`Settings.home` (``AIDG_HOME``, default ``~/.aidg``),
so two runs with different homes never interfere.

>>> s = Settings(home="/tmp/aidg-doc")
>>> s.reward.w_gp30, s.bandit.risk_threshold, s.exploration.initial_rate
(0.5, 0.1, 0.05)
>>> str(s.paths.registry_db)
'/tmp/aidg-doc/registry.sqlite'
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aidg.config.decision import (
    AutonomySettings,
    BanditSettings,
    CandidateSettings,
    ExplainSettings,
    ExplorationSettings,
    GuardSettings,
    PosteriorSettings,
    RewardSettings,
)
from aidg.config.online import (
    AlertSettings,
    ApiKey,
    BackendSettings,
    CacheSettings,
    MonitorSettings,
    RolloutSettings,
    ServiceSettings,
    StreamSettings,
)
from aidg.config.training import (
    PrivacySettings,
    TrainingPreset,
    TrainingSettings,
)


class Paths(BaseModel):
    """Where each kind of state lives; all of it under one home folder."""

    model_config = ConfigDict(frozen=True)

    home: Path

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def registry_db(self) -> Path:
        return self.home / "registry.sqlite"

    @property
    def decisions_db(self) -> Path:
        return self.home / "decisions.sqlite"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def cache(self) -> Path:
        return self.home / "cache"

    @property
    def worlds(self) -> Path:
        return self.home / "worlds"


class Settings(BaseSettings):
    """All of AIDG's settings. See the module docstring for how the environment maps in."""

    model_config = SettingsConfigDict(env_prefix="AIDG_", env_nested_delimiter="__", extra="forbid", frozen=True)

    home: Path = Field(Path("~/.aidg"), description="AIDG_HOME: the one folder all state lives in")
    seed: int = Field(0, description="default random seed")
    mlflow_uri: str | None = Field(
        None, description="AIDG_MLFLOW_URI: MLflow tracking/registry server; None: SQLite under AIDG_HOME"
    )
    redis_url: str | None = Field(
        None, description="AIDG_REDIS_URL: online features, embedding cache and event bus in Redis; None: in-process"
    )
    redis_namespace: str = Field(
        "aidg", min_length=1, description="AIDG_REDIS_NAMESPACE: key prefix of the features and cache in Redis"
    )
    database_url: str | None = Field(
        None, description="AIDG_DATABASE_URL: decision log (SQLAlchemy URL, e.g. PostgreSQL); None: SQLite under home"
    )
    kafka_bootstrap: str | None = Field(
        None, description="AIDG_KAFKA_BOOTSTRAP: Kafka brokers for the event bus (takes precedence over Redis Streams)"
    )
    api_keys: dict[str, ApiKey] | None = Field(
        None,
        description='AIDG_API_KEYS: JSON {"key": {"role": "mm"|"admin", "merchants": [...]}}; None: no keys, '
        "and `aidg serve` binds only 127.0.0.1",
    )
    reward: RewardSettings = RewardSettings()
    bandit: BanditSettings = BanditSettings()
    posterior: PosteriorSettings = PosteriorSettings()
    autonomy: AutonomySettings = AutonomySettings()
    guard: GuardSettings = GuardSettings()
    candidates: CandidateSettings = CandidateSettings()
    explain: ExplainSettings = ExplainSettings()
    exploration: ExplorationSettings = ExplorationSettings()
    cache: CacheSettings = CacheSettings()
    backends: BackendSettings = BackendSettings()
    stream: StreamSettings = StreamSettings()
    service: ServiceSettings = ServiceSettings()
    rollout: RolloutSettings = RolloutSettings()
    monitor: MonitorSettings = MonitorSettings()
    alerts: AlertSettings = AlertSettings()
    privacy: PrivacySettings = PrivacySettings()
    training: TrainingSettings = TrainingSettings()

    @property
    def paths(self) -> Paths:
        """Derived locations under :attr:`home` (``~`` expanded, made absolute: MLflow's artifact URI needs it)."""
        return Paths(home=self.home.expanduser().absolute())

    def backend_kinds(self) -> dict[str, str]:
        """The kind of each online part: ``store`` (embedded | redis), ``log`` (embedded | postgres), ``bus``
        (embedded | redis | kafka), ``auto`` resolved by the URLs that are set."""
        b = self.backends
        auto = {
            "store": "redis" if self.redis_url else "embedded",
            "log": "postgres" if self.database_url and not self.database_url.startswith("sqlite") else "embedded",
            "bus": "kafka" if self.kafka_bootstrap else "redis" if self.redis_url else "embedded",
        }
        chosen = {"store": b.store, "log": b.log, "bus": b.bus}
        return {k: auto[k] if v == "auto" else v for k, v in chosen.items()}

    @model_validator(mode="after")
    def _backends_have_their_urls(self) -> Settings:
        needs = {"redis": ("redis_url", "AIDG_REDIS_URL"), "postgres": ("database_url", "AIDG_DATABASE_URL"),
                 "kafka": ("kafka_bootstrap", "AIDG_KAFKA_BOOTSTRAP")}  # fmt: skip
        for part, kind in self.backend_kinds().items():
            if kind in needs and not getattr(self, needs[kind][0]):
                raise ValueError(f"AIDG_BACKENDS__{part.upper()}={kind} needs {needs[kind][1]} (the server's address)")
        return self


def load_settings(**overrides: object) -> Settings:
    """Build :class:`Settings` from the environment, turning a bad value into a ConfigError.

    The message names each offending setting by its environment variable.
    """
    from pydantic import ValidationError

    from aidg.errors import ConfigError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = [str(part) for part in err["loc"]]
            env = "AIDG_" + "__".join(loc).upper() if loc else "AIDG_*"
            lines.append(f"{env}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None


__all__ = [
    "AlertSettings",
    "ApiKey",
    "AutonomySettings",
    "BackendSettings",
    "BanditSettings",
    "CacheSettings",
    "CandidateSettings",
    "ExplainSettings",
    "ExplorationSettings",
    "GuardSettings",
    "MonitorSettings",
    "Paths",
    "PosteriorSettings",
    "PrivacySettings",
    "RewardSettings",
    "RolloutSettings",
    "ServiceSettings",
    "Settings",
    "StreamSettings",
    "TrainingPreset",
    "TrainingSettings",
    "load_settings",
]
