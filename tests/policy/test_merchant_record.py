"""A merchant's record: its past approvals, conversions and GP30s beside the scorer's predictions (the warm start)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from aidg.explain.explainer import load_explainer
from aidg.features.context import FeatureContext
from aidg.inference.history import RECORD_COLUMNS, merchant_record, scorer_predict
from aidg.inference.snapshot import snapshot
from aidg.registry import ModelRegistry
from aidg.sim.storage import load_data_folder


def test_the_record_holds_only_outcomes_known_at_the_as_of_date(trained: dict[str, Any]) -> None:
    settings, data = trained["settings"], trained["data"]
    pm = ModelRegistry(settings).load_profile(trained["report"]["version"])
    scorer = load_explainer(pm, settings).scorer
    tables, _, _ = load_data_folder(data)
    at = pd.Timestamp(pm.meta["as_of"])
    ctx = FeatureContext.from_tables(tables, at)
    snap = snapshot(pm, ctx, at, seed=int(pm.meta.get("seed", 0)))
    ids = list(pm.meta["heldout_merchants"])[:5]
    rec = merchant_record(scorer_predict(scorer, ctx, snap), tables, ids, at)
    assert list(rec.columns) == RECORD_COLUMNS and set(rec.merchant_id) <= set(ids)
    assert set(rec.part) == {"approval", "conversion", "gp30_uplift"}
    assert np.isfinite(rec[["observed", "predicted"]].to_numpy(float)).all()
    deals = tables["deals"]
    known = deals[deals.merchant_id.isin(ids) & (deals.gp30_known_at <= at)]
    assert (rec.part == "gp30_uplift").sum() == known.gp30_uplift.notna().sum()
    props = tables["proposals"]
    assert (rec.part == "approval").sum() == (props.merchant_id.isin(ids) & (props.approved_at <= at)).sum()
    # the predictions are the scorer's for those terms: a proposal's approval is a probability
    assert rec[rec.part == "approval"].predicted.between(0, 1).all()
    # an earlier as-of date sees a shorter record
    assert len(merchant_record(scorer_predict(scorer, ctx, snap), tables, ids, at - pd.Timedelta(days=120))) < len(rec)
    # each observation's age is counted from its own date (the proposal's decision, the deal's start) to as-of
    assert (rec.age_days >= 0).all() and rec.age_days.max() > 30
