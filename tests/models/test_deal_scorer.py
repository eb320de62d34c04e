"""The contextual deal scorer as a module: shapes, ranges, the composite, empty histories, bad configs."""

from __future__ import annotations

import pytest
import torch

from aidg.config import RewardSettings
from aidg.features.merchant_view import DEAL_NAMES, MERCHANT_NAMES
from aidg.models.deal_scorer import ContextualDealScorer
from aidg.models.scorer_config import MerchantTensors, ScorerConfig
from aidg.reward import composite_reward

B, N, L = 3, 7, 20


def _inputs(memory_deals: int = L) -> tuple[MerchantTensors, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(B, L, dtype=torch.bool)
    mask[:, L - memory_deals :] = True
    m = MerchantTensors(
        torch.randn(B, len(MERCHANT_NAMES), generator=g),
        torch.tensor([0, 3, -1]),
        torch.randn(B, 512, generator=g),
        torch.randn(B, 64, generator=g),
        torch.randn(B, L, 29, generator=g),
        mask,
    )
    return m, torch.randn(B, N, len(DEAL_NAMES), generator=g), torch.randint(0, 20, (B, N), generator=g)


@pytest.fixture(scope="module")
def scorer() -> ContextualDealScorer:
    torch.manual_seed(0)
    return ContextualDealScorer(ScorerConfig(list(MERCHANT_NAMES), list(DEAL_NAMES), n_categories=20)).eval()


def test_outputs_have_the_documented_shapes_and_ranges(scorer: ContextualDealScorer) -> None:
    m, deal, cat = _inputs()
    out = scorer(*m, deal, cat)
    for k in ("score", "uplift", "approval", "conversion", "p_override", "severity", "risk"):
        assert out[k].shape == (B, N), k
    assert out["attention"].shape == (B, N, len(scorer.config.token_names))
    assert out["representation"].shape == (B, N, 128)
    assert torch.allclose(out["attention"].sum(-1), torch.ones(B, N), atol=1e-5)
    for k in ("approval", "conversion", "risk", "p_override"):
        assert ((out[k] >= 0) & (out[k] <= 1)).all(), k
    assert torch.allclose(out["risk"], out["p_override"] * out["severity"])


def test_score_is_the_memo_reward_of_the_components(scorer: ContextualDealScorer) -> None:
    m, deal, cat = _inputs()
    with torch.no_grad():
        out = scorer(*m, deal, cat)
    expected = composite_reward(
        out["uplift"].numpy(), out["approval"].numpy(), out["conversion"].numpy(),
        out["p_override"].numpy(), out["severity"].numpy(), RewardSettings(),
    )  # fmt: skip
    assert torch.allclose(out["score"].double(), torch.from_numpy(expected), atol=1e-5)


def test_weights_come_from_settings() -> None:
    torch.manual_seed(0)
    w = RewardSettings(w_gp30=1.0, w_approval=0.0, w_conversion=0.0, w_risk=0.0)
    s = ContextualDealScorer(ScorerConfig(list(MERCHANT_NAMES), list(DEAL_NAMES), 20, reward=w.model_dump())).eval()
    m, deal, cat = _inputs()
    out = s(*m, deal, cat)
    assert torch.allclose(out["score"], out["uplift"])


def test_merchant_without_deals_and_unknown_values_still_scores(scorer: ContextualDealScorer) -> None:
    m, deal, cat = _inputs(memory_deals=0)
    x = m.x.clone()
    x[:, :5] = float("nan")  # unknown history statistics read as the training mean
    out = scorer(*m._replace(x=x), deal, cat)
    assert torch.isfinite(out["score"]).all()


def test_bad_config_is_refused() -> None:
    with pytest.raises(ValueError, match="multiple of heads"):
        ScorerConfig(list(MERCHANT_NAMES), list(DEAL_NAMES), 20, d_model=30)
    with pytest.raises(ValueError, match="equal tokens"):
        ScorerConfig(list(MERCHANT_NAMES), list(DEAL_NAMES), 20, profile_dim=500)
