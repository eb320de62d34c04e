"""What the CLI and the demo run: train a merchant-profile encoder on a data folder, evaluate a version."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from aidg.config import Settings
from aidg.errors import DataError
from aidg.models.branches import BranchBudget
from aidg.models.fitting import Progress
from aidg.models.pipeline import TrainOptions
from aidg.registry import ModelRegistry
from aidg.sim import World
from aidg.store import OfflineStore

TRAIN_TABLES = ("merchants", "categories", "deals")
OPTIONAL_TABLES = ("cities", "reps", "proposals", "overrides", "feedback_notes", "merchant_locations")


def train_options(scale: str, seed: int, sentiment_full: bool = False) -> TrainOptions:
    """Training budget per scale; ``sentiment_full`` is the memo's 100k examples × 3 epochs."""
    if scale not in ("tiny", "small", "full"):
        raise DataError(f"unknown training scale {scale!r}; choose tiny, small or full")
    opt = TrainOptions(seed=seed)
    if scale == "tiny":
        opt = TrainOptions(
            seed=seed, budget=BranchBudget(epochs=2, per_merchant=2), sentiment_examples=300, fusion_epochs=10
        )
    elif scale == "full":
        opt = TrainOptions(
            seed=seed, budget=BranchBudget(epochs=6, per_merchant=2, batch_size=256), sentiment_examples=10_000
        )
    if sentiment_full:
        opt.sentiment_examples, opt.sentiment_epochs = 100_000, 3
    return opt


def load_training_data(data: Path) -> tuple[dict[str, pd.DataFrame], pd.Timestamp | None, World | None]:
    """Validated tables of a data folder, its as-of date and, for a simulated world, the world with its truth."""
    store = OfflineStore(data)
    names = [t for t in (*TRAIN_TABLES, *OPTIONAL_TABLES) if store.path(t) is not None]
    tables, _ = store.load(names, required=TRAIN_TABLES)
    try:
        truth, meta = World.load_truth(store.root)
    except DataError:
        return tables, None, None
    world = World(tables=tables, truth=truth, meta=meta)
    return tables, world.as_of, world


def train(
    settings: Settings,
    data: Path,
    scale: str = "small",
    seed: int = 0,
    sentiment_full: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Train every branch and the fusion, register the model, return the report."""
    from aidg.models.pipeline import train_profile

    t0 = time.perf_counter()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    tables, as_of, _ = load_training_data(data)
    options = train_options(scale, seed, sentiment_full)
    pm, metrics, split = train_profile(tables, as_of if as_of is not None else None, options, progress)  # type: ignore[arg-type]
    params = {
        "data": str(data),
        "scale": scale,
        "seed": seed,
        "sentiment_examples": options.sentiment_examples,
        "sentiment_epochs": options.sentiment_epochs,
        "epochs": options.budget.epochs,
        "holdout": options.holdout,
        "as_of": pm.meta["as_of"],
    }
    flat = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    version = ModelRegistry(settings).register_profile(pm, params, flat)
    return {
        "model": "aidg-merchant-profile",
        "version": version,
        "as_of": pm.meta["as_of"],
        "train_merchants": len(split.train),
        "heldout_merchants": len(split.heldout),
        "metrics": flat,
        "stage_seconds": {k: round(v, 2) for k, v in metrics["seconds"].items()},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def evaluate(
    settings: Settings, data: Path, version: str = "latest", progress: Progress | None = None
) -> dict[str, Any]:
    """Evaluate a registered version on the held-out merchants of ``data``."""
    from aidg.models.evaluation import evaluate_profile

    t0 = time.perf_counter()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    tables, _, world = load_training_data(data)
    registry = ModelRegistry(settings)
    pm = registry.load_profile(version)
    out = evaluate_profile(pm, tables, truth_world=world, progress=progress)
    out["version"] = version if version != "latest" else registry.versions()[-1]
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out
