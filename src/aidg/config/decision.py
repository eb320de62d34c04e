"""Settings of the decisions: the reward, the bandit and its posterior, the autonomy dial, candidates,
explanations, the guard and exploration (memo §2)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from aidg.config.base import Group


class RewardSettings(Group):
    """Composite reward (memo §2.2): w1·GP30 uplift + w2·approval + w3·conversion − w4·risk."""

    w_gp30: float = Field(0.5, ge=0, description="memo §2.2 w1: weight of GP30 uplift")
    w_approval: float = Field(0.3, ge=0, description="memo §2.2 w2: weight of MM approval")
    w_conversion: float = Field(0.15, ge=0, description="memo §2.2 w3: weight of conversion proxy")
    w_risk: float = Field(0.05, ge=0, description="memo §2.2 w4: weight of the risk penalty")
    risk_penalty_scale: float = Field(0.1, ge=0, description="memo §2.2: penalty = override_freq × severity × 0.1")


class BanditSettings(Group):
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


class PosteriorSettings(Group):
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


class AutonomySettings(Group):
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


class CandidateSettings(Group):
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


class ExplainSettings(Group):
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


class GuardSettings(Group):
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


class ExplorationSettings(Group):
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
