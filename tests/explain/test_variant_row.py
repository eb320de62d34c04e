"""One typed variant row: the builder, and the API's response model that documents it, agree."""

from __future__ import annotations

import numpy as np

from aidg.explain.variant_row import VariantRow, variant_rows
from aidg.service.schemas import Variant


def test_the_api_model_documents_every_field_of_the_row() -> None:
    explainer_only = {"p_override", "profile_attention_share", "attention_concentration"}  # aidg explain adds these
    assert set(Variant.model_fields) == set(VariantRow.__annotations__) - explainer_only


def test_rows_round_as_the_marketplace_shows_them_and_unscored_rows_have_no_score() -> None:
    terms = {"variant": [3, -1], "discount_pct": [0.123456, 0.2], "price": [19.999, 20.0], "duration_days": [14.0, 30],
             "category_id": ["food", "food"], "focus": ["primary", "primary"], "type": ["safe", "current"]}  # fmt: skip
    scores = {k: np.array([0.1234567, 0.5]) for k in ("score", "risk", "uplift", "approval", "conversion")}
    scored = variant_rows(terms, scores, [[{"feature": "x", "value": 1.0, "weight": 0.5}], []])
    assert scored[0]["discount_pct"] == 0.1235 and scored[0]["price"] == 20.0 and scored[0]["duration_days"] == 14
    assert scored[0]["score"] == 0.12346 and set(scored[0]["components"]) == {"gp30_uplift", "approval", "conversion"}
    assert [Variant.model_validate(r).variant for r in scored] == [3, -1]
    unscored = variant_rows(terms)
    assert unscored[1]["score"] is None and unscored[1]["components"] == {} and unscored[1]["top_features"] == []
