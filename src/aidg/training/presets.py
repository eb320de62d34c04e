"""A scale's training budget (``Settings.training.presets``) as the options of each training part."""

from __future__ import annotations

from dataclasses import replace

from aidg.config import Settings, TrainingPreset
from aidg.errors import DataError
from aidg.privacy.dp import DPConfig
from aidg.training.branches import BranchBudget
from aidg.training.profile import TrainOptions
from aidg.training.scorer import ScorerOptions


def preset(settings: Settings, scale: str) -> TrainingPreset:
    """The budget of ``scale``, or a clear error naming the scales there are."""
    presets = settings.training.presets
    if scale not in presets:
        raise DataError(f"unknown training scale {scale!r}; choose {', '.join(presets)}")
    return presets[scale]


def scorer_options(settings: Settings, scale: str, seed: int) -> ScorerOptions:
    """The deal scorer's budget of ``scale``."""
    p = preset(settings, scale)
    return ScorerOptions(
        seed=seed, epochs=p.scorer_epochs, windows=p.scorer_windows, patience=p.scorer_patience,
        batch_size=p.scorer_batch_size,
        approval_calibration=settings.training.approval_calibration,
    )  # fmt: skip


def dp_config(settings: Settings) -> DPConfig:
    """The differential-privacy target and DP-SGD settings of ``settings.privacy`` (δ unset: 1 / (10 n))."""
    p = settings.privacy
    return DPConfig(
        epsilon=p.dp_epsilon,
        delta=p.dp_delta,
        max_grad_norm=p.dp_max_grad_norm,
        batch_merchants=p.dp_batch_merchants,
    )


def train_options(
    settings: Settings, scale: str, seed: int, sentiment_full: bool = False, dp: DPConfig | None = None
) -> TrainOptions:
    """The profile's training options of ``scale``; ``sentiment_full`` is the memo's 100k examples × 3 epochs.

    ``dp``: train with differential privacy (:func:`dp_config`); the preset's ``dp_passes`` (when set) replaces
    the passes over the merchants per branch and for the fusion.
    """
    p = preset(settings, scale)
    opt = TrainOptions(
        seed=seed,
        budget=BranchBudget(epochs=p.branch_epochs, per_merchant=p.branch_per_merchant, batch_size=p.branch_batch_size,
                            graph_steps=p.graph_steps, graph_edges_per_step=p.graph_edges_per_step),
        sentiment_examples=p.sentiment_examples,
        fusion_epochs=p.fusion_epochs,
        without_branches=tuple(settings.training.without_branches),
    )
    if sentiment_full:
        opt.sentiment_examples, opt.sentiment_epochs = 100_000, 3
    if dp is not None:
        opt.dp = replace(dp, branch_epochs=p.dp_passes, fusion_epochs=p.dp_passes) if p.dp_passes else dp
    return opt


__all__ = ["dp_config", "preset", "scorer_options", "train_options"]
