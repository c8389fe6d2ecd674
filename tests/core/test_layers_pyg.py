"""Every glot-st conv equals the matching PyTorch Geometric conv: forward and all gradients.

Our graphs come from ``build_token_graph`` on random token states; PyG sees the same graph as
``edge_index = stack([src, dst])`` over the valid-token nodes (always from the sparse graph of the same input,
also when our layer runs on the dense layout), with the edge weight as ``edge_weight`` / ``edge_attr``.
Weights are copied from ours to PyG by parameter name after checking every name and shape matches.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch_geometric.nn import GATConv, GCNConv, GINConv, GINEConv, SAGEConv

from glot_st.graph import build_token_graph
from glot_st.graph_ops import DenseGraph, SparseGraph
from glot_st.layers import GATLayer, GCNLayer, GINELayer, GINLayer, SAGELayer

from conftest import random_batch

IN_DIM = 8
OUT_DIM = 6
ATOL = 1e-5
RTOL = 1e-4
LAYOUTS = ("sparse", "dense")


def _graphs(edge_weight: str, layout: str, seed: int):
    """(our graph in ``layout``, node features (N, d), PyG edge_index (2, E), weight (E,))."""
    # lengths include a one-token sentence and a fully padded row (no nodes)
    states, mask = random_batch(4, 7, IN_DIM, seed=seed, lengths=[7, 4, 1, 0])
    kwargs = dict(tau=0.15, graph="threshold", edge_weight=edge_weight)
    sparse = build_token_graph(states, mask, layout="sparse", **kwargs)
    ours = sparse if layout == "sparse" else build_token_graph(states, mask, layout="dense", **kwargs)
    assert isinstance(ours, SparseGraph if layout == "sparse" else DenseGraph)
    x = states.reshape(-1, IN_DIM).index_select(0, sparse.node_position)
    edge_index = torch.stack([sparse.src, sparse.dst])
    # the graph must be non-trivial: more edges than self-loops alone, and non-unit cosine weights
    assert sparse.num_edges > sparse.num_nodes
    if edge_weight == "cosine":
        assert bool(((sparse.weight > 0) & (sparse.weight < 1)).any())
    return ours, x, edge_index, sparse.weight.clone()


def _randomize(module: nn.Module, seed: int) -> None:
    """Overwrite every parameter with random values (so zero-initialised biases are exercised too)."""
    gen = torch.Generator().manual_seed(1000 + seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.5)


def _copy_weights(ours: nn.Module, theirs: nn.Module) -> None:
    """Copy ours -> PyG by name; both must have exactly the same parameter names and shapes."""
    our_params = dict(ours.named_parameters())
    their_params = dict(theirs.named_parameters())
    assert sorted(our_params) == sorted(their_params)
    with torch.no_grad():
        for name, parameter in their_params.items():
            assert parameter.shape == our_params[name].shape, name
            parameter.copy_(our_params[name])


def _compare(ours: nn.Module, theirs: nn.Module, run_ours, run_theirs, x: torch.Tensor, seed: int) -> None:
    """Forward outputs and the gradients w.r.t. ``x`` and every parameter agree."""
    x_ours = x.clone().requires_grad_(True)
    x_theirs = x.clone().requires_grad_(True)
    out_ours = run_ours(x_ours)
    out_theirs = run_theirs(x_theirs)
    assert out_ours.shape == out_theirs.shape
    torch.testing.assert_close(out_ours, out_theirs, atol=ATOL, rtol=RTOL)

    gen = torch.Generator().manual_seed(seed)
    upstream = torch.randn(out_ours.shape, generator=gen)
    (out_ours * upstream).sum().backward()
    (out_theirs * upstream).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_theirs.grad, atol=ATOL, rtol=RTOL)
    their_params = dict(theirs.named_parameters())
    for name, parameter in ours.named_parameters():
        assert parameter.grad is not None, f"no gradient for {name}"
        assert their_params[name].grad is not None, f"PyG has no gradient for {name}"
        torch.testing.assert_close(parameter.grad, their_params[name].grad, atol=ATOL, rtol=RTOL, msg=name)
    # the comparison is not vacuous
    assert float(x_ours.grad.abs().sum()) > 0


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("heads,concat", [(1, True), (1, False), (3, True), (3, False)])
@pytest.mark.parametrize("edge_weight,use_edge_weight", [("binary", False), ("cosine", False), ("cosine", True)])
def test_gat_matches_pyg(layout, heads, concat, edge_weight, use_edge_weight):
    seed = heads * 7 + int(concat)
    graph, x, edge_index, weight = _graphs(edge_weight, layout, seed)
    ours = GATLayer(IN_DIM, OUT_DIM, heads=heads, concat=concat, use_edge_weight=use_edge_weight)
    _randomize(ours, seed)
    channels = OUT_DIM // heads if concat else OUT_DIM
    theirs = GATConv(
        IN_DIM,
        channels,
        heads=heads,
        concat=concat,
        add_self_loops=False,
        edge_dim=1 if use_edge_weight else None,
    )
    # PyG 2.8 names: lin.weight (H*C, in), att_src / att_dst (1, H, C), lin_edge.weight (H*C, 1), att_edge
    assert theirs.att_src.shape == (1, heads, channels)
    assert theirs.lin.weight.shape == (heads * channels, IN_DIM)
    _copy_weights(ours, theirs)
    edge_attr = weight.unsqueeze(1) if use_edge_weight else None
    _compare(
        ours,
        theirs,
        lambda inp: ours(inp, graph),
        lambda inp: theirs(inp, edge_index, edge_attr=edge_attr),
        x,
        seed,
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("edge_weight", ["binary", "cosine"])
def test_gcn_matches_pyg(layout, edge_weight):
    graph, x, edge_index, weight = _graphs(edge_weight, layout, 11)
    ours = GCNLayer(IN_DIM, OUT_DIM)
    _randomize(ours, 11)
    theirs = GCNConv(IN_DIM, OUT_DIM, add_self_loops=False, normalize=True)
    _copy_weights(ours, theirs)
    _compare(
        ours, theirs, lambda inp: ours(inp, graph), lambda inp: theirs(inp, edge_index, edge_weight=weight), x, 11
    )


def _pyg_mlp(ours_nn: nn.Sequential) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(ours_nn[0].in_features, ours_nn[0].out_features),
        nn.ReLU(),
        nn.Linear(ours_nn[2].in_features, ours_nn[2].out_features),
    )


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("eps,train_eps", [(0.0, False), (0.3, True)])
def test_gin_matches_pyg(layout, eps, train_eps):
    graph, x, edge_index, _ = _graphs("binary", layout, 21)
    ours = GINLayer(IN_DIM, OUT_DIM, eps=eps, train_eps=train_eps)
    _randomize(ours, 21)
    theirs = GINConv(_pyg_mlp(ours.nn), eps=eps, train_eps=train_eps)
    _copy_weights(ours, theirs)
    if not train_eps:
        assert float(ours.eps) == float(theirs.eps) == eps
    _compare(ours, theirs, lambda inp: ours(inp, graph), lambda inp: theirs(inp, edge_index), x, 21)


@pytest.mark.parametrize("edge_weight", ["binary", "cosine"])
@pytest.mark.parametrize("eps,train_eps", [(0.0, False), (0.3, True)])
def test_gine_matches_pyg(edge_weight, eps, train_eps):
    graph, x, edge_index, weight = _graphs(edge_weight, "sparse", 31)
    ours = GINELayer(IN_DIM, OUT_DIM, eps=eps, train_eps=train_eps)
    _randomize(ours, 31)
    theirs = GINEConv(_pyg_mlp(ours.nn), eps=eps, train_eps=train_eps, edge_dim=1)
    _copy_weights(ours, theirs)
    _compare(
        ours,
        theirs,
        lambda inp: ours(inp, graph),
        lambda inp: theirs(inp, edge_index, edge_attr=weight.unsqueeze(1)),
        x,
        31,
    )


def test_gine_chunked_messages_match_pyg():
    """GINE's bounded edge chunks (forced tiny here) give the same sum as one pass."""
    graph, x, edge_index, weight = _graphs("cosine", "sparse", 37)
    ours = GINELayer(IN_DIM, OUT_DIM)
    _randomize(ours, 37)
    theirs = GINEConv(_pyg_mlp(ours.nn), edge_dim=1)
    _copy_weights(ours, theirs)
    original = graph.aggregate_messages

    def tiny_chunks(inp, message, max_chunk_elements=1 << 24):
        return original(inp, message, max_chunk_elements=3 * IN_DIM)

    graph.aggregate_messages = tiny_chunks
    _compare(
        ours,
        theirs,
        lambda inp: ours(inp, graph),
        lambda inp: theirs(inp, edge_index, edge_attr=weight.unsqueeze(1)),
        x,
        37,
    )


def test_gine_rejects_dense_layout():
    graph, x, _, _ = _graphs("binary", "dense", 41)
    with pytest.raises(ValueError, match="sparse"):
        GINELayer(IN_DIM, OUT_DIM)(x, graph)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sage_matches_pyg(layout):
    graph, x, edge_index, _ = _graphs("binary", layout, 51)
    ours = SAGELayer(IN_DIM, OUT_DIM)
    _randomize(ours, 51)
    theirs = SAGEConv(IN_DIM, OUT_DIM, aggr="mean")
    _copy_weights(ours, theirs)
    _compare(ours, theirs, lambda inp: ours(inp, graph), lambda inp: theirs(inp, edge_index), x, 51)
