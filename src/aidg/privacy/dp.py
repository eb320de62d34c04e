"""Differential privacy with the merchant as the privacy unit: user-level DP-SGD and its accounting (Opacus).

Neighbouring datasets differ by one merchant *with all its rows* (add / remove), so
every mechanism below bounds a whole merchant's influence, not one row's:

- **DP-SGD over merchants** (:func:`dp_fit`). Each step draws a Poisson sample of
  merchants (each independently with probability ``q = batch_merchants / n``),
  takes each sampled merchant ``m``'s gradient of the mean loss over *all* its rows,
  clips that whole flattened gradient to ``C`` and adds Gaussian noise::

      g_m   = ∇_θ mean_{i ∈ rows(m)} ℓ_i(θ)
      ḡ_m   = g_m · min(1, C / ‖g_m‖₂)
      g̃     = ( Σ_{m ∈ sample} ḡ_m + N(0, σ² C² I) ) / (q · n)
      θ     ← Adam(θ, g̃)

  A merchant with 100 rows moves the clipped sum by at most ``C``, exactly as one
  with a single row (row-level clipping would let it move it by ``100 C``). The
  gradients come one merchant at a time (micro-batches of a merchant's rows), which
  works for any layer (Transformer, LSTM, attention) without Opacus' layer
  replacements; Opacus' per-sample hooks would need ``DPMultiheadAttention`` /
  ``DPLSTM`` in place of the models' own layers and change their saved state.
- **Statistics** (:func:`dp_mean_std`): per-feature mean and deviation by the
  Gaussian mechanism on clipped per-merchant vectors (sampling rate 1, one step).

**Accounting** (:class:`PrivacyBudget`). Every part of one training run sees the
same merchants, so their mechanisms compose: the run's history is the list
``[(s_i σ, q_i, T_i)]`` of each part's noise multiplier (one common ``σ`` times a
fixed per-part scale ``s_i``: 1 for DP-SGD, ``stats_noise_factor`` for statistics),
sampling rate and step count. Opacus' accountant (RDP by default, PRV optional)
turns the history into ``ε(σ)`` at ``δ``; ``σ`` is set by bisection to the smallest
value (to 0.1 %) with ``ε(σ) ≤ ε_target``. With ``δ`` unset it is ``1 / (10 n)``
for ``n`` training merchants.

The merchant counts (``n``, each part's merchants) are treated as public, as Opacus
does with the dataset size in its expected batch size. The noise is drawn from a
seeded generator so runs reproduce; that is fine for research and audits, a
production release would draw it from a cryptographic source.

>>> parts = [DPPart("a", sample_rate=0.04, steps=100), DPPart("b", sample_rate=0.04, steps=50)]
>>> budget = PrivacyBudget.calibrate(parts, DPConfig(epsilon=1.0), delta=1e-5)
>>> budget.epsilon <= 1.0 < PrivacyBudget.spend(parts, 0.9 * budget.noise_multiplier, 1e-5)
True
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from aidg.errors import ConfigError, DataError
from aidg.progress import Progress

ACCOUNTANTS = ("rdp", "prv")
OPTIMIZERS = ("adam", "sgd")
# Opacus' default orders stop at 63; statistics released once (rate 1) with a large noise multiplier
# have their optimum at higher orders (up to 256 here)
RDP_ALPHAS: list[float] = [1 + x / 10.0 for x in range(1, 100)] + [float(a) for a in range(12, 64)]
RDP_ALPHAS += [80.0, 100.0, 128.0, 160.0, 200.0, 256.0]
SIGMA_TOLERANCE = 1e-3  # relative precision of the calibrated noise multiplier


@dataclass(frozen=True)
class DPConfig:
    """What a differentially private training run may spend, and how it trains.

    Attributes:
        epsilon: target ε of the whole run (every part composed).
        delta: δ; ``None`` means ``1 / (10 × merchants)``, every merchant in the data counted.
        max_grad_norm: ``C``, the clip of each merchant's whole gradient.
        batch_merchants: expected merchants per DP-SGD step (``q = batch_merchants / n``).
        branch_epochs: expected passes over the merchants for each sequence branch (steps = epochs / q).
        fusion_epochs: the same for the fusion layer and its uplift head.
        lr: the learning rate in DP-SGD (cosine decay to 10 % over the steps).
        optimizer: ``adam`` or ``sgd`` (momentum 0.9) on the noisy gradient.
        stats_noise_factor: noise multiplier of the released statistics ÷ DP-SGD's ``σ``.
        stats_bound: per-coordinate scale of the clip of each merchant's statistics vector
            (``‖x‖ ≤ bound √d`` and ``‖x²‖ ≤ bound² √d``).
        accountant: ``rdp`` or ``prv`` (Opacus' accountants).
    """

    epsilon: float = 1.0
    delta: float | None = None
    max_grad_norm: float = 1.0
    batch_merchants: int = 64
    branch_epochs: float = 2.0
    fusion_epochs: float = 3.0
    lr: float = 1e-3
    optimizer: str = "adam"
    stats_noise_factor: float = 4.0
    stats_bound: float = 2.0
    accountant: str = "rdp"

    def __post_init__(self) -> None:
        positive = ("epsilon", "max_grad_norm", "batch_merchants", "lr", "stats_noise_factor", "stats_bound")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"DPConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("branch_epochs", "fusion_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"DPConfig.{name} must be ≥ 0, got {getattr(self, name)}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError(f"DPConfig.delta must lie in (0, 1), got {self.delta}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"DPConfig.optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.accountant not in ACCOUNTANTS:
            raise ConfigError(f"DPConfig.accountant must be one of {', '.join(ACCOUNTANTS)}, got {self.accountant!r}")

    def resolve_delta(self, n_merchants: int) -> float:
        """``delta``, or ``1 / (10 n)`` for the ``n`` merchants of the data when it is unset."""
        if self.delta is not None:
            return self.delta
        if n_merchants < 1:
            raise DataError("differential privacy needs at least one training merchant (δ = 1 / (10 n))")
        return 1.0 / (10.0 * n_merchants)


# ---------------------------------------------------------------- accounting


@dataclass(frozen=True)
class DPPart:
    """One mechanism of a run: ``steps`` Gaussian steps at sampling rate ``sample_rate``, noise ``noise_scale × σ``."""

    name: str
    sample_rate: float
    steps: int
    noise_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0 < self.sample_rate <= 1:
            raise ConfigError(f"{self.name}: sampling rate must lie in (0, 1], got {self.sample_rate}")
        if self.steps < 0 or self.noise_scale <= 0:
            raise ConfigError(f"{self.name}: need steps ≥ 0 and noise_scale > 0")


def n_merchants(groups: np.ndarray) -> int:
    """Distinct merchants among the rows' merchant codes."""
    return len(np.unique(groups))


def sgd_part(name: str, groups: np.ndarray, batch_merchants: int, epochs: float) -> DPPart:
    """The DP-SGD part of ``epochs`` expected passes over the merchants of ``groups``: ``T = ⌈epochs / q⌉`` steps.

    Raises:
        DataError: ``groups`` holds no merchant.
    """
    n = n_merchants(groups)
    if n == 0:
        raise DataError(f"{name}: no merchant has training rows, so there is nothing to train privately")
    q = min(1.0, batch_merchants / n)
    return DPPart(name, q, math.ceil(epochs / q) if epochs > 0 else 0)


def statistic_part(name: str, noise_scale: float) -> DPPart:
    """A statistic released once over every merchant (sampling rate 1, one step)."""
    return DPPart(name, 1.0, 1, noise_scale)


def _history(parts: Sequence[DPPart], sigma: float) -> list[tuple[float, float, int]]:
    """Opacus' history ``[(noise multiplier, sampling rate, steps)]``; equal mechanisms merged (their steps add)."""
    steps: dict[tuple[float, float], int] = {}
    for p in parts:
        if p.steps > 0:
            key = (sigma * p.noise_scale, p.sample_rate)
            steps[key] = steps.get(key, 0) + p.steps
    return [(s, q, t) for (s, q), t in steps.items()]


def _epsilon(history: list[tuple[float, float, int]], delta: float, accountant: str) -> float:
    if not history:
        return 0.0
    from opacus.accountants import PRVAccountant, RDPAccountant  # type: ignore[import-untyped]

    try:
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            # the bound at the largest order is still a valid (looser) bound; PRV takes log(1 − q) at q = 1
            warnings.filterwarnings("ignore", message="Optimal order is the largest alpha")
            if accountant == "prv":
                prv = PRVAccountant()
                prv.history = list(history)
                return float(prv.get_epsilon(delta, eps_error=0.01))
            rdp = RDPAccountant()
            rdp.history = list(history)
            return float(rdp.get_epsilon(delta, alphas=RDP_ALPHAS))
    except (ValueError, OverflowError, RuntimeError, ZeroDivisionError):  # σ so small the bound diverges
        return math.inf


@dataclass(frozen=True)
class PrivacyBudget:
    """One noise multiplier ``σ`` for every part of a run, calibrated so the composed ``ε ≤ target`` at ``δ``.

    Attributes:
        parts: each mechanism of the run (names unique).
        noise_multiplier: the common ``σ`` (a part's own is ``noise_scale × σ``).
        epsilon: ε the whole run spends (Opacus' accountant).
        target_epsilon: the target it was calibrated to.
        delta: δ of the guarantee.
        accountant: ``rdp`` or ``prv``.
        max_grad_norm: DP-SGD's clip ``C``.
    """

    parts: tuple[DPPart, ...]
    noise_multiplier: float
    epsilon: float
    target_epsilon: float
    delta: float
    accountant: str
    max_grad_norm: float

    @staticmethod
    def spend(parts: Sequence[DPPart], sigma: float, delta: float, accountant: str = "rdp") -> float:
        """ε of ``parts`` composed, with common noise multiplier ``sigma``, at ``delta``."""
        return _epsilon(_history(parts, sigma), delta, accountant)

    @classmethod
    def calibrate(cls, parts: Sequence[DPPart], config: DPConfig, delta: float) -> PrivacyBudget:
        """The smallest ``σ`` (bisection, 0.1 % precision) whose composed ε stays ≤ ``config.epsilon`` at ``delta``.

        Raises:
            ConfigError: two parts share a name, or no σ up to 10⁴ reaches the target.
        """
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise ConfigError(f"privacy parts must have distinct names, got {names}")

        def eps(sigma: float) -> float:
            return cls.spend(parts, sigma, delta, config.accountant)

        lo, hi = 0.0, 1.0
        while eps(hi) > config.epsilon:
            lo, hi = hi, 2 * hi
            if hi > 1e4:
                raise ConfigError(f"no noise multiplier ≤ 1e4 reaches ε = {config.epsilon} at δ = {delta:.3g}")
        while hi - lo > SIGMA_TOLERANCE * hi:
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if eps(mid) <= config.epsilon else (mid, hi)
        return cls(tuple(parts), hi, eps(hi), config.epsilon, delta, config.accountant, config.max_grad_norm)

    def part(self, name: str) -> DPPart:
        for p in self.parts:
            if p.name == name:
                return p
        raise KeyError(f"no privacy part {name!r}; parts: {', '.join(p.name for p in self.parts)}")

    def sigma(self, name: str) -> float:
        """The noise multiplier of part ``name``."""
        return self.noise_multiplier * self.part(name).noise_scale

    def run(self, name: str, lr: float, optimizer: str = "adam") -> DPRun:
        """DP-SGD settings of part ``name``."""
        p = self.part(name)
        return DPRun(self.sigma(name), p.sample_rate, p.steps, self.max_grad_norm, lr, optimizer)

    def summary(self) -> dict[str, Any]:
        """What the model's manifest records: ε, δ, σ, C and each part's rate, steps, σ and ε alone."""
        return {
            "epsilon": self.epsilon,
            "target_epsilon": self.target_epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "accountant": f"opacus.{self.accountant}",
            "parts": {
                p.name: {
                    "sample_rate": p.sample_rate,
                    "steps": p.steps,
                    "noise_multiplier": self.sigma(p.name),
                    "epsilon_alone": self.spend([p], self.noise_multiplier, self.delta, self.accountant),
                }
                for p in self.parts
            },
        }


# ---------------------------------------------------------------- DP-SGD


@dataclass(frozen=True)
class DPRun:
    """One DP-SGD run: noise multiplier, Poisson rate over merchants, steps, clip ``C`` and learning rate."""

    noise_multiplier: float
    sample_rate: float
    steps: int
    max_grad_norm: float
    lr: float
    optimizer: str = "adam"  # or "sgd" (momentum 0.9)


def merchant_rows(groups: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """The distinct merchants of ``groups`` (sorted) and, for each, the positions of its rows.

    >>> m, rows = merchant_rows(np.array([3, 1, 3, 3]))
    >>> m.tolist(), [r.tolist() for r in rows]
    ([1, 3], [[1], [0, 2, 3]])
    """
    g = np.asarray(groups)
    order = np.argsort(g, kind="stable")
    merchants, starts = np.unique(g[order], return_index=True)
    return merchants, np.split(order, starts[1:]) if len(g) else []


def clipped_sum(
    params: Sequence[nn.Parameter],
    loss_fn: Callable[[np.ndarray], torch.Tensor],
    batches: Sequence[np.ndarray],
    max_grad_norm: float,
) -> tuple[list[torch.Tensor], np.ndarray, np.ndarray]:
    """``Σ_m ḡ_m`` over ``batches`` (one merchant's rows each), with each merchant's whole gradient clipped to ``C``.

    Returns:
        The sum (one tensor per parameter), each merchant's gradient norm before clipping, and its mean loss.
    """
    total = [torch.zeros_like(p) for p in params]
    norms, losses = np.zeros(len(batches)), np.zeros(len(batches))
    for j, idx in enumerate(batches):
        loss = loss_fn(idx)
        grads = torch.autograd.grad(loss, list(params), allow_unused=True)
        g = [torch.zeros_like(p) if gi is None else gi for p, gi in zip(params, grads, strict=True)]
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(x) for x in g])))
        scale = min(1.0, max_grad_norm / (norm + 1e-12))
        for t, x in zip(total, g, strict=True):
            t.add_(x, alpha=scale)
        norms[j], losses[j] = norm, float(loss.detach())
    return total, norms, losses


def dp_fit(
    module: nn.Module,
    loss_fn: Callable[[np.ndarray], torch.Tensor],
    groups: np.ndarray,
    run: DPRun,
    *,
    seed: int,
    label: str = "dp-sgd",
    progress: Progress | None = None,
) -> list[float]:
    """Minimise ``loss_fn(row_indices)`` (a mean over rows) by DP-SGD with the merchant as the privacy unit.

    ``groups[i]`` is the merchant of row ``i``. Each of ``run.steps`` steps samples
    merchants independently with probability ``q = run.sample_rate``, sums their
    clipped whole-merchant gradients, adds ``N(0, σ² C²)`` per coordinate and
    divides by the expected sample ``q · n`` (formulas in the module docstring);
    Adam takes the step, its rate decaying by a cosine to 10 %. Seeded (sampling,
    noise; dropout uses torch's global generator, seed it before).

    Returns:
        The mean loss of the sampled merchants at each step (NaN for an empty sample).

    Raises:
        DataError: no merchant has rows.
    """
    merchants, rows = merchant_rows(groups)
    if len(merchants) == 0:
        raise DataError(f"{label}: no training merchants, so DP-SGD has nothing to train on (is the history empty?)")
    params = [p for p in module.parameters() if p.requires_grad]
    opt: torch.optim.Optimizer = (
        torch.optim.SGD(params, lr=run.lr, momentum=0.9)
        if run.optimizer == "sgd"
        else torch.optim.Adam(params, lr=run.lr)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, run.steps) / max(run.steps, 1)))
    )
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    expected = run.sample_rate * len(merchants)
    std = run.noise_multiplier * run.max_grad_norm
    history: list[float] = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one merchant's few rows at a time: more threads only contend
    module.train()
    try:
        for step in range(run.steps):
            chosen = np.flatnonzero(rng.random(len(merchants)) < run.sample_rate)
            total, _, losses = clipped_sum(params, loss_fn, [rows[i] for i in chosen], run.max_grad_norm)
            for p, t in zip(params, total, strict=True):
                noise = torch.normal(0.0, std, size=tuple(p.shape), generator=gen, dtype=p.dtype)
                p.grad = (t + noise) / expected
            opt.step()
            sched.step()
            history.append(float(losses.mean()) if len(losses) else float("nan"))
            if progress is not None and (step + 1) % 10 == 0:
                progress(f"{label} DP step {step + 1}/{run.steps}", (step + 1) / run.steps)
    finally:
        torch.set_num_threads(threads)
        module.eval()
    if progress is not None:
        progress(f"{label} done", 1.0)
    return history


# ---------------------------------------------------------------- statistics


def _clip_rows(x: np.ndarray, bound: float) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.asarray(x * np.minimum(1.0, bound / np.maximum(norm, 1e-12)))


def dp_mean_std(
    x: np.ndarray, *, bound: float, noise_multiplier: float, seed: int, min_std: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and deviation of ``x`` (one row per merchant) by the Gaussian mechanism.

    Each row ``x_m`` (``d`` features) is clipped twice, ``a_m = clip(x_m, C₁)`` and
    ``b_m = clip(x_m², C₂)`` with ``C₁ = bound √d`` and ``C₂ = bound² √d``; the vector
    ``w_m = [a_m / C₁, b_m / C₂] / √2`` has norm ≤ 1, so one merchant moves
    ``S = Σ_m w_m`` by at most 1 and ``S + N(0, σ² I)`` is the Gaussian mechanism with
    noise multiplier ``σ`` (rate 1, one step in the accountant). Then::

        mean = √2 C₁ S_a / n,   m₂ = √2 C₂ S_b / n,   std = √max(m₂ − mean², min_std²)

    Raises:
        DataError: ``x`` has no rows.
    """
    x = np.asarray(x, dtype=np.float64)
    n, d = x.shape
    if n == 0:
        raise DataError("private statistics need at least one merchant")
    c1, c2 = bound * math.sqrt(d), bound**2 * math.sqrt(d)
    w = np.hstack([_clip_rows(x, c1) / c1, _clip_rows(x**2, c2) / c2]) / math.sqrt(2)
    s = w.sum(0) + np.random.default_rng(seed).normal(0.0, noise_multiplier, 2 * d)
    mean = s[:d] * math.sqrt(2) * c1 / n
    m2 = s[d:] * math.sqrt(2) * c2 / n
    return mean, np.sqrt(np.maximum(m2 - mean**2, min_std**2))
