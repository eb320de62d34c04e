"""The service's request logic, behind thin routes: generate, feedback, explanation, profile.

``generate``: the merchant's serving bundle from the embedding cache (loaded
from the online store on a miss) → one forward pass of the scorer →
:class:`~aidg.policy.decider.RiskAwarePolicy` (safety guard, exploration
share, minimum gain, risk-aware Thompson sampling, conservative gate) → the
decision logged with its propensity and context → a ``decision`` event on
the bus. ``feedback``: events stored in the decision log (idempotent by event
id, durable before the answer), then published for the stream workers, which
join them to their decisions and update the posterior this replica reloads
every ``posterior_refresh_seconds``.

A backend that is down makes the answer ``degraded`` where the service can do
without it (cache or online store: the in-memory snapshot serves; bus: the
decision log's outbox republishes later) and a 503 where it cannot (the
decision log: a decision that is not logged cannot learn).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from aidg.config import Settings
from aidg.errors import BackendUnavailableError, DataError, NotFoundError
from aidg.features.context import FIELD_SCALE
from aidg.features.merchant_view import MERCHANT_NAMES, SEVERITY_SCALE
from aidg.policy.decider import CURRENT, Candidates, RiskAwarePolicy, predicted_parts
from aidg.service.backends import Backends
from aidg.service.model import Bundle, ServingModel, refreshed_bundles, unpack_bundle
from aidg.store.cache import EmbeddingCache
from aidg.store.decisions import DecisionRecord, RewardEvent
from aidg.stream.rows import FeatureRow, bundle_key
from aidg.stream.worker import StreamWorker, reward_message

log = logging.getLogger("aidg.service")
KIND_PART = {"approval": "approval", "override": "override", "conversion": "conversion", "gp30": "gp30_uplift"}
TERMS = ("discount_pct", "price", "duration_days", "category_id", "focus")


def _round(v: float, n: int = 5) -> float:
    return round(float(v), n)


class DealEngine:
    """Everything a replica does per request (see the module docstring)."""

    def __init__(self, settings: Settings, model: ServingModel, backends: Backends, arm: str = "full") -> None:
        self.settings, self.model, self.backends, self.arm = settings, model, backends, arm
        c = settings.cache
        self.cache = EmbeddingCache(
            backends.cache,
            lambda keys: model.load_bundles(backends.online, keys),
            ttl_s=c.ttl_seconds,
            refresh_ahead_s=c.refresh_ahead_seconds,
            keep_warm_s=c.keep_warm_hours * 3600,
        )
        self.policy = RiskAwarePolicy(
            model.projector.dim, settings.bandit, settings.guard, settings.exploration, settings.reward,
            seed=int.from_bytes(uuid.uuid4().bytes[:4], "little"),
        )  # fmt: skip
        self.posterior_version = -1
        self._lock = threading.Lock()  # the policy's state: decisions vs. the posterior reload
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.worker: StreamWorker | None = None
        self.counters = {"decisions": 0, "degraded": 0, "events_accepted": 0, "events_duplicate": 0}

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, inline_worker: bool | None = None) -> None:
        """Materialise features, start the posterior reloader, the cache refresher and (embedded) a stream worker."""
        self.model.materialize(self.backends.online)
        self.reload_posterior()
        # the model, tables and snapshot are long-lived: move them out of the collector's view, so its full
        # collections, triggered by the many small objects of each answer, do not walk them (tens of ms at p99)
        gc.collect()
        gc.freeze()
        self.cache.start_refresher(self.settings.cache.refresh_interval_seconds)
        t = threading.Thread(target=self._reload_loop, name="aidg-posterior", daemon=True)
        t.start()
        self._threads.append(t)
        if inline_worker if inline_worker is not None else self.backends.embedded_bus:
            self.worker = StreamWorker(
                self.backends.bus, self.backends.decisions, self.backends.online, self.settings.stream,
                self.settings.reward, consumer=f"inline-{uuid.uuid4().hex[:8]}", on_update=self.on_features_changed,
            )  # fmt: skip
            self.worker.start()

    def stop(self) -> None:
        self._stop.set()
        if self.worker is not None:
            self.worker.stop()
        self.cache.stop()
        for t in self._threads:
            t.join(2.0)

    def _reload_loop(self) -> None:
        while not self._stop.wait(self.settings.service.posterior_refresh_seconds):
            try:
                self.reload_posterior()
            except Exception:  # the decision log is down: keep the posterior we have
                log.warning("posterior reload failed", exc_info=True)

    def reload_posterior(self) -> bool:
        """Load the posterior the stream workers wrote, if it changed; True when it did."""
        post = self.backends.decisions.posterior(self.model.posterior_name)
        if post is None or post.version == self.posterior_version:
            return False
        with self._lock:
            self.policy.bandit.set_posterior(post.A, post.b)
            self.posterior_version = post.version
        return True

    def on_features_changed(self, row: FeatureRow, payload: dict[str, Any]) -> None:
        """The stream worker updated a merchant's features: patch the bundle the decision was cached under."""
        patched = refreshed_bundles(self.backends.cache, row, payload)
        if patched:
            self.cache.put(patched)

    # -- generate ------------------------------------------------------------------------------
    def bundle(self, merchant_id: str, n: int, at: pd.Timestamp, degraded: list[str]) -> Bundle:
        try:
            return unpack_bundle(self.cache.get(bundle_key(merchant_id, at.date(), n)))
        except BackendUnavailableError as exc:
            degraded.append(f"cache or online store unavailable, served from the model's snapshot: {exc}")
            return self.model.bundle_from_snapshot(merchant_id, at, n)

    def generate(self, merchant_id: str, n_variants: int | None = None, as_of: str | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        n = n_variants or self.settings.bandit.n_candidates
        at = pd.Timestamp(as_of).normalize() if as_of else self.model.as_of
        if at.tzinfo is not None:
            at = at.tz_convert(None)
        if merchant_id not in self.model.ctx.merchant_code.index:
            raise NotFoundError(f"unknown merchant {merchant_id!r}: it is not among the served data's merchants")
        degraded: list[str] = []
        b = self.bundle(merchant_id, n, at, degraded)
        t_features = time.perf_counter()
        s = self.model.score(b, self.settings.explain.top_features)
        n = b.n
        cands = Candidates(
            np.asarray(b.labels["type"][:n], dtype=object), np.asarray(b.labels["category_id"][:n], dtype=object),
            s["score"][:n], s["risk"][:n], s["uplift"][:n], s["approval"][:n], s["conversion"][:n],
            np.nan_to_num(b.terms["distance"][:n]),
        )  # fmt: skip
        current = {k: float(s[k][n]) for k in ("score", "risk", "uplift", "approval", "conversion")}
        decision_id = uuid.uuid4().hex
        with self._lock:
            d = self.policy.decide(decision_id, cands, s["phi"][:n], b.override_rate, s["phi"][n], current)
            self.policy.release(decision_id)
        t_policy = time.perf_counter()
        played = n if d.index == CURRENT else d.index
        order = np.argsort(-s["score"][:n], kind="stable")
        variants = self._variants(b, s, np.append(order, played), d.refused)
        chosen = variants.pop()
        response: dict[str, Any] = {
            "decision_id": decision_id,
            "merchant_id": merchant_id,
            "as_of": str(at.date()),
            "n_variants": n,
            "model_version": self.model.version,
            "rollout_arm": self.arm,
            "chosen": chosen,
            "propensity": _round(d.pscore, 6),
            "why_current": d.why_current or None,
            "variants": variants,
        }
        row = {k: float(s[k][played]) for k in ("score", "risk", "uplift", "approval", "conversion")}
        rec = DecisionRecord(
            decision_id, merchant_id, datetime.now(UTC), self.model.version, self.arm,
            {k: chosen[k] for k in ("variant", *TERMS, "type")}, float(d.pscore), np.asarray(s["phi"][played], float),
            row["score"], predicted_parts(row), {**response, "posterior": self.model.posterior_name},
        )  # fmt: skip
        self.backends.decisions.record(rec)  # a decision that is not logged cannot learn: its failure is a 503
        try:
            self.backends.bus.publish(
                self.settings.stream.stream,
                [{"kind": "decision", "decision_id": decision_id, "merchant_id": merchant_id, "type": d.action_type}],
            )
        except BackendUnavailableError as exc:
            degraded.append(f"event bus unavailable: {exc}")
        self.counters["decisions"] += 1
        self.counters["degraded"] += bool(degraded)
        t1 = time.perf_counter()
        response["degraded"] = bool(degraded)
        response["degraded_reasons"] = degraded
        response["timing_ms"] = {
            "features": _round((t_features - t0) * 1e3, 3),
            "score_and_decide": _round((t_policy - t_features) * 1e3, 3),
            "log_and_publish": _round((t1 - t_policy) * 1e3, 3),
            "total": _round((t1 - t0) * 1e3, 3),
        }
        return response

    def _variants(self, b: Bundle, s: dict[str, np.ndarray], idx: np.ndarray, refused: dict[int, str]) -> list[Any]:
        """The response rows of variants ``idx`` (vectorised rounding; one dict per variant)."""
        t, lab = b.terms, b.labels
        col = {
            "variant": t["variant"][idx].astype(int).tolist(),
            "discount_pct": np.round(t["discount_pct"][idx], 4).tolist(),
            "price": np.round(t["price"][idx], 2).tolist(),
            "duration_days": t["duration_days"][idx].astype(int).tolist(),
            **{k: np.round(s[k][idx], 5).tolist() for k in ("score", "uplift", "approval", "conversion", "risk")},
        }
        names, values = self.model.token_names, self.model.token_values(b)
        top_i, top_w = s["top_index"][idx].tolist(), np.round(s["top_weight"][idx], 4).tolist()
        out = []
        for k, i in enumerate(idx.tolist()):
            v: dict[str, Any] = {
                "variant": col["variant"][k],
                "discount_pct": col["discount_pct"][k],
                "price": col["price"][k],
                "duration_days": col["duration_days"][k],
                "category_id": lab["category_id"][i],
                "focus": lab["focus"][i],
                "type": lab["type"][i],
                "score": col["score"][k],
                "components": {
                    "gp30_uplift": col["uplift"][k],
                    "approval": col["approval"][k],
                    "conversion": col["conversion"][k],
                },
                "risk": col["risk"][k],
                "top_features": [
                    {"feature": names[j], "value": values[j], "weight": w}
                    for j, w in zip(top_i[k], top_w[k], strict=True)
                ],
            }
            if i in refused:
                v["refused"] = refused[i]
            out.append(v)
        return out

    # -- feedback ------------------------------------------------------------------------------
    def feedback(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, str]], bool]:
        """Store and publish feedback events; per event its status, and whether the bus took them."""
        recs = [self._reward_event(e) for e in events]
        statuses = self.backends.decisions.receive(recs)
        accepted = [r for r, st in zip(recs, statuses, strict=True) if st == "accepted"]
        published = True
        if accepted:
            try:
                self.backends.bus.publish(self.settings.stream.stream, [reward_message(r) for r in accepted])
            except BackendUnavailableError:
                published = False  # stored: the outbox republishes them once the bus is back
        self.counters["events_accepted"] += len(accepted)
        self.counters["events_duplicate"] += statuses.count("duplicate")
        return [{"event_id": r.event_id, "status": st} for r, st in zip(recs, statuses, strict=True)], published

    def _reward_event(self, e: dict[str, Any]) -> RewardEvent:
        part = KIND_PART[e["kind"]]
        value = e.get("value")
        detail: dict[str, Any] = {}
        if e["kind"] == "override":
            edited = {k: v for k, v in (e.get("edited_terms") or {}).items() if v is not None}
            detail["edited_terms"] = edited
            if value is None:
                value = self._severity(e["decision_id"], edited)
        if e["kind"] == "approval" and value is None:
            value = 1.0 if e.get("approved") else 0.0
        if value is None:
            raise DataError(f"event {e['event_id']!r}: a {e['kind']} event needs a value")
        at = e.get("at") or datetime.now(UTC)
        return RewardEvent(str(e["event_id"]), str(e["decision_id"]), part, float(value), at, detail)

    def _severity(self, decision_id: str, edited: dict[str, Any]) -> float:
        """How large a rep's edit was: the largest change of a term in its field's units, ÷ 0.75, clipped to 1."""
        rec = self.backends.decisions.get(decision_id)
        if rec is None:
            return 0.0  # the event is reported as unknown_decision by receive
        worst = 0.0
        for f, v in edited.items():
            if f == "category_id":
                worst = max(worst, float(str(v) != str(rec.variant.get(f))))
            elif f in FIELD_SCALE and f in rec.variant:
                worst = max(worst, abs(float(v) - float(rec.variant[f])) / FIELD_SCALE[f])
        return float(min(worst / SEVERITY_SCALE, 1.0))

    # -- reading -------------------------------------------------------------------------------
    def decision(self, decision_id: str) -> DecisionRecord:
        rec = self.backends.decisions.get(decision_id)
        if rec is None:
            raise NotFoundError(f"unknown decision {decision_id!r}")
        return rec

    def explanation(self, rec: DecisionRecord, change: tuple[int, str, Any] | None = None) -> dict[str, Any]:
        """Attention top-5 (as served), attributions, similar merchants, rules and an optional what-if."""
        p = rec.payload
        cand = pd.DataFrame([{"merchant_id": rec.merchant_id, **{k: v[k] for k in ("variant", *TERMS, "type")}}
                             for v in p["variants"]])  # fmt: skip
        ex = self.model.explainer.explain(self.model.ctx, self.model.snap, cand, change=change).to_dict()
        return {
            "decision_id": rec.decision_id,
            "merchant_id": rec.merchant_id,
            "model_version": rec.model_version,
            "chosen": p["chosen"],
            "attention_top5": {str(v["variant"]): v["top_features"] for v in p["variants"]},
            "attributions": ex["attributions"],
            "similar_merchants": ex["similar_merchants"],
            "rules": ex["rules"],
            "global_rules": ex["global_rules"],
            "what_if": ex["what_if"],
            "notes": ex["notes"],
            "events": [
                {"event_id": e.event_id, "part": e.part, "value": e.value, "applied": applied}
                for e, applied in self.backends.decisions.events(rec.decision_id)
            ],
        }

    def profile(self, merchant_id: str, embedding: bool = False) -> dict[str, Any]:
        degraded = False
        try:
            raw = self.backends.online.read([merchant_id])[0]
            row = FeatureRow.from_bytes(raw) if raw is not None else None
        except BackendUnavailableError:
            degraded, row = True, None
            if merchant_id in self.model.ctx.merchant_code.index:
                row = self.model.feature_row(merchant_id)
        if row is None:
            raise NotFoundError(f"unknown merchant {merchant_id!r}")
        cats = self.model.ctx.category_ids
        out: dict[str, Any] = {
            "merchant_id": merchant_id,
            "model_version": row.version,
            "category": str(cats[row.category]) if row.category >= 0 else None,
            "secondary_category": str(cats[row.secondary]) if row.secondary >= 0 else None,
            "features": {
                n: (round(float(v), 4) if np.isfinite(v) else None) for n, v in zip(MERCHANT_NAMES, row.x, strict=True)
            },
            "proposals_answered": row.n_proposals,
            "overrides": row.n_overrides,
            "updates_since_materialized": row.updates,
            "profile_dim": len(row.profile),
            "profile_norm": round(float(np.linalg.norm(row.profile)), 4),
            "degraded": degraded,
        }
        if embedding:
            out["profile"] = [round(float(v), 5) for v in row.profile]
            out["override_intent"] = [round(float(v), 5) for v in row.intent]
        return out


__all__ = ["KIND_PART", "DealEngine"]
