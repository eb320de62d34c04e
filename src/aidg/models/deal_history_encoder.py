"""DealHistoryEncoder: the merchant's 50 latest deals → a 128-d deal-history embedding (memo §1.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DealHistoryConfig:
    in_dim: int = 29  # per-deal features (aidg.features.sequences.deal_feature_names)
    max_len: int = 50  # memo: 50 most recent deals
    d_model: int = 64  # Transformer width (2 CPU cores: 128 costs 4× for no measured gain)
    n_layers: int = 3  # memo: 3-layer Transformer encoder
    n_heads: int = 4  # 16 dims per head
    ff_dim: int = 128  # feed-forward width (2 × d_model)
    dropout: float = 0.1
    out_dim: int = 128  # memo: 128-dimensional deal embedding


class DealHistoryEncoder(nn.Module):
    """A Transformer encoder over the deal sequence, read out through a summary token.

    Positions count back from the latest deal (the sequences are left-padded),
    so position 0 is always "most recent". The summary token is never masked,
    so a merchant with no deals (cold start) still gets an embedding.

    Shapes:
        x: (B, L, in_dim), mask: (B, L) bool, True where a deal is → (B, out_dim)
    """

    def __init__(self, config: DealHistoryConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or DealHistoryConfig()
        self.inp = nn.Linear(c.in_dim, c.d_model)
        self.pos = nn.Embedding(c.max_len + 1, c.d_model)
        self.summary = nn.Parameter(torch.zeros(1, 1, c.d_model))
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.n_heads, c.ff_dim, c.dropout, batch_first=True, norm_first=True, activation="gelu"
        )
        self.encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(c.d_model), nn.Linear(c.d_model, c.out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.summary, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, _ = x.shape
        back = torch.arange(length - 1, -1, -1, device=x.device)  # (L,) 0 = latest deal
        h = self.inp(x) + self.pos(back)[None]  # (B, L, d)
        s = self.summary.expand(b, 1, -1) + self.pos.weight[-1][None, None]  # (B, 1, d)
        h = torch.cat([s, h], dim=1)  # (B, 1 + L, d)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=x.device), ~mask], dim=1)  # (B, 1 + L)
        h = self.encoder(h, src_key_padding_mask=pad)  # (B, 1 + L, d)
        return torch.as_tensor(self.out(h[:, 0]))  # (B, out_dim)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"DealHistoryEncoder(in={c.in_dim}, len={c.max_len}, d={c.d_model}, layers={c.n_layers}, "
            f"heads={c.n_heads}, out={c.out_dim})"
        )
