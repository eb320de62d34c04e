"""MerchantTokenizer: readable features (B, F), category (B,) and profile (B, 512) → merchant tokens
(B, T = F + 1 + P, d_model) and a context vector (B, d_model) (FT-Transformer-style feature tokens)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aidg.models.scorer_config import ScorerConfig
from aidg.models.standardise import Standardise


class MerchantTokenizer(nn.Module):
    """Readable features, category and profile → merchant tokens (B, T, d_model) and a context vector (B, d_model)."""

    def __init__(self, cfg: ScorerConfig, category: nn.Embedding) -> None:
        super().__init__()
        f, d = len(cfg.merchant_names), cfg.d_model
        self.category = category
        self.x_scale = Standardise(f)
        self.p_scale = Standardise(cfg.profile_dim)
        self.weight = nn.Parameter(torch.randn(f, d) * 0.1)
        self.bias = nn.Parameter(torch.randn(f, d) * 0.1)
        self.profile_tokens = cfg.profile_tokens
        self.profile_proj = nn.Linear(cfg.profile_dim // cfg.profile_tokens, d)
        self.profile_pos = nn.Parameter(torch.randn(cfg.profile_tokens, d) * 0.1)
        self.context = nn.Sequential(nn.Linear(f + d, 2 * d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(2 * d, d))

    def forward(self, x: Tensor, category: Tensor, profile: Tensor) -> tuple[Tensor, Tensor]:
        xs = self.x_scale(x)  # (B, F)
        ps = self.p_scale(profile)  # (B, P·S)
        feat = xs.unsqueeze(-1) * self.weight + self.bias  # (B, F, d)
        cat = self.category(category.clamp(min=-1) + 1)  # (B, d)
        prof = self.profile_proj(ps.view(ps.shape[0], self.profile_tokens, -1)) + self.profile_pos  # (B, P, d)
        tokens = torch.cat([feat, cat.unsqueeze(1), prof], 1)
        # the profile reaches the heads only through attention: fed straight into the context MLP as well,
        # its 512 dimensions let the net memorise training merchants (held-out reward Spearman 0.77 → 0.81)
        ctx = self.context(torch.cat([xs, cat], -1))
        return tokens, torch.as_tensor(ctx)
