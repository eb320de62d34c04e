"""The merchant-profile models (memo §1.1): one nn.Module per file, trained by ``pipeline.train_profile``."""

from aidg.models.deal_history_encoder import DealHistoryConfig, DealHistoryEncoder
from aidg.models.edge_sage_conv import EdgeSAGEConv
from aidg.models.merchant_graph_sage import GraphConfig, MerchantGraphSAGE
from aidg.models.merchant_profile_encoder import MerchantProfileEncoder, ProfileConfig
from aidg.models.override_pattern_analyzer import OverrideConfig, OverridePatternAnalyzer
from aidg.models.profile_model import ProfileModel
from aidg.models.sentiment_extractor import SentimentConfig, SentimentExtractor
from aidg.models.sequence_encoder import EventSequenceEncoder, SequenceConfig

__all__ = [
    "DealHistoryConfig",
    "DealHistoryEncoder",
    "EdgeSAGEConv",
    "EventSequenceEncoder",
    "GraphConfig",
    "MerchantGraphSAGE",
    "MerchantProfileEncoder",
    "OverrideConfig",
    "OverridePatternAnalyzer",
    "ProfileConfig",
    "ProfileModel",
    "SentimentConfig",
    "SentimentExtractor",
    "SequenceConfig",
]
