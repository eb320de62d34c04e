"""MerchantGraphSAGE: the graph branch, 3 message-passing layers → 256-d merchant embeddings (memo §1.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from aidg.models.edge_sage_conv import EdgeSAGEConv


@dataclass
class GraphConfig:
    merchant_in: int = 28  # merchant node features (aidg.features.graph)
    deal_in: int = 24  # deal-configuration node features
    edge_dim: int = 2  # memo: edge features deal similarity, temporal decay
    hidden: int = 256
    n_layers: int = 3  # memo: GraphSAGE with 3 message-passing layers
    out_dim: int = 256  # memo: 256-dim merchant node embedding


class MerchantGraphSAGE(nn.Module):
    """``n_layers`` EdgeSAGEConv layers over the bipartite graph, on the raw node features.

    Merchant and deal-configuration features are zero-padded to one width with a
    node-type flag, so the first layer aggregates the narrow raw features (as
    PyG's SAGEConv stack does) instead of 256-d projections. Edge features
    enter every layer through their per-node mean (see :class:`EdgeSAGEConv`);
    ``edge_weight`` is accepted for compatibility and not used.

    Full-batch (PyG's NeighborLoader needs pyg-lib/torch-sparse, which do not
    install here). Node order: merchants first, then deal configurations.

    Shapes:
        x_merchant: (M, merchant_in), x_deal: (C, deal_in), edge_index: (2, E), edge_attr: (E, 2),
        edge_weight: (E,) → (M + C, out_dim)
    """

    def __init__(self, config: GraphConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or GraphConfig()
        self.width = max(c.merchant_in, c.deal_in) + 1
        dims = [self.width] + [c.hidden] * (c.n_layers - 1) + [c.out_dim]
        self.convs = nn.ModuleList(EdgeSAGEConv(dims[i], dims[i + 1], c.edge_dim) for i in range(c.n_layers))

    def reset_parameters(self) -> None:
        for conv in self.convs:
            assert isinstance(conv, EdgeSAGEConv)
            conv.reset_parameters()

    def forward(
        self,
        x_merchant: torch.Tensor,
        x_deal: torch.Tensor,
        edge_index: torch.Tensor,
        edge_attr: torch.Tensor,
        edge_weight: torch.Tensor,
    ) -> torch.Tensor:
        w = self.width - 1
        pad_m = nn.functional.pad(x_merchant, (0, w - x_merchant.shape[1] + 1), value=0.0)
        pad_d = nn.functional.pad(x_deal, (0, w - x_deal.shape[1]), value=0.0)
        pad_d = torch.cat([pad_d, torch.ones(pad_d.shape[0], 1, dtype=pad_d.dtype, device=pad_d.device)], 1)
        h = torch.cat([pad_m, pad_d], 0)  # (M + C, width): last column flags deal nodes
        e_mean = EdgeSAGEConv.edge_mean(edge_index, edge_attr, h.shape[0])  # (M + C, edge_dim), once
        for i, conv in enumerate(self.convs):
            h_new = conv(h, edge_index, e_mean)  # (M + C, dims[i + 1])
            if i < len(self.convs) - 1:
                h_new = torch.relu(h_new)
                h = h_new + h if h_new.shape == h.shape else h_new
            else:
                h = h_new
        return h  # (M + C, out_dim)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"MerchantGraphSAGE(merchant_in={c.merchant_in}, deal_in={c.deal_in}, edge_dim={c.edge_dim}, "
            f"hidden={c.hidden}, layers={c.n_layers}, out={c.out_dim})"
        )
