"""Prototypical memory: explain a merchant by the real merchants it resembles (memo §1.2).

"Merchants like yours ran these deals" is an explanation a merchant manager can
check, so the memory keeps, per category, a small set of *prototypes*: real
merchants whose profile embeddings stand for the rest of the category.

How the prototypes are chosen, per category:

* every embedding is L2-normalised, so closeness is cosine similarity;
* a category with at most ``k`` merchants keeps every merchant as a prototype;
* a larger one is clustered by k-means (``k`` clusters on the normalised
  embeddings) and each cluster is represented by its *medoid*: the real merchant
  nearest the cluster's centroid. A centroid is an average of merchants and
  belongs to nobody, so it is never shown.

:meth:`PrototypicalMemory.find_similar_merchants` then ranks a category's
prototypes by cosine similarity with a query embedding. The memory is refitted
on a schedule (every ``refresh_hours``, 24 h by default) through
:meth:`PrototypicalMemory.refresh`, and :meth:`PrototypicalMemory.remove`
serves the right to deletion: the merchant is dropped from every category at
once. A removed prototype leaves its cluster without a representative until the
next refit, and the caller must also leave the merchant out of the data that
the next refit reads. :meth:`~PrototypicalMemory.state` and
:meth:`~PrototypicalMemory.from_state` round-trip the memory through plain JSON.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from aidg.errors import DataError, NotFoundError

_STATE_VERSION = 1


def _utc(now: datetime | None) -> datetime:
    """``now`` as an aware UTC datetime (a naive datetime is taken to be UTC already)."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def _normalise_rows(x: np.ndarray, what: str) -> np.ndarray:
    """Rows scaled to unit length; a row of zeros cannot be and is refused."""
    norms = np.linalg.norm(x, axis=1)
    zero = np.flatnonzero(norms == 0)
    if zero.size:
        raise DataError(
            f"{what} has {zero.size} all-zero embedding(s) (first at row {int(zero[0])}); a zero vector has "
            "no direction to compare: drop those merchants or give them a real embedding"
        )
    out: np.ndarray = x / norms[:, None]
    return out


class PrototypicalMemory:
    """Per-category prototype merchants, searched by cosine similarity.

    Args:
        k: the most prototypes a category keeps (k-means clusters when it has more merchants).
        refresh_hours: how old a fit may get before :meth:`refresh` refits it.
        seed: the k-means random state, so a refit on the same data picks the same prototypes.
    """

    def __init__(self, k: int = 100, refresh_hours: float = 24.0, seed: int = 0) -> None:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise DataError(f"k must be a whole number of prototypes >= 1, got {k!r}")
        if not math.isfinite(float(refresh_hours)) or refresh_hours < 0:
            raise DataError(f"refresh_hours must be a finite number of hours >= 0, got {refresh_hours!r}")
        self.k = int(k)
        self.refresh_hours = float(refresh_hours)
        self.seed = int(seed)
        self.refreshed_at: datetime | None = None
        self._dim: int | None = None
        self._ids: dict[str, list[str]] = {}
        self._emb: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------------ fitting

    def fit(
        self,
        embeddings: np.ndarray,
        merchant_ids: Sequence[str],
        categories: Sequence[str],
        now: datetime | None = None,
    ) -> PrototypicalMemory:
        """Choose each category's prototypes from scratch; ``now`` (UTC) becomes :attr:`refreshed_at`.

        ``embeddings`` is (n_merchants, dim), row ``i`` belonging to ``merchant_ids[i]`` in
        ``categories[i]``. A merchant may appear in several categories, but only once in each.
        """
        try:
            x = np.asarray(embeddings, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"embeddings must be a numeric (n_merchants, dim) array: {exc}") from exc
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
            raise DataError(f"embeddings must be a non-empty 2-D (n_merchants, dim) array, got shape {x.shape}")
        ids = [str(m) for m in merchant_ids]
        cats = [str(c) for c in categories]
        if not len(ids) == len(cats) == x.shape[0]:
            raise DataError(
                f"embeddings, merchant_ids and categories must have one entry per merchant; got "
                f"{x.shape[0]} embedding rows, {len(ids)} merchant ids and {len(cats)} categories"
            )
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if bad.size:
            raise DataError(
                f"embeddings hold NaN or infinite values in {bad.size} row(s) (first: merchant "
                f"{ids[int(bad[0])]!r}); impute or drop those merchants before fitting"
            )
        x = _normalise_rows(x, "embeddings")

        rows_by_cat: dict[str, list[int]] = {}
        for i, c in enumerate(cats):
            rows_by_cat.setdefault(c, []).append(i)
        new_ids: dict[str, list[str]] = {}
        new_emb: dict[str, np.ndarray] = {}
        for cat, rows in rows_by_cat.items():
            cat_ids = [ids[i] for i in rows]
            if len(set(cat_ids)) != len(cat_ids):
                dup = sorted({m for m in cat_ids if cat_ids.count(m) > 1})[:5]
                raise DataError(f"category {cat!r} lists merchant(s) {dup} more than once; keep one row per merchant")
            chosen = self._choose(x[rows])
            new_ids[cat] = [cat_ids[i] for i in chosen]
            new_emb[cat] = np.ascontiguousarray(x[rows][chosen])
        self._dim = int(x.shape[1])
        self._ids = new_ids
        self._emb = new_emb
        self.refreshed_at = _utc(now)
        return self

    def _choose(self, x: np.ndarray) -> list[int]:
        """Row numbers of the prototypes among one category's normalised embeddings ``x``."""
        n = x.shape[0]
        if n <= self.k:
            return list(range(n))
        from sklearn.cluster import KMeans  # at fitting only: reading prototypes back needs no scikit-learn
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        km = KMeans(n_clusters=self.k, n_init=3, random_state=self.seed)
        # one thread (OpenMP and BLAS): a category is small (~0.15 s for 1,000 × 512-d), and spinning threads
        # slow down many times over on a busy machine
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            # duplicate embeddings can leave fewer distinct clusters than k: fewer prototypes is fine
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = np.asarray(km.fit_predict(x))
        centres = np.asarray(km.cluster_centers_)
        dist = ((x - centres[labels]) ** 2).sum(axis=1)
        order = np.lexsort((dist, labels))  # by cluster, nearest the centroid first
        first = np.ones(n, dtype=bool)
        first[1:] = labels[order][1:] != labels[order][:-1]
        return sorted(int(i) for i in order[first])

    def needs_refresh(self, now: datetime | None = None) -> bool:
        """Whether the memory was never fitted or its fit is ``refresh_hours`` old or older at ``now``."""
        if self.refreshed_at is None:
            return True
        return _utc(now) - self.refreshed_at >= timedelta(hours=self.refresh_hours)

    def age_hours(self, now: datetime | None = None) -> float | None:
        """How old the fit is at ``now`` (UTC), in hours; None before the first fit."""
        if self.refreshed_at is None:
            return None
        return round((_utc(now) - self.refreshed_at).total_seconds() / 3600.0, 2)

    def refresh(
        self,
        embeddings: np.ndarray,
        merchant_ids: Sequence[str],
        categories: Sequence[str],
        now: datetime | None = None,
        force: bool = False,
    ) -> bool:
        """Refit when due (see :meth:`needs_refresh`) or when ``force``; returns whether it refitted."""
        when = _utc(now)
        if not force and not self.needs_refresh(when):
            return False
        self.fit(embeddings, merchant_ids, categories, now=when)
        return True

    # ------------------------------------------------------------------ queries

    def _check_fitted(self) -> int:
        if self._dim is None:
            raise DataError("the prototypical memory is empty: call fit first")
        return self._dim

    def _category(self, category: str) -> str:
        self._check_fitted()
        if category not in self._ids:
            known = ", ".join(repr(c) for c in self.categories()) or "none"
            raise NotFoundError(f"unknown category {category!r}; the memory knows: {known}")
        return category

    def categories(self) -> list[str]:
        """The categories that have prototypes, sorted."""
        return sorted(self._ids)

    def prototypes(self, category: str) -> list[str]:
        """The prototype merchant ids of ``category``."""
        return list(self._ids[self._category(category)])

    def find_similar_merchants(
        self,
        embedding: np.ndarray,
        category: str,
        top_k: int = 5,
        exclude: str | None = None,
    ) -> list[tuple[str, float]]:
        """The ``top_k`` prototypes of ``category`` most similar to ``embedding``, best first.

        Returns ``(merchant_id, cosine_similarity)`` pairs; ``exclude`` (usually the query
        merchant's own id) is never returned, so a merchant is not "similar" to itself.
        """
        dim = self._check_fitted()
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
            raise DataError(f"top_k must be a whole number >= 1, got {top_k!r}")
        cat = self._category(category)
        try:
            q = np.asarray(embedding, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"the query embedding must be a numeric vector of length {dim}: {exc}") from exc
        if q.ndim == 2 and q.shape[0] == 1:
            q = q[0]
        if q.shape != (dim,):
            raise DataError(
                f"the query embedding has shape {q.shape}, the memory was fitted on {dim}-d embeddings; "
                f"pass one vector of length {dim} from the same encoder"
            )
        if not np.isfinite(q).all():
            raise DataError("the query embedding holds NaN or infinite values; impute them before searching")
        q = _normalise_rows(q[None, :], "the query embedding")[0]
        ids = self._ids[cat]
        sims = np.clip(self._emb[cat] @ q, -1.0, 1.0)
        order = np.argsort(-sims, kind="stable")
        out: list[tuple[str, float]] = []
        for i in order:
            if ids[i] == exclude:
                continue
            out.append((ids[i], float(sims[i])))
            if len(out) == top_k:
                break
        return out

    # ------------------------------------------------------------------ deletion and persistence

    def remove(self, merchant_id: str) -> bool:
        """Drop ``merchant_id`` from every category (right to deletion); returns whether it was there.

        A category left with no prototype is dropped. Leave the merchant out of the data the next
        :meth:`refresh` reads too, or the refit brings it back.
        """
        found = False
        for cat in list(self._ids):
            ids = self._ids[cat]
            keep = [i for i, m in enumerate(ids) if m != merchant_id]
            if len(keep) == len(ids):
                continue
            found = True
            if keep:
                self._ids[cat] = [ids[i] for i in keep]
                self._emb[cat] = np.ascontiguousarray(self._emb[cat][keep])
            else:
                del self._ids[cat], self._emb[cat]
        return found

    def state(self) -> dict[str, Any]:
        """A JSON-serialisable snapshot (settings, fit time, prototype ids and embeddings)."""
        return {
            "version": _STATE_VERSION,
            "k": self.k,
            "refresh_hours": self.refresh_hours,
            "seed": self.seed,
            "dim": self._dim,
            "refreshed_at": None if self.refreshed_at is None else self.refreshed_at.isoformat(),
            "categories": {
                cat: {"merchant_ids": list(self._ids[cat]), "embeddings": self._emb[cat].tolist()}
                for cat in self.categories()
            },
        }

    @staticmethod
    def from_state(state: dict[str, Any]) -> PrototypicalMemory:
        """Rebuild a memory from :meth:`state`'s snapshot (e.g. after a JSON round trip)."""
        try:
            version = state["version"]
            if version != _STATE_VERSION:
                raise DataError(
                    f"prototypical-memory state version {version!r} is not supported (expected {_STATE_VERSION}); "
                    "refit the memory and save it again"
                )
            mem = PrototypicalMemory(k=state["k"], refresh_hours=state["refresh_hours"], seed=state["seed"])
            dim = state["dim"]
            at = state["refreshed_at"]
            mem.refreshed_at = None if at is None else _utc(datetime.fromisoformat(at))
            for cat, entry in state["categories"].items():
                ids = [str(m) for m in entry["merchant_ids"]]
                emb = np.asarray(entry["embeddings"], dtype=np.float64).reshape(len(ids), -1)
                if dim is None or emb.shape[1] != dim or not np.isfinite(emb).all():
                    raise DataError(f"category {cat!r} in the state holds embeddings that are not finite {dim}-d rows")
                mem._ids[str(cat)] = ids
                mem._emb[str(cat)] = np.ascontiguousarray(emb)
            mem._dim = None if dim is None else int(dim)
        except DataError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise DataError(
                f"not a prototypical-memory state ({type(exc).__name__}: {exc}); pass what PrototypicalMemory.state() "
                "returned"
            ) from exc
        return mem
