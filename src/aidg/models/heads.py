"""Small prediction heads that give each branch a real training objective."""

from __future__ import annotations

import torch
from torch import nn


class MLPHead(nn.Module):
    """``[embedding, extra] → hidden → out``: e.g. a history embedding plus the next deal's terms → its uplift.

    Shapes:
        h: (B, in_dim), extra: (B, extra_dim) or None → (B, out_dim)
    """

    def __init__(self, in_dim: int, extra_dim: int, out_dim: int, hidden: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.in_dim, self.extra_dim, self.out_dim, self.hidden = in_dim, extra_dim, out_dim, hidden
        self.net = nn.Sequential(
            nn.Linear(in_dim + extra_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim)
        )

    def forward(self, h: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        x = h if extra is None else torch.cat([h, extra], -1)
        return torch.as_tensor(self.net(x))

    def __repr__(self) -> str:
        return f"MLPHead(in={self.in_dim}, extra={self.extra_dim}, out={self.out_dim})"
