"""Running trained encoders over merchants: batched, trimmed sequence encodings and sentiment of notes (what
the profile model computes at serving and evaluation time; training lives in :mod:`aidg.training`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from aidg.errors import ConfigError
from aidg.features.context import FeatureContext
from aidg.features.sequences import (
    SeqBatch,
    deal_sequences,
    event_sequences,
    override_feature_names,
    override_sequences,
)
from aidg.models.deal_history_encoder import DealHistoryEncoder
from aidg.models.override_pattern_analyzer import OverridePatternAnalyzer
from aidg.models.sentiment_extractor import LABELS, SentimentExtractor
from aidg.models.sequence_encoder import EventSequenceEncoder


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _trim(mask: np.ndarray) -> int:
    """Sequences are left-padded: only the last ``n`` positions hold events in this batch."""
    return max(1, int(mask.sum(1).max())) if len(mask) else 1


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


def branch_sequences(name: str, private: bool) -> Callable[[FeatureContext, np.ndarray, np.ndarray], SeqBatch]:
    """The sequences branch ``name`` reads; ``private``: those of the DP model (no cross-merchant rep habits)."""
    return own_override_sequences if private and name == "override" else SEQUENCES[name]


def predict_texts(model: SentimentExtractor, texts: Sequence[str], batch_size: int = 64) -> dict[str, np.ndarray]:
    """Vector (N, D), label probabilities (N, 3) and intensity (N,) for ``texts``, in their order."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    n = len(texts)
    out = {
        "vector": np.zeros((n, model.config.dim), dtype=np.float32),
        "proba": np.zeros((n, len(LABELS)), dtype=np.float32),
        "intensity": np.zeros(n, dtype=np.float32),
    }
    order = np.argsort([len(t) for t in texts], kind="stable")  # similar lengths share a batch: less padding
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                res = model(**model.tokenize([texts[i] for i in idx]))
                out["vector"][idx] = res["vector"].float().numpy()  # (b, D)
                out["proba"][idx] = torch.softmax(res["logits"], dim=-1).float().numpy()  # (b, 3)
                out["intensity"][idx] = res["intensity"].float().numpy()  # (b,)
    finally:
        model.train(was_training)
    return out


def encode_texts(model: SentimentExtractor, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """The sentiment vectors of ``texts``: (N, 32) float32, row i for ``texts[i]``.

    Runs under ``torch.inference_mode`` in batches of similar length; the model's
    train/eval mode is restored afterwards. Unreadable notes are encoded too
    (filter them first with :func:`aidg.features.text.split_readable` if needed).
    """
    return predict_texts(model, [str(t) for t in texts], batch_size)["vector"]


def predict_sentiment(model: SentimentExtractor, texts: Sequence[str], batch_size: int = 64) -> pd.DataFrame:
    """Per text: predicted ``label``, one probability column per label, and ``intensity``."""
    res = predict_texts(model, [str(t) for t in texts], batch_size)
    df = pd.DataFrame(res["proba"], columns=[f"p_{name}" for name in LABELS])
    df.insert(0, "label", np.asarray(LABELS, dtype=object)[res["proba"].argmax(axis=1)] if len(df) else [])
    df["intensity"] = res["intensity"]
    return df


REP_HABIT_COLUMNS = ("rep_habit=", "rep_overrides_log")  # override-step columns counted over the rep's merchants


SEQUENCES: dict[str, Callable[[FeatureContext, np.ndarray, np.ndarray], SeqBatch]] = {
    "deal_history": deal_sequences,
    "override": override_sequences,
    "sequence": event_sequences,
}
