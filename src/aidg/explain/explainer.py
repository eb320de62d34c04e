"""The Explainer: runs every explanation algorithm on a merchant's scored variants, returns one Explanation.

For each variant: the top-5 merchant features by the scorer's attention
(readable tokens only; the share of attention on the learned profile is
reported beside them). For the best variants: a Captum Integrated-Gradients
attribution, the IF-THEN rule of the surrogate tree that decides it, and
optionally a what-if. For the merchant: the most similar real merchants of
its category (prototypical memory over behaviour fingerprints).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from aidg.config import ExplainSettings, Settings
from aidg.domain import DEAL_TERMS, PREDICTED
from aidg.errors import DataError, NotFoundError
from aidg.explain.attribution import integrated_gradients
from aidg.explain.prototypes import PrototypicalMemory
from aidg.explain.reading import attention_concentration, top_features, verdict
from aidg.explain.rule_inputs import LABEL_BEATS, LABEL_TOP_SHARE, rule_frame, surrogate_inputs
from aidg.explain.surrogate import Rule, RuleSurrogate
from aidg.explain.variant_row import TopFeature, VariantRow, variant_rows
from aidg.explain.whatif import what_if
from aidg.features.context import FeatureContext
from aidg.inference.scoring import behaviour_fingerprint, merchant_inputs, score_candidates
from aidg.inference.snapshot import Snapshot
from aidg.models.deal_scorer import ContextualDealScorer

if TYPE_CHECKING:
    from aidg.inference.profile_model import ProfileModel

TERM_COLUMNS = [*DEAL_TERMS, "focus", "type"]
RULES_MISS = "no rule matches the model here"


def _rule_stats(rule: Rule) -> dict[str, Any]:
    """A shown rule's support (training rows in its leaf) and precision (the share of them labelled as it says)."""
    return {"support": int(rule.support), "precision": round(float(rule.confidence), 4)}


def _shown_rule(rule: Rule, expected: bool | None) -> tuple[str, dict[str, Any]]:
    """A variant's rule as shown, and its stats with ``agrees``: where the rule's outcome is not what the model
    expects of the variant (``expected``: it beats the current deal), the text says so first and names what the
    model expects, so a rule never reads as the reason for an answer it contradicts."""
    stats = {**_rule_stats(rule), "agrees": expected is None or rule.recommend == expected}
    if stats["agrees"]:
        return rule.text(), stats
    said = "to beat the current deal" if expected else "not to beat the current deal"
    return f"{RULES_MISS}: the model expects this variant {said}; the nearest rule reads {rule.text()}", stats


def _term_columns(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """The term columns of scored rows for :func:`variant_rows` (rows without a focus or type column: primary,
    variant)."""
    fill = {"focus": "primary", "type": "variant"}
    return {c: rows[c].to_numpy() if c in rows else np.full(len(rows), fill.get(c, "")) for c in TERM_COLUMNS}


@dataclass
class Explanation:
    """Everything said about one merchant's variants (``to_dict`` is the JSON the CLI and API return)."""

    merchant_id: str
    at: str
    category: str
    variants: list[VariantRow]
    attributions: dict[int, list[dict[str, Any]]]
    rules: dict[int, str]
    similar_merchants: list[dict[str, Any]]
    global_rules: list[str]
    what_if: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    verdict: dict[str, Any] | None = None  # the first line (:func:`aidg.explain.reading.verdict`)
    current: VariantRow | None = None  # the current deal, scored
    top5: dict[int, dict[str, Any]] = field(default_factory=dict)  # per explained variant: source and features
    prototypes_age_hours: float | None = None  # how old the similar merchants' prototypes are (refreshed every 24 h)
    rule_stats: dict[int, dict[str, Any]] = field(default_factory=dict)  # per shown rule: support, precision, agrees
    global_rule_stats: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "merchant_id": self.merchant_id,
            "at": self.at,
            "category": self.category,
            "current": self.current,
            "variants": self.variants,
            "top5": {str(k): v for k, v in self.top5.items()},
            "attributions": {str(k): v for k, v in self.attributions.items()},
            "rules": {str(k): v for k, v in self.rules.items()},
            "similar_merchants": self.similar_merchants,
            "prototypes_age_hours": self.prototypes_age_hours,
            "global_rules": self.global_rules,
            # each shown rule's training rows (support) and the share of them the scorer labels as the rule says
            "rule_stats": {str(k): v for k, v in self.rule_stats.items()},
            "global_rule_stats": self.global_rule_stats,
            "what_if": self.what_if,
            "notes": self.notes,
        }


class Explainer:
    """Scores a merchant's candidates and explains them (see the module docstring)."""

    def __init__(
        self,
        scorer: ContextualDealScorer,
        memory: PrototypicalMemory | None = None,
        surrogate: RuleSurrogate | None = None,
        settings: ExplainSettings | None = None,
        surrogate_threshold: float | None = None,
        fingerprint_mean: np.ndarray | None = None,
        surrogate_label: str = LABEL_TOP_SHARE,
    ) -> None:
        self.scorer = scorer
        self.memory = memory
        self.surrogate = surrogate
        self.settings = settings or ExplainSettings()
        self.surrogate_threshold = surrogate_threshold
        self.surrogate_label = surrogate_label  # what the tree was asked (aidg.explain.rule_inputs)
        self.fingerprint_mean = fingerprint_mean
        names = scorer.config.token_names
        self.profile_tokens = [i for i, n in enumerate(names) if n.startswith("profile[")]

    @classmethod
    def from_artifacts(cls, scorer: ContextualDealScorer, a: dict[str, Any], settings: Settings) -> Explainer:
        """A version's Explainer from its scorer and stored artifacts (prototypes, rule surrogate, their scales)."""
        scorer.use_reward(settings.reward)  # the weights in force now, not those at training time
        memory = PrototypicalMemory.from_state(a["prototypes"]) if "prototypes" in a else None
        tree = RuleSurrogate.from_bytes(a["surrogate"]) if "surrogate" in a else None
        mean = np.asarray(a["fingerprint_mean"], np.float32) if "fingerprint_mean" in a else None
        label = str(a.get("surrogate_label", LABEL_TOP_SHARE))
        return cls(scorer, memory, tree, settings.explain, a.get("surrogate_threshold"), mean, label)

    def surrogate_rows(
        self, ctx: FeatureContext, snap: Snapshot, scored: pd.DataFrame
    ) -> tuple[pd.DataFrame, np.ndarray | None]:
        """The surrogate's rows for scored candidates and the model's label of each (what the tree was asked:
        beats the current deal, or in the top share by the version's threshold; None without a threshold)."""
        if self.surrogate_label == LABEL_BEATS:
            return surrogate_inputs(self.scorer, ctx, snap, scored)
        th = self.surrogate_threshold
        return rule_frame(ctx, snap, scored), None if th is None else scored.score.to_numpy(float) >= th

    def embedding(self, ctx: FeatureContext, snap: Snapshot, rows: np.ndarray) -> np.ndarray:
        """The prototypes' embedding: behaviour fingerprints centred on the training merchants' mean.

        Centred, cosine similarity says how alike two merchants are *relative to
        the average merchant* (raw fingerprints all point the same way: ≈ 1.0).
        """
        emb = behaviour_fingerprint(self.scorer, ctx, snap, rows)
        return emb - self.fingerprint_mean if self.fingerprint_mean is not None else emb

    def attention_top(self, attention: np.ndarray, x: np.ndarray, category: str) -> tuple[list[TopFeature], float]:
        """Top-k readable merchant features by attention weight for one variant, and the profile's share."""
        names = self.scorer.config.token_names
        idx, w = self.scorer.top_attention(attention[None], self.settings.top_features)
        top: list[TopFeature] = []
        for i, weight in zip(idx[0].tolist(), w[0].tolist(), strict=True):
            value: Any = category if names[i] == "category" else x[i]
            if isinstance(value, float | np.floating):
                value = None if not np.isfinite(value) else round(float(value), 4)
            top.append({"feature": names[i], "value": value, "weight": round(float(weight), 4)})
        return top, float(attention[self.profile_tokens].sum())

    def explain(
        self,
        ctx: FeatureContext,
        snap: Snapshot,
        candidates: pd.DataFrame,
        *,
        explain_variants: int = 3,
        change: tuple[int, str, Any] | None = None,
        current: pd.DataFrame | None = None,
    ) -> Explanation:
        """Score and explain one merchant's candidates; ``change`` = (variant, term, new value) adds a what-if;
        ``current`` (the merchant's current deal, one row: :meth:`~aidg.features.candidates.CandidateGenerator.current`)
        is scored too and gives the verdict."""
        scored = score_candidates(self.scorer, ctx, snap, candidates)
        t = scored.table
        mid = str(t.merchant_id.iloc[0])
        row = int(ctx.codes([mid])[0])
        x = snap.view.numeric[row]
        cat_code = int(snap.view.category[row])
        category = str(ctx.category_ids[cat_code]) if cat_code >= 0 else "unknown"
        order = np.argsort(-t.score.to_numpy(), kind="stable")
        tops, shares = zip(*(self.attention_top(scored.attention[i], x, category) for i in order), strict=True)
        rows = t.iloc[order]
        terms = _term_columns(rows)
        terms["variant"] = rows.variant.to_numpy() if "variant" in t else order
        variants = variant_rows(terms, {k: rows[k].to_numpy() for k in PREDICTED}, list(tops))
        readable, k = self.scorer.readable_tokens(), self.settings.top_features
        for row_, p_override, share, i in zip(variants, rows.p_override.to_numpy(), shares, order, strict=True):
            row_["p_override"] = round(float(p_override), 5)
            row_["profile_attention_share"] = round(share, 4)
            row_["attention_concentration"] = attention_concentration(scored.attention[i], readable, k)
        inp = merchant_inputs(ctx, snap, t)
        attributions: dict[int, list[dict[str, Any]]] = {}
        top5: dict[int, dict[str, Any]] = {}
        rules: dict[int, str] = {}
        rule_stats: dict[int, dict[str, Any]] = {}
        frame, expected = self.surrogate_rows(ctx, snap, t) if self.surrogate is not None else (None, None)
        for rank, i in enumerate(order[:explain_variants]):  # variants are listed in this order
            vid = variants[rank]["variant"]
            attributions[vid] = list(integrated_gradients(self.scorer, inp, int(i)).top(self.settings.top_features))
            shown = [dict(f) for f in variants[rank]["top_features"]]
            concentration = variants[rank]["attention_concentration"]
            top5[vid] = top_features(shown, attributions[vid], concentration, self.settings.attention_flat_ratio)
            if self.surrogate is not None and frame is not None:
                rule = self.surrogate.rule_for(frame.iloc[[int(i)]])
                rules[vid], rule_stats[vid] = _shown_rule(rule, None if expected is None else bool(expected[i]))
        similar: list[dict[str, Any]] = []
        notes: list[str] = []
        memory = self.memory  # one read: a replica's refresh may swap in a new memory meanwhile
        if memory is not None:
            emb = self.embedding(ctx, snap, np.array([row]))[0]
            try:
                found = memory.find_similar_merchants(emb, category, top_k=5, exclude=mid)
                similar = [{"merchant_id": m, "similarity": round(s, 4)} for m, s in found]
            except (DataError, NotFoundError) as exc:  # e.g. no prototypes in this category (all held out, erased)
                notes.append(f"similar merchants unavailable: {exc}")
        global_rules: list[str] = []
        global_stats: list[dict[str, Any]] = []
        if self.surrogate is not None:  # the rules that recommend first (a reviewer reads those), then the others
            ranked = sorted(self.surrogate.rules(), key=lambda r: (not r.recommend, -r.support))
            global_rules = [r.text() for r in ranked[:5]]
            global_stats = [_rule_stats(r) for r in ranked[:5]]
        wi = None
        if change is not None:
            v, term, value = change
            sel = t[t.variant == v] if "variant" in t else t.iloc[[v]]
            if len(sel) == 0:
                raise DataError(f"no variant {v} among this merchant's candidates")
            wi = what_if(
                self.scorer,
                ctx,
                snap,
                sel.iloc[0][candidates.columns.intersection(t.columns)],
                term,
                value,
                samples=self.settings.whatif_samples,
                level=self.settings.whatif_level,
            ).to_dict()
        cur_row = None
        if current is not None:
            c = score_candidates(self.scorer, ctx, snap, current).table
            cur_terms = {**_term_columns(c), "variant": np.array([-1]), "type": np.array(["current"])}
            cur_row = variant_rows(cur_terms, {key: c[key].to_numpy() for key in PREDICTED})[0]
        return Explanation(
            verdict=verdict(variants, cur_row) if cur_row is not None else None,
            current=cur_row,
            top5=top5,
            merchant_id=mid,
            at=str(snap.at),
            category=category,
            variants=variants,
            attributions=attributions,
            rules=rules,
            similar_merchants=similar,
            prototypes_age_hours=None if memory is None else memory.age_hours(datetime.now(UTC)),
            global_rules=global_rules,
            rule_stats=rule_stats,
            global_rule_stats=global_stats,
            what_if=wi,
            notes=notes,
        )


def load_explainer(pm: ProfileModel, settings: Settings) -> Explainer:
    """The Explainer of a trained version (its scorer, prototypes and rule surrogate)."""
    if pm.scorer is None:
        raise NotFoundError("this model version has no deal scorer: retrain it with `aidg train`")
    return Explainer.from_artifacts(pm.scorer, pm.artifacts, settings)
