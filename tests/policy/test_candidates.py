"""Candidate deal variants: labelled by distance to what worked, reproducible, with clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.config import CandidateSettings
from aidg.errors import DataError, NotFoundError
from aidg.features.candidates import CANDIDATE_COLUMNS, CandidateGenerator
from aidg.sim import World


@pytest.fixture(scope="module")
def gen(tiny_world: World) -> CandidateGenerator:
    return CandidateGenerator(tiny_world.tables["merchants"], tiny_world.tables["deals"])


def test_fifty_variants_by_type_quota_with_the_anchor_first(gen: CandidateGenerator, tiny_world: World) -> None:
    mid = tiny_world.tables["merchants"].merchant_id.iloc[4]
    c = gen.generate(mid, tiny_world.as_of)
    assert list(c.columns) == CANDIDATE_COLUMNS
    assert len(c) == 50 and c.variant.tolist() == list(range(50))
    assert c.distance.iloc[0] == 0 and c.type.iloc[0] == "safe"
    counts = c.type.value_counts()
    available = gen.grid(mid, tiny_world.as_of).type.value_counts()
    # quotas 40 / 30 / 30 %; a type with fewer grid points than its quota is filled from the others
    assert counts["safe"] == min(20, available["safe"])
    assert counts["hybrid"] >= min(15, available["hybrid"]) and counts["explore"] >= 15
    assert counts.sum() == 50
    # labels follow the distance to the anchor deal
    assert (c[c.type == "safe"].distance <= 1.0).all()
    assert (c[c.type == "explore"].distance > 2.5).all()
    assert not c.duplicated(["discount_pct", "price", "duration_days", "category_id"]).any()


def test_anchor_is_the_best_recent_deal(gen: CandidateGenerator, tiny_world: World) -> None:
    deals = tiny_world.tables["deals"]
    mid = deals.merchant_id.value_counts().index[0]
    known = deals[(deals.merchant_id == mid) & (deals.gp30_known_at < tiny_world.as_of)]
    best = known.sort_values("started_at").tail(10).sort_values("gp30_uplift").iloc[-1]
    a = gen.generate(mid, tiny_world.as_of).iloc[0]
    assert a.discount_pct == pytest.approx(round(best.discount_pct, 2))
    assert a.duration_days == best.duration_days


def test_same_request_same_set_and_other_dates_differ(gen: CandidateGenerator, tiny_world: World) -> None:
    mid = tiny_world.tables["merchants"].merchant_id.iloc[0]
    a = gen.generate(mid, "2025-12-01")
    pd.testing.assert_frame_equal(a, gen.generate(mid, "2025-12-01"))
    assert not a.equals(gen.generate(mid, "2025-12-02"))


def test_count_and_shares_are_configurable(tiny_world: World) -> None:
    g = CandidateGenerator(
        tiny_world.tables["merchants"], tiny_world.tables["deals"], CandidateSettings(safe_share=1.0, hybrid_share=0)
    )
    c = g.generate(tiny_world.tables["merchants"].merchant_id.iloc[1], tiny_world.as_of, n=10)
    pool = (g.grid(tiny_world.tables["merchants"].merchant_id.iloc[1], tiny_world.as_of).type == "safe").sum()
    assert len(c) == 10 and (c.type == "safe").sum() == min(10, pool)
    assert (c.type == "safe").all() or pool < 10
    with pytest.raises(ValueError, match="at most 1"):
        CandidateSettings(safe_share=0.8, hybrid_share=0.5)


def test_bad_requests_say_what_to_fix(gen: CandidateGenerator, tiny_world: World) -> None:
    with pytest.raises(NotFoundError, match="unknown merchant 'nobody'"):
        gen.generate("nobody", tiny_world.as_of)
    with pytest.raises(DataError, match="at least one candidate"):
        gen.generate(tiny_world.tables["merchants"].merchant_id.iloc[0], tiny_world.as_of, n=0)
    with pytest.raises(DataError, match="baseline_discount_pct"):
        CandidateGenerator(tiny_world.tables["merchants"].drop(columns=["baseline_discount_pct"]), pd.DataFrame())


def test_many_merchants_stack(gen: CandidateGenerator, tiny_world: World) -> None:
    ids = tiny_world.tables["merchants"].merchant_id.iloc[:3].to_numpy()
    c = gen.generate_many(ids, tiny_world.as_of, n=7)
    assert len(c) == 21 and np.array_equal(c.merchant_id.unique(), ids)
