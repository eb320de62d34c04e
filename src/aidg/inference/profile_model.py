"""ProfileModel: every trained branch plus the fusion (and the deal scorer on top), and how to compute profiles.

One registered model version is one ProfileModel: the encoders, the fusion, the
contextual deal scorer trained on their profiles, and the saved states of the
explainers and the baseline (``artifacts``), so a version serves as a whole.

``compute_parts`` builds each branch's embedding for every merchant at a
cutoff (point-in-time: only what was known before it); ``profiles`` fuses them
into the 512-d merchant profile. A merchant with no history (cold start) still
gets one: its sequences are empty (the encoders read a summary token), its
graph node has only its own attributes, its sentiment is neutral (zeros).

A model trained with differential privacy (``meta["privacy"]``, see
:mod:`aidg.training.profile`) lists the parts it could not train privately:
a branch in ``dropped_branches`` is zeros in every computed part and switched off
in the fusion, with ``neutral_seasonality`` the geo block's category
seasonality (an aggregate of every merchant's deal outcomes) is the neutral
profile, and the override steps leave out the rep's habits (counted over every
merchant the rep edits), so served profiles never carry what the guarantee
does not cover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from aidg.features.context import FeatureContext
from aidg.features.geo import geo_features
from aidg.features.graph import build_graph, merchant_static
from aidg.features.panel import cutoff_seconds
from aidg.features.sequences import deal_sequences, event_sequences
from aidg.features.summary import SUMMARY_NAMES, history_summary
from aidg.features.text import latest_notes, readable_mask
from aidg.inference.batches import predict_batches
from aidg.inference.encoding import branch_sequences, encode_deals, encode_events, encode_overrides, predict_texts
from aidg.models.deal_history_encoder import DealHistoryEncoder
from aidg.models.deal_scorer import ContextualDealScorer
from aidg.models.heads import MLPHead
from aidg.models.merchant_graph_sage import MerchantGraphSAGE
from aidg.models.merchant_profile_encoder import MerchantProfileEncoder
from aidg.models.override_pattern_analyzer import OverridePatternAnalyzer
from aidg.models.sentiment_extractor import SentimentExtractor
from aidg.models.sequence_encoder import EventSequenceEncoder

NOTES_PER_MERCHANT = 3  # latest notes averaged into the sentiment branch


@dataclass
class ProfileModel:
    """The trained merchant-profile encoder: branches, fusion, and the downstream uplift head."""

    deal: DealHistoryEncoder
    override: OverridePatternAnalyzer
    sentiment: SentimentExtractor | None
    graph: MerchantGraphSAGE
    sequence: EventSequenceEncoder
    fusion: MerchantProfileEncoder
    uplift_head: MLPHead
    heads: dict[str, MLPHead] = field(default_factory=dict)  # each branch's training head
    meta: dict[str, Any] = field(default_factory=dict)
    scorer: ContextualDealScorer | None = None  # the contextual deal scorer trained on these profiles
    artifacts: dict[str, Any] = field(default_factory=dict)  # explainers' and the baseline's saved states
    # compute_parts' results kept by (data, date, seed) while remember_parts() is on (None: off)
    _parts_memo: dict[tuple[Any, ...], tuple[Any, dict[str, np.ndarray], np.ndarray]] | None = field(
        default=None, repr=False, compare=False
    )
    # each note text's (sentiment vector, mood) while remember_parts() is on: snapshots a window apart share notes
    _note_memo: dict[str, tuple[np.ndarray, float]] = field(default_factory=dict, repr=False, compare=False)

    def modules(self) -> dict[str, nn.Module]:
        out: dict[str, nn.Module] = {
            "deal": self.deal,
            "override": self.override,
            "graph": self.graph,
            "sequence": self.sequence,
            "fusion": self.fusion,
            "uplift_head": self.uplift_head,
        }
        if self.sentiment is not None:
            out["sentiment"] = self.sentiment
        out.update({f"head_{k}": v for k, v in self.heads.items()})
        if self.scorer is not None:
            out["scorer"] = self.scorer
        return out

    def is_private(self) -> bool:
        """Trained with differential privacy (``meta["privacy"]``): its inputs leave out cross-merchant features."""
        return "privacy" in self.meta

    def dropped_branches(self) -> frozenset[str]:
        """Branches this model never uses (dropped in the fusion): the DP model's graph (zeros in every part) and
        those training was told to leave out (``Settings.training.without_branches``)."""
        private = self.meta.get("privacy", {}).get("dropped_branches", ())
        return frozenset(private) | frozenset(self.meta.get("without_branches", ()))

    def remember_parts(self, on: bool = True) -> None:
        """Keep each :meth:`compute_parts` result (by data table identity, date and seed) until called with False.

        Training computes the same date's parts twice (the fusion's inputs, then the scorer's last window): at the
        memo's scale each costs minutes. Only while the branch encoders no longer change (after their training)."""
        self._parts_memo = {} if on else None
        self._note_memo = {}

    def eval(self) -> ProfileModel:
        for m in self.modules().values():
            m.eval()
        return self

    @torch.inference_mode()
    def compute_parts(
        self, ctx: FeatureContext, at: pd.Timestamp | str, seed: int = 0, readable: dict[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Every branch's embedding for every merchant (ctx order), from what was known before ``at``.

        ``readable``, when given, receives readable by-products the scorer shows
        by name: ``mood`` (positive − negative probability of the latest notes).
        """
        self.eval()
        cut = cutoff_seconds(at)
        # what the parts depend on besides the weights: the data, the date, the seed and what meta switches
        key = (id(ctx.tables), cut, seed, self.is_private(), self.dropped_branches(),
               bool(self.meta.get("privacy", {}).get("neutral_seasonality")))  # fmt: skip
        memo = self._parts_memo
        if memo is not None and key in memo and memo[key][0] is ctx.tables:
            if readable is not None:
                readable["mood"] = memo[key][2]
            return dict(memo[key][1])
        n = len(ctx.merchant_ids)
        q_m, q_t = np.arange(n), np.full(n, cut)
        parts: dict[str, np.ndarray] = {}
        ds = deal_sequences(ctx, q_m, q_t)
        parts["deal_history"] = predict_batches(lambda i: encode_deals(self.deal, ds.x[i], ds.mask[i]), n)
        os_ = branch_sequences("override", self.is_private())(ctx, q_m, q_t)
        parts["override_intent"] = predict_batches(lambda i: encode_overrides(self.override, os_.x[i], os_.mask[i]), n)
        es = event_sequences(ctx, q_m, q_t)
        parts["sequence"] = predict_batches(
            lambda i: encode_events(self.sequence, es.x[i], es.mask[i], es.age_days[i]), n
        )
        if "graph" in self.dropped_branches():
            parts["graph"] = np.zeros((n, int(self.graph.config.out_dim)), np.float32)
        else:
            graph = build_graph(ctx, cut)
            h = self.graph(graph.x_merchant, graph.x_deal, graph.edge_index, graph.edge_attr, graph.edge_weight)
            parts["graph"] = h[:n].numpy()
        parts["sentiment"], mood = self.merchant_sentiment(ctx, at)
        if readable is not None:
            readable["mood"] = mood
        t = ctx.tables
        geo, geo_names = geo_features(
            t["merchants"],
            t.get("merchant_locations", _primary_locations(t["merchants"])),
            t["deals"],
            t["categories"],
            pd.Timestamp(at),
            seed=seed,
        )
        if self.meta.get("privacy", {}).get("neutral_seasonality"):
            geo = neutral_seasonality(geo, geo_names)
        parts["geo"] = geo.astype(np.float32)
        static, _ = merchant_static(ctx, cut)
        parts["static"] = np.concatenate([static, history_summary(ctx, cut)], 1)
        if memo is not None:
            memo[key] = (ctx.tables, dict(parts), mood)
        return parts

    def merchant_sentiment(self, ctx: FeatureContext, at: pd.Timestamp | str) -> tuple[np.ndarray, np.ndarray]:
        """Each merchant's latest readable notes before ``at``, averaged: the 32-d sentiment vector and the mood.

        The mood is P(positive) − P(negative) in [-1, 1]; both are zeros for a
        merchant without readable notes (or without a sentiment model).
        """
        dim = int(self.fusion.config.branches["sentiment"])
        n = len(ctx.merchant_ids)
        out, mood = np.zeros((n, dim), np.float32), np.zeros(n, np.float32)
        notes = ctx.tables.get("feedback_notes")
        if self.sentiment is None or notes is None or len(notes) == 0:
            return out, mood
        latest = latest_notes(notes, ctx.merchant_ids, pd.Timestamp(at), k=NOTES_PER_MERCHANT)
        latest = latest[readable_mask(latest.text.tolist())]
        if len(latest) == 0:
            return out, mood
        vectors, per_note = self.note_sentiment(latest.text.astype(str).tolist())
        codes = ctx.codes(latest.merchant_id.astype(str).to_numpy())
        counts = np.bincount(codes, minlength=n)
        sums = np.zeros_like(out)
        np.add.at(sums, codes, vectors)
        out = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], 0.0).astype(np.float32)
        mood = (np.bincount(codes, weights=per_note, minlength=n) / np.maximum(counts, 1)).astype(np.float32)
        return out, mood

    def note_sentiment(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Each note's sentiment vector (N, 32) and mood, P(positive) − P(negative); each distinct text through the
        text encoder once (notes repeat: a rep's phrasings; while :meth:`remember_parts` is on, across calls too)."""
        assert self.sentiment is not None
        memo = self._note_memo if self._parts_memo is not None else {}
        distinct, inverse = np.unique(np.asarray(texts, dtype=object), return_inverse=True)
        todo = [str(t) for t in distinct if t not in memo]
        if todo:
            res = predict_texts(self.sentiment, todo)
            labels = list(self.sentiment.LABELS)
            mood = res["proba"][:, labels.index("positive")] - res["proba"][:, labels.index("negative")]
            memo.update(zip(todo, zip(res["vector"], mood.tolist(), strict=True), strict=True))
        dim = int(self.sentiment.config.dim)
        vec = np.stack([memo[str(t)][0] for t in distinct]) if len(distinct) else np.zeros((0, dim), np.float32)
        mood_d = np.array([memo[str(t)][1] for t in distinct], dtype=np.float64)
        return vec[inverse.reshape(-1)], mood_d[inverse.reshape(-1)]

    @torch.inference_mode()
    def profiles(self, parts: dict[str, np.ndarray], drop: frozenset[str] = frozenset()) -> np.ndarray:
        """The 512-d profiles (rows as in ``parts``)."""
        self.fusion.eval()
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in parts.items()}
        return self.fusion(tensors, drop=drop | self.dropped_branches()).numpy()


def neutral_seasonality(geo: np.ndarray, names: list[str]) -> np.ndarray:
    """``geo`` with its seasonality columns set to the neutral profile (index 1 every month, no peak, no amplitude).

    >>> neutral_seasonality(np.array([[0.3, 1.4, 0.2]]), ["city_emb_00", "season_month_01", "season_amplitude"])
    array([[0.3, 1. , 0. ]])
    """
    out = np.array(geo, copy=True)
    for j, name in enumerate(names):
        if name.startswith(("season_month_", "season_bin_")) or name == "season_index_now":
            out[:, j] = 1.0
        elif name.startswith("season_"):
            out[:, j] = 0.0
    return out


def _primary_locations(merchants: pd.DataFrame) -> pd.DataFrame:
    """Users' data may lack ``merchant_locations``: then every merchant is at its primary city only."""
    return pd.DataFrame(
        {
            "location_id": merchants.merchant_id.astype(str) + "@0",
            "merchant_id": merchants.merchant_id,
            "city_id": merchants.city_id,
            "is_primary": True,
        }
    )


def static_names(ctx: FeatureContext) -> list[str]:
    _, names = merchant_static(ctx, 0)
    return names + SUMMARY_NAMES
