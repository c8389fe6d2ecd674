"""Native torch kernels: ``scatter_reduce`` / ``index_add_`` and CSR ``torch.sparse.mm``.

All functions take edges sorted by destination: ``index`` (E,) int64 is the destination node of each edge and
``rowptr`` (N+1,) int64 its CSR row pointer. Values may carry trailing dimensions (for example heads).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["index_add_rows", "segment_softmax", "segment_sum", "spmm"]


def _expand_index(index: Tensor, like: Tensor) -> Tensor:
    """View ``index`` (E,) as ``like``'s shape (E, *) for ``scatter_reduce``."""
    return index.view(-1, *([1] * (like.dim() - 1))).expand_as(like)


def segment_sum(values: Tensor, index: Tensor, rowptr: Tensor, num_segments: int) -> Tensor:
    """Sum ``values`` (E, *) into ``num_segments`` rows by ``index`` (E,): returns (N, *)."""
    out = values.new_zeros((num_segments, *values.shape[1:]))
    return out.index_add_(0, index, values)


def segment_softmax(logits: Tensor, index: Tensor, rowptr: Tensor, num_segments: int) -> Tensor:
    """Softmax of ``logits`` (E, *) within each segment given by ``index`` (E,): returns (E, *).

    The maximum is subtracted per segment for stability (without gradient: softmax does not depend on it).
    """
    expanded = _expand_index(index, logits)
    seg_max = logits.new_full((num_segments, *logits.shape[1:]), float("-inf"))
    seg_max = seg_max.scatter_reduce(0, expanded, logits.detach(), reduce="amax", include_self=True)
    shifted = (logits - seg_max.index_select(0, index)).exp()
    denom = segment_sum(shifted, index, rowptr, num_segments)
    return shifted / denom.index_select(0, index)


def spmm(rowptr: Tensor, col: Tensor, values: Tensor, dense: Tensor) -> Tensor:
    """CSR sparse x dense product: ``out[i] = sum_{e in row i} values[e] * dense[col[e]]``.

    Args:
        rowptr: (N+1,) int64 row pointer over destination rows.
        col: (E,) int64 source column of every edge.
        values: (E,) float edge values (differentiable).
        dense: (N_src, C) float node features (differentiable).

    Returns:
        (N, C) tensor in ``dense``'s dtype.
    """
    num_rows = rowptr.numel() - 1
    # CPU CSR matmul has no half-precision kernels: compute those in float32 and cast back.
    compute_dtype = torch.float32 if dense.dtype in (torch.float16, torch.bfloat16) else dense.dtype
    matrix = torch.sparse_csr_tensor(
        rowptr, col, values.to(compute_dtype), size=(num_rows, dense.shape[0]), check_invariants=False
    )
    return torch.sparse.mm(matrix, dense.to(compute_dtype)).to(dense.dtype)


def index_add_rows(values: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Scatter-sum rows of ``values`` (E, C) into (N, C) by ``index`` (E,), index in any order."""
    out = values.new_zeros((num_segments, values.shape[1]))
    return out.index_add_(0, index, values)
