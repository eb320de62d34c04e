"""Fine-tuning, evaluation and batch encoding for :class:`~aidg.models.sentiment_extractor.SentimentExtractor`.

Training reads the labelled notes (``sentiment`` set) of the training merchants,
leaving out the phrasings the simulator holds out (``template_heldout``), and
minimizes cross-entropy over the labels plus the squared error of the intensity
(only where an intensity is labelled). Evaluation measures accuracy on the
held-out phrasings of held-out merchants: text the model has never seen, from
merchants it has never seen. For user data without the simulator's columns, all
labelled notes are used on both sides.

The defaults (:data:`DEFAULT_MAX_EXAMPLES` examples, 1 epoch, top 4 of 6 layers)
fit the small pipeline's budget on 2 CPU cores; the memo's setting is
``max_examples=100_000, epochs=3, config=SentimentConfig(trainable_layers=6)``
(:data:`MEMO_SETTING`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from aidg.errors import ConfigError, DataError
from aidg.features.text import skipped_message, split_readable
from aidg.inference.encoding import predict_texts
from aidg.models.sentiment_extractor import LABELS, SentimentConfig, SentimentExtractor
from aidg.progress import Progress, no_progress

DEFAULT_MAX_EXAMPLES = 3_000  # ~20 s on 2 idle cores at 4 layers; 5k gave no better held-out accuracy
DEFAULT_EPOCHS = 1  # one pass over the sample; more passes mostly refit the same phrasings
ENCODER_LR = 1e-4  # fine-tuned encoder layers (BERT fine-tuning range, upper end for a short run)
HEAD_LR = 3e-3  # fresh projection and heads learn faster than the pretrained layers
MASK_PROB = 0.0  # optional word-piece masking; 0.15–0.3 lowered held-out accuracy at 4 trainable layers
WARMUP_SHARE = 0.06  # linear warm-up over the first 6 % of steps, then linear decay to 0
MEMO_SETTING: dict[str, Any] = {
    "max_examples": 100_000,  # memo §1.1: 100k labelled examples
    "epochs": 3,  # memo §1.1: 3 epochs
    "config": SentimentConfig(trainable_layers=6),  # memo §1.1: full fine-tuning
}
_LABEL_INDEX = {name: i for i, name in enumerate(LABELS)}



def _heldout_phrasing(notes: pd.DataFrame) -> np.ndarray | None:
    """Per-note ``template_heldout`` as bool (null → False); ``None`` when the column is absent or all null."""
    if "template_heldout" not in notes.columns or notes["template_heldout"].isna().all():
        return None
    return notes["template_heldout"].astype("boolean").fillna(False).to_numpy(dtype=bool)


def _labelled(notes: pd.DataFrame, merchants: Collection[str]) -> pd.DataFrame:
    """Notes of ``merchants`` that carry a sentiment label, with the labels checked."""
    for col in ("merchant_id", "text", "sentiment"):
        if col not in notes.columns:
            raise DataError(f"the notes table lacks the {col!r} column the sentiment model needs")
    rows = notes[notes["merchant_id"].isin(list(merchants)).to_numpy() & notes["sentiment"].notna().to_numpy()]
    unknown = sorted(set(rows["sentiment"].astype(str)) - set(LABELS))
    if unknown:
        raise DataError(f"unknown sentiment label(s) {', '.join(map(repr, unknown))}; expected one of {LABELS}")
    if "intensity" in rows.columns:
        inten = pd.to_numeric(rows["intensity"], errors="coerce")
        bad = inten.notna() & ~inten.between(0, 1)
        if bad.any():
            raise DataError(f"{int(bad.sum())} note intensity value(s) outside [0, 1], e.g. {inten[bad].iloc[0]}")
    return rows


def _targets(rows: pd.DataFrame) -> tuple[Tensor, Tensor, Tensor]:
    """Label index (N,), intensity (N,) with NaN → 0, and a mask (N,) of labelled intensities."""
    labels = torch.tensor([_LABEL_INDEX[s] for s in rows["sentiment"].astype(str)], dtype=torch.long)
    if "intensity" in rows.columns:
        inten = torch.tensor(pd.to_numeric(rows["intensity"], errors="coerce").to_numpy(dtype=np.float64))
    else:
        inten = torch.full((len(rows),), float("nan"), dtype=torch.float64)
    has = ~torch.isnan(inten)
    return labels, torch.nan_to_num(inten, nan=0.0).float(), has


def _schedule(step: int, total: int) -> float:
    warm = max(1, round(WARMUP_SHARE * total))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


def train_sentiment(
    notes: pd.DataFrame,
    train_merchants: Collection[str],
    *,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    epochs: int = DEFAULT_EPOCHS,
    seed: int = 0,
    batch_size: int = 32,
    progress: Progress | None = None,
    config: SentimentConfig | None = None,
    model_path: Path | None = None,
    mask_prob: float = MASK_PROB,
) -> tuple[SentimentExtractor, dict[str, Any]]:
    """Fine-tune a :class:`SentimentExtractor` on the labelled notes of the training merchants.

    Uses notes with a ``sentiment`` label whose phrasing is not held out
    (``template_heldout`` not True; all labelled notes when the column is absent),
    skips notes the English encoder cannot read (reported in ``info`` and through
    ``progress``), samples ``max_examples`` of them without replacement, and runs
    ``epochs`` passes. Deterministic for a given ``seed``; the global torch RNG is
    left as it was.

    Args:
        notes: the ``feedback_notes`` table.
        train_merchants: merchant ids whose notes may be used.
        max_examples: cap on distinct notes (all usable notes when fewer exist).
        epochs: passes over the sampled notes.
        seed: seeds the sample, the head initialization, dropout and the batch order.
        batch_size: notes per optimizer step.
        progress: called as ``progress(message, fraction_done)``.
        config: model sizes and fine-tuning depth (:class:`SentimentConfig` defaults otherwise).
        model_path: pretrained encoder folder (the bundled one by default).
        mask_prob: share of word pieces replaced by ``[MASK]`` in each training batch (0 turns it off).

    Returns:
        The trained model in eval mode, and ``info``: ``examples_used``, ``eligible``,
        ``skipped_unreadable``, ``skipped_message``, ``epochs``, ``steps``, ``final_loss``,
        ``train_seconds``, ``examples_per_second``, ``trainable_layers``.

    Raises:
        DataError: no usable labelled notes, or labels outside the known set.
        ConfigError: a non-positive ``max_examples``, ``epochs`` or ``batch_size``.
    """
    if not 0 <= mask_prob < 1:
        raise ConfigError(f"mask_prob must lie in [0, 1), got {mask_prob}")
    for name, count in (("max_examples", max_examples), ("epochs", epochs), ("batch_size", batch_size)):
        if count < 1:
            raise ConfigError(f"{name} must be at least 1, got {count}")
    report = progress or no_progress
    t0 = time.perf_counter()
    rows = _labelled(notes, set(train_merchants))
    held = _heldout_phrasing(rows)
    if held is not None:
        rows = rows[~held]
    usable, skipped = split_readable(rows)
    message = skipped_message(skipped, len(rows), what="labelled training notes")
    if message:
        report(f"sentiment: {message}", 0.0)
    if usable.empty:
        raise DataError(
            f"no usable labelled notes for the {len(set(train_merchants))} training merchants "
            f"({len(rows)} labelled, {len(skipped)} unreadable): the sentiment model needs notes with a "
            "'sentiment' label in English"
        )
    rng = np.random.default_rng(seed)
    n = min(max_examples, len(usable))
    sample = usable.iloc[np.sort(rng.choice(len(usable), size=n, replace=False))]
    labels, intensity, has_intensity = _targets(sample)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SentimentExtractor(config, model_path=model_path)
        enc = model.tokenize(sample["text"].astype(str).tolist())  # (N, T) padded to the longest note
        ids, mask = enc["input_ids"], enc["attention_mask"]
        tok: Any = model.tokenizer
        cls_id, sep_id, mask_id = int(tok.cls_token_id), int(tok.sep_token_id), int(tok.mask_token_id)
        head = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("encoder.")]
        body = [p for name, p in model.named_parameters() if p.requires_grad and name.startswith("encoder.")]
        groups: list[dict[str, Any]] = [{"params": head, "lr": HEAD_LR}]
        if body:
            groups.append({"params": body, "lr": ENCODER_LR})
        opt = torch.optim.AdamW(groups, weight_decay=0.01)
        base_lrs = [float(g["lr"]) for g in opt.param_groups]
        steps_per_epoch = math.ceil(n / batch_size)
        total = steps_per_epoch * epochs
        gen = torch.Generator().manual_seed(seed)
        ce, mse = nn.CrossEntropyLoss(), nn.MSELoss(reduction="sum")
        model.train()
        step, loss_avg = 0, float("nan")
        for epoch in range(epochs):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                m = mask[idx]
                width = int(m.sum(dim=1).max())  # trim padding to this batch's longest note
                batch_ids, m = ids[idx, :width], m[:, :width]
                if mask_prob > 0:  # hide random word pieces (never [CLS], [SEP] or padding)
                    special = (batch_ids == cls_id) | (batch_ids == sep_id) | (m == 0)
                    hide = (torch.rand(batch_ids.shape, generator=gen) < mask_prob) & ~special
                    batch_ids = batch_ids.masked_fill(hide, mask_id)
                out = model(batch_ids, m)
                loss = ce(out["logits"], labels[idx])
                h = has_intensity[idx]
                if bool(h.any()):
                    loss = loss + mse(out["intensity"][h], intensity[idx][h]) / len(idx)
                for g, lr in zip(opt.param_groups, base_lrs, strict=True):
                    g["lr"] = lr * _schedule(step, total)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                nn.utils.clip_grad_norm_(head + body, 1.0)
                opt.step()
                value = float(loss.detach())
                loss_avg = value if math.isnan(loss_avg) else 0.95 * loss_avg + 0.05 * value
                step += 1
                if step % 10 == 0 or step == total:
                    report(f"sentiment: epoch {epoch + 1}/{epochs}, loss {loss_avg:.3f}", step / total)
        model.eval()
    seconds = time.perf_counter() - t0
    info: dict[str, Any] = {
        "examples_used": n,
        "eligible": len(usable),
        "skipped_unreadable": len(skipped),
        "skipped_message": message,
        "epochs": epochs,
        "steps": total,
        "final_loss": loss_avg,
        "train_seconds": seconds,
        "examples_per_second": n * epochs / seconds,
        "trainable_layers": model.config.trainable_layers,
    }
    return model, info


def evaluate_sentiment(
    model: SentimentExtractor, notes: pd.DataFrame, eval_merchants: Collection[str], *, batch_size: int = 64
) -> dict[str, Any]:
    """Accuracy on held-out phrasings of held-out merchants.

    Scores the labelled notes of ``eval_merchants`` written with phrasings kept
    out of training (``template_heldout`` True; all their labelled notes when the
    column is absent), skipping notes the encoder cannot read.

    Returns:
        ``sentiment_accuracy`` (NaN when nothing could be scored), ``n`` scored,
        ``majority_accuracy`` (always guessing the most common label there: the bar to beat),
        ``accuracy_by_label`` (label → accuracy on the notes with that true label),
        ``intensity_mae`` (over notes with a labelled intensity; NaN if none),
        ``skipped_unreadable``, ``skipped_message``, ``eval_seconds``.
    """
    t0 = time.perf_counter()
    rows = _labelled(notes, set(eval_merchants))
    held = _heldout_phrasing(rows)
    if held is not None:
        rows = rows[held]
    usable, skipped = split_readable(rows)
    nan = float("nan")
    result: dict[str, Any] = {
        "sentiment_accuracy": nan,
        "n": len(usable),
        "majority_accuracy": nan,
        "accuracy_by_label": {},
        "intensity_mae": nan,
        "skipped_unreadable": len(skipped),
        "skipped_message": skipped_message(skipped, len(rows), what="labelled evaluation notes"),
    }
    if len(usable):
        labels, intensity, has = _targets(usable)
        res = predict_texts(model, usable["text"].astype(str).tolist(), batch_size)
        truth = labels.numpy()
        hit = res["proba"].argmax(axis=1) == truth
        result["sentiment_accuracy"] = float(hit.mean())
        result["accuracy_by_label"] = {
            name: float(hit[truth == i].mean()) for i, name in enumerate(LABELS) if (truth == i).any()
        }
        result["majority_accuracy"] = float(np.bincount(truth, minlength=len(LABELS)).max() / len(truth))
        h = has.numpy()
        if h.any():
            result["intensity_mae"] = float(np.abs(res["intensity"][h] - intensity.numpy()[h]).mean())
    result["eval_seconds"] = time.perf_counter() - t0
    return result
