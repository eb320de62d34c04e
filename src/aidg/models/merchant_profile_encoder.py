"""MerchantProfileEncoder: fuses every branch into the 512-d merchant profile (memo §1.1 fusion layer)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

# memo §1.1 branch sizes, plus the merchant's own public attributes ("static")
DEFAULT_BRANCHES: dict[str, int] = {
    "deal_history": 128,  # DealHistoryEncoder
    "override_intent": 64,  # OverridePatternAnalyzer
    "sentiment": 32,  # SentimentExtractor, mean over the latest notes
    "geo": 48,  # city embedding 24 + seasonality 16 + competition 8
    "graph": 256,  # MerchantGraphSAGE
    "sequence": 128,  # EventSequenceEncoder
    "static": 28,  # public merchant attributes (aidg.features.graph.merchant_static)
}


@dataclass
class ProfileConfig:
    branches: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BRANCHES))
    profile_dim: int = 512  # memo: concatenates all embeddings → 512-dim merchant profile
    branch_dropout: float = 0.1  # chance a whole branch is zeroed in training (robust to a missing branch)


class MerchantProfileEncoder(nn.Module):
    """Standardise each branch's features, scale each branch to equal weight, concatenate, project.

    Standardisation uses per-feature means and deviations fitted on the training
    merchants (:meth:`fit_scaler`, stored as buffers), not LayerNorm: a
    per-sample normalisation would mix a merchant's heterogeneous attributes
    (prices, one-hots, shares) and erase their absolute values.

    A branch can be switched off (``drop`` argument), which zeroes it exactly as
    branch dropout does in training: that is how the ablation and a merchant
    with a missing modality are handled.

    Shapes:
        parts: {branch: (B, dim)} → (B, profile_dim)
    """

    def __init__(self, config: ProfileConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ProfileConfig()
        for k, d in c.branches.items():
            self.register_buffer(f"mean_{k}", torch.zeros(d))
            self.register_buffer(f"std_{k}", torch.ones(d))
        self.proj = nn.Sequential(nn.Linear(sum(c.branches.values()), c.profile_dim), nn.LayerNorm(c.profile_dim))

    def reset_parameters(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear | nn.LayerNorm):
                m.reset_parameters()

    def fit_scaler(self, parts: dict[str, torch.Tensor]) -> None:
        """Per-feature mean and deviation of each branch (call with the training merchants' rows)."""
        for k in self.config.branches:
            x = parts[k].float()
            self.get_buffer(f"mean_{k}").copy_(x.mean(0))
            self.get_buffer(f"std_{k}").copy_(x.std(0).clamp(min=1e-4))

    def _standardise(self, name: str, x: torch.Tensor) -> torch.Tensor:
        dim = x.shape[-1]
        z = (x - self.get_buffer(f"mean_{name}")) / self.get_buffer(f"std_{name}")
        return z.clamp(-6, 6) / dim**0.5 * 4.0  # each branch carries the same total weight

    def forward(self, parts: dict[str, torch.Tensor], drop: frozenset[str] = frozenset()) -> torch.Tensor:
        xs = []
        for name in self.config.branches:
            h = self._standardise(name, parts[name])  # (B, dim)
            if name in drop:
                h = torch.zeros_like(h)
            elif self.training and self.config.branch_dropout > 0:
                keep = (torch.rand(h.shape[0], 1, device=h.device) >= self.config.branch_dropout).to(h.dtype)
                h = h * keep
            xs.append(h)
        return torch.as_tensor(self.proj(torch.cat(xs, -1)))  # (B, profile_dim)

    def __repr__(self) -> str:
        dims = ", ".join(f"{k}={v}" for k, v in self.config.branches.items())
        return f"MerchantProfileEncoder({dims} → {self.config.profile_dim})"
