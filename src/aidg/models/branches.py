"""Training and evaluating each branch on its own objective (held-out merchants for every metric)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.metrics import f1_score, roc_auc_score
from torch import nn

from aidg.features.context import OVERRIDE_TYPES, FeatureContext
from aidg.features.graph import DealGraph
from aidg.features.sequences import deal_sequences, event_sequences, override_sequences
from aidg.models.deal_history_encoder import DealHistoryConfig, DealHistoryEncoder
from aidg.models.examples import Examples
from aidg.models.fitting import Progress, fit, predict_batches
from aidg.models.heads import MLPHead
from aidg.models.merchant_graph_sage import GraphConfig, MerchantGraphSAGE
from aidg.models.override_pattern_analyzer import OverrideConfig, OverridePatternAnalyzer
from aidg.models.sequence_encoder import EventSequenceEncoder, SequenceConfig


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


def encode_deals(enc: DealHistoryEncoder, x: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    n = _trim(mask)
    return enc(_t(x[:, -n:]), _t(mask[:, -n:]))


def encode_overrides(enc: OverridePatternAnalyzer, x: np.ndarray, mask: np.ndarray) -> torch.Tensor:
    n = _trim(mask)
    return enc(_t(x[:, -n:]), _t(mask[:, -n:]))


def encode_events(enc: EventSequenceEncoder, x: np.ndarray, mask: np.ndarray, age: np.ndarray) -> torch.Tensor:
    n = _trim(mask)
    return enc(_t(x[:, -n:]), _t(mask[:, -n:]), _t(age[:, -n:]))


# -- deal history -------------------------------------------------------------------------------
def train_deal_history(
    ctx: FeatureContext,
    train: Examples,
    test: Examples,
    budget: BranchBudget,
    seed: int,
    progress: Progress | None = None,
) -> tuple[DealHistoryEncoder, MLPHead, dict[str, Any]]:
    """Objective: the next deal's GP30 uplift from the deals before it plus the next deal's terms."""
    torch.manual_seed(seed)
    tr = deal_sequences(ctx, train.m, train.t)
    enc = DealHistoryEncoder(DealHistoryConfig(in_dim=tr.x.shape[-1]))
    head = MLPHead(enc.config.out_dim, train.terms.shape[1], 1)
    both = nn.ModuleList([enc, head])

    def loss(idx: np.ndarray) -> torch.Tensor:
        n = _trim(tr.mask[idx])
        h = enc(_t(tr.x[idx, -n:]), _t(tr.mask[idx, -n:]))
        return nn.functional.huber_loss(head(h, _t(train.terms[idx]))[:, 0], _t(train.y[idx]), delta=0.5)

    fit(
        both,
        loss,
        len(train),
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        lr=budget.lr,
        seed=seed,
        label="deal history",
        progress=progress,
    )
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
) -> tuple[OverridePatternAnalyzer, MLPHead, dict[str, Any]]:
    """Objective: the type of the next override on the merchant, from its earlier override steps."""
    torch.manual_seed(seed)
    tr = override_sequences(ctx, train.m, train.t)
    enc = OverridePatternAnalyzer(OverrideConfig(in_dim=tr.x.shape[-1]))
    head = MLPHead(enc.config.out_dim, 0, len(OVERRIDE_TYPES))
    both = nn.ModuleList([enc, head])

    def loss(idx: np.ndarray) -> torch.Tensor:
        logits = head(encode_overrides(enc, tr.x[idx], tr.mask[idx]))
        return nn.functional.cross_entropy(logits, _t(train.y[idx]))

    fit(
        both,
        loss,
        len(train),
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        lr=budget.lr,
        seed=seed,
        label="override analyzer",
        progress=progress,
    )
    te = override_sequences(ctx, test.m, test.t)
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
) -> tuple[EventSequenceEncoder, MLPHead, dict[str, Any]]:
    """Objective: does the merchant approve the next proposal (its terms given), from all earlier events."""
    torch.manual_seed(seed)
    tr = event_sequences(ctx, train.m, train.t)
    enc = EventSequenceEncoder(SequenceConfig(in_dim=tr.x.shape[-1]))
    head = MLPHead(enc.config.out_dim, train.terms.shape[1], 1)
    both = nn.ModuleList([enc, head])

    def loss(idx: np.ndarray) -> torch.Tensor:
        h = encode_events(enc, tr.x[idx], tr.mask[idx], tr.age_days[idx])
        return nn.functional.binary_cross_entropy_with_logits(head(h, _t(train.terms[idx]))[:, 0], _t(train.y[idx]))

    fit(
        both,
        loss,
        len(train),
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        lr=budget.lr,
        seed=seed,
        label="sequence branch",
        progress=progress,
    )
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
