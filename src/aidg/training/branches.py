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
from aidg.features.sequences import SeqBatch
from aidg.inference.batches import predict_batches
from aidg.inference.encoding import (
    SEQUENCES,
    _t,
    branch_sequences,
    encode_deals,
    encode_events,
    encode_overrides,
)
from aidg.models.deal_history_encoder import DealHistoryConfig, DealHistoryEncoder
from aidg.models.heads import MLPHead
from aidg.models.merchant_graph_sage import GraphConfig, MerchantGraphSAGE
from aidg.models.override_pattern_analyzer import OverrideConfig, OverridePatternAnalyzer
from aidg.models.sequence_encoder import EventSequenceEncoder, SequenceConfig
from aidg.privacy.dp import DPRun, dp_fit
from aidg.progress import Progress
from aidg.training.examples import Examples
from aidg.training.fitting import fit


@dataclass
class BranchBudget:
    """How much training each branch gets (a scale's defaults; the memo's sizes stay in the configs)."""

    epochs: int = 6
    per_merchant: int = 4
    batch_size: int = 128
    lr: float = 2e-3
    graph_steps: int | None = None  # full-batch steps of the graph branch (None: 10 × epochs)
    graph_edges_per_step: int | None = None  # training edges in each step's loss, drawn afresh (None: all)


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


Forward = Callable[[Any, MLPHead, SeqBatch, Examples, np.ndarray], torch.Tensor]


def _deal_forward(enc: Any, head: MLPHead, seqs: SeqBatch, ex: Examples, idx: np.ndarray) -> torch.Tensor:
    return head(encode_deals(enc, seqs.x[idx], seqs.mask[idx]), _t(ex.terms[idx]))[:, 0]


def _override_forward(enc: Any, head: MLPHead, seqs: SeqBatch, ex: Examples, idx: np.ndarray) -> torch.Tensor:
    return head(encode_overrides(enc, seqs.x[idx], seqs.mask[idx]))


def _sequence_forward(enc: Any, head: MLPHead, seqs: SeqBatch, ex: Examples, idx: np.ndarray) -> torch.Tensor:
    return head(encode_events(enc, seqs.x[idx], seqs.mask[idx], seqs.age_days[idx]), _t(ex.terms[idx]))[:, 0]


def _deal_metrics(train: Examples, test: Examples, pred: np.ndarray) -> dict[str, Any]:
    return {
        "deal_uplift_mae": float(np.mean(np.abs(pred - test.y))),
        "deal_uplift_mae_mean_baseline": float(np.mean(np.abs(test.y - train.y.mean()))),
        "deal_uplift_r2": _r2(test.y, pred),
        "deal_examples": len(train),
    }


def _override_metrics(train: Examples, test: Examples, logits: np.ndarray) -> dict[str, Any]:
    pred = logits.argmax(1) if len(test) else np.zeros(0, int)
    labels = list(range(len(OVERRIDE_TYPES)))
    present = sorted(set(test.y.tolist()))
    majority = int(np.bincount(train.y, minlength=len(labels)).argmax())
    return {
        "override_type_macro_f1": float(f1_score(test.y, pred, labels=present, average="macro", zero_division=0)),
        "override_majority_macro_f1": float(
            f1_score(test.y, np.full(len(test), majority), labels=present, average="macro", zero_division=0)
        ),
        "override_type_accuracy": float(np.mean(pred == test.y)) if len(test) else float("nan"),
        "override_examples": len(train),
    }


def _sequence_metrics(train: Examples, test: Examples, p: np.ndarray) -> dict[str, Any]:
    auc = float(roc_auc_score(test.y, p)) if len(set(test.y.tolist())) == 2 else float("nan")
    return {"approval_auc": auc, "sequence_examples": len(train)}


@dataclass(frozen=True)
class BranchSpec:
    """What makes one sequence branch: its encoder and head, its forward pass, loss, label and held-out metrics."""

    name: str
    label: str  # in progress bars
    objective: str  # the docstring's one line: what the branch learns to predict
    encoder: Callable[[int], Any]  # sequence feature width → encoder (its config.out_dim is the head's input)
    head_terms: bool  # the head also reads the next deal's terms
    head_out: int
    forward: Forward
    loss: Callable[..., torch.Tensor]  # (prediction, target, reduction=) → loss, as torch.nn.functional's
    metrics: Callable[[Examples, Examples, np.ndarray], dict[str, Any]]  # (train, test, held-out predictions)


def _huber(pred: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    return nn.functional.huber_loss(pred, y, delta=0.5, reduction=reduction)


BRANCHES: dict[str, BranchSpec] = {
    s.name: s
    for s in (
        BranchSpec("deal_history", "deal history", "the next deal's GP30 uplift from the deals before it and its terms",
                   lambda d: DealHistoryEncoder(DealHistoryConfig(in_dim=d)), True, 1, _deal_forward, _huber,
                   _deal_metrics),
        BranchSpec("override", "override analyzer", "the type of the merchant's next override from its earlier ones",
                   lambda d: OverridePatternAnalyzer(OverrideConfig(in_dim=d)), False, len(OVERRIDE_TYPES),
                   _override_forward, nn.functional.cross_entropy, _override_metrics),
        BranchSpec("sequence", "sequence branch", "whether the merchant approves the next proposal (its terms given)",
                   lambda d: EventSequenceEncoder(SequenceConfig(in_dim=d)), True, 1, _sequence_forward,
                   nn.functional.binary_cross_entropy_with_logits, _sequence_metrics),
    )
}  # fmt: skip


def objective_loss(
    name: str, enc: Any, head: MLPHead, seqs: SeqBatch, ex: Examples, idx: np.ndarray, reduction: str = "mean"
) -> torch.Tensor:
    """Branch ``name``'s loss on examples ``idx`` (``seqs``: their sequences): Huber (δ = 0.5) on the deal uplift,
    cross-entropy on the override type, binary cross-entropy on the approval; ``reduction`` as in torch."""
    if name not in BRANCHES:
        raise KeyError(f"no branch objective {name!r}; objectives: {', '.join(SEQUENCES)}")
    spec = BRANCHES[name]
    return spec.loss(spec.forward(enc, head, seqs, ex, idx), _t(ex.y[idx]), reduction=reduction)


def example_losses(
    name: str, enc: Any, head: MLPHead, ctx: FeatureContext, ex: Examples, private: bool = False
) -> np.ndarray:
    """Each example's loss under branch ``name``'s objective (eval mode, no gradients; ``private``: the DP model)."""
    enc.eval()
    head.eval()
    seqs = branch_sequences(name, private)(ctx, ex.m, ex.t)
    return predict_batches(lambda i: objective_loss(name, enc, head, seqs, ex, i, "none"), len(ex))


def train_branch(
    name: str,
    ctx: FeatureContext,
    train: Examples,
    test: Examples,
    budget: BranchBudget,
    seed: int,
    progress: Progress | None = None,
    dp: DPRun | None = None,
) -> tuple[nn.Module, MLPHead, dict[str, Any]]:
    """Train sequence branch ``name`` (:data:`BRANCHES`) on its objective; its held-out metrics.

    ``dp``: DP-SGD over merchants (:func:`aidg.privacy.dp.dp_fit`) instead of the ordinary loop, on the DP model's
    sequences (:func:`~aidg.inference.encoding.own_override_sequences`: no rep habits counted over other merchants).
    """
    spec = BRANCHES[name]
    torch.manual_seed(seed)
    sequences = branch_sequences(name, dp is not None)
    tr = sequences(ctx, train.m, train.t)
    enc = spec.encoder(tr.x.shape[-1])
    head = MLPHead(enc.config.out_dim, train.terms.shape[1] if spec.head_terms else 0, spec.head_out)

    def loss(idx: np.ndarray) -> torch.Tensor:
        return objective_loss(name, enc, head, tr, train, idx)

    _train(nn.ModuleList([enc, head]), loss, train, budget, seed, spec.label, progress, dp)
    te = sequences(ctx, test.m, test.t)
    pred = predict_batches(lambda i: spec.forward(enc, head, te, test, i), len(test))
    return enc, head, spec.metrics(train, test, pred)


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

    def predict(mask: torch.Tensor) -> torch.Tensor:  # a boolean mask or the indices of the edges
        h = model(graph.x_merchant, graph.x_deal, graph.edge_index, graph.edge_attr, graph.edge_weight)
        extra = torch.cat([graph.edge_terms[mask], graph.edge_attr[:n_edges][mask]], -1)
        return torch.as_tensor(decoder(torch.cat([h[src[mask]], h[dst[mask]]], -1), extra)[:, 0])

    epochs = budget.graph_steps or budget.epochs * 10  # full-batch: one step per epoch

    train_edges = torch.nonzero(is_train).squeeze(1)
    per_step = budget.graph_edges_per_step
    draw = torch.Generator().manual_seed(seed)

    def loss(_: np.ndarray) -> torch.Tensor:
        """Message passing over the whole graph; the decoder's loss on every training edge, or on a fresh random
        ``graph_edges_per_step`` of them (at the memo's scale the decoder over 400k edges costs more than the
        message passing)."""
        edges = train_edges
        if per_step is not None and per_step < len(train_edges):
            edges = train_edges[torch.randperm(len(train_edges), generator=draw)[:per_step]]
        return nn.functional.huber_loss(predict(edges), y[edges], delta=0.5)

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
