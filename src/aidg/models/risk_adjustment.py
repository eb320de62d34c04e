"""RiskAdjustmentLayer (memo §1.2): standardised readable features (B, F), override intent (B, 64) and candidate
terms (B, N, D) → P(rep overrides) (B, N), severity (B, N), risk = product (B, N), and the override logit."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from aidg.models.scorer_config import ScorerConfig
from aidg.models.standardise import Standardise

RISK_FEATURES = ("override_rate", "override_severity", "recent_approval_rate")



DEAL_RISK_FEATURES = ("discount_vs_usual", "discount_vs_habitual")



class RiskAdjustmentLayer(nn.Module):
    """Override history + candidate → P(rep overrides it), severity of that override, risk = product (B, N)."""

    x_idx: Tensor
    d_idx: Tensor

    def __init__(self, cfg: ScorerConfig) -> None:
        super().__init__()
        x_idx = [cfg.merchant_names.index(n) for n in RISK_FEATURES]
        d_idx = [cfg.deal_names.index(n) for n in DEAL_RISK_FEATURES]
        # index buffers (not lists) so they live on the model's device: no host copy inside a CUDA graph
        self.register_buffer("x_idx", torch.tensor(x_idx), persistent=False)
        self.register_buffer("d_idx", torch.tensor(d_idx), persistent=False)
        self.i_scale = Standardise(cfg.intent_dim)
        width = cfg.intent_dim + len(x_idx)
        self.history = nn.Sequential(nn.Linear(width, 32), nn.GELU())
        self.override = nn.Sequential(nn.Linear(32 + 2 * len(d_idx), 32), nn.GELU(), nn.Linear(32, 1))
        self.severity = nn.Linear(32, 1)

    def forward(self, xs: Tensor, intent: Tensor, deal: Tensor) -> dict[str, Tensor]:
        h = self.history(torch.cat([self.i_scale(intent), xs.index_select(-1, self.x_idx)], -1))  # (B, 32)
        dv = deal.index_select(-1, self.d_idx)  # (B, N, k)
        hn = h.unsqueeze(1).expand(-1, deal.shape[1], -1)
        logit = self.override(torch.cat([hn, dv, dv.abs()], -1)).squeeze(-1)  # (B, N)
        p = torch.sigmoid(logit)
        sev = torch.sigmoid(self.severity(h)).expand_as(p)  # (B, N)
        return {"override_logit": logit, "p_override": p, "severity": sev, "risk": p * sev}
