"""torch-scatter / torch-sparse kernels (the optional extra ``glot-st[scatter]``).

Same functions and shapes as :mod:`glot_st.kernels.native`; imported only when ``backend="torch_scatter"``.
"""

from __future__ import annotations

import torch
import torch_scatter
import torch_sparse
from torch import Tensor

__all__ = ["index_add_rows", "segment_softmax", "segment_sum", "spmm"]


def segment_sum(values: Tensor, index: Tensor, rowptr: Tensor, num_segments: int) -> Tensor:
    """Sum ``values`` (E, *) per CSR segment: returns (N, *)."""
    return torch_scatter.segment_csr(values, rowptr, reduce="sum")


def segment_softmax(logits: Tensor, index: Tensor, rowptr: Tensor, num_segments: int) -> Tensor:
    """Softmax of ``logits`` (E, *) within each segment of ``index``: returns (E, *)."""
    return torch_scatter.scatter_softmax(logits, index, dim=0, dim_size=num_segments)


def spmm(rowptr: Tensor, col: Tensor, values: Tensor, dense: Tensor) -> Tensor:
    """CSR sparse x dense product through ``torch_sparse.SparseTensor.matmul``; see the native docstring."""
    num_rows = rowptr.numel() - 1
    compute_dtype = torch.float32 if dense.dtype in (torch.float16, torch.bfloat16) else dense.dtype
    matrix = torch_sparse.SparseTensor(
        rowptr=rowptr,
        col=col,
        value=values.to(compute_dtype),
        sparse_sizes=(num_rows, dense.shape[0]),
        is_sorted=True,
        trust_data=True,
    )
    return matrix.matmul(dense.to(compute_dtype)).to(dense.dtype)


def index_add_rows(values: Tensor, index: Tensor, num_segments: int) -> Tensor:
    """Scatter-sum rows of ``values`` (E, C) into (N, C) by ``index`` (E,), index in any order."""
    return torch_scatter.scatter(values, index, dim=0, dim_size=num_segments, reduce="sum")
