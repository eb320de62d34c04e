"""Faithful attributions: Integrated Gradients of a variant's score over the merchant's readable features.

Computed as Captum's ``IntegratedGradients`` computes them (Gauss–Legendre nodes and weights on the path, one
batched backward pass, gradients × (input − baseline)), in a few lines here: importing ``captum.attr`` costs ~0.3 s
of every ``aidg explain`` (it pulls matplotlib's pyplot). ``tests/explain/test_explainer.py`` checks the two agree
to float precision.

The baseline is the "average merchant" (every readable feature at its training
mean, which the scorer's standardisation maps to zero). Profile, category and
override intent stay at the merchant's own values, so the attributions say how
each readable feature moved this variant's score away from an average
merchant's. Completeness holds: attributions sum to score(x) − score(baseline)
up to the integration error reported as ``convergence_delta``.

Faithfulness (:func:`faithfulness`): remove (set to baseline) the top-5
attributed features and the score should move far more than when removing 5
random features; the ratio of the two mean absolute changes is reported.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aidg.inference.scoring import MerchantInputs
from aidg.models.deal_scorer import ContextualDealScorer

IG_STEPS = 32


@dataclass
class Attribution:
    """Attribution of one variant's score to each readable merchant feature."""

    names: list[str]
    values: np.ndarray  # raw feature values (NaN: unknown)
    attributions: np.ndarray  # (F,) score units
    convergence_delta: float

    def top(self, k: int = 5) -> list[dict[str, float | str | None]]:
        order = np.argsort(-np.abs(self.attributions))[:k]
        return [
            {
                "feature": self.names[i],
                "value": None if not np.isfinite(self.values[i]) else round(float(self.values[i]), 4),
                "attribution": round(float(self.attributions[i]), 5),
            }
            for i in order
        ]


def _forward(scorer: ContextualDealScorer, inp: MerchantInputs, variant: int):  # type: ignore[no-untyped-def]
    deal = inp.deal[:, variant : variant + 1]
    dcat = inp.deal_category[:, variant : variant + 1]

    def f(x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        m = inp.merchant
        rest = [t.expand(b, *t.shape[1:]) for t in m[1:]]
        out = scorer(x, *rest, deal.expand(b, -1, -1), dcat.expand(b, -1))
        score: torch.Tensor = out["score"][:, 0]
        return score

    return f


def _filled(scorer: ContextualDealScorer, x: torch.Tensor) -> torch.Tensor:
    """NaN (unknown) features replaced by the training mean: what the scorer reads them as anyway."""
    mean = scorer.merchant_encoder.x_scale.mean
    return torch.where(torch.isfinite(x), x, mean.expand_as(x))


def _gauss_legendre(steps: int) -> tuple[list[float], list[float]]:
    """Captum's ``gausslegendre`` path: the nodes mapped to [0, 1] (alphas) and their weights (summing to 1)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    return (0.5 * (1 + nodes)).tolist(), (0.5 * weights).tolist()


def integrated_gradients(
    scorer: ContextualDealScorer, inp: MerchantInputs, variant: int, steps: int = IG_STEPS
) -> Attribution:
    """IG of variant ``variant``'s composite score over the readable merchant features (as Captum computes it)."""
    scorer.eval()
    x = _filled(scorer, inp.x)
    base = scorer.merchant_encoder.x_scale.mean.unsqueeze(0)
    f = _forward(scorer, inp, variant)
    alphas, weights = _gauss_legendre(steps)
    with torch.enable_grad():
        path = torch.cat([base + a * (x - base) for a in alphas], dim=0).requires_grad_()
        (grads,) = torch.autograd.grad(torch.unbind(f(path)), path)
    scaled = grads.contiguous().view(steps, -1) * torch.tensor(weights).float().view(steps, 1)
    attr = torch.sum(scaled.reshape((steps, *x.shape)), dim=0) * (x - base)
    with torch.no_grad():  # completeness: the attributions' sum against score(x) − score(baseline)
        delta = attr.sum(1) - (f(x) - f(base))
    return Attribution(
        names=list(scorer.config.merchant_names),
        values=inp.x[0].numpy().astype(float),
        attributions=attr[0].detach().numpy().astype(float),
        convergence_delta=float(delta.abs().max()),
    )


@torch.inference_mode()
def score_with_removed(
    scorer: ContextualDealScorer, inp: MerchantInputs, variant: int, removed: np.ndarray
) -> np.ndarray:
    """Score of the variant with each row of ``removed`` (R, k feature indices) set to the baseline: (R,)."""
    x = _filled(scorer, inp.x).repeat(len(removed), 1)
    base = scorer.merchant_encoder.x_scale.mean
    rows = np.repeat(np.arange(len(removed)), removed.shape[1])
    cols = removed.ravel()
    x[rows, cols] = base[cols]
    return np.asarray(_forward(scorer, inp, variant)(x).numpy(), dtype=float)


def faithfulness(
    scorer: ContextualDealScorer,
    inp: MerchantInputs,
    variant: int,
    attribution: Attribution,
    k: int = 5,
    random_draws: int = 20,
    seed: int = 0,
) -> tuple[float, float]:
    """(|Δscore| removing the top-k attributed features, mean |Δscore| removing k random features)."""
    f = len(attribution.names)
    rng = np.random.default_rng(seed)
    top = np.argsort(-np.abs(attribution.attributions))[:k][None]
    rand = np.stack([rng.choice(f, size=k, replace=False) for _ in range(random_draws)])
    with torch.inference_mode():
        full = float(_forward(scorer, inp, variant)(_filled(scorer, inp.x))[0])
    d_top = abs(float(score_with_removed(scorer, inp, variant, top)[0]) - full)
    d_rand = float(np.mean(np.abs(score_with_removed(scorer, inp, variant, rand) - full)))
    return d_top, d_rand
