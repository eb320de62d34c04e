"""Training and evaluating each branch on its own objective (held-out merchants for every metric)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score, roc_auc_score
from torch import nn

from aidg.features.context import OVERRIDE_TYPES, FeatureContext
from aidg.features.graph import DealGraph
from aidg.features.sequences import (
    SeqBatch,
    deal_sequences,
    event_sequences,
    override_feature_names,
    override_sequences,
)
from aidg.models.deal_history_encoder import DealHistoryConfig, DealHistoryEncoder
from aidg.models.examples import Examples
from aidg.models.fitting import Progress, fit, predict_batches
from aidg.models.heads import MLPHead
from aidg.models.merchant_graph_sage import GraphConfig, MerchantGraphSAGE
from aidg.models.override_pattern_analyzer import OverrideConfig, OverridePatternAnalyzer
from aidg.models.sequence_encoder import EventSequenceEncoder, SequenceConfig
from aidg.privacy.dp import DPRun, dp_fit


@dataclass
class BranchBudget:
    """How much training each branch gets (a scale's defaults; the memo's sizes stay in the configs)."""

    epochs: int = 6
    per_merchant: int = 4
    batch_size: int = 128
    lr: float = 2e-3


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _trim(mask: np.ndarray) -> int:
    """Sequences are left-padded: only the last ``n`` positions hold events in this batch."""
    return max(1, int(mask.sum(1).max())) if len(mask) else 1


def _r2(y: np.ndarray, p: np.ndarray) -> float:
    return float(1 - np.mean((y - p) ** 2) / max(np.var(y), 1e-12)) if len(y) else float("nan")


def _train(
    module: nn.Module,
    loss: Callable[[np.ndarray], torch.Tensor],
    train: Examples,
    budget: BranchBudget,
    seed: int,
    label: str,
    progress: Progress | None,
    dp: DPRun | None,
) -> None:
    """``fit`` over the examples, or with ``dp`` DP-SGD with each example's merchant as the privacy unit."""
    if dp is None:
        fit(
            module,
            loss,
            len(train),
            epochs=budget.epochs,
            batch_size=budget.batch_size,
            lr=budget.lr,
            seed=seed,
            label=label,
            progress=progress,
        )
    else:
        dp_fit(module, loss, train.m, dp, seed=seed, label=label, progress=progress)


def encode_deals(enc: DealHistoryEncoder, x: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    n = _trim(mask)
    return enc(_t(x[:, -n:]), _t(mask[:, -n:]))


def encode_overrides(enc: OverridePatternAnalyzer, x: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    n = _trim(mask)
    return enc(_t(x[:, -n:]), _t(mask[:, -n:]))


def encode_events(enc: EventSequenceEncoder, x: np.ndarray, mask: np.ndarray, age: np.ndarray) -> torch.Tensor:
    n = _trim(mask)
    return enc(_t(x[:, -n:]), _t(mask[:, -n:]), _t(age[:, -n:]))


# -- the objectives, shared by training and the membership-inference audit ----------------------
REP_HABIT_COLUMNS = ("rep_habit=", "rep_overrides_log")  # override-step columns counted over the rep's merchants


def own_override_sequences(ctx: FeatureContext, q_m: np.ndarray, q_t: np.ndarray) -> SeqBatch:
    """:func:`override_sequences` with the rep's habits zeroed: what the merchant's own history alone says.

    The rep's earlier override mix counts the overrides the rep made on *every*
    merchant, so one merchant's overrides would reach the others' examples and
    embeddings; the DP model (privacy unit: the merchant) does without them.
    """
    seqs = override_sequences(ctx, q_m, q_t)
    cols = [j for j, n in enumerate(override_feature_names(ctx)) if n.startswith(REP_HABIT_COLUMNS)]
    x = seqs.x.copy()
    x[..., cols] = 0.0
    return SeqBatch(x=x, mask=seqs.mask, age_days=seqs.age_days)


SEQUENCES: dict[str, Callable[[FeatureContext, np.ndarray, np.ndarray], SeqBatch]] = {
    "deal_history": deal_sequences,
    "override": override_sequences,
    "sequence": event_sequences,
}


def branch_sequences(name: str, private: bool) -> Callable[[FeatureContext, np.ndarray, np.ndarray], SeqBatch]:
    """The sequences branch ``name`` reads; ``private``: those of the DP model (no cross-merchant rep habits)."""
    return own_override_sequences if private and name == "override" else SEQUENCES[name]


def objective_loss(
    name: str, enc: Any, head: MLPHead, seqs: SeqBatch, ex: Examples, idx: np.ndarray, reduction: str = "mean"
) -> torch.Tensor:
    """Branch ``name``'s loss on examples ``idx`` (``seqs``: their sequences): Huber (δ = 0.5) on the deal uplift,
    cross-entropy on the override type, binary cross-entropy on the approval; ``reduction`` as in torch."""
    if name == "deal_history":
        h = encode_deals(enc, seqs.x[idx], seqs.mask[idx])
        return nn.functional.huber_loss(head(h, _t(ex.terms[idx]))[:, 0], _t(ex.y[idx]), delta=0.5, reduction=reduction)
    if name == "override":
        logits = head(encode_overrides(enc, seqs.x[idx], seqs.mask[idx]))
        return nn.functional.cross_entropy(logits, _t(ex.y[idx]), reduction=reduction)
    if name == "sequence":
        h = encode_events(enc, seqs.x[idx], seqs.mask[idx], seqs.age_days[idx])
        return nn.functional.binary_cross_entropy_with_logits(
            head(h, _t(ex.terms[idx]))[:, 0], _t(ex.y[idx]), reduction=reduction
        )
    raise KeyError(f"no branch objective {name!r}; objectives: {', '.join(SEQUENCES)}")


def example_losses(
    name: str, enc: Any, head: MLPHead, ctx: FeatureContext, ex: Examples, private: bool = False
) -> np.ndarray:
    """Each example's loss under branch ``name``'s objective (eval mode, no gradients; ``private``: the DP model)."""
    enc.eval()
    head.eval()
    seqs = branch_sequences(name, private)(ctx, ex.m, ex.t)
    return predict_batches(lambda i: objective_loss(name, enc, head, seqs, ex, i, "none"), len(ex))


# -- deal history -------------------------------------------------------------------------------
def train_deal_history(
    ctx: FeatureContext,
    train: Examples,
    test: Examples,
    budget: BranchBudget,
    seed: int,
    progress: Progress | None = None,
    dp: DPRun | None = None,
) -> tuple[DealHistoryEncoder, MLPHead, dict[str, Any]]:
    """Objective: the next deal's GP30 uplift from the deals before it plus the next deal's terms.

    With ``dp``, DP-SGD over merchants (:func:`aidg.privacy.dp.dp_fit`) replaces the ordinary loop.
    """
    torch.manual_seed(seed)
    tr = deal_sequences(ctx, train.m, train.t)
    enc = DealHistoryEncoder(DealHistoryConfig(in_dim=tr.x.shape[-1]))
    head = MLPHead(enc.config.out_dim, train.terms.shape[1], 1)
    both = nn.ModuleList([enc, head])

    def loss(idx: np.ndarray) -> torch.Tensor:
        return objective_loss("deal_history", enc, head, tr, train, idx)

    _train(both, loss, train, budget, seed, "deal history", progress, dp)
    te = deal_sequences(ctx, test.m, test.t)
    pred = predict_batches(lambda i: head(encode_deals(enc, te.x[i], te.mask[i]), _t(test.terms[i]))[:, 0], len(test))
    mae = float(np.mean(np.abs(pred - test.y)))
    return (
        enc,
        head,
        {
            "deal_uplift_mae": mae,
            "deal_uplift_mae_mean_baseline": float(np.mean(np.abs(test.y - train.y.mean()))),
            "deal_uplift_r2": _r2(test.y, pred),
            "deal_examples": len(train),
        },
    )


# -- override pattern --------------------------------------------------------------------------
def train_override(
    ctx: FeatureContext,
    train: Examples,
    test: Examples,
    budget: BranchBudget,
    seed: int,
    progress: Progress | None = None,
    dp: DPRun | None = None,
) -> tuple[OverridePatternAnalyzer, MLPHead, dict[str, Any]]:
    """Objective: the type of the next override on the merchant, from its earlier override steps.

    ``dp``: DP-SGD over merchants, on :func:`own_override_sequences` (no rep habits counted over other merchants).
    """
    torch.manual_seed(seed)
    sequences = branch_sequences("override", dp is not None)
    tr = sequences(ctx, train.m, train.t)
    enc = OverridePatternAnalyzer(OverrideConfig(in_dim=tr.x.shape[-1]))
    head = MLPHead(enc.config.out_dim, 0, len(OVERRIDE_TYPES))
    both = nn.ModuleList([enc, head])

    def loss(idx: np.ndarray) -> torch.Tensor:
        return objective_loss("override", enc, head, tr, train, idx)

    _train(both, loss, train, budget, seed, "override analyzer", progress, dp)
    te = sequences(ctx, test.m, test.t)
    logits = predict_batches(lambda i: head(encode_overrides(enc, te.x[i], te.mask[i])), len(test))
    pred = logits.argmax(1) if len(test) else np.zeros(0, int)
    labels = list(range(len(OVERRIDE_TYPES)))
    present = sorted(set(test.y.tolist()))
    majority = int(np.bincount(train.y, minlength=len(labels)).argmax())
    return (
        enc,
        head,
        {
            "override_type_macro_f1": float(f1_score(test.y, pred, labels=present, average="macro", zero_division=0)),
            "override_majority_macro_f1": float(
                f1_score(test.y, np.full(len(test), majority), labels=present, average="macro", zero_division=0)
            ),
            "override_type_accuracy": float(np.mean(pred == test.y)) if len(test) else float("nan"),
            "override_examples": len(train),
        },
    )


# -- sequence branch ---------------------------------------------------------------------------
def train_sequence(
    ctx: FeatureContext,
    train: Examples,
    test: Examples,
    budget: BranchBudget,
    seed: int,
    progress: Progress | None = None,
    dp: DPRun | None = None,
) -> tuple[EventSequenceEncoder, MLPHead, dict[str, Any]]:
    """Objective: does the merchant approve the next proposal (its terms given), from all earlier events.

    ``dp``: DP-SGD over merchants instead of the ordinary loop.
    """
    torch.manual_seed(seed)
    tr = event_sequences(ctx, train.m, train.t)
    enc = EventSequenceEncoder(SequenceConfig(in_dim=tr.x.shape[-1]))
    head = MLPHead(enc.config.out_dim, train.terms.shape[1], 1)
    both = nn.ModuleList([enc, head])

    def loss(idx: np.ndarray) -> torch.Tensor:
        return objective_loss("sequence", enc, head, tr, train, idx)

    _train(both, loss, train, budget, seed, "sequence branch", progress, dp)
    te = event_sequences(ctx, test.m, test.t)
    p = predict_batches(
        lambda i: head(encode_events(enc, te.x[i], te.mask[i], te.age_days[i]), _t(test.terms[i]))[:, 0], len(test)
    )
    auc = float(roc_auc_score(test.y, p)) if len(set(test.y.tolist())) == 2 else float("nan")
    return enc, head, {"approval_auc": auc, "sequence_examples": len(train)}


# -- graph branch ------------------------------------------------------------------------------
def train_graph(
    graph: DealGraph,
    train_codes: np.ndarray,
    test_codes: np.ndarray,
    budget: BranchBudget,
    seed: int,
    progress: Progress | None = None,
) -> tuple[MerchantGraphSAGE, MLPHead, dict[str, Any]]:
    """Objective: each deal edge's GP30 uplift from the merchant and configuration embeddings (full batch)."""
    torch.manual_seed(seed)
    model = MerchantGraphSAGE(GraphConfig(merchant_in=graph.x_merchant.shape[1], deal_in=graph.x_deal.shape[1]))
    decoder = MLPHead(2 * model.config.out_dim, graph.edge_terms.shape[1] + 2, 1)
    both = nn.ModuleList([model, decoder])
    n_edges = len(graph.edge_merchant)
    y = graph.edge_uplift
    known = ~torch.isnan(y)
    is_train = torch.from_numpy(np.isin(graph.edge_merchant, train_codes)) & known
    is_test = torch.from_numpy(np.isin(graph.edge_merchant, test_codes)) & known
    src, dst = graph.edge_index[0, :n_edges], graph.edge_index[1, :n_edges]

    def predict(mask: torch.Tensor) -> torch.Tensor:
        h = model(graph.x_merchant, graph.x_deal, graph.edge_index, graph.edge_attr, graph.edge_weight)
        extra = torch.cat([graph.edge_terms[mask], graph.edge_attr[:n_edges][mask]], -1)
        return torch.as_tensor(decoder(torch.cat([h[src[mask]], h[dst[mask]]], -1), extra)[:, 0])

    epochs = budget.epochs * 10  # full-batch: one step per epoch

    def loss(_: np.ndarray) -> torch.Tensor:
        return nn.functional.huber_loss(predict(is_train), y[is_train], delta=0.5)

    fit(both, loss, 1, epochs=epochs, batch_size=1, lr=budget.lr, seed=seed, label="graph branch", progress=progress)
    with torch.inference_mode():
        p = predict(is_test).numpy()
    yt = y[is_test].numpy()
    ytr = y[is_train].numpy()
    return (
        model,
        decoder,
        {
            "graph_edge_uplift_mae": float(np.mean(np.abs(p - yt))),
            "graph_edge_uplift_mae_mean_baseline": float(np.mean(np.abs(yt - ytr.mean()))),
            "graph_nodes": int(graph.x_merchant.shape[0] + graph.x_deal.shape[0]),
            "graph_edges": n_edges,
        },
    )
