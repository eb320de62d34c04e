"""What a reader sees first, over every held-out merchant of the tiny world: the verdict never contradicts the
ranking against the current deal, no shown rule contradicts it either, and the top-5 say where they come from
(attributions where attention is flat)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from aidg.explain.explainer import RULES_MISS, load_explainer
from aidg.explain.reading import KEEP, attention_concentration, top_features, verdict
from aidg.features.candidates import CandidateGenerator
from aidg.features.context import FeatureContext
from aidg.inference.snapshot import snapshot
from aidg.registry import ModelRegistry


@pytest.fixture(scope="module")
def explained(trained: dict[str, Any]) -> list[dict[str, Any]]:
    """Every held-out merchant's explanation (20 variants each, the top 3 explained)."""
    pm = ModelRegistry(trained["settings"]).load_profile()
    tables = trained["world"].tables
    ctx = FeatureContext.from_tables(tables, pd.Timestamp(pm.meta["as_of"]))
    snap = snapshot(pm, ctx, ctx.as_of)
    gen = CandidateGenerator(tables["merchants"], tables["deals"])
    explainer = load_explainer(pm, trained["settings"])
    ids = [m for m in pm.meta["heldout_merchants"] if m in ctx.merchant_code.index]
    assert len(ids) >= 10
    return [
        explainer.explain(ctx, snap, gen.generate(m, ctx.as_of, 20), current=gen.current(m)).to_dict() for m in ids
    ]


def test_the_first_line_agrees_with_the_ranking_against_the_current_deal(explained: list[dict[str, Any]]) -> None:
    kept = 0
    for ex in explained:
        best = max(v["score"] for v in ex["variants"])
        beats = best > ex["current"]["score"]
        v = ex["verdict"]
        assert v["keep_current"] is (not beats) and v["variant_expected_to_beat_current"] is beats
        assert v["text"].startswith(KEEP) is (not beats), v["text"]
        if beats:
            assert v["best_variant"] == ex["variants"][0]["variant"] and f"Variant {v['best_variant']}" in v["text"]
        kept += not beats
        assert ex["current"]["type"] == "current" and next(iter(ex)) == "verdict"  # the first key people read
    assert 0 <= kept <= len(explained)


def test_every_shown_rule_agrees_with_how_the_variant_ranks_against_the_current_deal(
    explained: list[dict[str, Any]],
) -> None:
    """The rules are asked what the verdict answers (does the variant beat this merchant's current deal?): a rule
    shown as a variant's reason says what the model expects of it; where the tree's leaf says otherwise, the text
    says no rule matches and names what the model expects."""
    shown = agreed = 0
    for ex in explained:
        current = ex["current"]["score"]
        for v in ex["variants"]:
            key = str(v["variant"])
            if key not in ex["rules"]:
                continue
            text, stats, beats = ex["rules"][key], ex["rule_stats"][key], v["score"] > current
            said = "to beat the current deal" if beats else "not to beat the current deal"
            if stats["agrees"]:
                assert text.endswith("THEN beats the current deal" if beats else "THEN does not beat the current deal")
                assert not text.startswith(RULES_MISS)
            else:
                assert text.startswith(f"{RULES_MISS}: the model expects this variant {said};"), text
            shown += 1
            agreed += stats["agrees"]
    assert shown == 3 * len(explained)  # the top 3 of every held-out merchant
    assert agreed / shown >= 0.8  # the tree mostly covers them; the rest say so


def test_the_top5_say_their_source_and_use_attributions_where_attention_is_flat(
    explained: list[dict[str, Any]], trained: dict[str, Any]
) -> None:
    ratio = trained["settings"].explain.attention_flat_ratio
    sources = set()
    for ex in explained:
        assert set(ex["top5"]) == set(ex["attributions"]) and len(ex["top5"]) == 3
        by_id = {str(v["variant"]): v for v in ex["variants"]}
        for vid, t5 in ex["top5"].items():
            c = by_id[vid]["attention_concentration"]
            assert t5["attention_concentration"] == c and c >= 1.0
            flat = c < ratio
            assert t5["source"] == ("attributions" if flat else "attention")
            expected = ex["attributions"][vid] if flat else by_id[vid]["top_features"]
            assert [f["feature"] for f in t5["features"]] == [f["feature"] for f in expected]
            sources.add(t5["source"])
    assert sources  # the tiny model's attention is flat: attributions were used


def test_concentration_is_one_when_flat_and_high_when_peaked() -> None:
    readable = np.arange(10)
    assert attention_concentration(np.full(12, 0.1), readable, 5) == pytest.approx(1.0)
    peaked = np.zeros(12)
    peaked[:5] = 1.0
    assert attention_concentration(peaked, readable, 5) == pytest.approx(2.0)  # all of it on 5 of 10
    assert top_features([{"feature": "a"}], None, 1.0, 1.5)["note"].startswith("attention is nearly flat")


def test_a_served_choice_is_named_in_the_verdict() -> None:
    rows = [{"variant": 3, "type": "safe", "score": 0.1, "components": {"gp30_uplift": 0.02}}]
    current = {"variant": -1, "type": "current", "score": 0.2, "components": {"gp30_uplift": 0.0}}
    explored = verdict(rows, current, chosen=rows[0])
    assert explored["keep_current"] and "exploration" in explored["text"]
    kept = verdict(rows, current, chosen=current, why_current="the gate's budget is spent")
    assert kept["text"].startswith(f"{KEEP} (it was chosen): the gate's budget is spent")
    better = verdict([{**rows[0], "score": 0.3}], current)
    assert not better["keep_current"] and better["text"].startswith("Variant 3 is expected to beat")
    refused = verdict([{**rows[0], "score": 0.3, "refused": "P(GP30 < 0.8 × current) > δ"}], current)
    assert refused["keep_current"] and refused["text"] == f"{KEEP}: the safety guard refused all 1 variants"
