"""Explanations of a trained tiny model, end to end: what a merchant manager sees and can rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from aidg import workflows
from aidg.errors import DataError, NotFoundError
from aidg.explain.attribution import _forward, faithfulness, integrated_gradients
from aidg.explain.explainer import RULES_MISS, load_explainer
from aidg.explain.whatif import what_if
from aidg.features.candidates import CandidateGenerator
from aidg.features.context import FeatureContext
from aidg.features.merchant_view import MERCHANT_NAMES
from aidg.inference.scoring import merchant_inputs, score_candidates
from aidg.inference.snapshot import snapshot
from aidg.registry import ModelRegistry


@pytest.fixture(scope="module")
def env(trained: dict[str, Any]) -> dict[str, Any]:
    pm = ModelRegistry(trained["settings"]).load_profile()
    tables = trained["world"].tables
    ctx = FeatureContext.from_tables(tables, pd.Timestamp(pm.meta["as_of"]))
    snap = snapshot(pm, ctx, ctx.as_of)
    gen = CandidateGenerator(tables["merchants"], tables["deals"])
    mid = pm.meta["heldout_merchants"][0]
    return {
        "pm": pm,
        "ctx": ctx,
        "snap": snap,
        "gen": gen,
        "mid": mid,
        "cand": gen.generate(mid, ctx.as_of),
        "explainer": load_explainer(pm, trained["settings"]),
    }


def test_explain_returns_ranked_variants_with_readable_reasons(trained: dict[str, Any]) -> None:
    pm = ModelRegistry(trained["settings"]).load_profile()
    mid = pm.meta["heldout_merchants"][1]
    out = workflows.explain(trained["settings"], trained["data"], mid, change=(0, "discount_pct", 0.4))
    v = out["variants"]
    assert len(v) == 50 and out["merchant_id"] == mid
    scores = [x["score"] for x in v]
    assert scores == sorted(scores, reverse=True)
    readable = {*MERCHANT_NAMES, "category"}
    for x in v:
        assert len(x["top_features"]) == 5 and {f["feature"] for f in x["top_features"]} <= readable
        assert 0 <= x["risk"] <= 1 and x["type"] in {"safe", "hybrid", "explore"}
        assert set(x["components"]) == {"gp30_uplift", "approval", "conversion"}
    best = str(v[0]["variant"])
    assert len(out["attributions"][best]) == 5
    assert out["rules"][best].startswith(("IF ", "ALWAYS ", RULES_MISS))
    assert out["rules"][best].endswith(("THEN beats the current deal", "THEN does not beat the current deal"))
    # every rule shown carries its own support and precision, the global ones too
    assert set(out["rule_stats"]) == set(out["rules"]) and len(out["global_rule_stats"]) == len(out["global_rules"])
    assert all(isinstance(st["agrees"], bool) for st in out["rule_stats"].values())
    for st in [*out["rule_stats"].values(), *out["global_rule_stats"]]:
        assert st["support"] >= 1 and 0.5 <= st["precision"] <= 1.0  # a leaf's majority label: at least half
    sims = [s["merchant_id"] for s in out["similar_merchants"]]
    scores = [s["similarity"] for s in out["similar_merchants"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= x <= 1 for x in scores)
    assert mid not in sims and 0 < len(sims) <= 5
    cats = trained["world"].tables["merchants"].set_index("merchant_id").category_id
    assert all(cats[s] == cats[mid] for s in sims)
    assert set(pm.meta["train_merchants"]) >= set(sims)  # prototypes come from training merchants only
    w = out["what_if"]
    assert w["term"] == "discount_pct" and w["to"] == 0.4
    for k in ("score", "uplift", "risk"):
        assert w[k]["low"] <= w[k]["change"] <= w[k]["high"]


def test_integrated_gradients_are_complete(env: dict[str, Any]) -> None:
    scorer = env["explainer"].scorer
    inp = merchant_inputs(env["ctx"], env["snap"], env["cand"])
    attr = integrated_gradients(scorer, inp, 0, steps=64)
    f = _forward(scorer, inp, 0)
    with torch.no_grad():
        x = torch.where(torch.isfinite(inp.x), inp.x, scorer.merchant_encoder.x_scale.mean)
        gap = float(f(x)[0] - f(scorer.merchant_encoder.x_scale.mean[None])[0])
    assert attr.attributions.sum() == pytest.approx(gap, abs=max(1e-3, 0.02 * abs(gap)))
    d_top, d_rand = faithfulness(scorer, inp, 0, attr)
    assert d_top >= 0 and d_rand >= 0


def test_integrated_gradients_are_captums(env: dict[str, Any]) -> None:
    """The attributions computed here are Captum's IntegratedGradients' (Gauss–Legendre, 32 steps), to float
    precision, for several variants of a merchant."""
    from captum.attr import IntegratedGradients  # type: ignore[import-untyped]

    scorer = env["explainer"].scorer
    inp = merchant_inputs(env["ctx"], env["snap"], env["cand"])
    x = torch.where(torch.isfinite(inp.x), inp.x, scorer.merchant_encoder.x_scale.mean)
    base = scorer.merchant_encoder.x_scale.mean.unsqueeze(0)
    for variant in (0, 3, 7):
        ours = integrated_gradients(scorer, inp, variant)
        with torch.enable_grad():
            ref, delta = IntegratedGradients(_forward(scorer, inp, variant)).attribute(
                x, baselines=base, n_steps=32, return_convergence_delta=True
            )
        np.testing.assert_allclose(ours.attributions, ref[0].detach().numpy(), rtol=1e-5, atol=1e-8)
        assert ours.convergence_delta == pytest.approx(float(delta.abs().max()), abs=1e-6)


def test_what_if_moves_with_the_term_and_refuses_nonsense(env: dict[str, Any]) -> None:
    scorer, ctx, snap, cand = env["explainer"].scorer, env["ctx"], env["snap"], env["cand"]
    same = what_if(scorer, ctx, snap, cand.iloc[0], "discount_pct", float(cand.discount_pct.iloc[0]))
    assert same.change["score"] == pytest.approx(0.0, abs=1e-6)
    moved = what_if(scorer, ctx, snap, cand.iloc[0], "duration_days", 7 if cand.duration_days.iloc[0] != 7 else 60)
    assert moved.high["score"] - moved.low["score"] > 0  # a real interval, not a point
    with pytest.raises(DataError, match="fraction in"):
        what_if(scorer, ctx, snap, cand.iloc[0], "discount_pct", 40)
    with pytest.raises(DataError, match="one of discount_pct"):
        what_if(scorer, ctx, snap, cand.iloc[0], "colour", "red")
    with pytest.raises(DataError, match="unknown category"):
        what_if(scorer, ctx, snap, cand.iloc[0], "category_id", "casino")


def test_invalid_inputs_get_clear_errors(env: dict[str, Any]) -> None:
    scorer, ctx, snap, cand = env["explainer"].scorer, env["ctx"], env["snap"], env["cand"]
    with pytest.raises(DataError, match="candidate set is empty"):
        score_candidates(scorer, ctx, snap, cand.iloc[:0])
    with pytest.raises(NotFoundError, match="unknown merchant 'ghost'"):
        score_candidates(scorer, ctx, snap, cand.assign(merchant_id="ghost"))
    bad = cand.copy()
    bad.loc[3, "discount_pct"] = np.nan
    with pytest.raises(DataError, match="non-finite features"):
        score_candidates(scorer, ctx, snap, bad)
    broken = env["snap"].take(np.arange(len(ctx.merchant_ids)))
    broken.profile[ctx.codes([env["mid"]])[0], 0] = np.nan
    with pytest.raises(DataError, match="non-finite profile"):
        score_candidates(scorer, ctx, broken, cand)


def test_merchants_scored_together_get_what_each_gets_alone_and_errors_name_their_merchant(
    env: dict[str, Any],
) -> None:
    scorer, ctx, snap, gen = env["explainer"].scorer, env["ctx"], env["snap"], env["gen"]
    ids = env["pm"].meta["heldout_merchants"][:6]
    cand = pd.concat([gen.generate(m, ctx.as_of) for m in ids], ignore_index=True)
    cand = cand.drop(cand.index[cand.merchant_id == ids[1]][:7])  # one merchant with fewer candidates
    cand = cand.sample(frac=1, random_state=0)  # merchants interleaved: rows keep the input order
    cand["row"] = np.arange(len(cand))
    together = score_candidates(scorer, ctx, snap, cand)
    alone = pd.concat([score_candidates(scorer, ctx, snap, cand[cand.merchant_id == m]).table for m in ids])
    alone = alone.set_index("row").loc[together.table.row]
    for k in ("score", "uplift", "approval", "conversion", "risk"):
        np.testing.assert_allclose(together.table[k], alone[k], rtol=1e-5, atol=1e-6)
    assert list(together.table.merchant_id) == list(cand.merchant_id)
    broken = snap.take(np.arange(len(ctx.merchant_ids)))
    broken.profile[ctx.codes([ids[4]])[0], 0] = np.nan
    with pytest.raises(DataError, match=f"merchant '{ids[4]}' has a non-finite profile"):
        score_candidates(scorer, ctx, broken, cand)
    with pytest.raises(NotFoundError, match="unknown merchant 'ghost'"):
        score_candidates(scorer, ctx, snap, pd.concat([cand, cand.iloc[:50].assign(merchant_id="ghost")]))


def test_reloaded_version_scores_identically(env: dict[str, Any], trained: dict[str, Any]) -> None:
    again = ModelRegistry(trained["settings"]).load_profile()
    assert again.scorer is not None
    a = score_candidates(env["explainer"].scorer, env["ctx"], env["snap"], env["cand"]).table.score
    b = score_candidates(again.scorer, env["ctx"], env["snap"], env["cand"]).table.score
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-6)


def test_cli_explain_json(trained: dict[str, Any]) -> None:
    pm = ModelRegistry(trained["settings"]).load_profile()
    env = {"AIDG_HOME": str(trained["settings"].home)}
    cmd = [sys.executable, "-m", "aidg.cli", "explain", "--merchant", pm.meta["heldout_merchants"][2]]
    proc = subprocess.run(
        [*cmd, "--data", str(trained["data"]), "--n", "12", "--json"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    latest = ModelRegistry(trained["settings"]).versions()[-1]  # other modules' tests may register more versions
    assert len(out["variants"]) == 12 and out["version"] == latest and out["verdict"]["text"]
    bad = subprocess.run(
        [*cmd[:-1], "nobody", "--data", str(trained["data"])],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "unknown merchant 'nobody'" in bad.stderr and "Traceback" not in bad.stderr


def test_reward_weights_in_force_are_used_without_retraining(trained: dict[str, Any], env: dict[str, Any]) -> None:
    from aidg.config import RewardSettings, Settings

    settings = Settings(
        home=trained["settings"].home, reward=RewardSettings(w_gp30=1.0, w_approval=0.0, w_conversion=0.0)
    )
    pm = ModelRegistry(settings).load_profile()
    scorer = load_explainer(pm, settings).scorer
    t = score_candidates(scorer, env["ctx"], env["snap"], env["cand"]).table
    np.testing.assert_allclose(t.score, t.uplift - 0.05 * 0.1 * t.p_override * t.severity, atol=1e-5)


def test_a_merchant_whose_category_has_no_prototypes_is_explained_without_similar_merchants(
    env: dict[str, Any],
) -> None:
    """All of a category's merchants held out or erased: the explanation says so instead of failing (a 404 the
    soak found on the service's explanation endpoint)."""
    import copy

    ex = copy.copy(env["explainer"])
    ex.memory = copy.deepcopy(ex.memory)
    cats = env["ctx"].tables["merchants"].set_index("merchant_id").category_id
    category = str(cats[env["mid"]])
    for m in ex.memory.prototypes(category):
        ex.memory.remove(m)
    assert category not in ex.memory.categories()
    out = ex.explain(env["ctx"], env["snap"], env["cand"]).to_dict()
    assert out["similar_merchants"] == []
    assert any("similar merchants unavailable" in n and category in n for n in out["notes"])
    assert out["attributions"] and out["rules"]
