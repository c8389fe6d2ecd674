"""Token-graph construction: one similarity graph per sentence, built for a whole padded batch.

Nodes are the valid (unmasked) tokens. An edge ``j -> i`` joins two tokens of the same sentence when

- ``graph="threshold"`` (the paper): ``cos(x_i, x_j) > tau``; symmetric.
- ``graph="topk"``: ``j`` is among the ``k`` tokens most similar to ``i`` (``i`` itself excluded); directed
  (``i`` receives from its neighbours).
- ``graph="mutual_knn"``: ``j`` is among ``i``'s ``k`` nearest and ``i`` among ``j``'s; symmetric.
- ``graph="learned"`` (beyond the paper): every pair with ``cos(x_i, x_j) > floor`` is a candidate edge,
  carrying its raw cosine; :class:`LearnedEdges` then turns the cosines into soft weights
  ``sigmoid((cos - tau) / T)`` with a learned threshold ``tau`` and temperature ``T``.

Every valid token also has a self-loop. No edge touches padding and no edge crosses sentences.

Similarity is computed in blocks of at most ``block_elements`` entries, so a long input (say 8192 tokens)
never holds its whole ``L x L`` matrix; the sparse edge list comes out sorted by destination (then source),
ready to be used as CSR rows without another sort. The dense layout is built from one ``(B, L, L)``
similarity of the whole batch with the same comparisons (same products, same threshold, same top-k), with
no edge list and no host sync; ``tests/core/test_graph_properties.py`` checks that both layouts hold the same
graph.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glot_st.graph_ops import DenseGraph, SparseGraph, valid_tokens
from glot_st.kernels import get_kernels

GRAPH_KINDS = ("threshold", "topk", "mutual_knn", "learned")
EDGE_WEIGHTS = ("binary", "cosine")
DEFAULT_BLOCK_ELEMENTS = 1 << 24
# The graph defaults, written once: build_token_graph and the GLOT module both use them.
DEFAULT_TAU = 0.6
DEFAULT_GRAPH = "threshold"
DEFAULT_K = 8
DEFAULT_EDGE_WEIGHT = "binary"
# graph="learned": the cosine above which a pair is a candidate edge, and the temperature the soft threshold starts
# from (its learned threshold starts from the configured tau)
DEFAULT_LEARNED_FLOOR = 0.0
LEARNED_TEMPERATURE_INIT = 0.1

__all__ = [
    "DEFAULT_EDGE_WEIGHT",
    "DEFAULT_LEARNED_FLOOR",
    "LEARNED_TEMPERATURE_INIT",
    "LearnedEdges",
    "DEFAULT_GRAPH",
    "DEFAULT_K",
    "DEFAULT_TAU",
    "EDGE_WEIGHTS",
    "GRAPH_KINDS",
    "build_token_graph",
    "token_norms",
    "valid_tokens",
]


def token_norms(token_states: Tensor) -> Tensor:
    """(B, L, d) float tensor of any float dtype -> (B, L, 1) float32 L2 norms of the tokens (non-finite where a
    token has a NaN or inf value, or values too large for a float32 norm)."""
    return torch.linalg.vector_norm(token_states.float(), dim=-1, keepdim=True)


def _similarity(states: Tensor, inverse_norm: Tensor, b0: int, b1: int, r0: int, r1: int) -> Tensor:
    """(G, R, L) cosine similarities of rows ``r0:r1`` of sentences ``b0:b1`` with every token of theirs.

    ``<x_i, x_j> / (|x_i| |x_j|)``: one product of the raw states, scaled in place, so no normalised copy of
    the states is made; both layouts call this, so they compare the same numbers. NaN where either token is
    padding (``inverse_norm`` is NaN there), so padding fails every comparison.
    """
    sim = torch.bmm(states[b0:b1, r0:r1], states[b0:b1].transpose(1, 2))
    return sim.mul_(inverse_norm[b0:b1, r0:r1]).mul_(inverse_norm[b0:b1].transpose(1, 2))


def _inverse_norms(norm: Tensor, mask: Tensor, eps: float = 1e-12) -> Tensor:
    """(B, L, 1) ``1 / max(|x|, eps)`` (as ``F.normalize``), NaN at padding."""
    return norm.clamp_min(eps).reciprocal().masked_fill_(~mask.unsqueeze(2), float("nan"))


def build_token_graph(
    token_states: Tensor,
    attention_mask: Tensor,
    *,
    tau: float = DEFAULT_TAU,
    graph: str = DEFAULT_GRAPH,
    k: int = DEFAULT_K,
    edge_weight: str = DEFAULT_EDGE_WEIGHT,
    floor: float = DEFAULT_LEARNED_FLOOR,
    layout: str = "sparse",
    backend: str | ModuleType = "native",
    block_elements: int = DEFAULT_BLOCK_ELEMENTS,
    norm: Tensor | None = None,
) -> SparseGraph | DenseGraph:
    """Build the token graphs of a padded batch.

    Args:
        token_states: (B, L, d) float tensor of any float dtype; similarity is computed in float32.
        attention_mask: (B, L) tensor, non-zero / True at real tokens (any positions: left or right padding).
        tau: cosine threshold in [-1, 1] for ``graph="threshold"`` (edges where ``sim > tau``).
        graph: ``"threshold"`` | ``"topk"`` | ``"mutual_knn"`` | ``"learned"`` (candidate edges where
            ``sim > floor``, carrying the raw similarity whatever ``edge_weight`` says; see :class:`LearnedEdges`).
        k: neighbours per token for ``topk`` / ``mutual_knn`` (at least 1).
        edge_weight: ``"binary"`` (1 on every edge) or ``"cosine"`` (the similarity clamped at 0; self-loops 1).
        floor: the candidate cosine of ``graph="learned"``, in [-1, 1).
        layout: ``"sparse"`` (destination-sorted CSR edge list) or ``"dense"`` (masked ``(B, L, L)`` adjacency).
        backend: kernel set name or module (see :mod:`glot_st.kernels`), stored on the graph for the layers.
        block_elements: the most similarity entries computed at once by the sparse layout (the dense layout
            holds the whole ``(B, L, L)`` similarity, as it holds the ``(B, L, L)`` adjacency).
        norm: the token norms when already computed (``token_norms(token_states)``).

    Returns:
        A :class:`~glot_st.graph_ops.SparseGraph` or :class:`~glot_st.graph_ops.DenseGraph`.
    """
    if token_states.dim() != 3:
        raise ValueError(f"token_states must be (B, L, d); got shape {tuple(token_states.shape)}")
    batch, length, _ = token_states.shape
    if tuple(attention_mask.shape) != (batch, length):
        raise ValueError(
            f"attention_mask must be (B, L) = {(batch, length)} to match token_states; got {tuple(attention_mask.shape)}"
        )
    if graph not in GRAPH_KINDS:
        raise ValueError(f"unknown graph {graph!r}; choose one of {', '.join(GRAPH_KINDS)}")
    if edge_weight not in EDGE_WEIGHTS:
        raise ValueError(f"unknown edge_weight {edge_weight!r}; choose one of {', '.join(EDGE_WEIGHTS)}")
    if layout not in ("sparse", "dense"):
        raise ValueError(f"unknown layout {layout!r}; choose 'sparse' or 'dense'")
    if graph == "learned" and not -1.0 <= floor < 1.0:
        raise ValueError(f"floor must be in [-1, 1) for graph='learned'; got {floor!r}")
    kernels = get_kernels(backend) if isinstance(backend, str) else backend

    # the learned graph's candidates: a threshold graph at the floor, with the raw cosine (clamped at -1: none)
    cosine, low = edge_weight == "cosine", 0.0
    if graph == "learned":
        graph, tau, cosine, low = "threshold", floor, True, -1.0
    mask = attention_mask.to(device=token_states.device).bool()
    states = token_states.float()
    inverse_norm = _inverse_norms(token_norms(states) if norm is None else norm, mask)
    if layout == "dense":
        return _dense_graph(states, inverse_norm, mask, graph, tau, k, cosine, kernels, low)
    knn = _knn_indices(states, inverse_norm, mask, k, block_elements) if graph == "mutual_knn" else None
    flat_mask = mask.reshape(-1)
    node_position, node_batch, sentence_rowptr = valid_tokens(mask)
    common = dict(
        num_nodes=node_position.numel(),
        num_sentences=batch,
        node_batch=node_batch,
        node_position=node_position,
        sentence_rowptr=sentence_rowptr,
        padded_shape=(batch, length),
        kernels=kernels,
    )

    node_id = (flat_mask.long().cumsum(0) - 1).view(batch, length)
    src_parts, dst_parts, weight_parts = [], [], []
    for b0, b1, r0, r1 in _blocks(mask, batch, length, block_elements):
        g, i, j, w = _block_edges(states, inverse_norm, mask, b0, b1, r0, r1, graph, tau, k, knn, cosine, low)
        dst_parts.append(node_id[b0 + g, r0 + i])
        src_parts.append(node_id[b0 + g, j])
        if w is not None:
            weight_parts.append(w)
        del g, i, j, w
    dst = _concat(dst_parts, node_position.new_zeros(0))
    src = _concat(src_parts, node_position.new_zeros(0))
    # binary graphs: a weight of 1 on every edge, made once instead of gathered block by block
    weight = _concat(weight_parts, states.new_zeros(0)) if cosine else states.new_ones(dst.numel())
    counts = torch.bincount(dst, minlength=common["num_nodes"])
    rowptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    return SparseGraph(src=src, dst=dst, rowptr=rowptr, weight=weight, **common)


def _dense_graph(
    states: Tensor,
    inverse_norm: Tensor,
    mask: Tensor,
    graph: str,
    tau: float,
    k: int,
    cosine: bool,
    kernels: ModuleType,
    low: float = 0.0,
) -> DenseGraph:
    """The graph as a ``(B, L, L)`` adjacency, from one batched similarity: no edge list, no host sync.

    The comparisons are those of :func:`_block_edges` (on the same products), so both layouts hold the same
    edges; every position gets a self-loop, padding rows nothing else. Cosine weights are clamped at ``low``.
    """
    rows, cols = mask.unsqueeze(2), mask.unsqueeze(1)
    sim = _similarity(states, inverse_norm, 0, states.shape[0], 0, states.shape[1])  # (B, L, L) float32
    # the diagonal as a (L, L) bool, applied out of place (an in-place fill of a diagonal view does not export)
    diagonal = torch.eye(states.shape[1], dtype=torch.bool, device=states.device)
    if graph == "threshold":
        # padding has NaN similarities, hence no edge: no (B, L, L) mask pass needed
        adjacency = sim > tau
    else:
        # k nearest other valid tokens of every row, as a (B, L, L) bool; the self-loop is added below
        excluded = (~cols if graph == "topk" else ~(rows & cols)) | diagonal
        candidates = sim.masked_fill(excluded, float("-inf"))
        top = candidates.topk(min(k, sim.shape[-1]), dim=-1)
        del candidates
        adjacency = torch.zeros(sim.shape, dtype=torch.bool, device=sim.device)
        adjacency.scatter_(-1, top.indices, top.values > float("-inf"))
        if graph == "mutual_knn":
            adjacency = adjacency & adjacency.transpose(1, 2)
        adjacency = adjacency & rows
    adjacency = adjacency | diagonal
    weight = None
    if cosine:  # the clamped similarity on the edges of valid rows, 1 on their self-loops
        weight = sim.masked_fill(diagonal, 1.0).clamp_min_(low).masked_fill_(~(adjacency & rows), 0.0)
    return DenseGraph(mask=mask, adjacency=adjacency, edge_weight=weight, kernels=kernels)


def _concat(parts: list[Tensor], empty: Tensor) -> Tensor:
    """``torch.cat`` without the copy when there is a single part (the usual case)."""
    if not parts:
        return empty
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _block_edges(
    states: Tensor,
    inverse_norm: Tensor,
    mask: Tensor,
    b0: int,
    b1: int,
    r0: int,
    r1: int,
    graph: str,
    tau: float,
    k: int,
    knn: tuple[Tensor, Tensor] | None,
    cosine: bool,
    low: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Edges of destination rows ``r0:r1`` of sentences ``b0:b1``, in (sentence, row, column) order.

    The sparse path never materialises more than one ``(G, R, L)`` similarity block (plus one bool block for
    ``threshold``); ``topk`` and ``mutual_knn`` go from the similarity straight to ``k + 1`` candidates per row.

    Returns:
        ``(g, i, j, weight)``: (E,) int64 block-local sentence ``g``, row ``i`` (token ``r0 + i``) and source
        token ``j``; ``weight`` (E,) float32 (cosine clamped at ``low``, 1 on self-loops) when ``cosine`` else
        ``None``.
    """
    row_mask = mask[b0:b1, r0:r1]
    padded = not bool(mask[b0:b1].all())
    diag = torch.arange(r0, r1, device=states.device)
    if graph == "mutual_knn":
        assert knn is not None
        indices, values = knn[0][b0:b1], knn[1][b0:b1]  # (G, L, k)
        rows = indices[:, r0:r1]  # (G, R, k), -1 = none
        groups, num_rows, keep = rows.shape
        # j = rows[g, i, s] is kept when r0 + i is among j's own neighbours
        back = torch.gather(indices, 1, rows.clamp_min(0).reshape(groups, num_rows * keep, 1).expand(-1, -1, keep))
        mutual = (back.view(groups, num_rows, keep, keep) == diag.view(1, -1, 1, 1)).any(-1) & (rows >= 0)
        return _candidate_edges(rows, values[:, r0:r1], mutual, row_mask, diag, states.shape[1], cosine)

    sim = _similarity(states, inverse_norm, b0, b1, r0, r1)  # (G, R, L) float32
    if graph == "topk":
        if padded:
            sim.masked_fill_(~mask[b0:b1].unsqueeze(1), float("-inf"))
        sim[:, diag - r0, diag] = float("-inf")  # the self-loop is added below, never a top-k neighbour
        top = sim.topk(min(k, sim.shape[-1]), dim=-1)
        del sim
        found = top.values > float("-inf")
        return _candidate_edges(top.indices, top.values, found, row_mask, diag, states.shape[1], cosine)

    # threshold: cos > tau, plus a self-loop on every valid token (the diagonal is lifted above any tau)
    sim[:, diag - r0, diag] = 2.0
    adjacency = sim > tau
    if padded:
        adjacency &= mask[b0:b1].unsqueeze(1)
        adjacency &= row_mask.unsqueeze(2)
    g, i, j = adjacency.nonzero(as_tuple=True)
    del adjacency
    if not cosine:
        return g, i, j, None
    sim[:, diag - r0, diag] = 1.0
    return g, i, j, sim[g, i, j].clamp_min_(low)


def _candidate_edges(
    columns: Tensor, values: Tensor, keep: Tensor, row_mask: Tensor, diag: Tensor, length: int, cosine: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """Edges from per-row candidate columns (G, R, k) with similarities and a keep mask, plus self-loops.

    Each row's kept candidates and its own diagonal are sorted by column, so the edge list stays
    destination- then source-sorted; rows that are padding get no edge.
    """
    groups, num_rows, _ = columns.shape
    columns = torch.cat([columns.masked_fill(~keep, length), diag.view(1, -1, 1).expand(groups, -1, 1)], dim=-1)
    columns, order = columns.sort(dim=-1)
    g, i, slot = ((columns < length) & row_mask.unsqueeze(2)).nonzero(as_tuple=True)
    j = columns[g, i, slot]
    if not cosine:
        return g, i, j, None
    weights = torch.cat([values.clamp_min(0.0), values.new_ones(groups, num_rows, 1)], dim=-1)
    return g, i, j, weights.gather(-1, order)[g, i, slot]


def _blocks(mask: Tensor, batch: int, length: int, block_elements: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(b0, b1, r0, r1)``: sentences ``b0:b1`` and destination rows ``r0:r1``, in sorted order.

    Sentences are grouped while ``group * L * L <= block_elements``; a sentence too long for one block is
    split by rows, and row ranges without a valid token are skipped.
    """
    per_sentence = length * length
    if per_sentence <= block_elements:
        group = max(1, block_elements // max(1, per_sentence))
        for b0 in range(0, batch, group):
            yield b0, min(batch, b0 + group), 0, length
        return
    rows = max(1, block_elements // max(1, length))
    for b in range(batch):
        for r0 in range(0, length, rows):
            r1 = min(length, r0 + rows)
            if bool(mask[b, r0:r1].any()):
                yield b, b + 1, r0, r1




def _knn_indices(
    states: Tensor, inverse_norm: Tensor, mask: Tensor, k: int, block_elements: int
) -> tuple[Tensor, Tensor]:
    """Each token's ``k`` nearest other valid tokens, computed block by block.

    Returns:
        ``(indices, values)``: (B, L, k) int64 neighbour tokens (``-1`` where fewer exist) and (B, L, k) float32
        their cosine similarities (``-inf`` where none).
    """
    batch, length, _ = states.shape
    keep = min(k, length)
    indices = torch.full((batch, length, keep), -1, dtype=torch.long, device=states.device)
    values = torch.full((batch, length, keep), float("-inf"), device=states.device)
    for b0, b1, r0, r1 in _blocks(mask, batch, length, block_elements):
        sim = _similarity(states, inverse_norm, b0, b1, r0, r1)
        sim.masked_fill_(~(mask[b0:b1, r0:r1].unsqueeze(2) & mask[b0:b1].unsqueeze(1)), float("-inf"))
        diag = torch.arange(r0, r1, device=states.device)
        sim[:, diag - r0, diag] = float("-inf")
        top = sim.topk(keep, dim=-1)
        del sim
        found = top.values > float("-inf")
        indices[b0:b1, r0:r1] = top.indices.masked_fill(~found, -1)
        values[b0:b1, r0:r1] = top.values
    return indices, values


class LearnedEdges(nn.Module):
    """The soft edges of ``graph="learned"``: ``w_ij = sigmoid((cos_ij - tau) / T)`` on every candidate edge.

    ``tau`` and ``log T`` are learned. As ``T -> 0`` the weights become the threshold graph at ``tau``; a larger
    ``T`` lets pairs near the threshold take part with a partial weight, and gradients reach the threshold.
    Self-loops keep weight 1. The candidates (``cos > floor``) are fixed by :func:`build_token_graph`, so pairs
    below the floor never enter whatever ``tau`` becomes; with ``floor=-1`` every pair is a candidate.

    Message passing uses the weights as any edge weights (GCN's adjacency, GIN's sum, SAGE's mean, GINE's edge
    feature, GAT's edge term when on); GAT also adds ``log w_ij`` to its attention logits (after the LeakyReLU),
    so that ``alpha_ij`` is proportional to ``w_ij exp(e_ij)`` and an edge of weight 0 is no edge.

    Args:
        tau: the threshold's initial value, in [-1, 1].
        temperature: the temperature's initial value (> 0).

    Attributes:
        tau: () float32 parameter.
        log_temperature: () float32 parameter, ``log T``.
    """

    def __init__(self, tau: float, temperature: float = LEARNED_TEMPERATURE_INIT):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}")
        self.tau = nn.Parameter(torch.tensor(float(tau)))
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))

    def forward(self, graph: SparseGraph | DenseGraph) -> SparseGraph | DenseGraph:
        """A copy of ``graph`` (built with ``graph="learned"``) whose edge weights are the soft weights and whose
        ``log_weight`` is their log; both carry gradients to ``tau`` and ``log_temperature``."""
        if isinstance(graph, SparseGraph):
            on_candidate = graph.src != graph.dst  # every edge but the self-loops
            weight, log_weight = self._soft(graph.weight, on_candidate)
            weight = weight + (~on_candidate).to(weight.dtype)  # self-loops: 1
            return dataclasses.replace(graph, weight=weight, log_weight=log_weight)
        if graph.edge_weight is None:
            raise ValueError("LearnedEdges needs a graph built with graph='learned' (it reads the cosines)")
        eye = torch.eye(graph.adjacency.shape[-1], dtype=torch.bool, device=graph.adjacency.device)
        valid_rows = graph.mask.unsqueeze(2)
        weight, log_weight = self._soft(graph.edge_weight, graph.adjacency & valid_rows & ~eye)
        weight = weight + (eye & valid_rows).to(weight.dtype)  # self-loops of real tokens: 1; padding rows: 0
        return DenseGraph(graph.mask, graph.adjacency, weight, graph.kernels, log_weight=log_weight)

    def _soft(self, cosine: Tensor, on_candidate: Tensor) -> tuple[Tensor, Tensor]:
        """Soft weights and their logs where ``on_candidate``, ``(0, 0)`` elsewhere; ``cosine`` must be finite."""
        scaled = (cosine - self.tau) * torch.exp(-self.log_temperature)
        zero = scaled.new_zeros(())
        return torch.where(on_candidate, torch.sigmoid(scaled), zero), torch.where(on_candidate, F.logsigmoid(scaled), zero)
