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
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RewardSettings(_Group):
    """Composite reward (memo §2.2): w1·GP30 uplift + w2·approval + w3·conversion − w4·risk."""

    w_gp30: float = Field(0.5, ge=0, description="memo §2.2 w1: weight of GP30 uplift")
    w_approval: float = Field(0.3, ge=0, description="memo §2.2 w2: weight of MM approval")
    w_conversion: float = Field(0.15, ge=0, description="memo §2.2 w3: weight of conversion proxy")
    w_risk: float = Field(0.05, ge=0, description="memo §2.2 w4: weight of the risk penalty")
    risk_penalty_scale: float = Field(0.1, ge=0, description="memo §2.2: penalty = override_freq × severity × 0.1")


class BanditSettings(_Group):
    """Risk-aware Thompson sampling (memo §2.1)."""

    risk_threshold: float = Field(0.1, ge=0, le=1, description="memo §2.1: max risk of an eligible variant")
    n_candidates: int = Field(50, ge=1, le=1000, description="deal variants generated per request")
    conservative_alpha: float = Field(
        0.1, gt=0, lt=1, description="conservative gate: keep reward ≥ (1−α) × current system's"
    )
    min_gain: float = Field(
        0.05,
        ge=0,
        description="a variant is played only if its expected reward beats the current deal's by this much per "
        "unit of distance to the merchant's anchor deal (the scorer's errors grow as it extrapolates)",
    )
    relative_risk: bool = Field(
        True,
        description="risk_threshold bounds the risk a variant adds to the current deal's (in a marketplace whose "
        "reps edit a share of every deal, an absolute bound excludes whole merchants)",
    )
    edit_tradeoff: bool = Field(
        True, description="reps in the loop: a pick's gain over the current deal counts only with the learnt chance "
        "the rep keeps it (aidg.policy.edit_response); false ignores edits when choosing",
    )


TermSpread = tuple[float, float, float, float, float, float, float]  # one value per term feature (policy.pooled)


class PosteriorSettings(_Group):
    """What the bandit learns per merchant (``aidg.policy.merchant_posterior``): each reward part's scorer error as
    a function of the terms, pooled population → category → merchant. Chosen on the development world (seed 2027)."""

    enabled: bool = Field(True, description="learn per merchant, guard GP30 by the posterior (false: the earlier path)")
    # each part's spread of merchants' scorer errors per term feature: per-merchant least squares of the true error
    # over the development world's held-out merchants' 51 deals; the population and category levels get a share
    uplift_prior_sd: TermSpread = Field((0.083, 0.056, 0.044, 0.16, 0.084, 0.064, 0.245), description="GP30 uplift")
    approval_prior_sd: TermSpread = Field((0.091, 0.052, 0.045, 0.015, 0.017, 0.013, 0.032), description="approval")
    conversion_prior_sd: TermSpread = Field((0.039, 0.016, 0.014, 0.025, 0.017, 0.005, 0.05), description="conversion")
    record_error_reference: tuple[float, float, float] = Field(
        (0.108, 0.033, 0.112),
        description="approval, conversion and GP30: the root mean square of merchants' mean scorer error over their "
        "records on the development world; a version whose records show larger errors widens those spreads by the "
        "ratio (at most 4×), never narrows them",
    )
    # the merchant's mood follows its recent deals, so its old approvals overstate (or understate) today's; GP30 and
    # conversion responses are traits: on the development world a 60-day half-life on them cut the response model's
    # reward Spearman from 0.889 to 0.817 without improving calibration, so they keep their full weight
    approval_half_life_days: float | None = Field(
        60.0, gt=0, description="a past approval's weight in the record halves every this many days (None: all 1)"
    )
    population_share: float = Field(0.05, gt=0, description="the population level's prior sd × the merchants' spread")
    category_share: float = Field(0.05, gt=0, description="a category's prior sd × the merchants' spread")
    approval_noise: float = Field(0.45, gt=0, description="sd of one approval around its probability")
    conversion_noise: float = Field(0.05, gt=0, description="sd of one 3-day conversion around its expectation")
    gp30_noise: float = Field(0.35, gt=0, description="sd of one realised GP30 uplift around its expectation")
    uplift_sd: float = Field(0.1, ge=0, description="the scorer's uplift error the term features cannot explain")
    caution: float = Field(1.0, ge=0, description="a variant's sampled reward − this × its posterior sd (aversion)")
    sample_scale: float = Field(0.5, gt=0, description="the spread of Thompson draws × this (1: plain sampling)")
    delta: float = Field(0.1, gt=0, lt=1, description="the guard refuses where P(GP30 < 0.8 × current deal's) > this")


class AutonomySettings(_Group):
    """The apprentice → copilot → autopilot dial per segment (:mod:`aidg.policy.autonomy`). Set a priori: autonomy is
    earned slowly (one-sided 95 % bounds) and lost fast (80 % bounds over the last two weeks)."""

    enabled: bool = Field(True, description="each segment's level from its record (false: every segment copilot)")
    segment_by: Literal["category_tier", "rep_team"] = Field(
        "category_tier", description="category × city tier, or rep team"
    )
    min_decisions: int = Field(30, ge=1, description="decisions with a known rep action before a segment graduates")
    graduate_agreement: float = Field(0.6, gt=0, lt=1, description="apprentice → copilot: lower bound of the "
                                      "agreement of AIDG's prediction of the rep's action (Personalizer: 60-80 %)")
    autopilot_agreement: float = Field(0.7, gt=0, lt=1, description="copilot → autopilot: lower bound of the share of "
                                       "AIDG's picks approved and kept unedited")
    autopilot_max_override: float = Field(0.25, ge=0, le=1, description="autopilot only for merchants overriding less")
    demote_acceptance: float = Field(0.35, gt=0, lt=1, description="demote when the upper bound of the last "
                                     "window's approved-and-unedited share falls under this")
    demote_uplift: float = Field(
        -0.2, description="or when the upper bound of its realised GP30 uplift falls under this"
    )
    window_days: float = Field(14.0, gt=0, description="the demotion window")
    min_window: int = Field(8, ge=1, description="decisions in the window before a demotion is considered")
    z_graduate: float = Field(1.645, gt=0, description="one-sided bound for graduation (95 %)")
    z_demote: float = Field(1.28, gt=0, description="one-sided bound for demotion (80 %: harm is acted on early)")
    explain_in_copilot: bool = Field(True, description="copilot shows AIDG's explanation with its pick")
    service_start: Literal["apprentice", "copilot", "autopilot"] = Field(
        "copilot", description="a segment's level in the service before the dial or an admin moved it: a version "
        "serves only after the rollout's shadow (AIDG predicting while the existing system plays: apprentice for "
        "the whole marketplace) and A/B; a marketplace starting from scratch sets apprentice",
    )
    review_seconds: float = Field(
        60.0, gt=0, description="how often a replica reviews the segments' levels (the first, this long after start)"
    )


class CandidateSettings(_Group):
    """Deal variants proposed per request (memo §2.1 action space: safe / explore / hybrid)."""

    safe_share: float = Field(0.4, ge=0, le=1, description="share of variants close to what worked")
    hybrid_share: float = Field(0.3, ge=0, le=1, description="share of variants one step away")
    safe_radius: float = Field(1.0, gt=0, description="distance to the anchor deal that still counts as safe")
    hybrid_radius: float = Field(2.5, gt=0, description="distance that still counts as hybrid (beyond: explore)")

    @model_validator(mode="after")
    def _shares(self) -> CandidateSettings:
        if self.safe_share + self.hybrid_share > 1:
            raise ValueError("safe_share + hybrid_share must be at most 1 (the rest is explore)")
        if self.hybrid_radius <= self.safe_radius:
            raise ValueError("hybrid_radius must exceed safe_radius")
        return self


class ExplainSettings(_Group):
    """Explanations of the scorer (memo §1.2)."""

    top_features: int = Field(5, ge=1, le=50, description="memo §1.2: top-5 influential features")
    attention_flat_ratio: float = Field(
        1.5, ge=1, description="attention concentration under which the top-5 come from the attributions"
    )
    prototypes_k: int = Field(100, ge=1, description="memo §1.2: prototypes per category")
    prototype_refresh_hours: float = Field(24.0, gt=0, description="memo §1.2: prototypes refreshed every 24 h")
    prototype_check_seconds: float = Field(
        60.0, gt=0, description="how often a replica checks whether its prototypes are due for their refresh"
    )
    surrogate_max_leaves: int = Field(32, ge=2, le=512, description="rule surrogate size (readable: ≤ 32)")
    whatif_samples: int = Field(32, ge=2, le=1000, description="Monte-Carlo dropout samples of a what-if interval")
    whatif_level: float = Field(0.9, gt=0, lt=1, description="coverage of the what-if interval")


class GuardSettings(_Group):
    """Safety guard clauses (memo §2.3)."""

    baseline_threshold: float = Field(0.8, ge=0, description="memo §2.3: expected GP30 ≥ 0.8 × baseline")
    max_override_rate: float = Field(0.3, ge=0, le=1, description="memo §2.3: merchant override rate ≤ 0.3")
    override_clause: Literal["no_explore", "safe_only", "refuse"] = Field(
        "no_explore",
        description="above max_override_rate: no explore variants (default), only safe ones, or refuse all (the "
        "memo's letter)",
    )
    high_risk_categories: tuple[str, ...] = Field(
        ("gambling", "tobacco", "adult"), description="memo §2.3: categories never proposed"
    )


class ExplorationSettings(_Group):
    """Exploration manager (memo §2.3)."""

    initial_rate: float = Field(0.05, description="memo §2.3: starting exploration rate")
    min_rate: float = Field(0.01, ge=0, le=1, description="memo §2.3: lower bound of the rate")
    max_rate: float = Field(0.3, ge=0, le=1, description="memo §2.3: upper bound of the rate")
    ramp_up_factor: float = Field(1.5, ge=1, description="memo §2.3: ×1.5 when success rate is high")
    ramp_down_factor: float = Field(0.5, gt=0, le=1, description="memo §2.3: ×0.5 otherwise")
    success_threshold: float = Field(0.8, ge=0, le=1, description="memo §2.3: success rate that ramps up")

    @model_validator(mode="after")
    def _rate_in_bounds(self) -> ExplorationSettings:
        if not self.min_rate <= self.max_rate:
            raise ValueError(f"exploration min_rate {self.min_rate} must be ≤ max_rate {self.max_rate}")
        if not self.min_rate <= self.initial_rate <= self.max_rate:
            raise ValueError(
                f"exploration initial_rate {self.initial_rate} must lie in [{self.min_rate}, {self.max_rate}]"
            )
        return self


class CacheSettings(_Group):
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


class BackendSettings(_Group):
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


class StreamSettings(_Group):
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


class ApiKey(_Group):
    """One API key's grant: ``mm`` keys reach only their merchants; ``admin`` keys reach everything."""

    role: Literal["mm", "admin"]
    merchants: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _merchants_only_for_mm(self) -> ApiKey:
        if self.role == "admin" and self.merchants:
            raise ValueError("admin keys reach every merchant: give merchants only to mm keys")
        return self


class ServiceSettings(_Group):
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


class RolloutSettings(_Group):
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


class MonitorSettings(_Group):
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


class AlertSettings(_Group):
    """Alerting strategy (memo §3.2) and technical KPIs."""

    p1_override_rate: float = Field(0.30, gt=0, le=1, description="memo §3.2 P1: override rate > 30 %")
    p1_latency_ms: float = Field(500.0, gt=0, description="memo §3.2 P1: latency > 500 ms")
    p2_cache_hit_rate: float = Field(0.90, ge=0, le=1, description="memo §3.2 P2: cache hit rate < 90 %")


class PrivacySettings(_Group):
    """Data privacy and compliance (memo, 'Data Privacy & Compliance')."""

    dp_epsilon: float = Field(1.0, gt=0, description="memo: differential privacy ε = 1.0")
    dp_delta: float | None = Field(
        None, gt=0, lt=1, description="None: 1 / (10 × number of merchants), set at training time"
    )
    retention_days: int = Field(30, gt=0, description="memo: 30-day data retention")
    id_hash_key: str = Field(
        "change-me", min_length=1, description="HMAC key for merchant ids in logs; set AIDG_PRIVACY__ID_HASH_KEY"
    )
    id_pattern: str = Field(
        r"(?<![\w-])m-\d{4,}(?![\w-])",
        min_length=1,
        description="regular expression of your merchant ids (the simulator's m-000123); logs show them hashed",
    )
    dp_max_grad_norm: float = Field(1.0, gt=0, description="DP-SGD: clip of each merchant's whole gradient")
    dp_batch_merchants: int = Field(
        64, ge=1, description="DP-SGD: expected merchants per step (Poisson sampling rate = this / merchants)"
    )
    encryption_key: str | None = Field(
        None,
        description="Fernet key (urlsafe base64, 32 bytes) encrypting stored merchant data at rest; None: plain files "
        "(`aidg serve` warns). Make one with `aidg config --new-key`",
    )


class TrainingPreset(_Group):
    """One scale's training budget: how much each part trains (the models' sizes stay in their configs)."""

    branch_epochs: int = Field(3, ge=1, description="passes of each profile branch over its examples")
    branch_per_merchant: int = Field(2, ge=1, description="training examples drawn per merchant for each branch")
    branch_batch_size: int = Field(128, ge=1, description="examples per step of the profile branches")
    sentiment_examples: int = Field(3000, ge=1, description="fine-tuning examples (memo §1.1: 100k, --sentiment-full)")
    fusion_epochs: int = Field(100, ge=1, description="epochs of the profile fusion and its uplift head")
    scorer_epochs: int = Field(30, ge=1, description="at most this many epochs of the deal scorer (early stopping)")
    scorer_windows: int = Field(4, ge=1, description="180-day snapshots the scorer's examples come from")
    scorer_patience: int = Field(3, ge=1, description="scorer epochs without a better validation loss before stopping")
    scorer_batch_size: int = Field(256, ge=1, description="logged proposals per step of the deal scorer")
    graph_steps: int | None = Field(
        None, ge=1, description="full-batch steps of the graph branch (None: 10 × branch_epochs)"
    )
    graph_edges_per_step: int | None = Field(
        None, ge=1, description="training edges in each graph step's loss, drawn afresh each step (None: all)"
    )
    dp_passes: float | None = Field(
        None, gt=0, description="under DP: passes over the merchants per branch and for the fusion (None: privacy's)"
    )


def _presets() -> dict[str, TrainingPreset]:
    return {
        "tiny": TrainingPreset(
            branch_epochs=2,
            sentiment_examples=300,
            fusion_epochs=10,
            scorer_epochs=6,
            scorer_windows=2,
            scorer_patience=2,
            dp_passes=1.0,
        ),
        "small": TrainingPreset(),
        # the memo's scale (40k merchants) within an hour on 2 cores: 20× the small world's examples per epoch, so
        # fewer passes; the graph keeps full-batch message passing (3.2 s and 2.6 GB a step at 50k nodes and 1M
        # directed edges; PyG's NeighborLoader needs pyg-lib or torch-sparse, neither installs here) and each step's
        # decoder loss reads 64k of the ~400k training edges (over all of them it cost twice the message passing)
        "full": TrainingPreset(
            branch_epochs=2,
            branch_batch_size=256,
            sentiment_examples=10_000,
            fusion_epochs=10,
            scorer_epochs=10,
            scorer_windows=4,
            scorer_patience=2,
            scorer_batch_size=512,
            graph_steps=30,
            graph_edges_per_step=65_536,
        ),
    }


class TrainingSettings(_Group):
    """Training budgets per scale (``aidg train --scale``): tiny (the tests' worlds), small (default), full."""

    presets: dict[str, TrainingPreset] = Field(
        default_factory=_presets,
        description="budget per scale; AIDG_TRAINING__PRESETS__SMALL__BRANCH_EPOCHS=4 changes one field of one",
    )

    without_branches: tuple[str, ...] = Field(
        (), description="profile branches left out of the profile (zeros in the fusion); the memo's are all in"
    )
    approval_calibration: Literal["platt", "isotonic"] = Field(
        "isotonic", description="the scorer's approval calibration: Platt scaling, then an isotonic map; platt: alone"
    )

    @model_validator(mode="before")
    @classmethod
    def _merge(cls, data: object) -> object:
        """A partial preset from the environment changes only the fields it names."""
        if isinstance(data, dict) and isinstance(data.get("presets"), dict):
            base = {k: v.model_dump() for k, v in _presets().items()}
            for name, value in data["presets"].items():
                if isinstance(value, dict):
                    base[name] = {**base.get(name, {}), **value}
                else:
                    base[name] = value
            data = {**data, "presets": base}
        return data


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
