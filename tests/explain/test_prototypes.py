"""PrototypicalMemory: real-merchant prototypes per category, cosine search, refresh, deletion, state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from aidg.errors import DataError, NotFoundError
from aidg.explain.prototypes import PrototypicalMemory

DIM = 32
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def _clustered(n: int, seed: int, n_types: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """``n`` embeddings around ``n_types`` well-separated centres, and each one's type."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(size=(n_types, DIM)) * 3.0
    types = rng.integers(0, n_types, n)
    return centres[types] + rng.normal(size=(n, DIM)), types


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, list[str], list[str], np.ndarray]:
    x, types = _clustered(400, seed=1)
    ids = [f"m{i:03d}" for i in range(400)]
    cats = ["restaurant" if i % 2 == 0 else "spa" for i in range(400)]
    return x, ids, cats, types


@pytest.fixture(scope="module")
def memory(data: tuple[np.ndarray, list[str], list[str], np.ndarray]) -> PrototypicalMemory:
    x, ids, cats, _ = data
    return PrototypicalMemory(k=40, seed=0).fit(x, ids, cats, now=T0)


def test_similar_merchants_of_held_out_queries_share_their_type(
    memory: PrototypicalMemory, data: tuple[np.ndarray, list[str], list[str], np.ndarray]
) -> None:
    _, ids, _, types = data
    type_of = dict(zip(ids, types, strict=True))
    queries, q_types = _clustered(60, seed=2)
    same = []
    for q, t in zip(queries, q_types, strict=True):
        for cat in ("restaurant", "spa"):
            found = memory.find_similar_merchants(q, cat, top_k=5)
            assert len(found) == 5
            sims = [s for _, s in found]
            assert sims == sorted(sims, reverse=True)
            assert all(isinstance(s, float) and -1.0 <= s <= 1.0 for s in sims)
            same += [type_of[m] == t for m, _ in found]
    assert np.mean(same) >= 0.9


def test_k_prototypes_are_real_merchants_of_their_category(
    memory: PrototypicalMemory, data: tuple[np.ndarray, list[str], list[str], np.ndarray]
) -> None:
    _, ids, cats, types = data
    assert memory.categories() == ["restaurant", "spa"]
    for cat in memory.categories():
        protos = memory.prototypes(cat)
        members = {m for m, c in zip(ids, cats, strict=True) if c == cat}
        assert len(protos) == 40 == len(set(protos))
        assert set(protos) <= members
        # medoids of 40 clusters over 5 types: every type is represented
        type_of = dict(zip(ids, types, strict=True))
        assert {type_of[m] for m in protos} == set(range(5))


def test_small_category_keeps_every_merchant_and_medoid_matches_its_embedding() -> None:
    x, _ = _clustered(30, seed=3)
    ids = [f"s{i}" for i in range(30)]
    mem = PrototypicalMemory(k=50).fit(x, ids, ["bar"] * 30, now=T0)
    assert sorted(mem.prototypes("bar")) == sorted(ids)
    # a merchant's own embedding finds itself with similarity 1, unless excluded
    (best, sim), *_ = mem.find_similar_merchants(x[7] * 4.0, "bar", top_k=3)
    assert best == "s7"
    assert sim == pytest.approx(1.0)
    found = mem.find_similar_merchants(x[7], "bar", top_k=3, exclude="s7")
    assert "s7" not in [m for m, _ in found]
    assert len(found) == 3


def test_duplicate_embeddings_give_fewer_prototypes_without_a_warning() -> None:
    x = np.tile(np.arange(1.0, DIM + 1), (50, 1))
    x[:25] *= -1  # two distinct points only, k = 10
    mem = PrototypicalMemory(k=10).fit(x, [f"d{i}" for i in range(50)], ["bar"] * 50, now=T0)
    assert len(mem.prototypes("bar")) == 2
    (best, sim), (worst, low) = mem.find_similar_merchants(x[30], "bar")
    assert int(best[1:]) >= 25 and sim == pytest.approx(1.0)
    assert int(worst[1:]) < 25 and low == pytest.approx(-1.0)


def test_top_k_larger_than_the_category_returns_all_prototypes(memory: PrototypicalMemory) -> None:
    q = np.ones(DIM)
    assert len(memory.find_similar_merchants(q, "spa", top_k=1000)) == 40
    assert len(memory.find_similar_merchants(q, "spa", top_k=1000, exclude=memory.prototypes("spa")[0])) == 39


def test_remove_drops_the_merchant_from_every_category() -> None:
    x, _ = _clustered(6, seed=4)
    ids = ["a", "b", "c", "a", "d", "e"]  # merchant "a" is in both categories
    cats = ["bar", "bar", "bar", "spa", "spa", "spa"]
    mem = PrototypicalMemory(k=10).fit(x, ids, cats, now=T0)
    assert mem.remove("a") is True
    assert mem.prototypes("bar") == ["b", "c"]
    assert mem.prototypes("spa") == ["d", "e"]
    assert all(m != "a" for m, _ in mem.find_similar_merchants(x[0], "bar", top_k=5))
    assert mem.remove("a") is False
    assert '"a"' not in json.dumps(mem.state())
    # a category that loses its last prototype is gone
    assert mem.remove("b") and mem.remove("c")
    assert mem.categories() == ["spa"]


def test_refresh_follows_the_24_hour_schedule(data: tuple[np.ndarray, list[str], list[str], np.ndarray]) -> None:
    x, ids, cats, _ = data
    mem = PrototypicalMemory(k=20)
    assert mem.needs_refresh(T0)
    assert mem.refresh(x, ids, cats, now=T0) is True
    assert mem.refreshed_at == T0
    assert mem.refreshed_at.tzinfo is not None
    assert not mem.needs_refresh(T0 + timedelta(hours=1))
    assert mem.refresh(x, ids, cats, now=T0 + timedelta(hours=1)) is False
    assert mem.refreshed_at == T0
    assert mem.needs_refresh(T0 + timedelta(hours=25))
    assert mem.refresh(x, ids, cats, now=T0 + timedelta(hours=25)) is True
    assert mem.refreshed_at == T0 + timedelta(hours=25)
    assert mem.refresh(x, ids, cats, now=T0 + timedelta(hours=26), force=True) is True
    assert mem.refreshed_at == T0 + timedelta(hours=26)


def test_refresh_replaces_the_prototypes_with_the_new_data() -> None:
    x, _ = _clustered(10, seed=5)
    mem = PrototypicalMemory(k=10).fit(x, [f"old{i}" for i in range(10)], ["bar"] * 10, now=T0)
    assert mem.refresh(x, [f"new{i}" for i in range(10)], ["cafe"] * 10, now=T0 + timedelta(hours=24))
    assert mem.categories() == ["cafe"]
    assert all(m.startswith("new") for m in mem.prototypes("cafe"))


def test_naive_and_other_zone_times_become_utc() -> None:
    x, _ = _clustered(4, seed=6)
    mem = PrototypicalMemory().fit(x, list("abcd"), ["bar"] * 4, now=datetime(2025, 3, 1, 12, 0))
    assert mem.refreshed_at == T0
    assert mem.refreshed_at is not None and mem.refreshed_at.utcoffset() == timedelta(0)
    mem.fit(x, list("abcd"), ["bar"] * 4)
    assert mem.refreshed_at is not None and mem.refreshed_at.tzinfo is not None


def test_state_round_trip_through_json_gives_identical_answers(memory: PrototypicalMemory) -> None:
    back = PrototypicalMemory.from_state(json.loads(json.dumps(memory.state())))
    assert back.categories() == memory.categories()
    assert back.refreshed_at == memory.refreshed_at
    assert (back.k, back.refresh_hours, back.seed) == (memory.k, memory.refresh_hours, memory.seed)
    queries, _ = _clustered(10, seed=7)
    for q in queries:
        for cat in memory.categories():
            assert back.prototypes(cat) == memory.prototypes(cat)
            assert back.find_similar_merchants(q, cat) == memory.find_similar_merchants(q, cat)
    assert not back.needs_refresh(T0 + timedelta(hours=1))


def test_fit_is_deterministic_by_seed(data: tuple[np.ndarray, list[str], list[str], np.ndarray]) -> None:
    x, ids, cats, _ = data
    a = PrototypicalMemory(k=40, seed=0).fit(x, ids, cats, now=T0)
    b = PrototypicalMemory(k=40, seed=0).fit(x, ids, cats, now=T0)
    assert a.state() == b.state()


def test_large_categories_are_clustered_to_k_real_prototypes() -> None:
    rng = np.random.default_rng(8)
    x = rng.normal(size=(2000, 512))
    ids = [f"m{i}" for i in range(2000)]
    mem = PrototypicalMemory(k=100).fit(x, ids, [f"c{i % 2}" for i in range(2000)], now=T0)
    assert len(mem.prototypes("c0")) == 100
    assert set(mem.prototypes("c0")) <= set(ids[0::2])


def test_unknown_category_names_it_and_the_known_ones(memory: PrototypicalMemory) -> None:
    with pytest.raises(NotFoundError, match=r"unknown category 'gym'.*'restaurant', 'spa'"):
        memory.find_similar_merchants(np.ones(DIM), "gym")
    with pytest.raises(NotFoundError, match="unknown category 'gym'"):
        memory.prototypes("gym")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (np.ones(DIM + 1), r"shape \(33,\).*fitted on 32-d"),
        (np.ones((2, DIM)), r"shape \(2, 32\)"),
        (np.full(DIM, np.nan), "NaN or infinite"),
        (np.r_[np.ones(DIM - 1), np.inf], "NaN or infinite"),
        (np.zeros(DIM), "all-zero"),
    ],
)
def test_bad_query_embeddings_are_refused(memory: PrototypicalMemory, query: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        memory.find_similar_merchants(query, "spa")


def test_bad_arguments_are_refused(data: tuple[np.ndarray, list[str], list[str], np.ndarray]) -> None:
    x, ids, cats, _ = data
    with pytest.raises(DataError, match="call fit first"):
        PrototypicalMemory().find_similar_merchants(np.ones(DIM), "spa")
    with pytest.raises(DataError, match="k must be"):
        PrototypicalMemory(k=0)
    with pytest.raises(DataError, match="refresh_hours"):
        PrototypicalMemory(refresh_hours=-1)
    mem = PrototypicalMemory(k=20).fit(x, ids, cats, now=T0)
    with pytest.raises(DataError, match="top_k must be"):
        mem.find_similar_merchants(np.ones(DIM), "spa", top_k=0)
    with pytest.raises(DataError, match=r"400 embedding rows, 399 merchant ids and 400 categories"):
        PrototypicalMemory().fit(x, ids[:-1], cats)
    bad = x.copy()
    bad[5, 3] = np.nan
    with pytest.raises(DataError, match=r"NaN or infinite values in 1 row.*'m005'"):
        PrototypicalMemory().fit(bad, ids, cats)
    zero = x.copy()
    zero[9] = 0.0
    with pytest.raises(DataError, match=r"all-zero embedding.*row 9"):
        PrototypicalMemory().fit(zero, ids, cats)
    with pytest.raises(DataError, match=r"lists merchant\(s\) \['m000'\] more than once"):
        PrototypicalMemory().fit(x[:3], ["m000", "m001", "m000"], ["bar"] * 3)
    with pytest.raises(DataError, match="2-D"):
        PrototypicalMemory().fit(x[0], ids[:1], cats[:1])
    with pytest.raises(DataError, match="not a prototypical-memory state"):
        PrototypicalMemory.from_state({"version": 1})
