"""ProfileModel: every trained branch plus the fusion, and how to compute merchant profiles with it.

``compute_parts`` builds each branch's embedding for every merchant at a
cutoff (point-in-time: only what was known before it); ``profiles`` fuses them
into the 512-d merchant profile. A merchant with no history (cold start) still
gets one: its sequences are empty (the encoders read a summary token), its
graph node has only its own attributes, its sentiment is neutral (zeros).
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
from aidg.features.panel import to_seconds
from aidg.features.sequences import deal_sequences, event_sequences, override_sequences
from aidg.features.summary import SUMMARY_NAMES, history_summary
from aidg.features.text import latest_notes, readable_mask
from aidg.models.branches import encode_deals, encode_events, encode_overrides
from aidg.models.deal_history_encoder import DealHistoryEncoder
from aidg.models.fitting import predict_batches
from aidg.models.heads import MLPHead
from aidg.models.merchant_graph_sage import MerchantGraphSAGE
from aidg.models.merchant_profile_encoder import MerchantProfileEncoder
from aidg.models.override_pattern_analyzer import OverridePatternAnalyzer
from aidg.models.sentiment_extractor import SentimentExtractor
from aidg.models.sentiment_training import encode_texts
from aidg.models.sequence_encoder import EventSequenceEncoder

NOTES_PER_MERCHANT = 3  # latest notes averaged into the sentiment branch


def cutoff_seconds(at: pd.Timestamp | str) -> int:
    return int(to_seconds(np.array([pd.Timestamp(at)], dtype="datetime64[ns]"))[0])


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
        return out

    def eval(self) -> ProfileModel:
        for m in self.modules().values():
            m.eval()
        return self

    @torch.inference_mode()
    def compute_parts(self, ctx: FeatureContext, at: pd.Timestamp | str, seed: int = 0) -> dict[str, np.ndarray]:
        """Every branch's embedding for every merchant (ctx order), from what was known before ``at``."""
        self.eval()
        cut = cutoff_seconds(at)
        n = len(ctx.merchant_ids)
        q_m, q_t = np.arange(n), np.full(n, cut)
        parts: dict[str, np.ndarray] = {}
        ds = deal_sequences(ctx, q_m, q_t)
        parts["deal_history"] = predict_batches(lambda i: encode_deals(self.deal, ds.x[i], ds.mask[i]), n)
        os_ = override_sequences(ctx, q_m, q_t)
        parts["override_intent"] = predict_batches(lambda i: encode_overrides(self.override, os_.x[i], os_.mask[i]), n)
        es = event_sequences(ctx, q_m, q_t)
        parts["sequence"] = predict_batches(
            lambda i: encode_events(self.sequence, es.x[i], es.mask[i], es.age_days[i]), n
        )
        graph = build_graph(ctx, cut)
        h = self.graph(graph.x_merchant, graph.x_deal, graph.edge_index, graph.edge_attr, graph.edge_weight)
        parts["graph"] = h[:n].numpy()
        parts["sentiment"] = self.merchant_sentiment(ctx, at)
        t = ctx.tables
        geo, _ = geo_features(
            t["merchants"],
            t.get("merchant_locations", _primary_locations(t["merchants"])),
            t["deals"],
            t["categories"],
            pd.Timestamp(at),
            seed=seed,
        )
        parts["geo"] = geo.astype(np.float32)
        static, _ = merchant_static(ctx, cut)
        parts["static"] = np.concatenate([static, history_summary(ctx, cut)], 1)
        return parts

    def merchant_sentiment(self, ctx: FeatureContext, at: pd.Timestamp | str) -> np.ndarray:
        """Mean 32-d sentiment vector of each merchant's latest readable notes before ``at`` (zeros if none)."""
        dim = int(self.fusion.config.branches["sentiment"])
        out = np.zeros((len(ctx.merchant_ids), dim), np.float32)
        notes = ctx.tables.get("feedback_notes")
        if self.sentiment is None or notes is None or len(notes) == 0:
            return out
        latest = latest_notes(notes, ctx.merchant_ids, pd.Timestamp(at), k=NOTES_PER_MERCHANT)
        latest = latest[readable_mask(latest.text.tolist())]
        if len(latest) == 0:
            return out
        vec = encode_texts(self.sentiment, latest.text.astype(str).tolist())
        codes = ctx.codes(latest.merchant_id.astype(str).to_numpy())
        sums = np.zeros_like(out)
        np.add.at(sums, codes, vec)
        counts = np.bincount(codes, minlength=len(out))[:, None]
        return np.where(counts > 0, sums / np.maximum(counts, 1), 0.0).astype(np.float32)

    @torch.inference_mode()
    def profiles(self, parts: dict[str, np.ndarray], drop: frozenset[str] = frozenset()) -> np.ndarray:
        """The 512-d profiles (rows as in ``parts``)."""
        self.fusion.eval()
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in parts.items()}
        return self.fusion(tensors, drop=drop).numpy()


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
