"""Each model states its shapes, handles an empty history (cold start), and refuses nothing silently."""

from __future__ import annotations

import torch

from aidg.models.deal_history_encoder import DealHistoryConfig, DealHistoryEncoder
from aidg.models.edge_sage_conv import EdgeSAGEConv
from aidg.models.merchant_graph_sage import GraphConfig, MerchantGraphSAGE
from aidg.models.merchant_profile_encoder import DEFAULT_BRANCHES, MerchantProfileEncoder
from aidg.models.override_pattern_analyzer import OverridePatternAnalyzer
from aidg.models.sequence_encoder import EventSequenceEncoder, SequenceConfig


def _empty_and_full(b: int, length: int) -> torch.Tensor:
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0] = False  # first row: a merchant with no history
    return mask


def test_deal_history_encoder_shapes_and_cold_start() -> None:
    enc = DealHistoryEncoder(DealHistoryConfig(in_dim=29)).eval()
    out = enc(torch.randn(3, 50, 29), _empty_and_full(3, 50))
    assert out.shape == (3, 128) and torch.isfinite(out).all()
    assert "out=128" in repr(enc)


def test_override_analyzer_shapes_and_cold_start() -> None:
    enc = OverridePatternAnalyzer().eval()
    out = enc(torch.randn(3, 32, 64), _empty_and_full(3, 32))
    assert out.shape == (3, 64) and torch.isfinite(out).all()


def test_sequence_encoder_shapes_and_cold_start() -> None:
    enc = EventSequenceEncoder(SequenceConfig(in_dim=40)).eval()
    assert len(enc.encoder.layers) == 6  # memo: 6-layer Transformer
    out = enc(torch.randn(3, 48, 40), _empty_and_full(3, 48), torch.rand(3, 48) * 300)
    assert out.shape == (3, 128) and torch.isfinite(out).all()


def test_graph_sage_uses_edge_features() -> None:
    model = MerchantGraphSAGE(GraphConfig(merchant_in=5, deal_in=4)).eval()
    edge_index = torch.tensor([[0, 2], [2, 0]])
    attr = torch.tensor([[0.5, 1.0], [0.5, 1.0]])
    w = torch.ones(2)
    h1 = model(torch.randn(2, 5), torch.randn(1, 4), edge_index, attr, w)
    assert h1.shape == (3, 256)
    conv = EdgeSAGEConv(4, 8, 2)
    x = torch.randn(3, 4)
    a = conv(x, edge_index, EdgeSAGEConv.edge_mean(edge_index, attr, 3))
    b = conv(x, edge_index, EdgeSAGEConv.edge_mean(edge_index, attr * 0, 3))
    assert not torch.allclose(a[2], b[2]) and torch.allclose(a[1], b[1])  # node 1 has no in-edges


def test_fusion_is_512_and_drops_a_branch() -> None:
    fusion = MerchantProfileEncoder().eval()
    parts = {k: torch.randn(4, d) for k, d in DEFAULT_BRANCHES.items()}
    full = fusion(parts)
    assert full.shape == (4, 512)
    assert not torch.allclose(full, fusion(parts, drop=frozenset({"graph"})))
