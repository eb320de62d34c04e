from __future__ import annotations

import pandas as pd
import pydantic
import pytest

import aidg
import aidg.sim
import aidg.store
from aidg import errors
from aidg.domain import TABLES, DealTerms, Merchant, deal_config_keys


def test_records_refuse_unknown_fields_and_bad_values() -> None:
    with pytest.raises(pydantic.ValidationError):
        DealTerms(discount_pct=0.3, price=10, duration_days=30, category_id="spa", colour="red")  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError, match="less than 1"):
        DealTerms(discount_pct=1.7, price=10, duration_days=30, category_id="spa")
    with pytest.raises(pydantic.ValidationError):
        DealTerms(discount_pct=0.3, price=-1, duration_days=30, category_id="spa")


def test_design_schema_columns_are_present() -> None:
    design = {
        "cities": ["city_id", "name", "lat", "lon", "population", "demand_index"],
        "categories": ["category_id", "name", "is_high_risk"],
        "merchants": ["merchant_id", "category_id", "city_id", "created_at", "baseline_gp30"],
        "reps": ["rep_id", "city_id"],
        "deals": [
            "deal_id",
            "merchant_id",
            "rep_id",
            "category_id",
            "started_at",
            "discount_pct",
            "price",
            "duration_days",
            "redemption_rate",
            "gp30",
            "gp30_uplift",
        ],
        "overrides": [
            "override_id",
            "deal_id",
            "decision_id",
            "rep_id",
            "field",
            "old_value",
            "new_value",
            "override_type",
            "at",
        ],
        "feedback_notes": ["note_id", "merchant_id", "rep_id", "text", "at", "sentiment"],
        "decisions": ["decision_id", "merchant_id", "model_version", "arm", "variants", "chosen", "propensity", "at"],
        "outcomes": ["event_id", "decision_id", "kind", "value", "at"],
    }
    for table, cols in design.items():
        assert set(cols) <= set(TABLES[table].record.model_fields), table
    assert any("consent" in c for c in Merchant.model_fields)


def test_deal_config_keys_bucket_terms() -> None:
    df = pd.DataFrame(
        {
            "category_id": ["spa", "spa", "spa"],
            "discount_pct": [0.30, 0.34, 0.36],
            "price": [80.0, 80.0, 80.0],
            "duration_days": [30, 30, 30],
        }
    )
    keys = deal_config_keys(df)
    assert keys[0] == keys[1] != keys[2]


def test_error_tree_is_drawn_and_complete() -> None:
    doc = errors.__doc__ or ""
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, errors.AIDGError):
            assert name in doc, f"{name} missing from the drawing in errors.py"


def test_problem_names_table_row_and_column() -> None:
    p = errors.Problem("deals", "discount_pct", 17, 1.7, "must be < 1")
    assert str(p) == "table 'deals', row 17, column 'discount_pct': must be < 1 (value: 1.7)"


def test_public_api() -> None:
    assert set(aidg.__all__) == {"AIDGError", "Settings", "__version__", "load_settings"}
    for mod in (aidg.sim, aidg.store):
        for name in mod.__all__:
            assert hasattr(mod, name), f"{mod.__name__}.{name}"
