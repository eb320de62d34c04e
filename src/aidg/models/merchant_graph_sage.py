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
    dropout: float = 0.1


class MerchantGraphSAGE(nn.Module):
    """Typed input projections, then ``n_layers`` EdgeSAGEConv layers over the bipartite graph.

    Full-batch (PyG's NeighborLoader needs pyg-lib/torch-sparse, which do not
    install here). Node order: merchants first, then deal configurations.

    Shapes:
        x_merchant: (M, merchant_in), x_deal: (C, deal_in), edge_index: (2, E), edge_attr: (E, 2),
        edge_weight: (E,) → (M + C, out_dim)
    """

    def __init__(self, config: GraphConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or GraphConfig()
        self.inp_merchant = nn.Linear(c.merchant_in, c.hidden)
        self.inp_deal = nn.Linear(c.deal_in, c.hidden)
        dims = [c.hidden] * c.n_layers + [c.out_dim]
        self.convs = nn.ModuleList(EdgeSAGEConv(dims[i], dims[i + 1], c.edge_dim) for i in range(c.n_layers))
        self.norms = nn.ModuleList(nn.LayerNorm(dims[i + 1]) for i in range(c.n_layers - 1))
        self.drop = nn.Dropout(c.dropout)

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
        h = torch.cat([self.inp_merchant(x_merchant), self.inp_deal(x_deal)], 0)  # (M + C, hidden)
        for i, conv in enumerate(self.convs):
            h_new = conv(h, edge_index, edge_attr, edge_weight)  # (M + C, dims[i + 1])
            if i < len(self.norms):
                h_new = self.drop(torch.relu(self.norms[i](h_new)))
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
