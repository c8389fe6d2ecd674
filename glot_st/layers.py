"""Message-passing layers over token graphs: GAT, GCN, GIN, GINE and GraphSAGE (mean).

Each layer maps node features ``x`` (N, in_dim) and a graph from :mod:`glot_st.graph_ops` to (N, out_dim).
They follow PyTorch Geometric's definitions and parameter shapes (so weights copy one-to-one from PyG's
``GATConv``, ``GCNConv``, ``GINConv``, ``GINEConv`` and ``SAGEConv``), computed with three separate steps:
per-edge values by gather, normalisation by a scatter softmax or degree over destinations, and aggregation
by a sparse matmul. Graphs already carry self-loops, so no layer adds them.

Edge weights (``edge_weight="cosine"`` graphs; the soft weights of ``graph="learned"``; all ones for binary
graphs) enter every layer: GCN's normalised adjacency, GINE's edge feature, a weighted sum (GIN) or weighted mean
(SAGE), and GAT's edge-feature attention term (PyG's ``edge_dim=1``) when ``use_edge_weight`` is set. On a learned
graph GAT also adds the log-weight to its attention logits (see :class:`glot_st.graph.LearnedEdges`).

Initialisation is PyG's: Glorot-uniform weights and attention vectors, zero biases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glot_st.graph_ops import DenseGraph, SparseGraph

CONVS = ("gat", "gcn", "gin", "gine", "sage")

__all__ = ["CONVS", "GATLayer", "GCNLayer", "GINELayer", "GINLayer", "SAGELayer", "make_layer"]


class GATLayer(nn.Module):
    """Graph attention (Velickovic et al.), PyG ``GATConv`` semantics.

    ``e_ij = LeakyReLU(a_src . W x_j + a_dst . W x_i [+ a_edge . W_e w_ij])``, softmax over the incoming edges
    of ``i``, ``out_i = sum_j alpha_ij W x_j``, heads concatenated or averaged, plus bias.

    Args:
        in_dim: input width.
        out_dim: output width. With ``concat=True`` each of the ``heads`` has ``out_dim // heads`` channels
            (must divide); with ``concat=False`` each head has ``out_dim`` channels and heads are averaged.
        heads: number of attention heads.
        concat: concatenate (True) or average (False) the heads.
        negative_slope: LeakyReLU slope of the attention logits.
        attention_dropout: dropout on the attention coefficients during training.
        use_edge_weight: add the edge weight as a one-dimensional edge feature to the logits.
        bias: learn an additive bias.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        attention_dropout: float = 0.0,
        use_edge_weight: bool = False,
        bias: bool = True,
    ):
        super().__init__()
        if concat and out_dim % heads:
            raise ValueError(f"hidden_dim={out_dim} must be divisible by heads={heads} when heads are concatenated")
        self.heads = heads
        self.concat = concat
        self.channels = out_dim // heads if concat else out_dim
        self.negative_slope = negative_slope
        self.attention_dropout = attention_dropout
        self.lin = nn.Linear(in_dim, heads * self.channels, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, self.channels))
        self.att_dst = nn.Parameter(torch.empty(1, heads, self.channels))
        if use_edge_weight:
            self.lin_edge = nn.Linear(1, heads * self.channels, bias=False)
            self.att_edge = nn.Parameter(torch.empty(1, heads, self.channels))
        else:
            self.lin_edge = None
            self.register_parameter("att_edge", None)
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyG's initialisation: Glorot-uniform over the last two axes (for the (1, H, C) attention vectors a bound
        of ``sqrt(6 / (H + C))``, as PyG's ``glorot``)."""
        nn.init.xavier_uniform_(self.lin.weight)
        attention = [self.att_src, self.att_dst]
        if self.lin_edge is not None:
            nn.init.xavier_uniform_(self.lin_edge.weight)
            attention.append(self.att_edge)
        bound = (6.0 / (self.heads + self.channels)) ** 0.5
        for vector in attention:
            nn.init.uniform_(vector, -bound, bound)

    def forward(self, x: Tensor, graph: SparseGraph | DenseGraph) -> Tensor:
        """(N, in_dim) -> (N, out_dim)."""
        heads, channels = self.heads, self.channels
        # Every node has its self-loop, so attention rows sum to 1 and sum_j alpha_ij (W x_j + b) = out_i + b: the
        # bias rides in the projection's GEMM (and its share of the logits is taken off again), unless attention
        # dropout breaks the sums.
        fold_bias = self.bias is not None and not (self.training and self.attention_dropout > 0)
        head_bias = self.bias.view(-1, channels).expand(heads, -1) if fold_bias else None  # (H, C)
        h = F.linear(x, self.lin.weight, head_bias.reshape(-1) if fold_bias else None).view(-1, heads, channels)
        att = torch.cat([self.att_src, self.att_dst])  # (2, H, C)
        scores = torch.einsum("nhc,khc->nkh", h, att)  # (N, 2, H): a_src . W x and a_dst . W x per head
        if fold_bias:
            scores = scores - (att * head_bias).sum(-1)
        edge_scale = None
        if self.lin_edge is not None:
            # lin_edge has no bias, so a_edge . W_e w = w * (a_edge . W_e[:, 0]): one scalar per head.
            edge_scale = (self.lin_edge.weight.view(1, self.heads, self.channels) * self.att_edge).sum(-1).view(-1)
        alpha = graph.attention(scores[:, 0], scores[:, 1], self.negative_slope, edge_scale)  # edge tensor, H
        alpha = F.dropout(alpha, p=self.attention_dropout, training=self.training)
        out = graph.propagate(h, alpha)  # (N, H, C)
        # explicit width: reshape(N, -1) is ambiguous for a batch without tokens (N = 0)
        out = out.reshape(out.shape[0], self.heads * self.channels) if self.concat else out.mean(dim=1)
        return out + self.bias if self.bias is not None and not fold_bias else out


class GCNLayer(nn.Module):
    """Graph convolution (Kipf and Welling), PyG ``GCNConv`` semantics.

    ``out = D^-1/2 A D^-1/2 (W x) + b`` with ``A`` the weighted adjacency (self-loops included) and ``D`` its
    in-degree.

    Args:
        in_dim: input width.
        out_dim: output width.
        bias: learn an additive bias.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None
        nn.init.xavier_uniform_(self.lin.weight)

    def forward(self, x: Tensor, graph: SparseGraph | DenseGraph) -> Tensor:
        """(N, in_dim) -> (N, out_dim)."""
        h = self.lin(x)
        weight = graph.edge_weights().to(h.dtype)
        inv_sqrt_degree = graph.in_degree(weight).pow(-0.5)  # degree >= 1: every node has a unit self-loop
        norm = weight * graph.gather_dst(inv_sqrt_degree) * graph.gather_src(inv_sqrt_degree)
        out = graph.propagate(h, norm)
        return out + self.bias if self.bias is not None else out


def _gin_mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(), nn.Linear(out_dim, out_dim))


class GINLayer(nn.Module):
    """Graph isomorphism network (Xu et al.), PyG ``GINConv`` semantics.

    ``out_i = MLP((1 + eps) x_i + sum_j w_ij x_j)``; the sum runs over incoming edges, the self-loop included.
    ``w_ij`` is 1 on binary graphs.

    Args:
        in_dim: input width.
        out_dim: output width of the two-layer MLP (Linear, ReLU, Linear).
        eps: initial epsilon.
        train_eps: learn epsilon.
    """

    def __init__(self, in_dim: int, out_dim: int, eps: float = 0.0, train_eps: bool = False):
        super().__init__()
        self.nn = _gin_mlp(in_dim, out_dim)
        if train_eps:
            self.eps = nn.Parameter(torch.tensor([eps]))
        else:
            self.register_buffer("eps", torch.tensor([eps]))

    def forward(self, x: Tensor, graph: SparseGraph | DenseGraph) -> Tensor:
        """(N, in_dim) -> (N, out_dim)."""
        summed = graph.propagate(x, graph.edge_weights().to(x.dtype))
        return self.nn((1 + self.eps) * x + summed)


class GINELayer(nn.Module):
    """GIN with edge features (Hu et al.), PyG ``GINEConv`` semantics with the edge weight as a 1-d feature.

    ``out_i = MLP((1 + eps) x_i + sum_j ReLU(x_j + W_e w_ij + b_e))``. The message is non-linear in the edge
    feature, so it cannot be folded into a sparse matmul; it is computed in bounded edge chunks instead.
    GINE needs the sparse layout.

    Args:
        in_dim: input width.
        out_dim: output width of the two-layer MLP.
        eps: initial epsilon.
        train_eps: learn epsilon.
    """

    def __init__(self, in_dim: int, out_dim: int, eps: float = 0.0, train_eps: bool = False):
        super().__init__()
        self.nn = _gin_mlp(in_dim, out_dim)
        self.lin = nn.Linear(1, in_dim)
        if train_eps:
            self.eps = nn.Parameter(torch.tensor([eps]))
        else:
            self.register_buffer("eps", torch.tensor([eps]))

    def forward(self, x: Tensor, graph: SparseGraph | DenseGraph) -> Tensor:
        """(N, in_dim) -> (N, out_dim)."""
        if not isinstance(graph, SparseGraph):
            raise ValueError("the GINE layer needs the sparse graph layout")

        def message(x_src: Tensor, weight: Tensor) -> Tensor:
            return F.relu(x_src + self.lin(weight.unsqueeze(1)))

        summed = graph.aggregate_messages(x, message)
        return self.nn((1 + self.eps) * x + summed)


class SAGELayer(nn.Module):
    """GraphSAGE with mean aggregation (Hamilton et al.), PyG ``SAGEConv`` semantics.

    ``out_i = W_l mean_j(x_j) + b + W_r x_i``; the mean is weighted by ``w_ij`` (plain on binary graphs) and
    includes the self-loop.

    Args:
        in_dim: input width.
        out_dim: output width.
        bias: bias of ``W_l``.
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True):
        super().__init__()
        self.lin_l = nn.Linear(in_dim, out_dim, bias=bias)
        self.lin_r = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, x: Tensor, graph: SparseGraph | DenseGraph) -> Tensor:
        """(N, in_dim) -> (N, out_dim)."""
        weight = graph.edge_weights().to(x.dtype)
        mean_weight = weight / graph.gather_dst(graph.in_degree(weight))
        return self.lin_l(graph.propagate(x, mean_weight)) + self.lin_r(x)


def make_layer(
    conv: str,
    in_dim: int,
    out_dim: int,
    *,
    heads: int = 1,
    concat_heads: bool = True,
    dropout: float = 0.0,
    use_edge_weight: bool = False,
) -> nn.Module:
    """Build one layer by name (``gat`` | ``gcn`` | ``gin`` | ``gine`` | ``sage``).

    ``heads``, ``concat_heads``, ``dropout`` (as attention dropout) and ``use_edge_weight`` apply to GAT only.
    """
    if conv == "gat":
        return GATLayer(
            in_dim,
            out_dim,
            heads=heads,
            concat=concat_heads,
            attention_dropout=dropout,
            use_edge_weight=use_edge_weight,
        )
    if conv == "gcn":
        return GCNLayer(in_dim, out_dim)
    if conv == "gin":
        return GINLayer(in_dim, out_dim)
    if conv == "gine":
        return GINELayer(in_dim, out_dim)
    if conv == "sage":
        return SAGELayer(in_dim, out_dim)
    raise ValueError(f"unknown conv {conv!r}; choose one of {', '.join(CONVS)}")
