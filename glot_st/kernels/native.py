"""Native torch kernels: ``scatter_reduce`` / ``index_add_`` and CSR ``torch.sparse.mm``.

All functions take edges sorted by destination: ``index`` (E,) int64 is the destination node of each edge and
``rowptr`` (N+1,) int64 its CSR row pointer. Values may carry trailing dimensions (for example heads).
"""

from __future__ import annotations

import warnings

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
        col: (E,) int64 source column of every edge (sorted within each row, no duplicates).
        values: (E,) float edge values (differentiable).
        dense: (N_src, C) float node features (differentiable).

    Returns:
        (N, C) tensor in ``dense``'s dtype.
    """
    # CPU CSR matmul has no half-precision kernels: compute those in float32 and cast back.
    compute_dtype = torch.float32 if dense.dtype in (torch.float16, torch.bfloat16) else dense.dtype
    out = _CSRMatmul.apply(rowptr, col, values.to(compute_dtype), dense.to(compute_dtype))
    return out.to(dense.dtype)


def _csr(rowptr: Tensor, col: Tensor, values: Tensor, num_cols: int) -> Tensor:
    # torch warns that CSR support is "in beta" when a CSR tensor is made; the few CSR operations used here
    # (construction, mm, transpose, sampled_addmm) are long stable. Silence that warning for this call only.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state", category=UserWarning)
        return torch.sparse_csr_tensor(
            rowptr, col, values, size=(rowptr.numel() - 1, num_cols), check_invariants=False
        )


class _CSRMatmul(torch.autograd.Function):
    """``torch.sparse.mm`` on a CSR matrix, with a backward that stays linear in the number of edges.

    Autograd through ``torch.sparse_csr_tensor(...)`` densifies the gradient of the matrix to ``N x N_src``
    (quadratic time and memory in the batch's token count: 5 GiB for 32k tokens). Here the gradient of the
    values is the sampled product ``<grad_out[row], dense[col]>`` on the sparsity pattern (``sampled_addmm``)
    and the gradient of ``dense`` is the transposed product ``A^T grad_out``.
    """

    @staticmethod
    def forward(ctx, rowptr: Tensor, col: Tensor, values: Tensor, dense: Tensor) -> Tensor:
        ctx.save_for_backward(rowptr, col, values, dense)
        return torch.sparse.mm(_csr(rowptr, col, values, dense.shape[0]), dense)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: Tensor):
        rowptr, col, values, dense = ctx.saved_tensors
        grad_values = grad_dense = None
        grad_out = grad_out.contiguous()
        if ctx.needs_input_grad[2]:
            if values.numel() == 0:
                grad_values = values.new_zeros(0)
            else:
                pattern = _csr(rowptr, col, values.new_zeros(values.shape), dense.shape[0])
                grad_values = torch.sparse.sampled_addmm(pattern, grad_out, dense.t()).values()
        if ctx.needs_input_grad[3]:
            grad_dense = torch.sparse.mm(_csr(rowptr, col, values, dense.shape[0]).t(), grad_out)
        return None, None, grad_values, grad_dense


def index_add_rows(values: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Scatter-sum rows of ``values`` (E, C) into (N, C) by ``index`` (E,), index in any order."""
    out = values.new_zeros((num_segments, values.shape[1]))
    return out.index_add_(0, index, values)
