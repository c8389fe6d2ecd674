"""The graph seam the message-passing layers are written against.

A batch of token graphs comes in one of two layouts with the same operations:

- :class:`SparseGraph`: the general mechanism. Nodes are the valid tokens of the batch, flattened to ``N``
  rows; edges are a destination-sorted list (CSR). Per-edge values have shape ``(E,)`` or ``(E, H)``.
  Aggregation is a sparse matmul; no ``E x hidden`` tensor is ever made (GINE's non-linear message is the one
  exception and is computed in bounded edge chunks).
- :class:`DenseGraph`: a masked ``(B, L, L)`` adjacency for short padded batches, where one batched matmul
  beats the sparse kernels. Per-edge values have shape ``(B, L, L)`` or ``(B, H, L, L)`` and are zero off
  the graph. It is chosen per batch by the module (``layout="auto"``) and gives the same results within
  float tolerance.

Node features are always the flattened ``(N, C)`` rows in both layouts, so layers never see the layout.
Edge tensors are opaque to the layers: they are made by :meth:`edge_logits` / :meth:`edge_weights` /
:meth:`gather_dst` / :meth:`gather_src`, combined element-wise, and consumed by :meth:`softmax`,
:meth:`propagate` and :meth:`in_degree`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor

__all__ = ["DenseGraph", "SparseGraph"]


@dataclass
class SparseGraph:
    """Destination-sorted edge list (CSR) over the valid tokens of a batch.

    Attributes:
        num_nodes: ``N``, the number of valid tokens in the batch.
        num_sentences: ``B``.
        node_batch: (N,) int64 sentence of every node (non-decreasing).
        node_position: (N,) int64 flat index ``b * L + i`` of every node in the padded ``(B, L)`` grid.
        sentence_rowptr: (B+1,) int64 where each sentence's nodes start.
        padded_shape: ``(B, L)``.
        src: (E,) int64 source node of every edge.
        dst: (E,) int64 destination node of every edge, sorted (ties by ascending ``src``).
        rowptr: (N+1,) int64 CSR row pointer over ``dst``.
        weight: (E,) float32 edge weight (1 for binary graphs, the clamped cosine otherwise; 1 on self-loops).
        kernels: the kernel module (:mod:`glot_st.kernels.native` or ``.scatter``).
    """

    num_nodes: int
    num_sentences: int
    node_batch: Tensor
    node_position: Tensor
    sentence_rowptr: Tensor
    padded_shape: tuple[int, int]
    src: Tensor
    dst: Tensor
    rowptr: Tensor
    weight: Tensor
    kernels: ModuleType

    layout = "sparse"

    @property
    def num_edges(self) -> int:
        return self.src.numel()

    # ---- edge tensors -------------------------------------------------------------------------------
    def edge_logits(self, node_src: Tensor, node_dst: Tensor) -> Tensor:
        """Per-edge ``node_src[src] + node_dst[dst]``: (N, H) and (N, H) -> (E, H)."""
        return node_src.index_select(0, self.src) + node_dst.index_select(0, self.dst)

    def edge_weights(self, per_head: Tensor | None = None) -> Tensor:
        """Edge weights as an edge tensor: (E,), or (E, H) = ``weight[:, None] * per_head[None, :]``."""
        if per_head is None:
            return self.weight
        return self.weight.to(per_head.dtype).unsqueeze(1) * per_head.unsqueeze(0)

    def gather_dst(self, node_values: Tensor) -> Tensor:
        """(N,) -> (E,): the destination node's value on every edge."""
        return node_values.index_select(0, self.dst)

    def gather_src(self, node_values: Tensor) -> Tensor:
        """(N,) -> (E,): the source node's value on every edge."""
        return node_values.index_select(0, self.src)

    # ---- reductions -----------------------------------------------------------------------------------
    def softmax(self, edge_logits: Tensor) -> Tensor:
        """Softmax over each node's incoming edges: (E, H) -> (E, H)."""
        return self.kernels.segment_softmax(edge_logits, self.dst, self.rowptr, self.num_nodes)

    def in_degree(self, edge_values: Tensor) -> Tensor:
        """Sum of incoming edge values per node: (E,) -> (N,)."""
        return self.kernels.segment_sum(edge_values, self.dst, self.rowptr, self.num_nodes)

    def propagate(self, x: Tensor, edge_values: Tensor) -> Tensor:
        """``out[i] = sum_j v_ij * x[j]`` over incoming edges.

        Args:
            x: (N, C) node features, or (N, H, C) per-head features.
            edge_values: (E,) for (N, C) input, (E, H) for (N, H, C) input.

        Returns:
            Same shape as ``x``.
        """
        if x.dim() == 2:
            return self.kernels.spmm(self.rowptr, self.src, edge_values, x)
        heads = [self.kernels.spmm(self.rowptr, self.src, edge_values[:, h], x[:, h]) for h in range(x.shape[1])]
        return torch.stack(heads, dim=1)

    def aggregate_messages(
        self, x: Tensor, message: Callable[[Tensor, Tensor], Tensor], max_chunk_elements: int = 1 << 24
    ) -> Tensor:
        """Sum a non-linear message over incoming edges, in edge chunks of bounded size.

        Args:
            x: (N, C) node features.
            message: maps ``(x_src (e, C), weight (e,))`` to messages (e, C).
            max_chunk_elements: at most this many ``e * C`` message elements exist at once.

        Returns:
            (N, C) summed messages.
        """
        chunk = max(1, max_chunk_elements // max(1, x.shape[1]))
        out = x.new_zeros(x.shape)
        for start in range(0, self.num_edges, chunk):
            stop = min(start + chunk, self.num_edges)
            msgs = message(x.index_select(0, self.src[start:stop]), self.weight[start:stop].to(x.dtype))
            out = out + self.kernels.index_add_rows(msgs, self.dst[start:stop], self.num_nodes)
        return out


@dataclass
class DenseGraph:
    """Masked dense adjacency over a padded ``(B, L)`` batch.

    Padding positions carry only a self-loop so every row has an edge; they are never gathered back.

    Attributes:
        num_nodes: ``N`` valid tokens.
        num_sentences: ``B``.
        node_batch: (N,) int64 sentence of every node.
        node_position: (N,) int64 flat index of every node in the padded grid.
        sentence_rowptr: (B+1,) int64 where each sentence's nodes start.
        padded_shape: ``(B, L)``.
        adjacency: (B, L, L) bool, ``adjacency[b, i, j]`` = edge ``j -> i``.
        weight: (B, L, L) float32 edge weights, zero off the graph.
        kernels: kept for the readout's segment softmax.
    """

    num_nodes: int
    num_sentences: int
    node_batch: Tensor
    node_position: Tensor
    sentence_rowptr: Tensor
    padded_shape: tuple[int, int]
    adjacency: Tensor
    weight: Tensor
    kernels: ModuleType

    layout = "dense"

    @property
    def num_edges(self) -> int:
        """Edges between valid tokens (padding self-loops excluded)."""
        return int(self.adjacency.sum().item()) - (self.padded_shape[0] * self.padded_shape[1] - self.num_nodes)

    # ---- padding ------------------------------------------------------------------------------------
    def to_padded(self, x: Tensor, fill: float = 0.0) -> Tensor:
        """(N, *F) -> (B, L, *F) with ``fill`` at padding."""
        batch, length = self.padded_shape
        out = x.new_full((batch * length, *x.shape[1:]), fill)
        out = out.index_copy(0, self.node_position, x)
        return out.view(batch, length, *x.shape[1:])

    def from_padded(self, x: Tensor) -> Tensor:
        """(B, L, *F) -> (N, *F)."""
        return x.reshape(-1, *x.shape[2:]).index_select(0, self.node_position)

    # ---- edge tensors -------------------------------------------------------------------------------
    def edge_logits(self, node_src: Tensor, node_dst: Tensor) -> Tensor:
        """(N, H), (N, H) -> (B, H, L, L) with ``[b, h, i, j] = node_src[j, h] + node_dst[i, h]``."""
        src = self.to_padded(node_src).permute(0, 2, 1).unsqueeze(2)  # (B, H, 1, L)
        dst = self.to_padded(node_dst).permute(0, 2, 1).unsqueeze(3)  # (B, H, L, 1)
        return src + dst

    def edge_weights(self, per_head: Tensor | None = None) -> Tensor:
        """(B, L, L), or (B, H, L, L) = ``weight * per_head[h]``."""
        if per_head is None:
            return self.weight
        return self.weight.to(per_head.dtype).unsqueeze(1) * per_head.view(1, -1, 1, 1)

    def gather_dst(self, node_values: Tensor) -> Tensor:
        """(N,) -> (B, L, 1): broadcasts along the source axis (1 at padding, whose edges are all zero)."""
        return self.to_padded(node_values, fill=1.0).unsqueeze(2)

    def gather_src(self, node_values: Tensor) -> Tensor:
        """(N,) -> (B, 1, L): broadcasts along the destination axis (1 at padding)."""
        return self.to_padded(node_values, fill=1.0).unsqueeze(1)

    # ---- reductions -----------------------------------------------------------------------------------
    def softmax(self, edge_logits: Tensor) -> Tensor:
        """Masked softmax over sources: (B, H, L, L) -> (B, H, L, L), zero off the graph."""
        masked = edge_logits.masked_fill(~self.adjacency.unsqueeze(1), float("-inf"))
        return torch.softmax(masked, dim=-1)

    def in_degree(self, edge_values: Tensor) -> Tensor:
        """(B, L, L) -> (N,) sum of incoming edge values per valid node."""
        masked = edge_values * self.adjacency
        return self.from_padded(masked.sum(-1))

    def propagate(self, x: Tensor, edge_values: Tensor) -> Tensor:
        """Dense counterpart of :meth:`SparseGraph.propagate`; ``x`` (N, C) or (N, H, C).

        ``edge_values``: (B, L, L) for (N, C) input, (B, H, L, L) for (N, H, C) input. Edge tensors must be zero
        off the graph, as every one made from :attr:`weight` or :meth:`softmax` is.
        """
        padded = self.to_padded(x)
        if x.dim() == 2:
            return self.from_padded(torch.bmm(edge_values.to(x.dtype), padded))
        per_head = torch.matmul(edge_values.to(x.dtype), padded.transpose(1, 2))  # (B, H, L, C)
        return self.from_padded(per_head.transpose(1, 2))
