"""Rule-based surrogate: IF-THEN rules that mimic the deal scorer, for merchant-manager review (memo §1.2).

The scorer is a neural network; a merchant manager wants to read *why* it
recommends a deal. The surrogate is a small decision tree trained on the
scorer's own outputs (``labels``: True where the scorer recommends), so each
leaf is a rule such as::

    IF category = restaurant AND mean_discount > 0.4 THEN recommend high-GP30 deal

:meth:`RuleSurrogate.fidelity` says how often the tree agrees with the scorer;
the rules explain the scorer only as far as that share goes. A tree grown to
``max_leaves`` also splits on noise where both sides give the same outcome;
such a subtree changes no prediction, so by default (``simplify=True``) it is
read as one rule and :meth:`RuleSurrogate.rules` may return fewer rules than
:attr:`RuleSurrogate.n_leaves`.

Encoding and reading back:

* numeric columns (ints, floats) are used as they are; a split reads
  ``mean_discount ≤ 0.4`` / ``mean_discount > 0.4`` (thresholds shown to 3
  significant digits), and the conditions on one feature along a path are merged
  into the tightest bound or a range ``0.2 < discount ≤ 0.4``;
* bool columns are 0/1 and read ``flag = True`` / ``flag = False``;
* any other column (object, string, category dtype) is one-hot encoded with the
  values seen at fit; a split reads ``category = restaurant`` /
  ``category ≠ restaurant``, several "≠" on one path merge into
  ``category ∉ {bar, cafe}``, and an "=" makes them redundant. A value never
  seen at fit (or a missing one) sets none of the feature's one-hot columns, so
  it follows the "≠" branches, without an error.

Labels of a single class are allowed on purpose: a segment where the scorer
always (or never) recommends yields one leaf whose rule reads
``ALWAYS recommend high-GP30 deal`` (or ``ALWAYS do not recommend``).
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from aidg.errors import DataError

if TYPE_CHECKING:
    from sklearn.tree import DecisionTreeClassifier

_Kind = Literal["numeric", "bool", "onehot"]


@dataclass(frozen=True)
class Rule:
    """One leaf of the surrogate tree, read as an IF-THEN rule.

    ``support`` is the number of training rows in the leaf and ``confidence`` the share of
    them carrying the leaf's majority label (the rule's outcome).
    """

    conditions: tuple[str, ...]
    outcome: str
    recommend: bool
    support: int
    confidence: float

    def text(self) -> str:
        """``IF a AND b THEN outcome``, or ``ALWAYS outcome`` for a rule with no condition."""
        if not self.conditions:
            return f"ALWAYS {self.outcome}"
        return f"IF {' AND '.join(self.conditions)} THEN {self.outcome}"

    def __str__(self) -> str:
        return self.text()


@dataclass(frozen=True)
class _Feature:
    """One column of the encoded matrix: a numeric/bool column, or one level of a categorical."""

    kind: _Kind
    column: str
    level: str = ""


def _fmt(x: float, sig: int = 3) -> str:
    """A threshold to ``sig`` significant digits, without exponent for everyday magnitudes."""
    if x == 0:
        return "0"
    mag = math.floor(math.log10(abs(x)))
    if -4 <= mag < 7:
        digits = max(0, sig - 1 - mag)
        text = f"{round(x, digits):.{digits}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    return f"{x:.{sig}g}"


def _range(lo: float | None, hi: float | None, name: str) -> str:
    """``lo < name ≤ hi`` with both bounds shown distinctly (more digits where 3 would merge them)."""
    if lo is not None and hi is not None:
        sig = 3
        while sig < 12 and _fmt(lo, sig) == _fmt(hi, sig):
            sig += 1
        return f"{_fmt(lo, sig)} < {name} ≤ {_fmt(hi, sig)}"
    if lo is not None:
        return f"{name} > {_fmt(lo)}"
    assert hi is not None
    return f"{name} ≤ {_fmt(hi)}"


def _is_flag(v: object) -> bool:
    """Whether ``v`` can stand in a bool column: True/False, or the numbers 0 and 1 (not "False", not NaN)."""
    if isinstance(v, bool | np.bool_):
        return True
    return isinstance(v, int | float | np.integer | np.floating) and float(v) in (0.0, 1.0)


def _as_labels(labels: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(f"labels must be a 1-D array with one bool per row, got shape {y.shape}")
    if len(y) != n:
        raise DataError(f"X has {n} rows but labels has {len(y)}; pass one label per row")
    if y.dtype == bool:
        return y
    if y.dtype.kind in "iuf" and np.isin(y, [0, 1]).all():
        return y.astype(bool)
    raise DataError(f"labels must be bool (True = the scorer recommends) or 0/1, got dtype {y.dtype}")


@dataclass(frozen=True)
class _Nodes:
    """A fitted scikit-learn tree's splits as arrays, walked as its ``apply`` walks them (float32 features against
    the thresholds; the encoding refuses missing values, so none reach the tree)."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray

    @classmethod
    def of(cls, tree: Any) -> _Nodes:
        t = tree.tree_
        return cls(np.array(t.children_left), np.array(t.children_right), np.array(t.feature),
                   np.array(t.threshold, np.float64))  # fmt: skip

    def leaf(self, z: np.ndarray) -> int:
        """The leaf node one encoded row ends in."""
        x = np.asarray(z, dtype=np.float32)
        node = 0
        while self.left[node] != self.right[node]:
            left = float(x[int(self.feature[node])]) <= float(self.threshold[node])
            node = int(self.left[node] if left else self.right[node])
        return node


class RuleSurrogate:
    """A decision tree fitted to the scorer's recommend / do-not-recommend labels, read as rules.

    Args:
        max_leaves: the most leaves (= rules) the tree may grow.
        min_samples_leaf: the fewest training rows a leaf (rule) may rest on.
        seed: the tree's random state.
        positive: the outcome text of a recommending rule.
        negative: the outcome text of a non-recommending rule.
        simplify: read a subtree whose leaves all give the same outcome as one rule (its splits
            change no prediction, so they would only lengthen the rules); False gives one rule per leaf.
    """

    def __init__(
        self,
        max_leaves: int = 32,
        min_samples_leaf: int = 20,
        seed: int = 0,
        positive: str = "recommend high-GP30 deal",
        negative: str = "do not recommend",
        simplify: bool = True,
    ) -> None:
        if max_leaves < 2:
            raise DataError(f"max_leaves must be >= 2 (a tree with one leaf states no rule), got {max_leaves}")
        if min_samples_leaf < 1:
            raise DataError(f"min_samples_leaf must be >= 1, got {min_samples_leaf}")
        self.max_leaves = int(max_leaves)
        self.min_samples_leaf = int(min_samples_leaf)
        self.seed = int(seed)
        self.positive = positive
        self.negative = negative
        self.simplify = bool(simplify)
        self._tree: DecisionTreeClassifier | None = None
        self._tree_bytes: bytes | None = None  # the tree as read back, unpickled when first needed
        self._nodes: _Nodes | None = None  # the tree's splits as arrays: what rule_for walks
        self._columns: list[str] = []
        self._kinds: dict[str, _Kind] = {}
        self._levels: dict[str, list[str]] = {}
        self._features: list[_Feature] = []
        self._leaf_rules: dict[int, Rule] = {}

    # ------------------------------------------------------------------ encoding

    @staticmethod
    def _check_frame(X: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise DataError(f"X must be a pandas DataFrame with named columns, got {type(X).__name__}")
        if len(X) == 0 or X.shape[1] == 0:
            raise DataError(f"X is empty ({X.shape[0]} rows, {X.shape[1]} columns); pass at least one row and column")
        return X

    def _learn_columns(self, X: pd.DataFrame) -> None:
        kinds: dict[str, _Kind] = {}
        levels: dict[str, list[str]] = {}
        features: list[_Feature] = []
        names = [str(c) for c in X.columns]
        if len(set(names)) != len(names):
            raise DataError(f"X has duplicate column names {sorted({n for n in names if names.count(n) > 1})}")
        for col, name in zip(X.columns, names, strict=True):
            s = X[col]
            if pd.api.types.is_bool_dtype(s):
                kinds[name] = "bool"
                features.append(_Feature("bool", name))
            elif pd.api.types.is_datetime64_any_dtype(s) or pd.api.types.is_timedelta64_dtype(s):
                raise DataError(f"column {name!r} holds dates or durations; convert it to a number (e.g. days) first")
            elif pd.api.types.is_numeric_dtype(s):
                kinds[name] = "numeric"
                features.append(_Feature("numeric", name))
            else:
                kinds[name] = "onehot"
                levels[name] = sorted({str(v) for v in s.dropna().unique()})
                features.extend(_Feature("onehot", name, lv) for lv in levels[name])
        self._columns = names
        self._kinds = kinds
        self._levels = levels
        self._features = features

    def _encode(self, X: pd.DataFrame) -> np.ndarray:
        by_name = {str(c): c for c in X.columns}
        missing = [c for c in self._columns if c not in by_name]
        if missing:
            raise DataError(f"X lacks the column(s) {missing} the surrogate was fitted on; add them")
        blocks: list[np.ndarray] = []
        for name in self._columns:
            s = X[by_name[name]]
            kind = self._kinds[name]
            if kind == "onehot":
                values = np.array([None if pd.isna(v) else str(v) for v in s.to_numpy(dtype=object)], dtype=object)
                blocks.extend((values == level).astype(np.float64) for level in self._levels[name])
                continue
            if kind == "bool":
                values = s.to_numpy(dtype=object)
                if not all(_is_flag(v) for v in values):
                    raise DataError(f"bool column {name!r} holds a value other than True/False; fill or convert it")
                blocks.append(values.astype(np.float64))
                continue
            v = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = ~np.isfinite(v)
            if bad.any():
                raise DataError(
                    f"numeric column {name!r} has {int(bad.sum())} NaN, infinite or non-numeric value(s) "
                    f"(first at row {int(np.flatnonzero(bad)[0])}); impute or drop those rows"
                )
            blocks.append(v)
        if not blocks:
            return np.zeros((len(X), 0), dtype=np.float64)
        return np.column_stack(blocks)

    # ------------------------------------------------------------------ fitting and prediction

    def fit(self, X: pd.DataFrame, labels: np.ndarray) -> RuleSurrogate:
        """Fit the tree to the scorer's ``labels`` (True = recommends) on the readable features ``X``."""
        X = self._check_frame(X)
        y = _as_labels(labels, len(X))
        before = (self._columns, self._kinds, self._levels, self._features)
        self._learn_columns(X)
        try:
            Z = self._encode(X)
        except DataError:
            # a refused refit leaves an earlier fit usable
            self._columns, self._kinds, self._levels, self._features = before
            raise
        if Z.shape[1] == 0:
            # only categoricals with no value at all: the tree has nothing to split on
            Z = np.zeros((len(X), 1), dtype=np.float64)
        from sklearn.tree import DecisionTreeClassifier  # at fitting (and predict), not to read rules back

        tree = DecisionTreeClassifier(
            max_leaf_nodes=self.max_leaves, min_samples_leaf=self.min_samples_leaf, random_state=self.seed
        )
        tree.fit(Z, y)
        self._tree, self._tree_bytes, self._nodes = tree, None, _Nodes.of(tree)
        self._leaf_rules = self._extract_rules()
        return self

    def _fitted(self) -> DecisionTreeClassifier:
        if self._tree is None and self._tree_bytes is not None:
            self._tree = pickle.loads(self._tree_bytes)  # scikit-learn loads here, not when the surrogate is read
        if self._tree is None:
            raise DataError("the rule surrogate is not fitted: call fit first")
        return self._tree

    def _encode_for_tree(self, X: pd.DataFrame) -> np.ndarray:
        Z = self._encode(X)
        if not self._features:
            Z = np.zeros((len(X), 1), dtype=np.float64)
        return Z

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The surrogate's recommend (True) / do-not-recommend (False) for each row of ``X``."""
        tree = self._fitted()
        X = self._check_frame(X)
        out: np.ndarray = np.asarray(tree.predict(self._encode_for_tree(X))).astype(bool)
        return out

    def fidelity(self, X: pd.DataFrame, labels: np.ndarray) -> float:
        """The share of rows where the surrogate agrees with the scorer's ``labels``."""
        X = self._check_frame(X)
        y = _as_labels(labels, len(X))
        return float(np.mean(self.predict(X) == y))

    @property
    def n_leaves(self) -> int:
        """How many leaves (= rules) the fitted tree has."""
        return int(self._fitted().get_n_leaves())

    # ------------------------------------------------------------------ rules

    def _condition(self, feature: _Feature, right: bool, threshold: float) -> tuple[str, str, Any]:
        """(column, operator, value) of one split side; ``right`` is the ``> threshold`` branch."""
        if feature.kind == "numeric":
            return feature.column, ">" if right else "≤", threshold
        if feature.kind == "bool":
            return feature.column, "=", right
        return feature.column, "=" if right else "≠", feature.level

    def _describe(self, path: list[tuple[str, str, Any]]) -> tuple[str, ...]:
        """Merge a root-to-leaf path's conditions per column, in the order the columns first appear."""
        order: list[str] = []
        per_col: dict[str, list[tuple[str, Any]]] = {}
        for col, op, value in path:
            if col not in per_col:
                order.append(col)
                per_col[col] = []
            per_col[col].append((op, value))
        out: list[str] = []
        for col in order:
            conds = per_col[col]
            kind = self._kinds[col]
            if kind == "numeric":
                lows = [float(v) for op, v in conds if op == ">"]
                highs = [float(v) for op, v in conds if op == "≤"]
                out.append(_range(max(lows) if lows else None, min(highs) if highs else None, col))
            elif kind == "bool":
                out.append(f"{col} = {conds[-1][1]}")
            else:
                equal = [v for op, v in conds if op == "="]
                if equal:
                    out.append(f"{col} = {equal[0]}")
                    continue
                unequal = sorted({str(v) for _, v in conds})
                if len(unequal) == 1:
                    out.append(f"{col} ≠ {unequal[0]}")
                else:
                    out.append(f"{col} ∉ {{{', '.join(unequal)}}}")
        return tuple(out)

    def _extract_rules(self) -> dict[int, Rule]:
        """Each leaf's rule, keyed by leaf node id (merged subtrees share one :class:`Rule`)."""
        tree = self._fitted()
        t = tree.tree_
        classes = [bool(c) for c in tree.classes_]
        left, right = t.children_left, t.children_right
        n_nodes = int(t.node_count)
        majority = [classes[int(np.argmax(t.value[n][0]))] for n in range(n_nodes)]
        # outcome shared by every leaf under a node (None where they differ); children have larger ids
        shared: list[bool | None] = [None] * n_nodes
        for node in range(n_nodes - 1, -1, -1):
            if left[node] == right[node]:
                shared[node] = majority[node]
            else:
                a, b = shared[int(left[node])], shared[int(right[node])]
                shared[node] = a if a is not None and a == b else None
        rules: dict[int, Rule] = {}
        stack: list[tuple[int, list[tuple[str, str, Any]]]] = [(0, [])]
        while stack:
            node, path = stack.pop()
            leaf = left[node] == right[node]
            if leaf or (self.simplify and shared[node] is not None):
                dist = np.asarray(t.value[node][0], dtype=np.float64)
                recommend = majority[node]
                rule = Rule(
                    conditions=self._describe(path),
                    outcome=self.positive if recommend else self.negative,
                    recommend=recommend,
                    support=int(t.n_node_samples[node]),
                    confidence=float(dist.max() / dist.sum()),
                )
                below = [node]
                while below:
                    n = below.pop()
                    if left[n] == right[n]:
                        rules[n] = rule
                    else:
                        below += [int(left[n]), int(right[n])]
                continue
            feature = self._features[int(t.feature[node])]
            threshold = float(t.threshold[node])
            stack.append((int(right[node]), [*path, self._condition(feature, True, threshold)]))
            stack.append((int(left[node]), [*path, self._condition(feature, False, threshold)]))
        return rules

    def rules(self) -> list[Rule]:
        """One rule per leaf (per merged subtree with ``simplify``), the best supported first."""
        if not self._leaf_rules:
            self._fitted()
        unique: dict[int, Rule] = {}
        for node in sorted(self._leaf_rules):  # tree order breaks ties in support
            rule = self._leaf_rules[node]
            unique.setdefault(id(rule), rule)
        return sorted(unique.values(), key=lambda r: -r.support)

    def rule_for(self, row: pd.DataFrame | pd.Series) -> Rule:
        """The rule of the leaf that decides this one row (the path the row takes through the tree)."""
        nodes = self._nodes if self._nodes is not None else _Nodes.of(self._fitted())
        if isinstance(row, pd.Series):
            frame = row.to_frame().T
        elif isinstance(row, pd.DataFrame):
            frame = row
        else:
            raise DataError(f"rule_for takes one row as a pandas Series or 1-row DataFrame, got {type(row).__name__}")
        if len(frame) != 1:
            raise DataError(f"rule_for explains one row at a time, got {len(frame)} rows; pass X.iloc[[i]]")
        return self._leaf_rules[nodes.leaf(self._encode_for_tree(frame)[0])]

    # ------------------------------------------------------------------ persistence

    def to_bytes(self) -> bytes:
        """The fitted surrogate as bytes (pickle: load only bytes you wrote yourself)."""
        self._fitted()
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    def __getstate__(self) -> dict[str, Any]:
        """The scikit-learn tree pickled as bytes inside: reading a surrogate back to explain (rules, rule_for)
        imports no scikit-learn (0.7 s of each `aidg explain`); predict and fidelity unpickle it when called."""
        state = self.__dict__.copy()
        tree = state.pop("_tree")
        if tree is not None:
            state["_tree_bytes"] = pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        tree = state.pop("_tree", None)  # a surrogate pickled before the bytes: the tree itself
        self.__dict__.update(state)
        self._tree = tree
        self._tree_bytes = state.get("_tree_bytes")
        if state.get("_nodes") is None:
            self._nodes = _Nodes.of(tree) if tree is not None else None

    @staticmethod
    def from_bytes(b: bytes) -> RuleSurrogate:
        """A surrogate saved by :meth:`to_bytes` (trusted bytes only: this unpickles)."""
        try:
            obj = pickle.loads(b)
        except Exception as exc:
            raise DataError(f"these bytes are not a saved RuleSurrogate ({type(exc).__name__}: {exc})") from exc
        if not isinstance(obj, RuleSurrogate):
            raise DataError(f"these bytes hold a {type(obj).__name__}, not a RuleSurrogate; pass to_bytes() output")
        return obj
