"""Training the ContextualDealScorer on logged proposals and outcomes (never on the simulator's truth).

Snapshots are taken every ``window_days`` before the as-of date (``windows`` of
them); each snapshot's targets are the proposals of the window after it. One
multi-task loss: approval (BCE), realised GP30 uplift (Huber, where known),
3-day conversion (BCE on the rate, where known), override (BCE, on the terms
before the rep's edit) and severity (MSE, on overridden ones). A slice of the
training merchants is kept out of fitting to calibrate the approval
probability afterwards (:mod:`aidg.training.calibration`: Platt scaling, then an
isotonic map).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from aidg.config import RewardSettings
from aidg.features.context import FeatureContext
from aidg.features.merchant_view import DEAL_NAMES, MERCHANT_NAMES
from aidg.inference.batches import predict_batches
from aidg.inference.profile_model import ProfileModel
from aidg.inference.snapshot import ScorerExamples, Snapshot, SnapshotStack, scorer_examples, snapshot
from aidg.models.deal_scorer import ContextualDealScorer
from aidg.models.scorer_config import ScorerConfig
from aidg.progress import Progress
from aidg.training.calibration import Method, calibrate_approval, expected_calibration_error
from aidg.training.fitting import fit


@dataclass
class ScorerOptions:
    seed: int = 0
    windows: int = 4  # snapshots, one per window before the as-of date (4 × 180 d: two years of proposals)
    window_days: int = 180
    epochs: int = 30
    batch_size: int = 256
    lr: float = 2e-3
    calibration_share: float = 0.15  # training merchants kept out of fitting: early stopping, approval calibration
    approval_calibration: Method = "isotonic"  # after Platt scaling ("platt": Platt alone, the earlier behaviour)
    patience: int = 3  # epochs without a better validation loss before stopping
    d_model: int = 64
    hidden: int = 256
    dropout: float = 0.1
    weight_decay: float = 1e-3


@dataclass
class ScorerData:
    """Snapshots, their stacked inputs and the examples: what training and the baseline share."""

    snaps: list[Snapshot]
    stack: SnapshotStack
    fit: ScorerExamples
    calibration: ScorerExamples
    heldout: ScorerExamples


def _bce(logit: Tensor, y: Tensor) -> Tensor:
    return nn.functional.binary_cross_entropy_with_logits(logit, y)


def _masked(loss: Any, pred: Tensor, y: Tensor) -> Tensor:
    ok = torch.isfinite(y)
    if not bool(ok.any()):
        return pred.sum() * 0.0
    return torch.as_tensor(loss(pred[ok], y[ok]))


def multitask_loss(scorer: ContextualDealScorer, stack: SnapshotStack, ex: ScorerExamples, idx: np.ndarray) -> Tensor:
    """The sum of the five objectives on examples ``idx`` (missing targets skipped)."""
    m = stack.rows(ex.snap[idx], ex.m[idx])

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a[idx]))

    out = scorer(*m, t(ex.deal)[:, None, :], t(ex.deal_category)[:, None])
    risk = scorer.risk_adjuster(scorer.merchant_encoder.x_scale(m.x), m.intent, t(ex.risk_deal)[:, None, :])
    return (
        _bce(out["approval_logit"][:, 0], t(ex.approved))
        + _masked(lambda p, y: nn.functional.huber_loss(p, y, delta=0.5), out["uplift"][:, 0], t(ex.uplift))
        + 2.0 * _masked(_bce, out["conversion_logit"][:, 0], t(ex.conversion))
        + 0.5 * _bce(risk["override_logit"][:, 0], t(ex.overridden))
        + 0.5 * _masked(nn.functional.mse_loss, risk["severity"][:, 0], t(ex.severity))
    )


def prepare_data(
    pm: ProfileModel,
    ctx: FeatureContext,
    train: np.ndarray,
    heldout: np.ndarray,
    opt: ScorerOptions,
    progress: Progress | None = None,
) -> ScorerData:
    """Snapshots and examples for the merchant codes ``train`` (split into fit / calibration) and ``heldout``."""
    say = progress or (lambda s, f: None)
    snaps: list[Snapshot] = []
    rng = np.random.default_rng(opt.seed + 17)
    cal = np.sort(rng.choice(train, size=max(1, int(len(train) * opt.calibration_share)), replace=False))
    fit_codes = np.setdiff1d(train, cal)
    parts: dict[str, list[ScorerExamples]] = {"fit": [], "cal": [], "held": []}
    for k in range(opt.windows, 0, -1):
        at = ctx.as_of - pd.Timedelta(days=k * opt.window_days)
        end = min(at + pd.Timedelta(days=opt.window_days), ctx.as_of)
        say(f"scorer: merchant snapshot as of {at.date()}", (opt.windows - k) / opt.windows)
        snaps.append(snapshot(pm, ctx, at, seed=opt.seed))
        i = len(snaps) - 1
        parts["fit"].append(scorer_examples(ctx, snaps[i], i, fit_codes, end))
        parts["cal"].append(scorer_examples(ctx, snaps[i], i, cal, end))
        parts["held"].append(scorer_examples(ctx, snaps[i], i, heldout, end))
    return ScorerData(
        snaps,
        SnapshotStack(snaps),
        ScorerExamples.concat(parts["fit"]),
        ScorerExamples.concat(parts["cal"]),
        ScorerExamples.concat(parts["held"]),
    )


def logged_outputs(scorer: ContextualDealScorer, data: ScorerData, ex: ScorerExamples) -> dict[str, np.ndarray]:
    """The scorer's outputs on logged examples (shown terms; override on the terms before the edit)."""
    scorer.eval()
    keys = ("uplift", "approval_logit", "approval", "conversion")

    def fn(idx: np.ndarray) -> Tensor:  # one forward pass per batch, every output as a column
        m = data.stack.rows(ex.snap[idx], ex.m[idx])
        out = scorer(*m, torch.from_numpy(ex.deal[idx])[:, None, :], torch.from_numpy(ex.deal_category[idx])[:, None])
        xs = scorer.merchant_encoder.x_scale(m.x)
        risk = scorer.risk_adjuster(xs, m.intent, torch.from_numpy(ex.risk_deal[idx])[:, None, :])
        return torch.stack([*(out[k][:, 0] for k in keys), risk["p_override"][:, 0]], 1)

    with torch.inference_mode():
        cols = predict_batches(fn, len(ex), batch_size=2048).reshape(len(ex), len(keys) + 1)
    return {k: cols[:, j] for j, k in enumerate((*keys, "p_override"))}


def logged_metrics(scorer: ContextualDealScorer, data: ScorerData) -> dict[str, float]:
    """Held-out merchants' logged proposals: approval AUC and calibration, uplift error, override AUC."""
    from sklearn.metrics import roc_auc_score

    ex = data.heldout
    if len(ex) == 0:
        return {}
    out = logged_outputs(scorer, data, ex)
    m: dict[str, float] = {"scorer_heldout_examples": float(len(ex))}
    if len(np.unique(ex.approved)) == 2:
        m["scorer_approval_auc"] = float(roc_auc_score(ex.approved, out["approval"]))
    m["scorer_approval_ece_logged"] = expected_calibration_error(out["approval"], ex.approved)
    if len(np.unique(ex.overridden)) == 2:
        m["scorer_override_auc"] = float(roc_auc_score(ex.overridden, out["p_override"]))
    ok = np.isfinite(ex.uplift)
    if ok.any():
        m["scorer_uplift_mae"] = float(np.mean(np.abs(out["uplift"][ok] - ex.uplift[ok])))
        m["scorer_uplift_mae_mean_baseline"] = float(np.mean(np.abs(ex.uplift[ok] - np.nanmean(data.fit.uplift))))
    return m


def train_scorer(
    pm: ProfileModel,
    ctx: FeatureContext,
    train: np.ndarray,
    heldout: np.ndarray,
    options: ScorerOptions | None = None,
    reward: RewardSettings | None = None,
    progress: Progress | None = None,
    data: ScorerData | None = None,
) -> tuple[ContextualDealScorer, dict[str, Any], ScorerData]:
    """Fit the scorer on the ``train`` merchant codes; metrics on ``heldout`` merchants' logged proposals."""
    opt = options or ScorerOptions()
    t0 = time.perf_counter()
    data = data or prepare_data(pm, ctx, train, heldout, opt, progress)
    torch.manual_seed(opt.seed)
    cfg = ScorerConfig(
        merchant_names=list(MERCHANT_NAMES),
        deal_names=list(DEAL_NAMES),
        n_categories=ctx.n_categories,
        profile_dim=int(data.snaps[0].profile.shape[1]),
        intent_dim=int(data.snaps[0].intent.shape[1]),
        memory_features=int(data.snaps[0].memory.shape[2]),
        memory_len=int(data.snaps[0].memory.shape[1]),
        d_model=opt.d_model,
        hidden=opt.hidden,
        dropout=opt.dropout,
        reward=(reward or RewardSettings()).model_dump(),
    )
    scorer = ContextualDealScorer(cfg)
    ex = data.fit
    fitted = data.stack.all.tensors(np.unique(ex.snap * data.stack.n + ex.m))
    scorer.fit_scalers(fitted.x, fitted.profile, fitted.intent)
    val = data.calibration
    best: dict[str, Any] = {"loss": float("inf"), "epoch": -1, "state": None}

    def on_epoch(epoch: int) -> bool:
        """Early stopping on the calibration merchants' loss (the labels are noisy: the net overfits fast)."""
        with torch.no_grad():
            losses = [
                float(multitask_loss(scorer, data.stack, val, np.arange(lo, min(lo + 4096, len(val)))))
                * min(4096, len(val) - lo)
                for lo in range(0, len(val), 4096)
            ]
        v = sum(losses) / max(len(val), 1)
        if v < best["loss"] - 1e-4:
            best.update(loss=v, epoch=epoch, state={k: t.clone() for k, t in scorer.state_dict().items()})
        return epoch - int(best["epoch"]) >= opt.patience

    history = fit(
        scorer,
        lambda idx: multitask_loss(scorer, data.stack, ex, idx),
        len(ex),
        epochs=opt.epochs,
        batch_size=opt.batch_size,
        lr=opt.lr,
        seed=opt.seed,
        weight_decay=opt.weight_decay,
        label="scorer",
        progress=progress,
        on_epoch=on_epoch if len(val) else None,
    )
    if best["state"] is not None:
        scorer.load_state_dict(best["state"])
    cal = data.calibration
    fitted_cal = calibrate_approval(
        scorer,
        logged_outputs(scorer, data, cal)["approval_logit"] if len(cal) else np.zeros(0),
        cal.approved,
        opt.approval_calibration,
    )
    scorer.eval()
    metrics: dict[str, Any] = {
        "scorer_train_examples": len(ex),
        "scorer_final_loss": history[-1],
        "scorer_epochs_run": len(history),
        "scorer_best_epoch": int(best["epoch"]) + 1,
        "scorer_validation_loss": best["loss"],
        "scorer_parameters": scorer.n_parameters(),
        "scorer_calibration_a": fitted_cal["a"],
        "scorer_calibration_b": fitted_cal["b"],
        "scorer_calibration_max_shift": fitted_cal["max_shift"],
        **logged_metrics(scorer, data),
        "scorer_seconds": round(time.perf_counter() - t0, 2),
    }
    return scorer, metrics, data
