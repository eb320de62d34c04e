"""The merchant-profile pipeline end to end on a tiny world: train, register, reload, evaluate, cold start."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from aidg import workflows
from aidg.config import Settings
from aidg.errors import ConfigError, DataError, MissingTableError
from aidg.features.context import FeatureContext
from aidg.registry import ModelRegistry
from aidg.sim import World
from aidg.training.presets import train_options
from aidg.training.profile import train_profile
from tests.conftest import one_thread
from tests.golden import assert_matches


def test_training_registers_a_version_with_its_manifest(trained: dict[str, Any]) -> None:
    report = trained["report"]
    assert report["version"] == "1"
    registry = ModelRegistry(trained["settings"])
    assert registry.versions()[0] == "1"  # other modules' tests may register more in the shared home
    pm = registry.load_profile("1")
    assert set(pm.meta["train_merchants"]).isdisjoint(pm.meta["heldout_merchants"])
    n = len(pm.meta["train_merchants"]) + len(pm.meta["heldout_merchants"])
    merchants = trained["world"].tables["merchants"]
    refused = set(merchants.merchant_id[~merchants.consent_training.astype(bool)])
    assert refused and report["excluded_merchants"] == len(refused) and n + len(refused) == 150
    assert refused.isdisjoint(pm.meta["train_merchants"] + pm.meta["heldout_merchants"])  # no training consent
    for key in ("deal_uplift_mae", "override_type_macro_f1", "approval_auc", "graph_edge_uplift_mae"):
        assert np.isfinite(report["metrics"][key]), key


def test_evaluate_reports_the_issue_keys(trained: dict[str, Any]) -> None:
    with one_thread():
        out = workflows.evaluate(trained["settings"], trained["data"], version=trained["report"]["version"])
    assert_matches("evaluate_tiny", out)  # a refactor changes no figure (pinned before the code moved)
    for key in (
        "profile_dim",
        "personality_probe_accuracy",
        "personality_chance",
        "sentiment_accuracy",
        "override_type_macro_f1",
        "override_majority_macro_f1",
        "geo_region_silhouette",
        "ablation",
    ):
        assert key in out, key
    assert out["profile_dim"] == 512
    # the scorer issue's keys (tiny worlds are far too small for the figures themselves)
    for key in ("reward_spearman", "ndcg_at_5", "approval_ece", "surrogate_fidelity", "attribution_faithfulness_ratio",
                "prototype_type_agreement"):  # fmt: skip
        assert np.isfinite(out[key]), key
    assert 0 <= out["ndcg_at_5"] <= 1 and 0 <= out["approval_ece"] <= 1
    assert out["surrogate_leaves"] <= 32
    vs = out["scorer_vs_baseline"]
    assert set(vs) == {"ours", "gbm", "ours_alone", "gbm_alone", "ours_beats_gbm_on_reward_spearman"}
    assert vs["gbm"]["reward_spearman"] != out["reward_spearman"]
    # the decision figures are the response model's (the scorer corrected by each merchant's record): the records
    # moved them away from the scorer's own, which stay beside them
    assert vs["ours"]["reward_spearman"] == out["reward_spearman"] and out["record_merchants"] > 0
    assert out["scorer_alone"]["reward_spearman"] != out["reward_spearman"] == vs["ours"]["reward_spearman"]
    assert vs["ours_alone"] == out["scorer_alone"]
    assert set(out["ablation"]) >= {"none", "deal_history", "override_intent", "sentiment", "geo", "graph", "sequence"}
    assert out["override_type_macro_f1"] > out["override_majority_macro_f1"]
    # the decision issue's: the posterior's 90 % intervals against the truth, before its first decision
    assert 0 <= out["interval_coverage_90"] <= 1 and out["interval_width_90"] > 0
    assert set(out["prior_widened"]) == {"approval", "conversion", "gp30_uplift"}


def test_cold_start_merchant_gets_a_profile(trained: dict[str, Any]) -> None:
    world: World = trained["world"]
    pm = ModelRegistry(trained["settings"]).load_profile()
    tables = {k: v.copy() for k, v in world.tables.items()}
    newcomer = tables["merchants"].iloc[[0]].assign(merchant_id="m-new", created_at=world.as_of)
    tables["merchants"] = pd.concat([tables["merchants"], newcomer], ignore_index=True)
    ctx = FeatureContext.from_tables(tables, world.as_of)
    parts = pm.compute_parts(ctx, world.as_of)
    prof = pm.profiles(parts)
    assert prof.shape == (151, 512) and np.isfinite(prof[-1]).all()
    assert parts["deal_history"][-1].any() and not parts["sentiment"][-1].any()  # no notes: neutral sentiment


def test_remembered_parts_and_notes_are_what_computing_them_again_gives(trained: dict[str, Any]) -> None:
    """Training keeps the parts of a date (the fusion's and the scorer's last window share one) and each note
    text's sentiment (encoded once however often it repeats): the same numbers as computing them afresh."""
    from aidg.inference.encoding import predict_texts

    world: World = trained["world"]
    pm = ModelRegistry(trained["settings"]).load_profile()
    assert pm.sentiment is not None
    ctx = FeatureContext.from_tables(world.tables, world.as_of)
    at = world.as_of - pd.Timedelta(days=90)
    fresh, mood = pm.compute_parts(ctx, at), {}
    pm.remember_parts()
    first = pm.compute_parts(ctx, at)
    again = pm.compute_parts(ctx, at, readable=mood)
    assert again is not first and all(again[k] is first[k] for k in first)  # kept, not computed again
    for k, v in fresh.items():
        np.testing.assert_allclose(first[k], v, rtol=1e-5, atol=1e-5, err_msg=k)
    other = FeatureContext.from_tables({k: v.copy() for k, v in world.tables.items()}, world.as_of)
    assert pm.compute_parts(other, at)["static"] is not first["static"]  # other data: computed for it
    texts = ["Owner loved the last deal.", "Too steep a discount.", "Owner loved the last deal."]
    vec, per_note = pm.note_sentiment(texts)
    res = predict_texts(pm.sentiment, texts[:2])
    np.testing.assert_allclose(vec, res["vector"][[0, 1, 0]], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(vec[0], vec[2])
    assert set(texts) <= set(pm._note_memo) and per_note.shape == (3,)
    pm.remember_parts(False)
    assert pm._parts_memo is None and not pm._note_memo and mood["mood"].shape == (len(ctx.merchant_ids),)


def test_reloaded_model_gives_the_same_profiles(trained: dict[str, Any], tmp_path: Path) -> None:
    from aidg.inference.persistence import load_profile_model, save_profile_model

    world: World = trained["world"]
    pm = ModelRegistry(trained["settings"]).load_profile()
    ctx = FeatureContext.from_tables(world.tables, world.as_of)
    a = pm.profiles(pm.compute_parts(ctx, world.as_of))
    path = save_profile_model(pm, tmp_path / "m.pt")
    b = load_profile_model(path)
    np.testing.assert_allclose(a, b.profiles(b.compute_parts(ctx, world.as_of)), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        next(b.graph.parameters()).fill_(float("nan"))
    save_profile_model(b, tmp_path / "bad.pt")
    with pytest.raises(DataError, match="NaN"):
        load_profile_model(tmp_path / "bad.pt")


def test_bad_data_fails_with_a_clear_message(trained: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "w"
    shutil.copytree(trained["data"], data)
    (data / "deals.parquet").unlink()
    with pytest.raises(MissingTableError, match="deals"):
        workflows.train(trained["settings"], data, scale="tiny")
    with pytest.raises(DataError, match="unknown training scale"):
        train_options(Settings(), "huge", 0)


def test_a_branch_can_be_left_out_of_the_profile_and_an_unknown_one_is_refused_before_training(
    trained: dict[str, Any], tiny_world: World
) -> None:
    opt = train_options(Settings(training={"without_branches": ["geo", "sentiment"]}), "tiny", seed=0)
    assert opt.without_branches == ("geo", "sentiment")
    with pytest.raises(ConfigError, match="unknown nope; the branches are deal_history"):
        train_profile(tiny_world.tables, tiny_world.as_of, replace(opt, without_branches=("nope",)))
    pm = ModelRegistry(trained["settings"]).load_profile()
    world: World = trained["world"]
    ctx = FeatureContext.from_tables(world.tables, world.as_of)
    parts = pm.compute_parts(ctx, world.as_of)
    pm.meta["without_branches"] = ["geo"]  # what training records when told to leave geo out
    assert "geo" in pm.dropped_branches()
    moved = {**parts, "geo": parts["geo"] + 5.0}
    np.testing.assert_allclose(pm.profiles(moved), pm.profiles(parts), atol=1e-6)  # geo no longer reaches it
