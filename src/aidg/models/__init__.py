"""The models, ``nn.Module``s only, one per file with its shapes in its docstring: the merchant-profile branches and
fusion (memo §1.1, trained by ``aidg.training.profile``) and the contextual deal scorer's parts (memo §1.2)."""

from aidg.models.deal_history_encoder import DealHistoryConfig, DealHistoryEncoder
from aidg.models.edge_sage_conv import EdgeSAGEConv
from aidg.models.merchant_graph_sage import GraphConfig, MerchantGraphSAGE
from aidg.models.merchant_profile_encoder import MerchantProfileEncoder, ProfileConfig
from aidg.models.override_pattern_analyzer import OverrideConfig, OverridePatternAnalyzer
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
    "SentimentConfig",
    "SentimentExtractor",
    "SequenceConfig",
]
