"""The graph seam the message-passing layers are written against.

A batch of token graphs comes in one of two layouts with the same operations:

- :class:`SparseGraph`: the general mechanism. Nodes are the valid tokens of the batch, flattened to ``N``
  rows; edges are a destination-sorted list (CSR). Per-edge values have shape ``(E,)`` or ``(E, H)``.
  Aggregation is a sparse matmul; no ``E x hidden`` tensor is ever made (GINE's non-linear message is the one
  exception and is computed in bounded edge chunks).
- :class:`DenseGraph`: a masked ``(B, L, L)`` adjacency for short padded batches, where one batched matmul
  beats the sparse kernels, built and used without any host sync. Per-edge values have shape ``(B, L, L)``
  or ``(B, H, L, L)`` and are zero off the graph. It is chosen per batch by the module (``layout="auto"``)
  and gives the same results within float tolerance.

Node features are flattened ``(rows, C)`` tensors in both layouts, so layers never see the layout: the ``N``
valid tokens, or for the dense layout also all ``B * L`` positions of the padded grid (see
:class:`DenseGraph`). Edge tensors are opaque to the layers: they are made by :meth:`edge_logits` /
:meth:`edge_weights` / :meth:`gather_dst` / :meth:`gather_src`, combined element-wise, and consumed by
:meth:`softmax`, :meth:`propagate` and :meth:`in_degree`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DenseGraph", "SparseGraph", "valid_tokens"]


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
        weight: (E,) float32 edge weight (1 for binary graphs, the clamped cosine for cosine graphs, the soft
            weight of a learned graph; 1 on self-loops).
        kernels: the kernel module (:mod:`glot_st.kernels.native` or ``.scatter``).
        log_weight: (E,) float32 ``log(weight)`` of a learned graph (0 on self-loops), added to GAT's attention
            logits after the LeakyReLU; ``None`` for the fixed graphs.
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
    log_weight: Tensor | None = None

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

    def attention(
        self, node_src: Tensor, node_dst: Tensor, negative_slope: float, edge_scale: Tensor | None = None
    ) -> Tensor:
        """GAT attention: softmax over each node's incoming edges of
        ``LeakyReLU(node_src[j] + node_dst[i] + edge_scale * w_ij) [+ log w_ij]`` (the last term on learned graphs,
        see :attr:`log_weight`); (N, H), (N, H), (H,) -> (E, H)."""
        logits = self.edge_logits(node_src, node_dst)
        if edge_scale is not None:
            logits = logits + self.edge_weights(edge_scale.to(logits.dtype))
        logits = F.leaky_relu(logits, negative_slope)
        if self.log_weight is not None:
            logits = logits + self.log_weight.to(logits.dtype).unsqueeze(1)
        return self.softmax(logits)

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


class DenseGraph:
    """Masked dense adjacency over a padded ``(B, L)`` batch.

    Every position of the padded grid is a row of the graph: padding positions are isolated nodes with only a
    self-loop, so every softmax row is defined and padding never sends to a valid token. Node features come in
    either of two forms, and every operation returns the form it was given:

    - the ``N`` valid-token rows (as for :class:`SparseGraph`), scattered into the grid and gathered back;
    - all ``B * L`` rows of the padded grid, row ``b * L + i`` for token ``i`` of sentence ``b``: plain views,
      no gather and no host sync. GLOT's forward uses this form; padding rows must hold finite values (they
      meet zero edge values, and ``0 * nan`` is not 0).

    The two forms coincide when there is no padding (``N == B * L``). Node values made by :meth:`in_degree`
    are always in the padded form, with 1 at padding rows (their self-loop counts as one) so that degree
    normalisations stay finite.

    Attributes:
        mask: (B, L) bool, True at real tokens.
        adjacency: (B, L, L) bool, ``adjacency[b, i, j]`` = edge ``j -> i``; padding rows hold only their
            self-loop, padding columns nothing else.
        edge_weight: (B, L, L) float32 edge weights of a ``cosine`` or learned graph (zero off the graph and at
            padding rows), or ``None`` for a binary graph (see :attr:`weight`).
        kernels: kept for the sparse-layout readout.
        log_weight: (B, L, L) float32 ``log(edge_weight)`` of a learned graph, 0 on self-loops and off the graph
            (where the attention mask rules), or ``None``; as :attr:`SparseGraph.log_weight`.
    """

    layout = "dense"

    def __init__(
        self,
        mask: Tensor,
        adjacency: Tensor,
        edge_weight: Tensor | None,
        kernels: ModuleType,
        log_weight: Tensor | None = None,
    ):
        self.mask = mask
        self.adjacency = adjacency
        self.edge_weight = edge_weight
        self.kernels = kernels
        self.log_weight = log_weight
        self._valid: tuple[Tensor, Tensor, Tensor] | None = None
        self._bias: dict[tuple[int, torch.dtype], Tensor] = {}

    # ---- shape, and the valid-token view (which syncs with the device; GLOT's forward never uses it) ------
    @property
    def padded_shape(self) -> tuple[int, int]:
        return tuple(self.mask.shape)

    @property
    def num_sentences(self) -> int:
        return self.mask.shape[0]

    @property
    def num_rows(self) -> int:
        """``B * L``: rows of the padded form."""
        return self.mask.numel()

    def _valid_tokens(self) -> tuple[Tensor, Tensor, Tensor]:
        if self._valid is None:
            self._valid = valid_tokens(self.mask)
        return self._valid

    @property
    def node_position(self) -> Tensor:
        """(N,) int64 flat index ``b * L + i`` of every valid token."""
        return self._valid_tokens()[0]

    @property
    def node_batch(self) -> Tensor:
        """(N,) int64 sentence of every valid token."""
        return self._valid_tokens()[1]

    @property
    def sentence_rowptr(self) -> Tensor:
        """(B+1,) int64 where each sentence's valid tokens start."""
        return self._valid_tokens()[2]

    @property
    def num_nodes(self) -> int:
        """``N`` valid tokens."""
        return self.node_position.numel()

    @property
    def num_edges(self) -> int:
        """Edges between valid tokens (padding self-loops excluded)."""
        return int(self.adjacency.sum().item()) - (self.num_rows - self.num_nodes)

    @property
    def weight(self) -> Tensor:
        """(B, L, L) float32 edge weights: zero off the graph and at padding rows, 1 on every binary edge."""
        if self.edge_weight is not None:
            return self.edge_weight
        return (self.adjacency & self.mask.unsqueeze(2)).float()

    # ---- the two node forms ---------------------------------------------------------------------------------
    def _is_padded(self, x: Tensor) -> bool:
        return x.shape[0] == self.num_rows

    def to_padded(self, x: Tensor, fill: float = 0.0) -> Tensor:
        """(B*L, *F) or (N, *F) -> (B, L, *F); valid-token rows get ``fill`` at padding."""
        batch, length = self.padded_shape
        if self._is_padded(x):
            return x.view(batch, length, *x.shape[1:])
        out = x.new_full((batch * length, *x.shape[1:]), fill)
        out = out.index_copy(0, self.node_position, x)
        return out.view(batch, length, *x.shape[1:])

    def from_padded(self, x: Tensor, like: Tensor) -> Tensor:
        """(B, L, *F) -> the form of ``like``: (B*L, *F) or (N, *F)."""
        flat = x.reshape(-1, *x.shape[2:])
        return flat if self._is_padded(like) else flat.index_select(0, self.node_position)

    # ---- edge tensors -------------------------------------------------------------------------------
    def edge_logits(self, node_src: Tensor, node_dst: Tensor) -> Tensor:
        """(rows, H), (rows, H) -> (B, H, L, L) with ``[b, h, i, j] = node_src[j, h] + node_dst[i, h]``."""
        src = self.to_padded(node_src).permute(0, 2, 1).unsqueeze(2)  # (B, H, 1, L)
        dst = self.to_padded(node_dst).permute(0, 2, 1).unsqueeze(3)  # (B, H, L, 1)
        return src + dst

    def edge_weights(self, per_head: Tensor | None = None) -> Tensor:
        """(B, L, L), or (B, H, L, L) = ``weight * per_head[h]``."""
        weight = self.weight
        if per_head is None:
            return weight
        return weight.to(per_head.dtype).unsqueeze(1) * per_head.view(1, -1, 1, 1)

    def attention(
        self, node_src: Tensor, node_dst: Tensor, negative_slope: float, edge_scale: Tensor | None = None
    ) -> Tensor:
        """GAT attention: (rows, H), (rows, H), (H,) -> (B, H, L, L), as :meth:`SparseGraph.attention`.

        The logits ``node_dst[i] + node_src[j]`` are a rank-2 product ``[dst_i, 1] . [1, src_j]``, added onto
        the additive mask (0 on the graph, the lowest float off it; made once per graph) by one ``baddbmm``;
        the softmax then gives exactly zero off the graph.
        """
        batch, length = self.padded_shape
        heads = node_src.shape[-1]
        dst, src = self.to_padded(node_dst), self.to_padded(node_src)  # (B, L, H)
        ones = torch.ones_like(dst)
        left = torch.stack([dst, ones], dim=-1).transpose(1, 2).reshape(batch * heads, length, 2)
        right = torch.stack([ones, src], dim=-1).permute(0, 2, 3, 1).reshape(batch * heads, 2, length)
        bias = self._attention_bias(heads, dst.dtype)  # (B, H, L, L)
        if edge_scale is not None:
            bias = bias + self.weight.to(dst.dtype).unsqueeze(1) * edge_scale.to(dst.dtype).view(1, -1, 1, 1)
        logits = torch.baddbmm(bias.reshape(batch * heads, length, length), left, right)
        logits = F.leaky_relu_(logits, negative_slope).view(batch, heads, length, length)
        if self.log_weight is not None:  # 0 off the graph, so the mask's lowest value stays there
            logits = logits + self.log_weight.to(logits.dtype).unsqueeze(1)
        return torch.softmax(logits, dim=-1)

    def _attention_bias(self, heads: int, dtype: torch.dtype) -> Tensor:
        """(B, H, L, L) additive attention mask, 0 on the graph and the lowest finite value off it, which the
        softmax turns into an exact 0 as it would -inf (every row has its self-loop); cached per heads and dtype."""
        key = (heads, dtype)
        if key not in self._bias:
            bias = (~self.adjacency).unsqueeze(1).to(dtype).mul_(torch.finfo(dtype).min)  # cheaper than where
            self._bias[key] = bias.expand(-1, heads, -1, -1)
        return self._bias[key]

    def gather_dst(self, node_values: Tensor) -> Tensor:
        """(rows,) -> (B, L, 1): broadcasts along the source axis (1 at padding, whose edges are all zero)."""
        return self.to_padded(node_values, fill=1.0).unsqueeze(2)

    def gather_src(self, node_values: Tensor) -> Tensor:
        """(rows,) -> (B, 1, L): broadcasts along the destination axis (1 at padding)."""
        return self.to_padded(node_values, fill=1.0).unsqueeze(1)

    # ---- reductions -----------------------------------------------------------------------------------
    def softmax(self, edge_logits: Tensor) -> Tensor:
        """Masked softmax over sources: (B, H, L, L) -> (B, H, L, L), zero off the graph.

        Every row has its self-loop, so no row is all masked.
        """
        masked = edge_logits.masked_fill(~self.adjacency.unsqueeze(1), float("-inf"))
        return torch.softmax(masked, dim=-1)

    def in_degree(self, edge_values: Tensor) -> Tensor:
        """(B, L, L) edge values (zero off the graph) -> (B*L,) incoming sums; 1 at padding rows."""
        degree = edge_values.sum(-1).masked_fill(~self.mask, 1.0)
        return degree.reshape(-1)

    def propagate(self, x: Tensor, edge_values: Tensor) -> Tensor:
        """Dense counterpart of :meth:`SparseGraph.propagate`; ``x`` (rows, C) or (rows, H, C).

        ``edge_values``: (B, L, L) for (rows, C) input, (B, H, L, L) for (rows, H, C) input. Edge tensors must
        be zero off the graph, as every one made from :attr:`weight` or :meth:`softmax` is.
        """
        padded = self.to_padded(x)
        if x.dim() == 2:
            return self.from_padded(torch.bmm(edge_values.to(x.dtype), padded), x)
        per_head = torch.matmul(edge_values.to(x.dtype), padded.transpose(1, 2))  # (B, H, L, C)
        return self.from_padded(per_head.transpose(1, 2), x)


def valid_tokens(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Flatten the valid tokens of a padded batch.

    Args:
        mask: (B, L) bool, True at real tokens.

    Returns:
        ``(node_position, node_batch, sentence_rowptr)``: (N,) int64 flat index ``b * L + i`` of every valid
        token in row-major order, (N,) int64 its sentence, and (B+1,) int64 where each sentence's tokens start.
    """
    batch, length = mask.shape
    node_position = mask.reshape(-1).nonzero().squeeze(1)
    node_batch = torch.div(node_position, length, rounding_mode="floor")
    counts = mask.sum(1)
    sentence_rowptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return node_position, node_batch, sentence_rowptr
