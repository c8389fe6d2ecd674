"""Primitive sparse kernels behind one seam.

Every kernel set exposes the same four functions over a graph whose edges are sorted by destination
(CSR rows = destination nodes, columns = source nodes):

- ``segment_sum(values (E, *), index (E,), rowptr (N+1,), num_segments) -> (N, *)``
- ``segment_softmax(logits (E, *), index (E,), rowptr (N+1,), num_segments) -> (E, *)``
- ``spmm(rowptr (N+1,), col (E,), values (E,), dense (N_src, C)) -> (N, C)``: ``out[i] = sum_e values[e] * dense[col[e]]``
- ``index_add_rows(values (E, C), index (E,), num_segments) -> (N, C)``: unsorted scatter-sum used for chunked messages

``get_kernels("native" | "torch_scatter" | "auto")`` returns the set. ``auto`` is ``native``: on the CPU of
this project's machines the native CSR ``torch.sparse.mm`` measured 4.8x faster than torch-sparse's spmm and
the native scatter softmax 1.8x faster than torch-scatter's (see ``benchmarks/results/``), and native needs
no compiled extension. ``torch_scatter`` is the optional extra ``glot-st[scatter]``, imported lazily.
"""

from __future__ import annotations

from types import ModuleType

BACKENDS = ("auto", "native", "torch_scatter")

__all__ = ["BACKENDS", "get_kernels", "resolve_backend", "torch_scatter_available"]


def torch_scatter_available() -> bool:
    """True when both torch-scatter and torch-sparse import."""
    try:
        import torch_scatter  # noqa: F401
        import torch_sparse  # noqa: F401
    except Exception:  # ImportError, or an OSError from a build against another torch
        return False
    return True


def resolve_backend(name: str) -> str:
    """Map a ``backend`` config value to the concrete kernel set name.

    Raises:
        ValueError: unknown name.
        ImportError: ``torch_scatter`` asked for but torch-scatter / torch-sparse are not installed; the message
            has the install command.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "auto":
        return "native"
    if name == "torch_scatter" and not torch_scatter_available():
        raise ImportError(
            "backend='torch_scatter' needs torch-scatter and torch-sparse, which are not installed. Install them "
            "with: pip install --no-build-isolation 'glot-st[scatter]' (they compile against the installed torch; "
            "about 12 minutes on 2 cores), or use backend='native'."
        )
    return name


def get_kernels(name: str) -> ModuleType:
    """Return the kernel module for ``name`` (``auto`` | ``native`` | ``torch_scatter``)."""
    concrete = resolve_backend(name)
    if concrete == "native":
        from glot_st.kernels import native

        return native
    from glot_st.kernels import scatter

    return scatter
