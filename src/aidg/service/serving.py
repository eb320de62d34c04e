"""One model version as a replica serves it: its embedding cache, its policy and posterior, one decision.

A replica holds one :class:`Served` for the champion and, during a rollout,
one for the challenger. Each has its own key prefix in the online store and
the cache (``v<version>/``), its own posterior (named by version and
fingerprint) and its own :class:`~aidg.policy.risk_aware.RiskAwarePolicy`. A
version whose ``serving_policy`` is ``current`` is the existing system: it
scores and explains, then plays the merchant's current deal.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from aidg.config import Settings
from aidg.decisionlog.schema import MERCHANT_SEP
from aidg.domain import PREDICTED
from aidg.errors import BackendUnavailableError
from aidg.explain.variant_row import TopFeature, VariantRow, variant_rows
from aidg.online.bundle import Bundle, unpack_bundle
from aidg.online.feature_row import bundle_key
from aidg.online.score_memo import ScoreMemo
from aidg.online.serving_model import ServingModel
from aidg.policy.pooled import CURRENT_FEATURES, term_features
from aidg.policy.response_model import current_deals, current_terms, merchant_records
from aidg.policy.risk_aware import CURRENT, Candidates, Decision, MerchantTerms, RiskAwarePolicy
from aidg.service.backends import Backends
from aidg.service.shared_state import SharedExploration, SharedGate, shared_state
from aidg.store.cache import EmbeddingCache

log = logging.getLogger("aidg.service")


ROW_BYTES = 2300  # a response row in memory (a dict, its components and top-5; measured with sys.getsizeof)


def _read_only(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


@dataclass(frozen=True)
class Prepared:
    """What a request reads from a bundle before the policy draws, computed once per bundle bytes (the score memo
    shares it between requests: arrays read-only, rows never modified, a refused row is copied)."""

    bundle: Bundle
    out: dict[str, np.ndarray]
    cands: Candidates
    current: dict[str, float]  # the current deal's predictions
    psi: np.ndarray | None  # the variants' term features (the per-merchant posterior), None when it is off
    rows: list[VariantRow]  # every variant's response row, then the current deal's (index order)

    def nbytes(self, raw: bytes) -> int:
        """The memory the entry holds, as the memo's budget counts it."""
        b = self.bundle
        size = len(raw) + sum(a.nbytes for a in self.out.values()) + b.x.nbytes
        size += sum(t.numel() * t.element_size() for t in (*b.tensors, b.deal, b.deal_category))
        size += sum(a.nbytes for a in b.terms.values()) + (0 if self.psi is None else self.psi.nbytes)
        return int(size) + ROW_BYTES * len(self.rows)


@dataclass
class Scored:
    """What the request read from its bundle (:class:`Prepared`), the policy's decision and the index played (n:
    the current deal)."""

    prepared: Prepared
    decision: Decision
    played: int
    features_s: float = 0.0  # time spent reading the bundle
    psi: np.ndarray | None = None  # the played deal's term features (the per-merchant posterior learns with them)
    shared: dict[str, Any] | None = None  # what the shared policy state did for it (gate, exploration)
    expected: dict[str, float] | None = None  # the played deal's conversion and GP30 uplift, corrected per merchant

    @property
    def bundle(self) -> Bundle:
        return self.prepared.bundle

    @property
    def out(self) -> dict[str, np.ndarray]:
        return self.prepared.out

    @property
    def n(self) -> int:
        return self.bundle.n

    def row(self, i: int) -> dict[str, float]:
        return {k: float(self.out[k][i]) for k in PREDICTED}


class Served:
    """A version's serving state in this replica (module docstring)."""

    def __init__(self, settings: Settings, model: ServingModel, backends: Backends) -> None:
        self.settings, self.model, self.backends = settings, model, backends
        self.ns = model.namespace
        c = settings.cache
        self.cache = EmbeddingCache(
            backends.cache,
            lambda keys: model.load_bundles(backends.online, keys),
            ttl_s=c.ttl_seconds,
            refresh_ahead_s=c.refresh_ahead_seconds,
            keep_warm_s=c.keep_warm_hours * 3600,
        )
        # what the bundles read most recently gave once scored (aidg.online.score_memo)
        self.memo: ScoreMemo[Prepared] = ScoreMemo(int(c.score_memo_mb * 2**20), lambda raw, p: p.nbytes(raw))
        self.policy = RiskAwarePolicy(
            model.projector.dim, settings.bandit, settings.guard, settings.exploration, settings.reward,
            seed=int.from_bytes(uuid.uuid4().bytes[:4], "little"), posterior=settings.posterior,
        )  # fmt: skip
        # the per-merchant posterior starts from every merchant's record (aidg.policy.response_model); each request
        # passes its variants' term features relative to the merchant's current (habitual) deal
        current = current_terms(model.merchants, model.merchants.merchant_id)
        self.current_deals = current_deals(current)
        self.categories = current.category_id.astype(str).to_dict()
        if settings.posterior.enabled:
            self.policy.merchants.warm_start_many(merchant_records(model.package.records, current))
        # one gate budget and one exploration quota for every process serving this model: replicas through Redis,
        # the workers of one `aidg serve` through shared memory (aidg.service.shared_state)
        self.shared: tuple[SharedGate, SharedExploration] | None = None
        state = shared_state(settings, self.ns)
        if state is not None:
            self.shared = gate, exploration = (SharedGate(state, settings.bandit.conservative_alpha),
                                               SharedExploration(settings.exploration, state))  # fmt: skip
            self.policy.gate, self.policy.exploration = gate, exploration
        self.current_only = model.serving_policy == "current"
        self.posterior_version = -1
        self.merchants_loaded: datetime | None = None  # the newest per-merchant row loaded
        self.lock = threading.Lock()  # the policy's state: decisions vs. the posterior reload

    @property
    def version(self) -> str:
        return self.model.version

    def start(self) -> None:
        self.model.materialize(self.backends.online)
        self.reload_posterior()
        self.cache.start_refresher(self.settings.cache.refresh_interval_seconds)

    def stop(self) -> None:
        self.cache.stop()

    def reload_posterior(self) -> bool:
        """Load what the stream workers wrote since the last load: the global posterior, if it changed, and the
        merchants' online statistics saved since (the per-merchant posterior); True when anything changed."""
        post = self.backends.decisions.posterior(self.model.posterior_name)
        changed = self._reload_merchants()
        if post is None or post.version == self.posterior_version:
            return changed
        with self.lock:
            self.policy.bandit.set_posterior(post.A, post.b)
            self.posterior_version = post.version
        return True

    def _reload_merchants(self) -> bool:
        """The merchants' online statistics saved since the last load (a second's overlap: a row saved in the
        same instant is read again, and :meth:`~aidg.policy.pooled.PooledLinear.set_online` replaces, never adds)."""
        if not self.settings.posterior.enabled:
            return False
        prefix = f"{self.model.posterior_name}{MERCHANT_SEP}"
        since = None if self.merchants_loaded is None else self.merchants_loaded - timedelta(seconds=1)
        rows = self.backends.decisions.posteriors_since(prefix, since)
        if not rows:
            return False
        with self.lock:
            for row in rows:
                merchant = row.name[len(prefix) :]
                if merchant in self.categories:  # (an erased merchant's rows are deleted with it)
                    self.policy.merchants.set_online(merchant, self.categories[merchant], row.A, row.b)
        self.merchants_loaded = max(r.updated_at for r in rows)
        return True

    def _read(self, merchant_id: str, n: int, at: pd.Timestamp, degraded: list[str]) -> tuple[str, bytes | None]:
        """The bundle's cache key and bytes; None (and a degraded reason) when the cache or online store is down."""
        key = self.ns + bundle_key(merchant_id, at.date(), n)
        try:
            return key, self.cache.get(key)
        except BackendUnavailableError as exc:
            degraded.append(f"cache or online store unavailable, served from the model's snapshot: {exc}")
            return key, None

    def bundle(self, merchant_id: str, n: int, at: pd.Timestamp, degraded: list[str]) -> Bundle:
        """The merchant's bundle for the day, unscored (the safe answer's: it never depends on the model)."""
        raw = self._read(merchant_id, n, at, degraded)[1]
        return self.model.bundle_from_snapshot(merchant_id, at, n) if raw is None else unpack_bundle(raw)

    def prepared(self, merchant_id: str, n: int, at: pd.Timestamp, degraded: list[str]) -> tuple[Prepared, float]:
        """The merchant's bundle for the day with what the request needs from it (from the score memo when the cache
        handed back the bytes it was computed from), and the seconds spent reading the bytes."""
        t0 = time.perf_counter()
        key, raw = self._read(merchant_id, n, at, degraded)
        if raw is None:
            b = self.model.bundle_from_snapshot(merchant_id, at, n)
            return self._prepare(b), time.perf_counter() - t0
        read_s = time.perf_counter() - t0
        return self.memo.get(key, raw, lambda data: self._prepare(unpack_bundle(data))), read_s

    def _prepare(self, b: Bundle) -> Prepared:
        """Score the bundle (ValueError on a NaN score: never memoised, the request gets the safe answer) and build
        the policy's inputs and the response rows."""
        s = self.model.score(b, self.settings.explain.top_features)
        n = b.n
        if not np.isfinite(s["score"][: n + 1]).all():
            raise ValueError(f"model version {self.version} scored merchant {b.merchant_id!r} as NaN")
        _read_only(*s.values())
        cands = Candidates(
            np.asarray(b.labels["type"][:n], dtype=object), np.asarray(b.labels["category_id"][:n], dtype=object),
            s["score"][:n], s["risk"][:n], s["uplift"][:n], s["approval"][:n], s["conversion"][:n],
            np.nan_to_num(b.terms["distance"][:n]),
        )  # fmt: skip
        _read_only(cands.types, cands.categories, cands.distance)
        psi = None
        if self.settings.posterior.enabled:
            psi = term_features(b.terms["discount_pct"][:n], b.terms["price"][:n], b.terms["duration_days"][:n],
                                np.asarray(b.labels["focus"][:n]) == "secondary", self.current_deals[b.merchant_id])
            _read_only(psi)
        current = {k: float(s[k][n]) for k in PREDICTED}
        return Prepared(b, s, cands, current, psi, self._rows(b, s, np.arange(n + 1)))

    def decide(
        self, decision_id: str, merchant_id: str, n: int, at: pd.Timestamp, degraded: list[str], explore: bool = True,
        apprentice: bool = False,
    ) -> Scored:  # fmt: skip
        """Score the merchant's variants and choose (the policy forgets the decision: workers learn from it);
        ``apprentice``: the segment's reps see the current system's deal (scored, nothing explored)."""
        p, t_features = self.prepared(merchant_id, n, at, degraded)
        explore = explore and not degraded  # no exploration while a backend is down
        cands, n = p.cands, p.bundle.n
        terms = None
        if p.psi is not None:
            terms = MerchantTerms(merchant_id, self.categories[merchant_id], p.psi, CURRENT_FEATURES)
        shared = None
        if self.current_only or apprentice:
            why = ("apprentice: the segment's reps see the current system's deal while AIDG learns to predict them"
                   if apprentice else "the existing system plays the merchant's current deal")  # fmt: skip
            d = Decision(CURRENT, 1.0, "current", {}, why, float("nan"))
        else:
            with self.lock:
                if self.shared is not None:
                    self.shared[1].last = {}  # set only if this request asks to explore
                phi = p.out["phi"]
                d = self.policy.select_action(decision_id, cands, phi[:n], p.bundle.override_rate, phi[n], p.current,
                                              explore=explore, terms=terms)  # fmt: skip
                if self.shared is not None:
                    gate, ex = self.shared[0].trace(decision_id), self.shared[1].last
                    shared = {"gate": gate, **({"explore": ex} if ex else {})}
                self.policy.release(decision_id)
        played_psi = None if terms is None else (terms.current if d.index == CURRENT else terms.psi[d.index])
        expected = d.expected  # what the rep is shown to expect (judged against it): the policy computed it
        if apprentice and terms is not None and not self.current_only:  # the policy was not asked
            with self.lock:
                expected = self.policy.expectations(terms, p.current)
        return Scored(p, d, n if d.index == CURRENT else d.index, t_features, played_psi, shared, expected)

    def variants(self, sc: Scored, idx: np.ndarray) -> list[VariantRow]:
        """The response rows of variants ``idx``, with the guard's refusals (a refused row is a copy: the rows
        are shared through the score memo)."""
        refused, rows = sc.decision.refused, sc.prepared.rows
        out = []
        for i in idx.tolist():
            row = rows[i]
            if i in refused:
                row = row.copy()
                row["refused"] = refused[i]
            out.append(row)
        return out

    def _rows(self, b: Bundle, s: dict[str, np.ndarray], idx: np.ndarray) -> list[VariantRow]:
        """The response rows of variants ``idx`` (:func:`variant_rows`)."""
        names, values = self.model.token_names, self.model.token_values(b)
        top_i, top_w = s["top_index"][idx].tolist(), np.round(s["top_weight"][idx], 4).tolist()
        tops: list[list[TopFeature]] = [
            [{"feature": names[j], "value": values[j], "weight": w} for j, w in zip(ti, tw, strict=True)]
            for ti, tw in zip(top_i, top_w, strict=True)
        ]
        terms = {**{k: b.terms[k][idx] for k in ("variant", "discount_pct", "price", "duration_days")},
                 **{k: [b.labels[k][i] for i in idx.tolist()] for k in ("category_id", "focus", "type")}}  # fmt: skip
        return variant_rows(terms, {k: s[k][idx] for k in PREDICTED}, tops)


__all__ = ["Scored", "Served"]
