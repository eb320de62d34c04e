"""EdgeSAGEConv: a GraphSAGE layer whose update also reads the edge features (PyG MessagePassing)."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import MessagePassing


class EdgeSAGEConv(MessagePassing):
    """GraphSAGE with edge features.

    ``h_i' = W_self h_i + W_neigh · mean_j(h_j) + W_edge · mean_j(e_ij)`` over the
    in-neighbours j of i. The edge term is linear, so its mean is taken once per
    graph (``edge_mean``, (N, edge_dim)) and shared by every layer: a layer then
    costs what PyG's ``SAGEConv`` costs plus one small matrix product.

    Shapes:
        x: (N, in_dim), edge_index: (2, E), edge_mean: (N, edge_dim) → (N, out_dim)
    """

    def __init__(self, in_dim: int, out_dim: int, edge_dim: int) -> None:
        super().__init__(aggr="mean")
        self.in_dim, self.out_dim, self.edge_dim = in_dim, out_dim, edge_dim
        self.lin_self = nn.Linear(in_dim, out_dim)
        self.lin_neigh = nn.Linear(in_dim, out_dim, bias=False)
        self.lin_edge = nn.Linear(edge_dim, out_dim, bias=False)

    def reset_parameters(self) -> None:
        self.lin_self.reset_parameters()
        self.lin_neigh.reset_parameters()
        self.lin_edge.reset_parameters()

    @staticmethod
    def edge_mean(edge_index: torch.Tensor, edge_attr: torch.Tensor, n: int) -> torch.Tensor:
        """Mean edge features over each node's in-edges: (N, edge_dim), zeros for isolated nodes."""
        dst = edge_index[1]
        s = torch.zeros(n, edge_attr.shape[1], dtype=edge_attr.dtype, device=edge_attr.device).index_add_(
            0, dst, edge_attr
        )
        deg = torch.zeros(n, dtype=edge_attr.dtype, device=edge_attr.device).index_add_(
            0, dst, torch.ones_like(dst, dtype=edge_attr.dtype)
        )
        return s / deg.clamp(min=1)[:, None]

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_mean: torch.Tensor) -> torch.Tensor:
        agg = self.propagate(edge_index, x=x)  # (N, in) mean of neighbours
        return self.lin_self(x) + self.lin_neigh(agg) + self.lin_edge(edge_mean)

    def message(self, x_j: torch.Tensor) -> torch.Tensor:
        return x_j

    def __repr__(self) -> str:
        return f"EdgeSAGEConv({self.in_dim}, {self.out_dim}, edge_dim={self.edge_dim})"
