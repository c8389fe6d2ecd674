"""Primitive sparse kernels behind one seam.

Every kernel set exposes the same four functions over a graph whose edges are sorted by destination
(CSR rows = destination nodes, columns = source nodes):

- ``segment_sum(values (E, *), index (E,), rowptr (N+1,), num_segments) -> (N, *)``
- ``segment_softmax(logits (E, *), index (E,), rowptr (N+1,), num_segments) -> (E, *)``
- ``spmm(rowptr (N+1,), col (E,), values (E,), dense (N_src, C)) -> (N, C)``: ``out[i] = sum_e values[e] * dense[col[e]]``
- ``index_add_rows(values (E, C), index (E,), num_segments) -> (N, C)``: unsorted scatter-sum used for chunked messages

``get_kernels("native" | "torch_scatter" | "auto")`` returns the set. ``auto`` is ``native``, because it is
faster and needs no compiled extension. Measured side by side by ``benchmarks/bench_glot.py`` (2-core AMD
EPYC, 1 torch thread, torch 2.13, torch-scatter 2.1.2 / torch-sparse 0.6.18; 64 x 128 MiniLM tokens,
111k edges; ``benchmarks/results/bench_glot.md``): the native CSR ``torch.sparse.mm`` is 4.0-4.5x faster than
torch-sparse's spmm and the native segment softmax 1.3x faster (two runs); a whole GLOT forward on the
sparse layout is 1.04-1.31x faster with native, forward + backward 1.01-1.27x (the dense layers dominate
both). The native spmm has its own backward (:class:`native._CSRMatmul`), linear in the
number of edges. ``torch_scatter`` is the optional extra ``glot-st[scatter]``, imported lazily; both sets agree
to float64 rounding, forward and backward (``tests/core/test_backends.py``).
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
