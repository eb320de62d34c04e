from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.domain import TABLES
from aidg.errors import SimulationError
from aidg.sim import World, get_scale, simulate
from aidg.sim.text import template_table
from aidg.store import validate_tables


def test_same_seed_same_world_other_seed_other_world(tiny_world: World) -> None:
    again = simulate("tiny", seed=5)
    for name, df in tiny_world.tables.items():
        pd.testing.assert_frame_equal(df, again.tables[name])
    other = simulate("tiny", seed=6)
    assert not tiny_world.tables["deals"]["gp30"].equals(other.tables["deals"]["gp30"])


def test_unknown_scale_is_a_clear_error() -> None:
    with pytest.raises(SimulationError, match="choose one of tiny, small, full"):
        get_scale("huge")


def test_small_world_has_the_sizes_the_issue_asks(small_world: World) -> None:
    t = small_world.tables
    assert len(t["cities"]) == 20 and len(t["categories"]) == 20 and len(t["merchants"]) == 2000
    assert len(t["reps"]) == 100
    assert 3 <= t["categories"].is_high_risk.sum() <= 5
    per_merchant = t["deals"].groupby("merchant_id").size()
    assert 17 <= per_merchant.mean() <= 23
    assert len(t["overrides"]) > 5000 and len(t["feedback_notes"]) > 5000
    assert set(t) == {name for name, spec in TABLES.items() if spec.from_history}


def test_simulated_tables_pass_validation(small_world: World) -> None:
    _, problems = validate_tables(small_world.tables)
    assert problems == []


def test_outcomes_arrive_over_time(small_world: World) -> None:
    """GP30 is known 30 days after the start, the proxy after 3; unknown values are missing."""
    deals = small_world.tables["deals"]
    as_of = small_world.as_of
    late = deals.gp30_known_at > as_of
    assert late.any() and (~late).any()
    assert deals.loc[late, "gp30"].isna().all() and deals.loc[~late, "gp30"].notna().all()
    assert ((deals.gp30_known_at - deals.started_at) == pd.Timedelta(days=30)).all()
    proxy_late = deals.started_at + pd.Timedelta(days=3) > as_of
    assert deals.loc[proxy_late, "conversion_proxy"].isna().all()
    assert deals.loc[~proxy_late, "conversion_proxy"].notna().all()
    props = small_world.tables["proposals"].set_index("proposal_id")
    p = props.loc[deals.proposal_id]
    hours = (p.approved_at.to_numpy() - p["at"].to_numpy()) / np.timedelta64(1, "h")
    assert (hours > 0).all() and (hours < 24).all()  # approval within hours
    assert (deals.started_at.to_numpy() > p.approved_at.to_numpy()).all()


def test_overrides_follow_rep_habits(small_world: World) -> None:
    """Each rep's edits are mostly of the one kind their hidden habit says."""
    ov = small_world.tables["overrides"]
    habit = small_world.truth["reps"].set_index("rep_id").habit
    share = (ov.override_type == ov.rep_id.map(habit)).mean()
    assert share == 1.0
    # and an edit changes what runs: the deal's discount is the edited one
    d = ov[ov.field == "discount_pct"].dropna(subset=["deal_id"])
    deals = small_world.tables["deals"].set_index("deal_id")
    assert np.allclose(deals.loc[d.deal_id, "discount_pct"].to_numpy(), d.new_value.astype(float).to_numpy())


def test_note_sentiment_follows_outcomes(small_world: World) -> None:
    notes = small_world.tables["feedback_notes"].dropna(subset=["deal_id", "sentiment"])
    deals = small_world.tables["deals"].set_index("deal_id")
    mm = notes[(notes.author == "mm")]
    up = deals.gp30_uplift.reindex(mm.deal_id).to_numpy()
    pos, neg = up[(mm.sentiment == "positive").to_numpy()], up[(mm.sentiment == "negative").to_numpy()]
    assert np.nanmean(pos) > 0.1 > np.nanmean(neg)
    assert notes.text.nunique() > 0.3 * len(notes)  # varied text, not a handful of strings


def test_some_phrasings_are_held_out(small_world: World) -> None:
    table = template_table()
    themes = {t[1] for t in table}
    held_by_theme = {th: any(t[4] for t in table if t[1] == th) for th in themes}
    assert all(held_by_theme.values())
    notes = small_world.tables["feedback_notes"]
    assert 0.1 < notes.template_heldout.mean() < 0.35


def test_merchants_carry_consent_and_no_personal_data(small_world: World) -> None:
    m = small_world.tables["merchants"]
    assert m.consent_personalization.mean() > 0.9 and (~m.consent_personalization).any()
    assert not {"name", "email", "phone", "owner"} & set(m.columns)


def test_every_merchant_has_its_primary_location_and_some_have_more(small_world: World) -> None:
    locs = small_world.tables["merchant_locations"]
    merchants = small_world.tables["merchants"]
    primary = locs[locs.is_primary]
    assert primary.merchant_id.is_unique and set(primary.merchant_id) == set(merchants.merchant_id)
    home = merchants.set_index("merchant_id").city_id
    assert (primary.city_id.to_numpy() == home.reindex(primary.merchant_id).to_numpy()).all()
    assert not locs.duplicated(["merchant_id", "city_id"]).any()  # extras are in other cities
    per_merchant = locs.groupby("merchant_id").size()
    assert per_merchant.max() <= 3 and 0.1 < (per_merchant > 1).mean() < 0.2


def test_extra_locations_stay_mostly_in_the_home_region(small_world: World) -> None:
    region = small_world.truth["cities"].set_index("city_id").region
    locs = small_world.tables["merchant_locations"]
    home = small_world.tables["merchants"].set_index("merchant_id").city_id
    extra = locs[~locs.is_primary]
    same = extra.city_id.map(region).to_numpy() == extra.merchant_id.map(home).map(region).to_numpy()
    assert 0.8 < same.mean() < 0.98


def test_regions_are_hidden_truth(small_world: World) -> None:
    from aidg.sim.catalog import REAL_CITIES, REAL_CITY_REGIONS, REGIONS
    from aidg.sim.geo import region_of

    truth = small_world.truth["cities"]
    assert list(truth.columns) == ["city_id", "region"] and set(truth.region) == set(REGIONS)
    assert "region" not in small_world.tables["cities"].columns
    lat = np.array([c[1] for c in REAL_CITIES])
    lon = np.array([c[2] for c in REAL_CITIES])
    assert list(region_of(lat, lon)) == [REAL_CITY_REGIONS[c[0]] for c in REAL_CITIES]
    towns = region_of(np.random.default_rng(0).uniform(26, 48, 500), np.random.default_rng(1).uniform(-122, -71, 500))
    assert set(towns) == set(REGIONS)
    assert "region" not in TABLES["cities"].record.model_fields
