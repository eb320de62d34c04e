"""The deal scorer's configuration (:class:`ScorerConfig`) and its merchant inputs (:class:`MerchantTensors`:
``x`` (B, F), ``category`` (B,), ``profile`` (B, 512), ``intent`` (B, 64), ``memory`` (B, L, 29), ``memory_mask``
(B, L))."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from torch import Tensor

from aidg.config import RewardSettings


class MerchantTensors(NamedTuple):
    """One row per merchant: what the scorer reads about it."""

    x: Tensor  # (B, F) readable features (NaN: unknown)
    category: Tensor  # (B,) primary category code
    profile: Tensor  # (B, P) the 512-d merchant profile
    intent: Tensor  # (B, I) the override analyzer's intent
    memory: Tensor  # (B, L, M) the merchant's latest deals (terms and outcomes known so far)
    memory_mask: Tensor  # (B, L) True where a deal is



@dataclass
class ScorerConfig:
    merchant_names: list[str]
    deal_names: list[str]
    n_categories: int
    profile_dim: int = 512
    profile_tokens: int = 8
    intent_dim: int = 64
    memory_features: int = 29
    memory_len: int = 20
    d_model: int = 64
    heads: int = 4
    hidden: int = 256
    representation_dim: int = 128
    dropout: float = 0.1
    reward: dict[str, float] = field(default_factory=lambda: RewardSettings().model_dump())

    def __post_init__(self) -> None:
        if self.profile_dim % self.profile_tokens:
            raise ValueError(f"profile_dim {self.profile_dim} must split into {self.profile_tokens} equal tokens")
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")

    @property
    def token_names(self) -> list[str]:
        """Readable name of every merchant token, in attention-map order."""
        size = self.profile_dim // self.profile_tokens
        return [
            *self.merchant_names,
            "category",
            *[f"profile[{i * size}:{(i + 1) * size}]" for i in range(self.profile_tokens)],
        ]
