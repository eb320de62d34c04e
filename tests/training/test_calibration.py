"""The approval calibration: Platt then an isotonic map, kept monotone, fitted to the calibration data's curve,
loaded as the identity by versions saved before it, and refused for an unknown method."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aidg.features.merchant_view import DEAL_NAMES, MERCHANT_NAMES
from aidg.models.deal_scorer import ContextualDealScorer, identity_knots, monotone_map
from aidg.models.scorer_config import ScorerConfig
from aidg.training.calibration import calibrate_approval, expected_calibration_error, platt


def _scorer() -> ContextualDealScorer:
    torch.manual_seed(0)
    return ContextualDealScorer(ScorerConfig(list(MERCHANT_NAMES), list(DEAL_NAMES), n_categories=5)).eval()


def _bent(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits whose true approval is not a sigmoid of them: a sigmoid cannot fit it, a monotone map can."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(0, 1.5, n)
    true = np.clip(0.5 + 0.45 * np.tanh(logit) ** 3, 0, 1)
    return logit, (rng.random(n) < true).astype(np.float32), true


def test_the_identity_knots_change_no_probability() -> None:
    p = torch.rand(1000)
    assert torch.equal(monotone_map(p, identity_knots()), p)


def test_isotonic_follows_a_curve_platt_cannot_and_stays_strictly_increasing() -> None:
    logit, y, _ = _bent()
    test_logit, _, test_true = _bent(seed=1)
    order = np.argsort(test_logit)
    z, true = torch.from_numpy(test_logit[order]).float(), test_true[order]
    errors = {}
    for method in ("platt", "isotonic"):
        scorer = _scorer()
        calibrate_approval(scorer, logit, y, method)
        p = scorer.calibrated_approval(z)
        assert bool((p[1:] >= p[:-1]).all()) and float(p.min()) >= 0 and float(p.max()) <= 1
        errors[method] = expected_calibration_error(p.numpy(), true)
        knots = scorer.approval_knots
        assert bool((knots[0][1:] > knots[0][:-1]).all())
        assert bool(((knots[0] + knots[1])[1:] > (knots[0] + knots[1])[:-1]).all())
    assert errors["isotonic"] < 0.6 * errors["platt"], errors


def test_platt_alone_is_the_earlier_calibration() -> None:
    logit, y, _ = _bent()
    scorer = _scorer()
    out = calibrate_approval(scorer, logit, y, "platt")
    assert (out["a"], out["b"]) == platt(logit, y)
    assert torch.equal(scorer.approval_knots, identity_knots())
    z = torch.linspace(-3, 3, 50)
    assert torch.allclose(scorer.calibrated_approval(z), torch.sigmoid(out["a"] * z + out["b"]))


def test_a_version_saved_before_the_knots_loads_as_platt_alone() -> None:
    old = _scorer()
    old.approval_calibration.copy_(torch.tensor([1.3, -0.2]))
    state = {k: v for k, v in old.state_dict().items() if k != "approval_knots"}
    new = _scorer()
    new.approval_knots.copy_(torch.ones_like(new.approval_knots))
    new.load_state_dict(state)
    assert torch.equal(new.approval_knots, identity_knots())


def test_an_unknown_method_is_refused() -> None:
    logit, y, _ = _bent(100)
    with pytest.raises(ValueError, match="'platt' or 'isotonic'"):
        calibrate_approval(_scorer(), logit, y, "beta")  # type: ignore[arg-type]
