"""Reps with memory (aidg.sim.reps): trust's direction, the legacy era unchanged, and the switch that turns it off."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from aidg.cli import app
from aidg.errors import SimulationError
from aidg.sim import World, simulate
from aidg.sim.oracle import Oracle
from aidg.sim.reps import RepTrust, TrustConfig, shift_edit_probability


def test_successes_raise_trust_and_flops_lower_it_faster() -> None:
    t = RepTrust(TrustConfig(), n_reps=3)
    t.outcome(0, sales_ratio=1.0)  # early sales as predicted
    t.outcome(1, sales_ratio=0.3)  # a flop
    t.outcome(2, uplift=-0.1, uplift_miss=0.05)  # a GP30 within tolerance of its prediction
    assert t.trust[0] > 0 > t.trust[1] and t.trust[2] > 0
    assert -t.trust[1] == pytest.approx(TrustConfig().loss_aversion * t.trust[0])  # flops weigh 2.25 × successes
    t.outcome(2, uplift=-0.35)  # under 0.8 × the habitual deal: a flop whatever was predicted
    assert t.trust[2] < 0 and t.flops[2] == 1 and t.successes[2] == 1
    before = t.trust[0]
    t.shown(0, explained=True)
    t.shown(0, explained=False)
    assert before < t.trust[0] < before + TrustConfig().gain  # an explanation helps, less than a success
    for _ in range(500):
        t.outcome(0, sales_ratio=1.0)
        t.outcome(1, sales_ratio=0.1)
    assert t.trust[0] <= 1.0 and t.trust[1] >= -1.0  # bounded


def test_trust_off_never_moves_and_zero_trust_is_the_legacy_chance() -> None:
    t = RepTrust(TrustConfig.off(), n_reps=1)
    t.outcome(0, sales_ratio=1.0)
    t.outcome(0, sales_ratio=0.1)
    t.shown(0, explained=True)
    assert t.trust[0] == 0.0
    p = np.array([0.05, 0.3, 0.7])
    np.testing.assert_allclose(shift_edit_probability(p, 0.0, TrustConfig()), p, rtol=1e-12)
    assert np.all(np.diff(shift_edit_probability(0.3, np.array([-1.0, 0.0, 1.0]), TrustConfig())) < 0)


def test_the_oracle_exposes_each_reps_trust_and_prices_edits_with_it(tiny_world: World) -> None:
    o = Oracle(tiny_world)
    ids = tiny_world.tables["merchants"].merchant_id[:20].to_numpy()
    terms = o.baseline_deal(ids)
    before = o.evaluate(ids, terms, at="2026-01-15")
    assert set(o.rep_trust().columns) == {"rep_id", "trust", "successes", "flops"} and (o.rep_trust().trust == 0).all()
    rep = o.rep_index(ids[:1])[0]
    for _ in range(20):
        o.trust.outcome(int(rep), sales_ratio=1.0)
    after = o.evaluate(ids, terms, at="2026-01-15")
    mine = o.rep_index(ids) == rep
    assert (after.override_prob[mine] < before.override_prob[mine]).all()
    assert (after.override_prob[~mine] == before.override_prob[~mine]).all()  # other reps: bit for bit
    assert o.rep_trust().trust.iloc[rep] > 0.5


def test_worlds_record_their_trust_model_and_old_worlds_read_as_off() -> None:
    w = simulate("tiny", seed=2, rep_trust=TrustConfig.off())
    assert TrustConfig.from_meta(w.meta) == TrustConfig.off()
    assert TrustConfig.from_meta({}) == TrustConfig.off()  # made before reps had memory
    assert TrustConfig.from_meta({"rep_trust": TrustConfig().to_meta()}) == TrustConfig()
    with pytest.raises(SimulationError, match="unknown rep_trust parameters"):
        TrustConfig.from_meta({"rep_trust": {"trust_wieght": 1.0}})


def test_cli_refuses_a_bad_rep_trust_value(tmp_path) -> None:  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "w"), "--scale", "tiny", "--rep-trust", "maybe"])
    assert res.exit_code != 0 and "--rep-trust takes on or off" in res.output
