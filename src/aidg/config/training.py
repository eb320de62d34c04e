"""Settings of training: privacy (DP, erasure) and the training budget of each scale (``aidg train --scale``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from aidg.config.base import Group


class PrivacySettings(Group):
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


class TrainingPreset(Group):
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


class TrainingSettings(Group):
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
