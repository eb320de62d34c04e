from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from aidg.features.geo import (
    COMPETITION_NAMES,
    GEO_DIM,
    category_seasonality,
    city_embeddings,
    competition_features,
    geo_features,
    region_silhouette,
    season_names,
)
from aidg.sim import World, simulate

KM_LAT = 1 / 111.195  # degrees of latitude per km


@pytest.fixture(scope="module")
def region_world() -> World:
    """A small world with a seed no other test uses (the silhouette must not be tuned to one)."""
    return simulate("small", seed=57)


def test_city_embeddings_are_deterministic_by_seed(tiny_world: World) -> None:
    locs = tiny_world.tables["merchant_locations"]
    a = city_embeddings(locs, seed=3)
    pd.testing.assert_frame_equal(a, city_embeddings(locs, seed=3))
    assert not np.allclose(a.to_numpy(), city_embeddings(locs, seed=4).to_numpy())
    assert a.shape == (len(tiny_world.tables["cities"]), 24) and a.index.name == "city_id"


def test_a_city_without_links_gets_the_zero_vector(tiny_world: World) -> None:
    locs = tiny_world.tables["merchant_locations"]
    emb = city_embeddings(locs, dim=8, city_ids=[*locs.city_id.unique(), "city-nowhere"])
    assert (emb.loc["city-nowhere"] == 0).all() and (emb.drop(index="city-nowhere").abs().sum(axis=1) > 0).all()
    single = pd.DataFrame({"merchant_id": ["a", "b"], "city_id": ["x", "y"], "is_primary": [True, True]})
    assert (city_embeddings(single, dim=4).to_numpy() == 0).all()  # no merchant links x and y


def test_city_embeddings_carry_the_regions(region_world: World) -> None:
    emb = city_embeddings(region_world.tables["merchant_locations"], seed=0)
    regions = region_world.truth["cities"].set_index("city_id").region
    assert region_silhouette(emb, regions) > 0.1
    # and not by chance: shuffled regions have no structure
    shuffled = pd.Series(np.random.default_rng(0).permutation(regions.to_numpy()), index=regions.index)
    assert region_silhouette(emb, shuffled) < region_silhouette(emb, regions) - 0.2


def test_seasonality_ignores_outcomes_not_yet_known(small_world: World) -> None:
    deals = small_world.tables["deals"]
    cats = small_world.tables["categories"]
    as_of = small_world.as_of - pd.Timedelta(days=200)
    before = category_seasonality(deals, cats, as_of)
    future = deals.started_at + pd.Timedelta(days=3) > as_of  # includes deals started but not yet read
    assert future.sum() > 1000 and (deals.started_at[future] <= as_of).any()
    corrupt = deals.copy()
    rng = np.random.default_rng(0)
    corrupt.loc[future, "conversion_proxy"] = rng.uniform(0.001, 1, future.sum())
    corrupt.loc[future, "gp30"] = rng.uniform(0, 1e4, future.sum())
    pd.testing.assert_frame_equal(category_seasonality(corrupt, cats, as_of), before)
    # while a change to a known outcome does move the profile
    known = corrupt.copy()
    known.loc[~future, "conversion_proxy"] = rng.uniform(0.001, 1, (~future).sum())
    assert not np.allclose(category_seasonality(known, cats, as_of).to_numpy(), before.to_numpy())


def test_seasonality_finds_the_true_season(small_world: World) -> None:
    s = category_seasonality(small_world.tables["deals"], small_world.tables["categories"], small_world.as_of)
    assert list(s.columns) == season_names() and len(s.columns) == 16
    truth = small_world.truth["categories"].set_index("category_id").reindex(s.index)
    assert np.corrcoef(truth.season_amplitude, s.season_amplitude)[0, 1] > 0.8
    strong = truth.season_amplitude > 0.2
    peak_doy = np.degrees(np.arctan2(s.season_peak_sin, s.season_peak_cos)) % 360 / 360 * 365
    err = np.abs((peak_doy - truth.season_peak_doy + 182.5) % 365 - 182.5)
    assert (err[strong] < 30).all()
    months = s.filter(like="season_month_")
    assert np.allclose(np.log(months).mean(axis=1), 0)  # 1 = the category's average month
    now = small_world.as_of.month
    assert np.allclose(s.season_index_now, months[f"season_month_{now:02d}"])


def test_seasonality_of_other_sizes_and_bad_sizes(tiny_world: World) -> None:
    t = tiny_world.tables
    s = category_seasonality(t["deals"], t["categories"], tiny_world.as_of, dim=8)
    assert list(s.columns)[:4] == ["season_bin_01", "season_bin_02", "season_bin_03", "season_bin_04"]
    with pytest.raises(ValueError, match="dim ≥ 5"):
        category_seasonality(t["deals"], t["categories"], tiny_world.as_of, dim=4)
    with pytest.raises(ValueError, match="competition features are 8"):
        competition_features(t["merchants"], dim=6)


def test_competition_counts_on_three_merchants() -> None:
    # b is 0.5 km north of a, c is 2.6 km north of a (2.1 km from b)
    m = pd.DataFrame(
        {
            "merchant_id": ["a", "b", "c"],
            "lat": [40.0, 40.0 + 0.5 * KM_LAT, 40.0 + 2.6 * KM_LAT],
            "lon": [-75.0, -75.0, -75.0],
            "category_id": ["spa", "spa", "salon"],
            "secondary_category_id": ["salon", None, "spa"],
            "city_id": ["x", "x", "x"],
        }
    )
    got = np.expm1(competition_features(m).iloc[:, :7]).round(6)
    want = pd.DataFrame(
        [[1, 1, 1, 1, 1, 1, 2], [1, 1, 1, 1, 1, 0, 2], [0, 0, 0, 0, 0, 2, 2]],
        index=pd.Index(["a", "b", "c"], name="merchant_id"),
        columns=COMPETITION_NAMES[:7],
        dtype=float,
    )
    pd.testing.assert_frame_equal(got, want)
    assert competition_features(m).same_cat_share_city.tolist() == [0.5, 0.5, 0.0]
    # b 0.5 km away is within 1 km, c 2.6 km away is not within 2 km of a
    far = m.assign(lat=[40.0, 40.0 + 1.5 * KM_LAT, 40.0 + 2.6 * KM_LAT])
    f = np.expm1(competition_features(far)).round(6)
    assert f.loc["a", "competitors_same_cat_1km"] == 0 and f.loc["a", "competitors_same_cat_2km"] == 1


def test_competitors_created_after_as_of_do_not_count() -> None:
    m = pd.DataFrame(
        {
            "merchant_id": ["a", "b"],
            "lat": [40.0, 40.0],
            "lon": [-75.0, -75.001],
            "category_id": ["spa", "spa"],
            "secondary_category_id": [None, None],
            "city_id": ["x", "x"],
            "created_at": pd.to_datetime(["2024-01-01", "2025-06-01"]),
        }
    )
    early = competition_features(m, as_of="2025-01-01")
    assert len(early) == 2 and early.loc["a", "competitors_same_cat_1km"] == 0
    assert early.loc["b", "competitors_same_cat_1km"] == pytest.approx(np.log1p(1))  # b sees a, a does not see b
    assert competition_features(m, as_of="2026-01-01").loc["a", "competitors_same_cat_1km"] == pytest.approx(
        np.log1p(1)
    )


def test_geo_features_shape_names_and_row_order(tiny_world: World) -> None:
    t = tiny_world.tables
    merchants = t["merchants"].sample(frac=1.0, random_state=0)  # any row order
    X, names = geo_features(merchants, t["merchant_locations"], t["deals"], t["categories"], tiny_world.as_of)
    assert X.shape == (len(merchants), GEO_DIM) == (150, 48) and len(names) == 48 == len(set(names))
    assert names[:2] == ["city_emb_00", "city_emb_01"] and names[24] == "season_month_01"
    assert names[40:] == COMPETITION_NAMES and "competitors_same_cat_3km" in names
    assert np.isfinite(X).all()
    frame = pd.DataFrame(X, columns=names, index=merchants.merchant_id)
    same_city = merchants.groupby("city_id").merchant_id.first()
    for city, mid in same_city.items():
        others = merchants.merchant_id[merchants.city_id == city]
        assert (frame.loc[others, names[:24]] == frame.loc[mid, names[:24]]).all().all()
    comp = competition_features(merchants, as_of=tiny_world.as_of)
    assert np.allclose(frame[COMPETITION_NAMES].to_numpy(), comp.to_numpy())
