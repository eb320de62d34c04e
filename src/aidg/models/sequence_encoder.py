"""EventSequenceEncoder, the sequence branch: chronological deal/override events → 128-d (memo §1.1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class SequenceConfig:
    in_dim: int = 40  # per-event features (aidg.features.sequences.event_feature_dim)
    d_model: int = 64  # Transformer width (kept small for 2 CPU cores; output is still 128-d)
    n_layers: int = 6  # memo: 6-layer Transformer encoder
    n_heads: int = 4
    ff_dim: int = 128
    n_freq: int = 16  # sinusoidal frequencies of the recency encoding
    dropout: float = 0.1
    out_dim: int = 128  # memo: 128-dim sequence embedding


class EventSequenceEncoder(nn.Module):
    """Transformer over events whose positions are their recency, pooled with a recency weighting.

    Positional encoding (memo: "deal recency weighting"): sinusoids of
    ``log1p(age in days)`` projected to the model width, so two events a day
    apart are close and the scale compresses with age. The read-out mixes a
    summary token with attention pooling whose logits are penalised by
    ``λ · log1p(age)`` (λ ≥ 0 learned): recent events weigh more.

    Shapes:
        x: (B, L, in_dim), mask: (B, L) bool, age_days: (B, L) → (B, out_dim)
    """

    def __init__(self, config: SequenceConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or SequenceConfig()
        self.inp = nn.Linear(c.in_dim, c.d_model)
        self.pos = nn.Linear(2 * c.n_freq, c.d_model)
        self.register_buffer("freq", torch.exp(torch.linspace(math.log(0.2), math.log(20.0), c.n_freq)))
        self.summary = nn.Parameter(torch.zeros(1, 1, c.d_model))
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.n_heads, c.ff_dim, c.dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.score = nn.Linear(c.d_model, 1)
        self.recency = nn.Parameter(torch.tensor(0.5))
        self.out = nn.Sequential(nn.LayerNorm(2 * c.d_model), nn.Linear(2 * c.d_model, c.out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.summary, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, age_days: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        la = torch.log1p(age_days.clamp(min=0))[..., None] / 4.0  # (B, L, 1)
        ang = la * self.get_buffer("freq")  # (B, L, F)
        h = self.inp(x) + self.pos(torch.cat([ang.sin(), ang.cos()], -1))  # (B, L, d)
        h = torch.cat([self.summary.expand(b, 1, -1), h], 1)  # (B, 1 + L, d)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=x.device), ~mask], 1)
        h = self.encoder(h, src_key_padding_mask=pad)  # (B, 1 + L, d)
        events = h[:, 1:]
        logits = self.score(events)[..., 0] - nn.functional.softplus(self.recency) * la[..., 0] * 4.0  # (B, L)
        logits = logits.masked_fill(~mask, -1e9)
        w = torch.softmax(logits, -1) * mask.any(-1, keepdim=True)  # (B, L), all-zero for an empty history
        pooled = (w[..., None] * events).sum(1)  # (B, d)
        return torch.as_tensor(self.out(torch.cat([h[:, 0], pooled], -1)))  # (B, out_dim)

    def __repr__(self) -> str:
        c = self.config
        return f"EventSequenceEncoder(in={c.in_dim}, d={c.d_model}, layers={c.n_layers}, out={c.out_dim})"
