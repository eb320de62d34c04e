"""The per-merchant posterior: pooled population → category → merchant, exactly once, in any order."""

from __future__ import annotations

import numpy as np
import pytest

from aidg.config import PosteriorSettings
from aidg.errors import DataError
from aidg.policy.merchant_posterior import MerchantPosterior
from aidg.policy.pooled import K, PooledLinear, term_features

PRED = {"approval": 0.5, "conversion": 0.1, "uplift": 0.0}


def _events(rng: np.random.Generator, n: int) -> list[tuple[str, str, str, np.ndarray, str, float]]:
    out = []
    for i in range(n):
        psi = term_features(rng.uniform(0.1, 0.6, 1), rng.uniform(10, 60, 1), rng.choice([7, 14, 30], 1),
                            rng.integers(0, 2, 1), (0.3, 30.0, 14.0))[0]  # fmt: skip
        m = f"m{rng.integers(0, 6)}"
        for part in ("approval", "conversion", "gp30_uplift"):
            out.append((f"d{i}", m, f"c{int(m[1:]) % 2}", psi, part, float(rng.normal(0.3, 0.2))))
    return out


def _posterior(events: list, repeat: bool = False) -> MerchantPosterior:
    mp = MerchantPosterior()
    for did, m, c, psi, _, _ in events:
        if did not in mp.open_:
            mp.register(did, m, c, psi, PRED)
    for did, _, _, _, part, value in events + (events if repeat else []):
        mp.update_params(did, part, value)
    return mp


def test_the_posterior_is_the_same_in_any_order_and_when_events_repeat() -> None:
    ev = _events(np.random.default_rng(0), 60)
    a = _posterior(ev)
    shuffled = [ev[i] for i in np.random.default_rng(1).permutation(len(ev))]
    b = _posterior(shuffled, repeat=True)
    for m in ("m0", "m3", "never-seen"):
        for p in a.parts:
            ma, ca = a.parts[p].posterior(m, "c0")
            mb, cb = b.parts[p].posterior(m, "c0")
            np.testing.assert_allclose(ma, mb, atol=1e-10)
            np.testing.assert_allclose(ca, cb, atol=1e-10)


def test_a_corrected_value_moves_the_sums_by_the_difference_only() -> None:
    psi = np.ones(K)
    once = MerchantPosterior()
    once.register("d", "m", "c", psi, PRED)
    once.update_params("d", "approval", 1.0)
    twice = MerchantPosterior()
    twice.register("d", "m", "c", psi, PRED)
    twice.update_params("d", "approval", 0.0)
    assert twice.update_params("d", "approval", 1.0)
    assert not twice.update_params("d", "approval", 1.0)
    got = [mp.parts["approval"].posterior("m", "c")[0] for mp in (once, twice)]
    np.testing.assert_allclose(*got)


def test_a_merchant_learns_its_own_correction_and_an_unseen_one_borrows_its_category() -> None:
    pooled = PooledLinear(0.2, (0.3, 0.3, 0.3))
    rng = np.random.default_rng(2)
    for _ in range(400):  # merchant "a" of category "x": its discount step is worth +0.1 more than predicted
        psi = term_features(rng.uniform(0.1, 0.6, 1), np.array([30.0]), np.array([14.0]), np.zeros(1),
                            (0.3, 30.0, 14.0))[0]  # fmt: skip
        pooled.add("a", "x", psi, 0.1 * psi[1] + rng.normal(0, 0.2), first=True)
    mean_a, cov_a = pooled.posterior("a", "x")
    assert mean_a[1] == pytest.approx(0.1, abs=0.03)
    mean_b, cov_b = pooled.posterior("b", "x")  # same category, no data of its own: pulled toward "a", less sure
    assert 0 < mean_b[1] <= mean_a[1] + 1e-6
    assert cov_b[1, 1] > cov_a[1, 1]
    _, cov_c = pooled.posterior("c", "other")  # another category: the population's, wider still
    assert cov_c[1, 1] > cov_b[1, 1]


def test_uncertainty_grows_with_distance_from_the_current_deal() -> None:
    mp = MerchantPosterior()
    post = mp.part_posteriors("m", "c")
    near, far = term_features(np.array([0.32, 0.6]), np.array([30.0, 60.0]), np.array([14, 60]), np.zeros(2),
                              (0.3, 30.0, 14.0))  # fmt: skip
    _, sd = mp.correction(post, np.vstack([near, far]))
    assert sd[1] > 2 * sd[0]
    short = mp.gp30_shortfall(post, np.vstack([near, far]), np.array([0.0, 0.0]), near * 0 + np.eye(K)[0], 0.0, 0.8)
    assert short[1] > short[0]


def test_bad_input_is_refused() -> None:
    with pytest.raises(DataError, match="positive price"):
        term_features(np.array([0.1]), np.array([10.0]), np.array([7]), np.zeros(1), (0.1, 0.0, 7.0))
    mp = MerchantPosterior(PosteriorSettings())
    mp.register("d", "m", "c", np.ones(K), PRED)
    with pytest.raises(DataError, match="finite"):
        mp.update_params("d", "approval", float("nan"))
    assert not mp.update_params("unknown", "approval", 1.0)


def test_forgetting_a_merchant_leaves_the_posterior_it_would_have_had_without_it() -> None:
    rng = np.random.default_rng(3)
    events = _events(rng, 60)
    mp = _posterior(events)
    without = _posterior([e for e in events if e[1] != "m2"])
    assert mp.forget("m2") and not mp.forget("m2")  # a second erasure finds nothing
    for m, c in (("m0", "c0"), ("m1", "c1"), ("m2", "c0"), ("m5", "c1")):
        for part, (mean, cov) in mp.part_posteriors(m, c).items():
            ref_mean, ref_cov = without.part_posteriors(m, c)[part]
            np.testing.assert_allclose(mean, ref_mean, atol=1e-9)
            np.testing.assert_allclose(cov, ref_cov, atol=1e-9)


def test_a_cached_posterior_follows_every_change_of_the_statistics() -> None:
    rng = np.random.default_rng(3)
    cached, fresh = PooledLinear(0.5, (1.0, 0.5, 0.3)), None
    psi = rng.normal(size=(6, K))
    for i, (m, c) in enumerate([("a", "x"), ("b", "x"), ("c", "y"), ("a", "x"), ("d", "y"), ("b", "x")]):
        before = cached.posterior("a", "x")  # read (and cached) between the changes, as a replica does
        cached.add(m, c, psi[i], float(i + 1), first=True)
        fresh = PooledLinear(0.5, (1.0, 0.5, 0.3))
        for j, (m2, c2) in enumerate([("a", "x"), ("b", "x"), ("c", "y"), ("a", "x"), ("d", "y"), ("b", "x")][: i + 1]):
            fresh.add(m2, c2, psi[j], float(j + 1), first=True)
        for who in (("a", "x"), ("c", "y"), ("e", "y")):
            np.testing.assert_allclose(cached.posterior(*who)[0], fresh.posterior(*who)[0])
            np.testing.assert_allclose(cached.posterior(*who)[1], fresh.posterior(*who)[1])
        assert not np.allclose(before[0], cached.posterior("a", "x")[0])  # every change reaches a (levels)
    assert fresh is not None
    cached.widen(2.0)
    fresh.widen(2.0)
    np.testing.assert_allclose(cached.posterior("a", "x")[1], fresh.posterior("a", "x")[1])
    cached.forget("a")
    fresh.forget("a")
    np.testing.assert_allclose(cached.posterior("a", "x")[0], fresh.posterior("a", "x")[0])
    with pytest.raises(ValueError, match="read-only"):
        cached.posterior("a", "x")[0][0] = 1.0
