"""RuleSurrogate: a decision tree on the scorer's labels, read back as readable IF-THEN rules."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aidg.errors import DataError
from aidg.explain.surrogate import Rule, RuleSurrogate

CATEGORIES = ["restaurant", "spa", "retail", "bar", "fitness"]


def _world(n: int, seed: int, noise: float = 0.03) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Readable features; the scorer's label is a known rule with ``noise`` of its labels flipped.

    Returns (X, noisy labels, noise-free labels).
    """
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "category": rng.choice(CATEGORIES, n),
            "mean_discount": rng.uniform(0.0, 1.0, n),
            "discount": rng.uniform(0.0, 0.6, n),
            "focus": pd.Categorical(rng.choice(["primary", "secondary"], n)),
            "n_deals": rng.integers(0, 50, n),
            "featured": rng.random(n) < 0.5,
        }
    )
    clean = (((X["category"] == "restaurant") & (X["mean_discount"] > 0.4)) | (X["discount"] < 0.2)).to_numpy()
    return X, clean ^ (rng.random(n) < noise), clean


@pytest.fixture(scope="module")
def fitted() -> RuleSurrogate:
    X, y, _ = _world(5000, seed=0)
    return RuleSurrogate(max_leaves=32, min_samples_leaf=20, seed=0).fit(X, y)


def _thresholds(texts: list[str], feature: str) -> list[float]:
    out = []
    for t in texts:
        out += [float(v) for v in re.findall(rf"{feature} [>≤] ([-\d.]+)", t)]
        out += [float(v) for v in re.findall(rf"([-\d.]+) < {feature}", t)]
        out += [float(v) for v in re.findall(rf"< {feature} ≤ ([-\d.]+)", t)]
    return out


def test_surrogate_is_faithful_on_a_fresh_sample(fitted: RuleSurrogate) -> None:
    X, y, clean = _world(5000, seed=1)
    assert fitted.fidelity(X, y) >= 0.95  # the scorer's own (noisy) labels
    assert fitted.fidelity(X, clean) >= 0.98  # the rule behind them
    assert fitted.n_leaves <= 32
    pred = fitted.predict(X)
    assert pred.dtype == bool and pred.shape == (5000,)


def test_rules_recover_the_known_rule_with_real_names_and_readable_thresholds(fitted: RuleSurrogate) -> None:
    rules = fitted.rules()
    texts = [r.text() for r in rules]
    assert any("category = restaurant" in t for t in texts)
    assert any("category ≠ restaurant" in t for t in texts)
    md = _thresholds(texts, "mean_discount")
    assert md and any(abs(v - 0.4) <= 0.03 for v in md)
    disc = _thresholds(texts, "discount")
    assert any(abs(v - 0.2) <= 0.02 for v in disc)
    for t in texts:
        assert t.startswith("IF ") and " THEN " in t
        assert "one_hot" not in t and "x[" not in t and "feature_" not in t
        for number in re.findall(r"\d+\.\d+", t):
            assert len(number.split(".")[1]) <= 3, t  # 3 significant digits at most for values < 1
    # the best supported rule: no discount below 0.2 outside restaurants → do not recommend
    assert rules[0].support >= rules[-1].support
    assert [r.support for r in rules] == sorted((r.support for r in rules), reverse=True)
    assert sum(r.support for r in rules) == 5000
    for r in rules:
        assert r.outcome == ("recommend high-GP30 deal" if r.recommend else "do not recommend")
        assert 0.5 <= r.confidence <= 1.0
        assert r.support >= 20


def test_the_recovered_rules_are_the_known_ones(fitted: RuleSurrogate) -> None:
    # with same-outcome subtrees merged, the noise splits vanish and the four regions of the rule remain
    texts = {r.text() for r in fitted.rules()}
    assert texts == {
        "IF discount ≤ 0.2 THEN recommend high-GP30 deal",
        "IF discount > 0.2 AND category ≠ restaurant THEN do not recommend",
        "IF discount > 0.2 AND category = restaurant AND mean_discount > 0.4 THEN recommend high-GP30 deal",
        "IF discount > 0.2 AND category = restaurant AND mean_discount ≤ 0.4 THEN do not recommend",
    }


def test_unsimplified_rules_are_one_per_leaf_and_merge_conditions_per_feature() -> None:
    X, y, _ = _world(5000, seed=0)
    s = RuleSurrogate(simplify=False).fit(X, y)
    rules = s.rules()
    assert len(rules) == s.n_leaves
    assert any(re.match(r"[\d.]+ < \w+ ≤ [\d.]+", c) for r in rules for c in r.conditions)  # merged ranges
    for r in rules:
        named = [c.split(" ")[2] if re.match(r"[-\d.]+ < ", c) else c.split(" ")[0] for c in r.conditions]
        assert named and len(set(named)) == len(named), r.text()  # one condition per feature along a path
    # both surrogates predict the same: merging same-outcome leaves changes no prediction
    X2, _, _ = _world(2000, seed=3)
    merged = RuleSurrogate().fit(X, y)
    np.testing.assert_array_equal(s.predict(X2), merged.predict(X2))


def test_rule_for_a_row_is_the_path_it_takes(fitted: RuleSurrogate) -> None:
    X, _, _ = _world(300, seed=2)
    pred = fitted.predict(X)
    rules = fitted.rules()
    for i in range(0, 300, 7):
        by_frame = fitted.rule_for(X.iloc[[i]])
        by_series = fitted.rule_for(X.iloc[i])
        assert by_frame == by_series
        assert by_frame in rules
        assert by_frame.recommend == bool(pred[i])
    row = X.iloc[[0]].assign(category="restaurant", mean_discount=0.9, discount=0.5)
    assert fitted.rule_for(row).conditions == ("discount > 0.2", "category = restaurant", "mean_discount > 0.4")
    row = X.iloc[[0]].assign(category="spa", discount=0.05)
    assert fitted.rule_for(row).text() == "IF discount ≤ 0.2 THEN recommend high-GP30 deal"


def test_unseen_categories_take_the_not_equal_branches(fitted: RuleSurrogate) -> None:
    X, _, _ = _world(10, seed=4)
    X = X.assign(category="florist", discount=0.5, focus="tertiary")
    assert not fitted.predict(X).any()
    assert fitted.rule_for(X.iloc[[0]]).conditions == ("discount > 0.2", "category ≠ restaurant")
    # extra columns are ignored, column order does not matter
    shuffled = X[list(reversed(X.columns))].assign(unused=1.0)
    np.testing.assert_array_equal(fitted.predict(shuffled), fitted.predict(X))


def test_bytes_round_trip(fitted: RuleSurrogate) -> None:
    back = RuleSurrogate.from_bytes(fitted.to_bytes())
    X, _, _ = _world(1000, seed=5)
    np.testing.assert_array_equal(back.predict(X), fitted.predict(X))
    assert back.rules() == fitted.rules()
    assert back.n_leaves == fitted.n_leaves
    with pytest.raises(DataError, match="not a saved RuleSurrogate"):
        RuleSurrogate.from_bytes(b"garbage")


def test_a_read_back_surrogate_walks_each_row_to_the_leaf_scikit_learn_takes(fitted: RuleSurrogate) -> None:
    """rule_for walks the tree's split arrays, not scikit-learn: the same leaf as ``apply`` for every row, values
    exactly on the thresholds included (the encoding refuses missing values, so none reach the tree)."""
    back = RuleSurrogate.from_bytes(fitted.to_bytes())
    X, _, _ = _world(2000, seed=6)
    t = fitted._fitted().tree_
    on_split = X.iloc[:200].copy()  # exactly on a threshold (float32, as scikit-learn compares)
    cols = [c for c in fitted._columns if fitted._kinds[c] == "numeric" and X[c].dtype.kind == "f"]
    for j, c in enumerate(cols):
        index = [i for i, f in enumerate(fitted._features) if f.column == c]
        th = t.threshold[np.isin(t.feature, index)]
        if len(th):
            on_split.iloc[j :: len(cols), on_split.columns.get_loc(c)] = np.float32(th[0])
    rows = pd.concat([X, on_split], ignore_index=True)
    tree = fitted._fitted()
    leaves = tree.apply(fitted._encode_for_tree(rows))
    for i in range(len(rows)):
        assert back.rule_for(rows.iloc[[i]]) is back._leaf_rules[int(leaves[i])]


def test_reading_a_surrogate_back_imports_no_scikit_learn(fitted: RuleSurrogate, tmp_path: Path) -> None:
    (tmp_path / "s.bin").write_bytes(fitted.to_bytes())
    X, _, _ = _world(3, seed=7)
    X.to_pickle(tmp_path / "x.pkl")
    code = (
        "import sys, pandas as pd\n"
        "from pathlib import Path\n"
        "from aidg.explain.surrogate import RuleSurrogate\n"
        f"s = RuleSurrogate.from_bytes(Path({str(tmp_path / 's.bin')!r}).read_bytes())\n"
        f"x = pd.read_pickle({str(tmp_path / 'x.pkl')!r})\n"
        "print(s.rule_for(x.iloc[[0]]).text(), len(s.rules()))\n"
        "assert 'sklearn' not in sys.modules, 'scikit-learn was imported'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("IF ") or out.stdout.startswith("ALWAYS")


def test_rule_text() -> None:
    rule = Rule(("category = restaurant", "mean_discount > 0.4"), "recommend high-GP30 deal", True, 50, 0.9)
    assert rule.text() == "IF category = restaurant AND mean_discount > 0.4 THEN recommend high-GP30 deal"
    assert str(rule) == rule.text()
    assert Rule((), "do not recommend", False, 10, 1.0).text() == "ALWAYS do not recommend"


def test_numeric_ranges_and_categorical_exclusions_are_merged() -> None:
    rng = np.random.default_rng(6)
    n = 4000
    X = pd.DataFrame({"discount": rng.uniform(0, 1, n), "category": rng.choice(CATEGORIES, n)})
    y = ((X["discount"] > 0.2) & (X["discount"] <= 0.4) & ~X["category"].isin(["bar", "spa"])).to_numpy()
    s = RuleSurrogate(max_leaves=8, min_samples_leaf=20).fit(X, y)
    positive = [r for r in s.rules() if r.recommend]
    assert len(positive) == 1
    (rule,) = positive
    assert "0.2 < discount ≤ 0.4" in rule.conditions
    assert "category ∉ {bar, spa}" in rule.conditions
    assert s.fidelity(X, y) == 1.0


def test_an_equal_condition_drops_the_unequal_ones_and_bools_read_true_false() -> None:
    rng = np.random.default_rng(7)
    n = 3000
    X = pd.DataFrame({"category": rng.choice(CATEGORIES, n), "featured": rng.random(n) < 0.5})
    y = ((X["category"] == "bar") & X["featured"]).to_numpy()
    s = RuleSurrogate(simplify=False, min_samples_leaf=5).fit(X, y)
    (rule,) = [r for r in s.rules() if r.recommend]
    assert set(rule.conditions) == {"category = bar", "featured = True"}
    assert all("≠" not in c and "∉" not in c for c in rule.conditions)
    assert any("featured = False" in r.text() for r in s.rules())


def test_one_class_labels_give_a_single_always_rule() -> None:
    X, _, _ = _world(200, seed=8)
    s = RuleSurrogate().fit(X, np.ones(200, dtype=bool))
    assert s.n_leaves == 1
    (rule,) = s.rules()
    assert rule.text() == "ALWAYS recommend high-GP30 deal"
    assert (rule.support, rule.confidence, rule.recommend) == (200, 1.0, True)
    assert s.predict(X).all()
    s = RuleSurrogate(negative="skip").fit(X, np.zeros(200, dtype=int))
    assert [r.text() for r in s.rules()] == ["ALWAYS skip"]
    assert s.rule_for(X.iloc[3]).text() == "ALWAYS skip"


def test_bad_input_is_refused_with_what_to_fix() -> None:
    X, y, _ = _world(100, seed=9)
    with pytest.raises(DataError, match="X is empty"):
        RuleSurrogate().fit(X.iloc[:0], y[:0])
    with pytest.raises(DataError, match="X has 100 rows but labels has 99"):
        RuleSurrogate().fit(X, y[:99])
    with pytest.raises(DataError, match="labels must be bool"):
        RuleSurrogate().fit(X, np.where(y, "yes", "no"))
    bad = X.copy()
    bad.loc[4, "mean_discount"] = np.nan
    with pytest.raises(DataError, match=r"numeric column 'mean_discount' has 1 NaN.*row 4"):
        RuleSurrogate().fit(bad, y)
    with pytest.raises(DataError, match="dates"):
        RuleSurrogate().fit(X.assign(when=pd.Timestamp("2025-01-01")), y)
    with pytest.raises(DataError, match="call fit first"):
        RuleSurrogate().predict(X)
    with pytest.raises(DataError, match="max_leaves"):
        RuleSurrogate(max_leaves=1)
    s = RuleSurrogate(min_samples_leaf=5).fit(X, y)
    with pytest.raises(DataError, match="numeric column 'mean_discount'"):
        s.fit(bad.drop(columns=["discount"]), y)
    assert s.predict(X).shape == (100,)  # the refused refit left the earlier fit usable
    with pytest.raises(DataError, match=r"lacks the column\(s\) \['discount', 'featured'\]"):
        s.predict(X.drop(columns=["discount", "featured"]))
    with pytest.raises(DataError, match="numeric column 'discount'"):
        s.predict(X.assign(discount=np.inf))
    with pytest.raises(DataError, match="bool column 'featured' holds a value other than True/False"):
        s.predict(X.assign(featured="no"))
    with pytest.raises(DataError, match="one row at a time, got 2 rows"):
        s.rule_for(X.iloc[:2])
    with pytest.raises(DataError, match="X must be a pandas DataFrame"):
        s.predict(X.to_numpy())  # type: ignore[arg-type]
