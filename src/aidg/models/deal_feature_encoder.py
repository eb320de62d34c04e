"""DealFeatureEncoder: a candidate's terms (B, N, D) and category codes (B, N) → deal embeddings (B, N, d_model)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class DealFeatureEncoder(nn.Module):
    """Candidate terms (B, N, D) and category codes (B, N) → (B, N, d_model)."""

    def __init__(self, n_features: int, category: nn.Embedding, d_model: int, dropout: float) -> None:
        super().__init__()
        self.category = category
        self.net = nn.Sequential(
            nn.Linear(n_features + category.embedding_dim, 2 * d_model),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * d_model, d_model),
        )

    def forward(self, deal: Tensor, deal_category: Tensor) -> Tensor:
        c = self.category(deal_category.clamp(min=-1) + 1)
        return torch.as_tensor(self.net(torch.cat([deal, c], -1)))
