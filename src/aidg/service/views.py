"""What the service's read routes return: a logged decision explained, a merchant's served profile, the
describer of similar merchants. Each reads the engine's champion and backends; none decides or writes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aidg.decisionlog.log import DecisionRecord
from aidg.errors import BackendUnavailableError, NotFoundError
from aidg.explain.reading import verdict_of_old_decision
from aidg.features.merchant_view import MERCHANT_NAMES
from aidg.online.feature_row import FeatureRow
from aidg.online.serving_model import ServingModel
from aidg.service.disclosure import SimilarMerchants

if TYPE_CHECKING:
    from aidg.service.engine import DealEngine

TERMS = ("discount_pct", "price", "duration_days", "category_id", "focus")


def similar_merchants(model: ServingModel) -> SimilarMerchants:
    """The describer of similar merchants for ``model``: its merchants, categories, cities, the deals whose GP30
    was known at its as-of date, and its merchants' served features."""
    tables = model.package.tables
    deals = tables["deals"]
    if "gp30_known_at" in deals:
        deals = deals[pd.to_datetime(deals.gp30_known_at) <= model.as_of]
    stats = pd.DataFrame(model.snap.view.numeric, index=[str(m) for m in model.ctx.merchant_ids])
    return SimilarMerchants(tables["merchants"], tables["categories"], tables.get("cities"), deals, stats)


def explanation(
    engine: DealEngine, rec: DecisionRecord, change: tuple[int, str, Any] | None, reveal_ids: bool
) -> dict[str, Any]:
    """Attention top-5 (as served), attributions, similar merchants, rules and an optional what-if. Similar
    merchants are anonymised descriptions (:mod:`aidg.service.disclosure`); ``reveal_ids`` (admins) adds their
    ids."""
    p = rec.payload
    cand = pd.DataFrame([{"merchant_id": rec.merchant_id, **{k: v[k] for k in ("variant", *TERMS, "type")}}
                         for v in p["variants"]])  # fmt: skip
    model = engine.model
    memory = model.explainer.memory
    ex = model.explainer.explain(model.ctx, model.snap, cand, change=change).to_dict()
    similar = engine.similar_merchants().describe(rec.merchant_id, ex["similar_merchants"], reveal_ids)
    return {
        "verdict": p.get("verdict") or verdict_of_old_decision(p),
        "decision_id": rec.decision_id,
        "merchant_id": rec.merchant_id,
        "model_version": rec.model_version,
        "chosen": p["chosen"],
        "variants": [{k: v.get(k) for k in ("variant", "type", *TERMS, "score", "risk", "components")}
                     for v in p["variants"]],  # best first, as served
        "attention_top5": {str(v["variant"]): v["top_features"] for v in p["variants"]},
        "top5": ex["top5"],  # the explained variants' top-5 with their source (attention, or attributions)
        "attributions": ex["attributions"],
        "similar_merchants": similar,
        # refreshed every 24 h (memo §1.2; aidg.service.prototype_refresh)
        "prototypes_age_hours": None if memory is None else memory.age_hours(engine.prototypes.clock()),
        "rules": ex["rules"],
        "global_rules": ex["global_rules"],
        "rule_stats": ex["rule_stats"],  # each shown rule's support and precision
        "global_rule_stats": ex["global_rule_stats"],
        "what_if": ex["what_if"],
        "notes": ex["notes"],
        "events": [
            {"event_id": e.event_id, "part": e.part, "value": e.value, "applied": applied}
            for e, applied in engine.backends.decisions.events(rec.decision_id)
        ],
    }


def merchant_profile(engine: DealEngine, merchant_id: str, embedding: bool) -> dict[str, Any]:
    """The merchant's served feature row (the online store's; the champion's snapshot while the store is down,
    marked ``degraded``): its features, counts and profile summary, the vectors themselves with ``embedding``."""
    degraded = False
    model = engine.model
    try:
        raw = engine.backends.online.read([engine.champion.ns + merchant_id])[0]
        row = FeatureRow.from_bytes(raw) if raw is not None else None
    except BackendUnavailableError:
        degraded, row = True, None
        if merchant_id in model.ctx.merchant_code.index:
            row = model.feature_row(merchant_id)
    if row is None:
        raise NotFoundError(f"unknown merchant {merchant_id!r}")
    cats = model.ctx.category_ids
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


__all__ = ["TERMS", "explanation", "merchant_profile", "similar_merchants"]
