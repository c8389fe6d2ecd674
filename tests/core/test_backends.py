"""The torch-scatter / torch-sparse kernels agree with the native ones, forward and backward.

Parity is checked kernel by kernel and end to end through ``GLOT.pool`` for every conv, binary and cosine
edge weights, on the sparse layout (the one that runs the kernels; the dense layout uses them only in the
readout). Tests needing torch-scatter are skipped when it is not importable; the error raised when it is asked
for but missing is tested always.
"""

from __future__ import annotations

import itertools
import sys

import pytest
import torch

from glot_st import GLOT, build_token_graph
from glot_st.kernels import BACKENDS, get_kernels, native, resolve_backend, torch_scatter_available

from conftest import random_batch, randomized_glot

CONVS = ("gat", "gcn", "gin", "gine", "sage")
ATOL = 1e-9


def _scatter():
    pytest.importorskip("torch_scatter")
    pytest.importorskip("torch_sparse")
    return get_kernels("torch_scatter")


def _random_glot(seed: int, **config) -> GLOT:
    # float64: the two backends sum in different orders, and a gradient that is zero in exact arithmetic (the
    # scorer's last bias, under the per-sentence softmax) is then rounding noise far below any tolerance
    return randomized_glot(seed, **{"tau": 0.1, **config}).double().train()


def _graph_and_edges(seed: int = 0):
    states, mask = random_batch(4, 11, 6, seed=seed, lengths=[11, 4, 1, 8])
    graph = build_token_graph(states, mask, tau=0.0, edge_weight="cosine")
    return graph


# ---- kernel by kernel ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("trailing", [(), (3,)])
def test_segment_kernels_match(trailing):
    scatter = _scatter()
    graph = _graph_and_edges()
    values = torch.randn(graph.num_edges, *trailing, dtype=torch.float64, requires_grad=True)
    results = {}
    for name, kernels in (("native", native), ("scatter", scatter)):
        total = kernels.segment_sum(values, graph.dst, graph.rowptr, graph.num_nodes)
        soft = kernels.segment_softmax(values, graph.dst, graph.rowptr, graph.num_nodes)
        loss = (total * torch.linspace(-1, 1, total.numel(), dtype=torch.float64).view_as(total)).sum() + (
            soft * torch.linspace(0.5, 2, soft.numel(), dtype=torch.float64).view_as(soft)
        ).sum()
        (grad,) = torch.autograd.grad(loss, values)
        results[name] = (total, soft, grad)
    for a, b in zip(results["native"], results["scatter"]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_spmm_and_index_add_match():
    scatter = _scatter()
    graph = _graph_and_edges(1)
    values = torch.randn(graph.num_edges, dtype=torch.float64, requires_grad=True)
    dense = torch.randn(graph.num_nodes, 5, dtype=torch.float64, requires_grad=True)
    messages = torch.randn(graph.num_edges, 5, dtype=torch.float64, requires_grad=True)
    perm = torch.randperm(graph.num_edges, generator=torch.Generator().manual_seed(0))
    results = {}
    for name, kernels in (("native", native), ("scatter", scatter)):
        out = kernels.spmm(graph.rowptr, graph.src, values, dense)
        added = kernels.index_add_rows(messages[perm], graph.dst[perm], graph.num_nodes)  # any edge order
        loss = (out.sin() * 3).sum() + (added.cos()).sum()
        grads = torch.autograd.grad(loss, (values, dense, messages))
        results[name] = (out, added, *grads)
    for a, b in zip(results["native"], results["scatter"]):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_spmm_half_precision_matches(dtype):
    scatter = _scatter()
    graph = _graph_and_edges(2)
    values = graph.weight.to(dtype)
    dense = torch.randn(graph.num_nodes, 4).to(dtype)
    a = native.spmm(graph.rowptr, graph.src, values, dense)
    b = scatter.spmm(graph.rowptr, graph.src, values, dense)
    assert a.dtype == b.dtype == dtype
    torch.testing.assert_close(a.float(), b.float(), atol=1e-2, rtol=1e-2)


# ---- the native spmm's own backward (no torch-scatter needed) ------------------------------------------------
def test_native_spmm_gradcheck():
    graph = _graph_and_edges(3)
    values = torch.rand(graph.num_edges, dtype=torch.float64, requires_grad=True)
    dense = torch.randn(graph.num_nodes, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v, d: native.spmm(graph.rowptr, graph.src, v, d), (values, dense))
    # one input at a time (the other without gradient)
    (grad_dense,) = torch.autograd.grad(native.spmm(graph.rowptr, graph.src, values.detach(), dense).sum(), dense)
    adjacency = torch.zeros(graph.num_nodes, graph.num_nodes, dtype=torch.float64)
    adjacency[graph.dst, graph.src] = values.detach()
    torch.testing.assert_close(grad_dense, adjacency.T @ torch.ones(graph.num_nodes, 3, dtype=torch.float64))


def test_native_spmm_backward_stays_linear_in_tokens():
    """The gradient of the CSR values is not densified to N x N (25k tokens would need 2.5 GB)."""
    import resource

    nodes = 25_000
    rowptr = torch.arange(nodes + 1)
    col = torch.arange(nodes)  # one self-loop per node
    values = torch.rand(nodes, requires_grad=True)
    dense = torch.randn(nodes, 4, requires_grad=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = native.spmm(rowptr, col, values, dense)
    (out * torch.arange(4.0)).sum().backward()
    growth_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert growth_mib < 500
    torch.testing.assert_close(values.grad, dense.detach() @ torch.arange(4.0))
    torch.testing.assert_close(dense.grad, values.detach().unsqueeze(1) * torch.arange(4.0))


# ---- end to end through GLOT.pool --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "conv, edge_weight, layout",
    [(c, w, "sparse") for c, w in itertools.product(CONVS, ("binary", "cosine"))]
    + [("gat", "cosine", "dense"), ("gcn", "binary", "dense")],
)
def test_pool_forward_and_backward_match(conv, edge_weight, layout):
    _scatter()
    extra = {"heads": 2, "hidden_dim": 6} if conv == "gat" else {}
    glots = {
        backend: _random_glot(7, conv=conv, edge_weight=edge_weight, layout=layout, backend=backend, **extra)
        for backend in ("native", "torch_scatter")
    }
    assert glots["torch_scatter"]._kernels is not glots["native"]._kernels
    states, mask = random_batch(5, 9, 8, seed=3, lengths=[9, 3, 1, 0, 6], left_pad=True)
    states = states.double()
    outputs = {}
    for backend, glot in glots.items():
        inputs = states.clone().requires_grad_(True)
        out = glot.pool(inputs, mask)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
        params = [p for p in glot.parameters() if p.requires_grad]
        grads = torch.autograd.grad(loss, [inputs, *params])
        outputs[backend] = (out, grads)
    out_n, grads_n = outputs["native"]
    out_s, grads_s = outputs["torch_scatter"]
    torch.testing.assert_close(out_s, out_n, atol=ATOL, rtol=1e-9)
    assert float(out_n[3].detach().abs().max()) == 0.0  # the row without tokens
    names = ["token_states"] + [n for n, p in glots["native"].named_parameters() if p.requires_grad]
    for name, a, b in zip(names, grads_n, grads_s):
        torch.testing.assert_close(b, a, atol=ATOL, rtol=1e-7, msg=lambda m, name=name: f"gradient of {name}: {m}")
    assert float(grads_n[0].abs().sum()) > 0


@pytest.mark.parametrize(
    "config", [dict(conv="gat", heads=2, hidden_dim=6, gat_edge_term=True), dict(conv="gat", graph="learned"),
               dict(conv="gcn", graph="learned"), dict(conv="gine", graph="learned")], ids=str,
)
def test_pool_forward_and_backward_match_with_the_edge_term_and_the_learned_graph(config):
    _scatter()
    states, mask = random_batch(4, 9, 8, seed=5, lengths=[9, 3, 0, 6])
    results = {}
    for backend in ("native", "torch_scatter"):
        glot = _random_glot(7, layout="sparse", backend=backend, **config)
        out = glot.pool(states.double(), mask)
        grads = torch.autograd.grad(out.pow(2).sum(), [p for p in glot.parameters() if p.requires_grad])
        results[backend] = (out, grads)
    torch.testing.assert_close(results["torch_scatter"][0], results["native"][0], atol=ATOL, rtol=1e-9)
    for a, b in zip(results["native"][1], results["torch_scatter"][1]):
        torch.testing.assert_close(b, a, atol=ATOL, rtol=1e-7)


@pytest.mark.parametrize("graph", ["topk", "mutual_knn"])
def test_pool_matches_on_knn_graphs(graph):
    _scatter()
    states, mask = random_batch(3, 12, 8, seed=4)
    states = states.double()
    out = {
        backend: _random_glot(3, graph=graph, k=3, layout="sparse", backend=backend).eval().pool(states, mask)
        for backend in ("native", "torch_scatter")
    }
    torch.testing.assert_close(out["torch_scatter"], out["native"], atol=ATOL, rtol=1e-9)


# ---- selection and the missing-extension error ----------------------------------------------------------------
def test_auto_is_native():
    assert resolve_backend("auto") == "native"
    assert get_kernels("auto") is native
    assert GLOT(in_dim=4)._kernels is native


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError, match="native"):
        resolve_backend("cuda_magic")
    assert set(BACKENDS) == {"auto", "native", "torch_scatter"}


def test_missing_torch_scatter_gives_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_scatter", None)  # makes `import torch_scatter` fail
    assert not torch_scatter_available()
    for make in (lambda: get_kernels("torch_scatter"), lambda: GLOT(in_dim=4, backend="torch_scatter")):
        with pytest.raises(ImportError, match=r"pip install --no-build-isolation 'glot-st\[scatter\]'") as info:
            make()
        assert "backend='native'" in str(info.value)
    # the default needs nothing compiled
    assert GLOT(in_dim=4)._kernels is native
