"""The service's request logic, behind thin routes: generate, feedback, explanation, profile.

``generate``: the merchant's serving bundle from the embedding cache (loaded
from the online store on a miss) → one forward pass of the scorer →
:class:`~aidg.policy.risk_aware.RiskAwarePolicy` (safety guard, exploration
share, minimum gain, risk-aware Thompson sampling, conservative gate) → the
decision logged with its propensity and context → a ``decision`` event on
the bus. ``feedback`` (:mod:`aidg.service.intake`): events stored in the
decision log (idempotent by event id, durable before the answer), then
published for the stream workers, which join them to their decisions and
update the posterior this replica reloads every ``posterior_refresh_seconds``.

A backend that is down makes the answer ``degraded`` (its reasons listed): the
cache or online store → the in-memory snapshot serves; the bus → the decision
log's outbox republishes later; the decision log, or a model that fails on the
request → the safe answer (the current system's deal, unscored, nothing logged)
while feedback goes to the local spill. No exploration while degraded.
Rollout versions load in the background; one whose weights are unreadable or
not finite is refused when the rollout starts, one that fails to load (its
scores overflow) is rolled back, and the champion keeps serving.
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
from aidg.decisionlog.autonomy import AutonomyStore
from aidg.decisionlog.log import DecisionRecord
from aidg.decisionlog.privacy import PrivacyStore
from aidg.decisionlog.rollout import RolloutStore
from aidg.errors import BackendUnavailableError, ConflictError, DataError, NotFoundError
from aidg.explain.reading import verdict
from aidg.monitor.rollout import ACTIVE, RolloutController, View
from aidg.online.bundle import write_through
from aidg.online.feature_row import FeatureRow
from aidg.online.serving_model import ServingModel
from aidg.online.worker import StreamWorker
from aidg.policy.autonomy import APPRENTICE, AUTOPILOT, COPILOT, segments_of
from aidg.policy.risk_aware import RiskAwarePolicy, predicted_parts
from aidg.privacy.ids import glob_escape
from aidg.registry import ModelRegistry
from aidg.service import views
from aidg.service.autonomy import ServiceAutonomy
from aidg.service.backends import Backends
from aidg.service.disclosure import SimilarMerchants
from aidg.service.intake import FeedbackIntake
from aidg.service.prototype_refresh import PrototypeRefresher
from aidg.service.replica_monitor import ReplicaMonitor
from aidg.service.replica_privacy import NO_CONSENT, ReplicaPrivacy
from aidg.service.safe import safe_answer
from aidg.service.serving import Served
from aidg.service.spill import FeedbackSpill
from aidg.store.cache import EmbeddingCache

log = logging.getLogger("aidg.service")


class DrillError(RuntimeError):
    """A challenger request failed on purpose by a rollback drill (``drill_fault_rate``)."""


def _round(v: float, n: int = 5) -> float:
    return round(float(v), n)


class DealEngine:
    """Everything a replica does per request (see the module docstring)."""

    def __init__(self, settings: Settings, model: ServingModel, backends: Backends) -> None:
        self.settings, self.backends = settings, backends
        self.champion = Served(settings, model, backends)
        self.challenger: Served | None = None
        self._similar: tuple[ServingModel, SimilarMerchants] | None = None
        registry = ModelRegistry(settings)
        controller = RolloutController(
            RolloutStore(backends.decisions), settings, model.version, aliases=registry.set_aliases,
            versions=registry.versions,
        )  # fmt: skip
        self.monitor = ReplicaMonitor(
            settings, backends, controller, self._rollout_changed, lambda: self.champion, lambda: self.challenger
        )
        self.privacy = ReplicaPrivacy(settings, PrivacyStore(backends.decisions), model.merchants)
        ids = [str(m) for m in model.merchants.merchant_id]
        segments = segments_of(model.ctx.tables, ids, settings.autonomy.segment_by)
        self.autonomy = ServiceAutonomy(
            settings, AutonomyStore(backends.decisions), dict(zip(ids, segments, strict=True))
        )
        self.prototypes = PrototypeRefresher(
            settings, lambda: [s.model for s in self.served()], self.privacy.may_be_prototype
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._loading: set[str] = set()
        self._rng = np.random.default_rng()
        self.worker: StreamWorker | None = None
        self.counters = {"decisions": 0, "degraded": 0, "events_accepted": 0, "events_duplicate": 0,
                         "challenger_errors": 0, "events_spilled": 0}  # fmt: skip
        self.intake = FeedbackIntake(settings, backends, self.counters)

    # the champion's parts, as the routes, metrics and tests read them
    @property
    def model(self) -> ServingModel:
        return self.champion.model

    @property
    def cache(self) -> EmbeddingCache:
        return self.champion.cache

    @property
    def policy(self) -> RiskAwarePolicy:
        return self.champion.policy

    @property
    def posterior_version(self) -> int:
        return self.champion.posterior_version

    def served(self) -> list[Served]:
        """The versions this replica serves now: the champion and, during a rollout, the challenger."""
        return [self.champion] if self.challenger is None else [self.champion, self.challenger]

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, inline_worker: bool | None = None) -> None:
        """Materialise features, start the posterior reloader, the cache refresher, the monitor and (embedded)
        a stream worker."""
        self.champion.start()
        # the model, tables and snapshot are long-lived: move them out of the collector's view, so its full
        # collections, triggered by the many small objects of each answer, do not walk them (tens of ms at p99)
        gc.collect()
        gc.freeze()
        t = threading.Thread(target=self._reload_loop, name="aidg-posterior", daemon=True)
        t.start()
        self._threads.append(t)
        self.monitor.start()
        self.prototypes.start()
        if inline_worker if inline_worker is not None else self.backends.embedded_bus:
            self.worker = StreamWorker(
                self.backends.bus, self.backends.decisions, self.backends.online, self.settings.stream,
                self.settings.reward, consumer=f"inline-{uuid.uuid4().hex[:8]}", on_update=self.on_features_changed,
                kpi_bucket_seconds=self.settings.monitor.bucket_seconds,
            )  # fmt: skip
            self.worker.start()

    def stop(self) -> None:
        self._stop.set()
        if self.worker is not None:
            self.worker.stop()
        self.monitor.stop()
        self.prototypes.stop()
        for s in self.served():
            s.stop()
        for t in self._threads:
            t.join(2.0)

    def _reload_loop(self) -> None:
        while not self._stop.wait(self.settings.service.posterior_refresh_seconds):
            self.refresh_once()

    def refresh_once(self) -> None:
        """What the replica reloads every ``posterior_refresh_seconds``: the posteriors, erasures and consent (an
        erasure run through another replica also leaves this one's per-merchant posterior), the spill's replay."""
        for s in self.served():
            try:
                s.reload_posterior()
            except Exception:  # the decision log is down: keep the posterior we have
                log.warning("posterior reload failed", exc_info=True)
        try:
            erased = self.privacy.refresh()
            if erased:  # erased through another replica: out of this one's per-merchant posterior too
                self._forget_posterior({m for m in self.model.ctx.merchant_ids if self.privacy.hash(m) in erased})
            self.replay_spill()
            self.autonomy.review_if_due()
        except BackendUnavailableError:
            pass  # the decision log is still down: the spill keeps the feedback
        except Exception:
            log.warning("erasure and consent reload or the spill's replay failed", exc_info=True)

    def _forget_posterior(self, merchant_ids: set[str]) -> None:
        for s in self.served():
            with s.lock:
                for m in merchant_ids:
                    s.policy.merchants.forget(str(m))

    def reload_posterior(self) -> bool:
        """Load the champion's posterior the stream workers wrote, if it changed; True when it did."""
        return self.champion.reload_posterior()

    def on_features_changed(self, row: FeatureRow, payload: dict[str, Any]) -> None:
        """The stream worker updated a merchant's features: patch the bundle the decision was cached under."""
        for s in self.served():
            if payload.get("ns", s.ns) == s.ns:
                write_through(self.backends.cache, row, payload, s.cache.put)

    # -- the rollout ---------------------------------------------------------------------------
    def _rollout_changed(self, view: View) -> None:
        """A new rollout revision: swap in a promoted champion, load a new challenger (in the background)."""
        row = view.row
        if row.champion and row.champion != self.champion.version:
            if self.challenger is not None and self.challenger.version == row.champion:
                old, self.champion, self.challenger = self.champion, self.challenger, None
                old.stop()
                log.info("version %s is the champion now", row.champion)
            else:
                self._load(row.champion, champion=True)
        want = row.challenger if row.state in ACTIVE else None
        if want and (self.challenger is None or self.challenger.version != want):
            self._load(want, champion=False)

    def _load(self, version: str, champion: bool) -> None:
        if version in self._loading:
            return
        self._loading.add(version)

        def load() -> None:
            try:
                model = ServingModel(self.settings, self.champion.model.data, version)
                if self.settings.service.compile:
                    model.compile()
                served = Served(self.settings, model, self.backends)
                served.start()
                if champion:
                    old, self.champion = self.champion, served
                    old.stop()
                else:
                    old_ch, self.challenger = self.challenger, served
                    if old_ch is not None:
                        old_ch.stop()
                log.info("loaded version %s as the %s", version, "champion" if champion else "challenger")
            except Exception as exc:
                log.exception("could not load model version %s", version)
                if not champion:
                    self._refuse_challenger(version, exc)
            finally:
                self._loading.discard(version)

        threading.Thread(target=load, name=f"aidg-load-v{version}", daemon=True).start()

    def verify_version(self, version: str) -> None:
        """Before a rollout starts: a version whose weights cannot be read or hold NaN/inf is refused (409)."""
        try:
            ModelRegistry(self.settings).load_profile(version)
        except DataError as exc:
            raise ConflictError(
                f"version {version} is refused: {exc}; the champion (version {self.champion.version}) keeps serving"
            ) from None

    def _refuse_challenger(self, version: str, exc: Exception) -> None:
        """A challenger that failed to load (e.g. its scores overflow) is rolled back: it would never serve."""
        c = self.monitor.controller
        try:
            row = c.reload()
            if row.state in ACTIVE and row.challenger == version:
                c.rollback("monitor", f"version {version} could not be loaded ({type(exc).__name__}: {exc}); "
                                      f"the champion (version {self.champion.version}) keeps serving")  # fmt: skip
                self.monitor.changed()
        except (ConflictError, BackendUnavailableError):
            log.warning("could not roll back the challenger %s that failed to load", version, exc_info=True)

    def challenger_ready(self) -> bool:
        row = self.monitor.view.row
        return self.challenger is not None and self.challenger.version == row.challenger

    # -- generate ------------------------------------------------------------------------------
    def generate(self, merchant_id: str, n_variants: int | None = None, as_of: str | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        n = n_variants or self.settings.bandit.n_candidates
        at = pd.Timestamp(as_of).normalize() if as_of else self.model.as_of
        if at.tzinfo is not None:
            at = at.tz_convert(None)
        self.privacy.check(merchant_id)
        if merchant_id not in self.model.ctx.merchant_code.index:
            raise NotFoundError(f"unknown merchant {merchant_id!r}: it is not among the served data's merchants")
        degraded: list[str] = []
        view = self.monitor.view
        if not self.privacy.personalized(merchant_id):
            return self._safe(merchant_id, n, at, degraded, view.state, NO_CONSENT, t0)
        arm = view.arm_for(merchant_id, self.settings.rollout.hash_salt)
        explore = not self.monitor.hold_exploration
        segment, autonomy_level = self.autonomy.level(merchant_id)
        apprentice = autonomy_level == APPRENTICE  # the current system's deal is shown; AIDG predicts what the rep does
        decision_id = uuid.uuid4().hex
        served, fallback, sc = self.champion, None, None
        if arm != "champion":
            ch = self.challenger
            if ch is None or ch.version != view.row.challenger:
                arm, fallback = "champion", "the challenger is still loading on this replica"
            else:
                try:
                    if view.row.drill_fault_rate and self._rng.random() < view.row.drill_fault_rate:
                        raise DrillError("rollback drill: this challenger request failed on purpose")
                    sc = ch.decide(decision_id, merchant_id, n, at, degraded, explore=explore and arm == "explore",
                                   apprentice=apprentice)  # fmt: skip
                    served = ch
                except (NotFoundError, DataError):
                    raise
                except Exception as exc:  # the champion answers; the arm's error rate is what rolls it back
                    self.monitor.recorder.add(f"{arm}/errors")
                    self.counters["challenger_errors"] += 1
                    level = logging.DEBUG if isinstance(exc, DrillError) else logging.WARNING
                    log.log(level, "challenger %s failed for a request: %s", ch.version, exc)
                    arm, fallback = "champion", f"the challenger failed ({exc}); the champion answered"
        if sc is None:
            try:
                sc = self.champion.decide(decision_id, merchant_id, n, at, degraded, explore=explore,
                                          apprentice=apprentice)  # fmt: skip
            except (NotFoundError, DataError):
                raise
            except Exception as exc:  # the model failed on this request (NaN, a bug): the safe answer, degraded
                self.monitor.recorder.add("champion/errors")
                log.warning("the served model failed for a request: %s", exc)
                degraded.append(f"the model failed on this request ({type(exc).__name__}: {exc})")
                why = "the model could not score this request: the current system's deal, unscored; no decision logged"
                return self._safe(merchant_id, n, at, degraded, view.state, why, t0)
        d = sc.decision
        t_policy = time.perf_counter()
        s, b, n, played = sc.out, sc.bundle, sc.n, sc.played
        order = np.argsort(-s["score"][:n], kind="stable")
        variants = served.variants(sc, np.append(order, [played, n]))
        current_row = variants.pop()  # the current deal's row (n: the bundle's last)
        chosen: dict[str, Any] = dict(variants.pop())  # the played row, read by key below
        if sc.expected is not None:  # the scorer's, corrected by the merchant's own record: what the rep should expect
            chosen["expected"] = {k: _round(v, 5) for k, v in sc.expected.items()}
        response: dict[str, Any] = {
            "verdict": verdict(variants, current_row, chosen, d.why_current),
            "decision_id": decision_id,
            "merchant_id": merchant_id,
            "as_of": str(at.date()),
            "n_variants": n,
            "model_version": served.version,
            "rollout_arm": arm,
            "rollout_state": view.state,
            "personalized": True,
            "chosen": chosen,
            "current": current_row,
            "propensity": _round(d.pscore, 6),
            "why_current": d.why_current or None,
            "variants": variants,
        }
        if autonomy_level == AUTOPILOT and float(b.override_rate) > self.settings.autonomy.autopilot_max_override:
            autonomy_level = COPILOT  # autopilot only for merchants whose reps rarely step in
        response["autonomy"] = {
            "segment": segment, "level": autonomy_level, "shown": "current" if apprentice else "aidg",
            "applied": autonomy_level == AUTOPILOT,  # applied unless the rep steps in (an override event)
            **({"predicted_edit": _round(float(b.override_rate), 4), "aidg_pick": int(order[0])} if apprentice else {}),
        }  # fmt: skip
        if fallback:
            response["fallback"] = fallback
        row, base = sc.row(played), sc.row(n)
        current_margin = 1.0 - float(b.terms["discount_pct"][n])  # the GP30 proxy's normaliser (monitor.kpis)
        rec = DecisionRecord(
            decision_id, merchant_id, datetime.now(UTC), served.version, arm,
            {**{k: chosen[k] for k in ("variant", *views.TERMS, "type")}, "autonomy_segment": segment,
             "autonomy_level": autonomy_level, **({"predicted_edit": float(b.override_rate)} if apprentice else {})},
            float(d.pscore), np.asarray(s["phi"][played], float),
            row["score"], predicted_parts(row),
            {**response, "posterior": served.model.posterior_name, "ns": served.ns, "current_margin": current_margin,
             "proxy_baseline": base["approval"] * base["conversion"], "override_expected": float(b.override_rate),
             **({} if sc.psi is None else {"psi": [float(x) for x in sc.psi]}),
             **({} if sc.shared is None else {"shared_state": sc.shared})},
        )  # fmt: skip
        try:
            self.backends.decisions.record(rec)
        except BackendUnavailableError as exc:  # a decision that is not logged cannot learn: the safe answer
            degraded.append(f"decision log unavailable: {exc}")
            why = "the decision log is down: the current system's deal, unscored; no decision logged"
            return self._safe(merchant_id, n, at, degraded, view.state, why, t0)
        try:
            self.backends.bus.publish(
                self.settings.stream.stream,
                [{"kind": "decision", "decision_id": decision_id, "merchant_id": merchant_id, "type": d.action_type}],
            )
        except BackendUnavailableError as exc:
            degraded.append(f"event bus unavailable: {exc}")
        if view.state == "shadow" and self.challenger_ready():
            self.monitor.shadow(decision_id, merchant_id, n, at, played, np.array(s["score"][: n + 1], float))
        self.counters["decisions"] += 1
        self.counters["degraded"] += bool(degraded)
        t1 = time.perf_counter()
        self.monitor.recorder.decision(arm, t1 - t0, float(chosen["risk"]), chosen["type"] == "explore",
                                       (merchant_id, chosen["variant"]), sc.row(n))  # fmt: skip
        response["degraded"] = bool(degraded)
        response["degraded_reasons"] = degraded
        response["timing_ms"] = {
            "features": _round(sc.features_s * 1e3, 3),
            "score_and_decide": _round((t_policy - t0 - sc.features_s) * 1e3, 3),
            "log_and_publish": _round((t1 - t_policy) * 1e3, 3),
            "total": _round((t1 - t0) * 1e3, 3),
        }
        return response

    # -- feedback (service/intake.py) ---------------------------------------------------------
    def feedback(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, str]], bool]:
        """Store and publish feedback events (spilled locally while the decision log is down)."""
        return self.intake.feedback(events)

    def replay_spill(self) -> int:
        return self.intake.replay_spill()

    @property
    def spill(self) -> FeedbackSpill:
        return self.intake.spill

    # -- reading -------------------------------------------------------------------------------
    def decision(self, decision_id: str) -> DecisionRecord:
        rec = self.backends.decisions.get(decision_id)
        if rec is None:
            raise NotFoundError(f"unknown decision {decision_id!r}")
        self.privacy.check(rec.merchant_id)
        return rec

    def similar_merchants(self) -> SimilarMerchants:
        """The describer of similar merchants for the champion's model (built once per model)."""
        model = self.model
        if self._similar is None or self._similar[0] is not model:
            self._similar = (model, views.similar_merchants(model))
        return self._similar[1]

    def explanation(
        self, rec: DecisionRecord, change: tuple[int, str, Any] | None = None, reveal_ids: bool = True
    ) -> dict[str, Any]:
        """A logged decision explained (:func:`aidg.service.views.explanation`)."""
        return views.explanation(self, rec, change, reveal_ids)

    def _safe(self, merchant_id: str, n: int, at: pd.Timestamp, degraded: list[str], state: str, why: str,
              t0: float) -> dict[str, Any]:  # fmt: skip
        out = safe_answer(self.champion, merchant_id, n, at, degraded, state, why)
        self.counters["degraded"] += bool(out["degraded"])
        out["timing_ms"] = {"total": _round((time.perf_counter() - t0) * 1e3, 3)}
        return out

    def forget(self, merchant_id: str) -> int:
        """This replica's part of an erasure: refuse the merchant from now on, drop it from the in-process
        caches, the explainers' prototypes and the decision posterior; returns the cache entries removed."""
        self.privacy.forget(merchant_id)
        removed = 0
        for s in self.served():
            keys = s.cache.scan(f"{glob_escape(s.ns + merchant_id)}|*")
            removed += s.cache.invalidate(keys)
            s.memo.discard(f"{s.ns}{merchant_id}|")
            memory = s.model.explainer.memory
            if memory is not None:
                memory.remove(merchant_id)
            rec = s.model.package.records  # its record leaves the package the posterior starts from
            s.model.package.records = rec[rec.merchant_id.astype(str) != merchant_id]
        self._forget_posterior({merchant_id})  # its record and outcomes leave the decision posterior
        return removed

    def profile(self, merchant_id: str, embedding: bool = False) -> dict[str, Any]:
        """A merchant's served features and profile summary (:func:`aidg.service.views.merchant_profile`)."""
        self.privacy.check(merchant_id)
        return views.merchant_profile(self, merchant_id, embedding)


__all__ = ["DealEngine"]
