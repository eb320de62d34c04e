"""Standardise: per-feature mean / std fitted on training rows, (..., D) → (..., D); NaN (unknown) becomes 0."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Standardise(nn.Module):
    """Per-feature mean/std fitted on training rows; NaN (unknown) becomes 0 (the mean)."""

    mean: Tensor
    std: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, x: Tensor) -> None:
        x = x.float()
        ok = torch.isfinite(x)
        xz = torch.where(ok, x, torch.zeros_like(x))
        n = ok.sum(0).clamp(min=1)
        mean = xz.sum(0) / n
        var = (torch.where(ok, x - mean, torch.zeros_like(x)) ** 2).sum(0) / n
        self.mean.copy_(mean)
        self.std.copy_(var.sqrt().clamp(min=1e-3))

    def forward(self, x: Tensor) -> Tensor:
        z = (x - self.mean) / self.std
        return torch.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0).clamp(-8, 8)
