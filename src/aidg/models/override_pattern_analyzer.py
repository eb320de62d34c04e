"""OverridePatternAnalyzer: override steps → a 64-d override-intent vector (memo §1.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class OverrideConfig:
    in_dim: int = 64  # memo: [batch, seq_len, 64] deal params → override type → outcome
    hidden: int = 128  # memo: LSTM hidden size 128
    n_layers: int = 2  # memo: 2 LSTM layers
    n_heads: int = 8  # memo: MultiHeadAttention(embed_dim=128, num_heads=8)
    out_dim: int = 64  # memo: 64-dim override intent vector
    dropout: float = 0.1


class OverridePatternAnalyzer(nn.Module):
    """The memo's LSTM + self-attention, read at the latest step, projected to 64-d.

    Sequences are left-padded, so the last position is the latest step; padded
    keys are masked out of the attention, but the last position always stays
    visible, so an empty history (cold start) gives a well-defined vector.

    Shapes:
        x: (B, L, 64), mask: (B, L) bool → (B, 64)
    """

    def __init__(self, config: OverrideConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or OverrideConfig()
        self.lstm = nn.LSTM(c.in_dim, c.hidden, num_layers=c.n_layers, batch_first=True, dropout=c.dropout)
        self.attention = nn.MultiheadAttention(c.hidden, c.n_heads, dropout=c.dropout, batch_first=True)
        self.norm = nn.LayerNorm(c.hidden)
        self.out = nn.Linear(c.hidden, c.out_dim)

    def reset_parameters(self) -> None:
        self.lstm.reset_parameters()
        self.attention._reset_parameters()
        self.out.reset_parameters()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        lstm_out, _ = self.lstm(x)  # (B, L, 128)
        pad = ~mask.clone()
        pad[:, -1] = False  # the latest position is always attendable
        attended, _ = self.attention(lstm_out, lstm_out, lstm_out, key_padding_mask=pad, need_weights=False)
        h = self.norm(attended[:, -1, :] + lstm_out[:, -1, :])  # (B, 128)
        return torch.as_tensor(self.out(h))  # (B, 64)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"OverridePatternAnalyzer(in={c.in_dim}, lstm={c.n_layers}x{c.hidden}, heads={c.n_heads}, out={c.out_dim})"
        )
