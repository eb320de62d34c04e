"""ContextualDealScorer (memo §1.2): cross-attention between a merchant's tokens and each candidate deal.

Merchant tokens (T = F + 1 + P):

- one token per readable merchant feature (``x_i · w_i + b_i`` after
  standardisation, as in FT-Transformer): these are the names explanations show;
- one token for the primary category;
- the 512-d merchant profile cut into P = 8 tokens of 64 dimensions.

Each candidate is encoded by the :class:`DealFeatureEncoder` (terms absolute and
relative to the merchant's habitual deal, plus its category), attends over the
merchant's tokens (4 heads; the attention map is the top-5 explanation), and a
representation (128-d: the bandit's "neural-linear" features) feeds three heads:
expected GP30 uplift, MM approval probability (calibrated after training: Platt
scaling, then a monotone piecewise-linear map through ``APPROVAL_KNOTS`` knots,
the identity unless an isotonic fit set it) and the conversion proxy. The
:class:`RiskAdjustmentLayer` reads the override history (the override
analyzer's 64-d intent and the merchant's override record) and the
candidate's distance from the merchant's usual deal, and gives the chance the
rep overrides this variant and how severe an override would be:
``risk = p_override × severity`` in [0, 1]. The composite score is the memo
§2.2 reward of those predictions, weights from Settings.

A second cross-attention reads the merchant's latest deals (terms and the
outcomes known so far): a variant close to a past deal can recall how that deal
did ("deal memory"); a learned empty slot answers for a merchant with none.

Shapes (:class:`MerchantTensors`): ``x`` (B, F), ``category`` (B,), ``profile``
(B, 512), ``intent`` (B, 64), ``memory`` (B, L, 29), ``memory_mask`` (B, L);
``deal`` (B, N, D), ``deal_category`` (B, N) → every output (B, N), attention
(B, N, T), deal attention (B, N, L), representation (B, N, 128).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from aidg.config import RewardSettings
from aidg.models.deal_feature_encoder import DealFeatureEncoder
from aidg.models.merchant_tokenizer import MerchantTokenizer
from aidg.models.risk_adjustment import RiskAdjustmentLayer
from aidg.models.scorer_config import ScorerConfig
from aidg.reward import composite

APPROVAL_KNOTS = 33  # knots of the monotone map after Platt scaling (fixed: the compiled scorer keeps one graph)


def identity_knots(k: int = APPROVAL_KNOTS) -> Tensor:
    """(2, k): the knots' x on [0, 1] and their shift y − x, zero: the identity map (Platt scaling alone)."""
    return torch.stack([torch.linspace(0.0, 1.0, k), torch.zeros(k)])


def monotone_map(p: Tensor, knots: Tensor) -> Tensor:
    """``p`` + the shift interpolated linearly between ``knots`` (2, k: x increasing, shift); the shift is constant
    beyond the first and last knot. Zero shifts give ``p`` back exactly."""
    x, shift = knots[0].double(), knots[1].double()  # float64 inside: float32 rounding broke monotonicity by 6e-8
    p64 = p.double()
    at = p64.clamp(x[0], x[-1])
    hi = torch.searchsorted(x.contiguous(), at.contiguous()).clamp(1, x.shape[0] - 1)
    x0, x1, s0, s1 = x[hi - 1], x[hi], shift[hi - 1], shift[hi]
    return (p64 + s0 + (at - x0) / (x1 - x0).clamp_min(1e-12) * (s1 - s0)).to(p.dtype)


class ContextualDealScorer(nn.Module):
    """Scores N candidate deals for each of B merchants (see the module docstring)."""

    approval_calibration: Tensor
    approval_knots: Tensor

    def __init__(self, cfg: ScorerConfig) -> None:
        super().__init__()
        self.config = cfg
        d = cfg.d_model
        self.category = nn.Embedding(cfg.n_categories + 1, d)  # code -1 (unknown) → row 0
        self.merchant_encoder = MerchantTokenizer(cfg, self.category)
        self.deal_encoder = DealFeatureEncoder(len(cfg.deal_names), self.category, d, cfg.dropout)
        self.cross_attention = nn.MultiheadAttention(d, cfg.heads, dropout=0.0, batch_first=True)
        # deal memory: the candidate also attends over the merchant's latest deals (terms and known outcomes),
        # plus a learned "no history" slot so a merchant without deals still gets a defined answer
        self.memory_encoder = nn.Sequential(nn.Linear(cfg.memory_features, d), nn.GELU(), nn.Linear(d, d))
        self.memory_null = nn.Parameter(torch.randn(1, 1, d) * 0.1)
        self.memory_attention = nn.MultiheadAttention(d, cfg.heads, dropout=0.0, batch_first=True)
        self.body = nn.Sequential(
            nn.Linear(5 * d, cfg.hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, cfg.representation_dim),
            nn.GELU(),
        )
        self.heads = nn.Linear(cfg.representation_dim, 3)  # uplift, approval logit, conversion logit
        # the "wide" part: a linear read of the terms and their squares, so predictions extrapolate
        # smoothly to variants far from the logged deals (e.g. approval falls with |Δ discount|)
        self.wide = nn.Linear(2 * len(cfg.deal_names), 3)
        self.risk_adjuster = RiskAdjustmentLayer(cfg)
        self.register_buffer("approval_calibration", torch.tensor([1.0, 0.0]))  # Platt: σ(a·logit + b)
        self.register_buffer("approval_knots", identity_knots())  # then this monotone map (identity: Platt alone)
        self._reward = RewardSettings(**cfg.reward)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # a version saved before the knots existed was calibrated by Platt scaling alone: the identity map
        state_dict.setdefault(prefix + "approval_knots", identity_knots())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def calibrated_approval(self, approval_logit: Tensor) -> Tensor:
        """The approval probability of the approval head's logit: Platt scaling, then the monotone knots."""
        a, b = self.approval_calibration[0], self.approval_calibration[1]
        return monotone_map(torch.sigmoid(a * approval_logit + b), self.approval_knots)

    def reward_settings(self) -> RewardSettings:
        """The reward weights in force (built when they change, never inside ``forward``: a pydantic model built
        there broke the compiled graph in two)."""
        return self._reward

    def use_reward(self, w: RewardSettings) -> None:
        """Score with these weights from now on (the heads predict each part, so no retraining is needed)."""
        self.config.reward = w.model_dump()
        self._reward = RewardSettings(**self.config.reward)

    def forward(
        self,
        x: Tensor,
        category: Tensor,
        profile: Tensor,
        intent: Tensor,
        memory: Tensor,
        memory_mask: Tensor,
        deal: Tensor,
        deal_category: Tensor,
    ) -> dict[str, Tensor]:
        tokens, ctx = self.merchant_encoder(x, category, profile)  # (B, T, d), (B, d)
        q = self.deal_encoder(deal, deal_category)  # (B, N, d)
        attended, attn = self.cross_attention(q, tokens, tokens, need_weights=True, average_attn_weights=True)
        mem = torch.cat([self.memory_null.expand(q.shape[0], -1, -1), self.memory_encoder(memory)], 1)
        pad = torch.cat([torch.zeros_like(memory_mask[:, :1]), ~memory_mask], 1)  # (B, 1 + L) True = ignore
        recalled, deal_attn = self.memory_attention(q, mem, mem, key_padding_mask=pad, need_weights=True)
        c = ctx.unsqueeze(1).expand_as(q)
        rep = self.body(torch.cat([attended, recalled, q, c, q * c], -1))  # (B, N, R)
        out = self.heads(rep) + self.wide(torch.cat([deal, deal * deal], -1))
        approval_logit = out[..., 1]
        risk = self.risk_adjuster(self.merchant_encoder.x_scale(x), intent, deal)
        w = self.reward_settings()
        res: dict[str, Tensor] = {
            "uplift": out[..., 0],
            "approval_logit": approval_logit,
            "approval": self.calibrated_approval(approval_logit),
            "conversion_logit": out[..., 2],
            "conversion": torch.sigmoid(out[..., 2]),
            **risk,
            "attention": attn,
            "deal_attention": deal_attn[..., 1:],  # (B, N, L) over the merchant's latest deals
            "representation": rep,
        }
        res["score"] = composite(
            res["uplift"], res["approval"], res["conversion"], res["p_override"], res["severity"], w
        )
        return res

    def fit_scalers(self, x: Tensor, profile: Tensor, intent: Tensor) -> None:
        """Standardisation statistics from the training merchants' rows."""
        self.merchant_encoder.x_scale.fit(x)
        self.merchant_encoder.p_scale.fit(profile)
        self.risk_adjuster.i_scale.fit(intent)

    def readable_tokens(self) -> np.ndarray:
        """Indices of the tokens people can read (features and category; not the profile's learned slices)."""
        return np.array([i for i, t in enumerate(self.config.token_names) if not t.startswith("profile[")], int)

    def top_attention(self, attention: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top-``k`` readable tokens of each variant by attention weight: ``attention`` (N, T) → token indices
        (N, k) and their weights (N, k), heaviest first (the explanation's top-5)."""
        readable = self.readable_tokens()
        attn = attention[:, readable]
        k = min(k, attn.shape[1])
        idx = np.argpartition(-attn, k - 1, axis=1)[:, :k]
        w = np.take_along_axis(attn, idx, 1)
        order = np.argsort(-w, axis=1, kind="stable")
        return readable[np.take_along_axis(idx, order, 1)], np.take_along_axis(w, order, 1)

    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def spec(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self.config)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"ContextualDealScorer(tokens={len(c.token_names)}, deal_features={len(c.deal_names)}, "
            f"d_model={c.d_model}, heads={c.heads}, params={self.n_parameters():,})"
        )
