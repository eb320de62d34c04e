"""Feature pipelines of the merchant profile, point-in-time correct (nothing after a cutoff leaks in)."""

from aidg.features.context import FeatureContext
from aidg.features.graph import DealGraph, build_graph
from aidg.features.sequences import SeqBatch, deal_sequences, event_sequences, override_sequences
from aidg.features.split import MerchantSplit, split_merchants

__all__ = [
    "DealGraph",
    "FeatureContext",
    "MerchantSplit",
    "SeqBatch",
    "build_graph",
    "deal_sequences",
    "event_sequences",
    "override_sequences",
    "split_merchants",
]
