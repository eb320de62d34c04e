"""EdgeSAGEConv: a GraphSAGE layer whose messages carry edge features (PyG MessagePassing)."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing


class EdgeSAGEConv(MessagePassing):
    """GraphSAGE with edge features and edge weights.

    ``h_i' = W_self h_i + W_neigh · mean_w(h_j) + W_edge · mean_w(e_ij)``, where
    ``mean_w`` is the edge-weighted mean over in-neighbours j of i. Because the
    map is linear, the edge term is aggregated at the node level (2-d edge
    features), so a layer costs about what PyG's ``SAGEConv`` costs.

    Shapes:
        x: (N, in_dim), edge_index: (2, E), edge_attr: (E, edge_dim), edge_weight: (E,) → (N, out_dim)
    """

    def __init__(self, in_dim: int, out_dim: int, edge_dim: int) -> None:
        super().__init__(aggr="sum")
        self.in_dim, self.out_dim, self.edge_dim = in_dim, out_dim, edge_dim
        self.lin_self = nn.Linear(in_dim, out_dim)
        self.lin_neigh = nn.Linear(in_dim, out_dim, bias=False)
        self.lin_edge = nn.Linear(edge_dim, out_dim, bias=False)

    def reset_parameters(self) -> None:
        self.lin_self.reset_parameters()
        self.lin_neigh.reset_parameters()
        self.lin_edge.reset_parameters()

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor, edge_weight: torch.Tensor
    ) -> torch.Tensor:
        n = x.shape[0]
        dst = edge_index[1]
        deg = torch.zeros(n, device=x.device, dtype=x.dtype).index_add_(0, dst, edge_weight).clamp(min=1e-6)
        agg = self.propagate(edge_index, x=x, edge_weight=edge_weight)  # (N, in) weighted sum
        e_agg = torch.zeros(n, self.edge_dim, device=x.device, dtype=x.dtype).index_add_(
            0, dst, edge_attr * edge_weight[:, None]
        )  # (N, edge_dim)
        return torch.as_tensor(self.lin_self(x) + (self.lin_neigh(agg) + self.lin_edge(e_agg)) / deg[:, None])

    def message(self, x_j: torch.Tensor, edge_weight: torch.Tensor) -> torch.Tensor:
        return x_j * edge_weight[:, None]

    def __repr__(self) -> str:
        return f"EdgeSAGEConv({self.in_dim}, {self.out_dim}, edge_dim={self.edge_dim})"
