"""Property tests of ``build_token_graph`` over random batches, masks (all-padding rows included), tau, k,
graph kinds and block sizes small enough to force row-blocked construction."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glot_st.graph import build_token_graph
from glot_st.graph_ops import DenseGraph, SparseGraph

HUGE = 1 << 40
MARGIN = 1e-5  # similarity gaps smaller than this may be decided either way by float32 rounding

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def batches(draw):
    batch = draw(st.integers(1, 4))
    length = draw(st.integers(1, 8))
    dim = draw(st.integers(2, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    states = torch.randn(batch, length, dim, generator=torch.Generator().manual_seed(seed))
    rows = draw(
        st.lists(
            st.one_of(
                st.just([False] * length),  # a row without any valid token
                st.just([True] * length),
                st.lists(st.booleans(), min_size=length, max_size=length),
            ),
            min_size=batch,
            max_size=batch,
        )
    )
    mask = torch.tensor(rows, dtype=torch.bool).view(batch, length)
    as_long = draw(st.booleans())  # 0/1 integer masks work like bool masks
    return states, (mask.long() if as_long else mask)


graph_kinds = st.sampled_from(["threshold", "topk", "mutual_knn"])
taus = st.floats(-1.0, 1.0, allow_nan=False)
ks = st.integers(1, 4)
weights = st.sampled_from(["binary", "cosine"])


def _block_elements(draw_length: int):
    return st.integers(1, 2 * draw_length * draw_length + 1)


def _edges(graph: SparseGraph) -> set[tuple[int, int]]:
    """Edges as (destination, source) flat positions ``b * L + i`` of the padded grid."""
    pos = graph.node_position
    return set(zip(pos[graph.dst].tolist(), pos[graph.src].tolist()))


def _edge_weights(graph: SparseGraph) -> dict[tuple[int, int], float]:
    pos = graph.node_position
    return dict(zip(zip(pos[graph.dst].tolist(), pos[graph.src].tolist()), graph.weight.tolist()))


def _cosine(states: torch.Tensor) -> torch.Tensor:
    x = states.double()
    unit = x / x.norm(dim=-1, keepdim=True)
    return unit @ unit.transpose(1, 2)  # (B, L, L) float64


def _expected(states, mask, graph, tau, k):
    """Per destination position: (sure edges, sure non-edges), from the definitions in float64.

    Pairs whose decision hinges on a gap below MARGIN are left out of both sets.
    """
    batch, length, _ = states.shape
    sim = _cosine(states)
    valid = mask.bool()
    sure_in, sure_out = set(), set()

    def knn(b, i):
        others = [j for j in range(length) if valid[b, j] and j != i]
        others.sort(key=lambda j: -float(sim[b, i, j]))
        chosen = set(others[:k])
        clear = len(others) <= k or float(sim[b, i, others[k - 1]] - sim[b, i, others[k]]) > MARGIN
        return chosen, clear

    for b in range(batch):
        neighbours = {i: knn(b, i) for i in range(length) if valid[b, i]}
        for i in range(length):
            if not valid[b, i]:
                continue
            for j in range(length):
                if not valid[b, j]:
                    continue
                key = (b * length + i, b * length + j)
                if i == j:
                    sure_in.add(key)
                    continue
                if graph == "threshold":
                    if abs(float(sim[b, i, j]) - tau) <= MARGIN:
                        continue
                    edge = float(sim[b, i, j]) > tau
                elif graph == "topk":
                    chosen, clear = neighbours[i]
                    if not clear:
                        continue
                    edge = j in chosen
                else:
                    (chosen_i, clear_i), (chosen_j, clear_j) = neighbours[i], neighbours[j]
                    if not (clear_i and clear_j):
                        continue
                    edge = j in chosen_i and i in chosen_j
                (sure_in if edge else sure_out).add(key)
    return sure_in, sure_out


@SETTINGS
@given(batch=batches(), graph=graph_kinds, tau=taus, k=ks, edge_weight=weights, data=st.data())
def test_sparse_graph_structure(batch, graph, tau, k, edge_weight, data):
    states, mask = batch
    bsz, length, _ = states.shape
    block = data.draw(_block_elements(length), label="block_elements")
    g = build_token_graph(states, mask, tau=tau, graph=graph, k=k, edge_weight=edge_weight, block_elements=block)
    assert isinstance(g, SparseGraph)
    valid = mask.bool()

    # nodes are exactly the valid tokens, in padded-grid order
    flat_valid = valid.reshape(-1).nonzero().flatten()
    assert g.num_nodes == int(valid.sum())
    assert torch.equal(g.node_position, flat_valid)
    assert torch.equal(g.node_batch, flat_valid // length)
    assert g.num_sentences == bsz and tuple(g.padded_shape) == (bsz, length)

    # shapes and dtypes
    num_edges = g.num_edges
    assert g.src.shape == g.dst.shape == g.weight.shape == (num_edges,)
    assert g.src.dtype == g.dst.dtype == g.rowptr.dtype == torch.int64
    assert g.weight.dtype == torch.float32
    if num_edges:
        assert int(g.src.min()) >= 0 and int(g.src.max()) < g.num_nodes
        assert int(g.dst.min()) >= 0 and int(g.dst.max()) < g.num_nodes

    # sorted by destination, then source, no duplicate edge; rowptr consistent
    if num_edges > 1:
        key = g.dst * max(1, g.num_nodes) + g.src
        assert bool((key[1:] > key[:-1]).all())
    assert g.rowptr.shape == (g.num_nodes + 1,)
    assert int(g.rowptr[0]) == 0 and int(g.rowptr[-1]) == num_edges
    assert torch.equal(g.rowptr[1:] - g.rowptr[:-1], torch.bincount(g.dst, minlength=g.num_nodes))
    for node in range(g.num_nodes):
        assert bool((g.dst[g.rowptr[node] : g.rowptr[node + 1]] == node).all())

    # no edge crosses sentences or touches padding; a self-loop on every valid token
    assert torch.equal(g.node_batch[g.src], g.node_batch[g.dst])
    edges = _edges(g)
    positions = set(flat_valid.tolist())
    assert all(d in positions and s in positions for d, s in edges)
    assert all((p, p) in edges for p in positions)

    # symmetric kinds are symmetric
    if graph in ("threshold", "mutual_knn"):
        assert edges == {(s, d) for d, s in edges}

    # topk: every valid token receives exactly min(k, other tokens of its sentence) edges plus its self-loop
    if graph == "topk":
        in_degree = torch.bincount(g.dst, minlength=g.num_nodes)
        per_sentence = valid.sum(1)[g.node_batch]
        expected = torch.minimum(per_sentence - 1, torch.tensor(k)) + 1
        assert torch.equal(in_degree, expected)
        assert bool((in_degree <= k + 1).all())

    # the edges follow the definition (pairs on a float-rounding knife edge excepted)
    sure_in, sure_out = _expected(states, mask, graph, tau, k)
    assert sure_in <= edges
    assert not (sure_out & edges)

    # weights: 1 everywhere for binary graphs; clamped cosine with 1 on self-loops otherwise
    if edge_weight == "binary":
        assert bool((g.weight == 1).all())
    else:
        sim = _cosine(states).reshape(-1, length)
        for (d, s), w in _edge_weights(g).items():
            want = 1.0 if d == s else max(0.0, float(sim[d, s % length]))
            assert abs(w - want) < 1e-5, (d, s, w, want)


@SETTINGS
@given(batch=batches(), graph=graph_kinds, tau=taus, k=ks, edge_weight=weights, data=st.data())
def test_blocked_equals_unblocked(batch, graph, tau, k, edge_weight, data):
    states, mask = batch
    block = data.draw(_block_elements(states.shape[1]), label="block_elements")
    kwargs = dict(tau=tau, graph=graph, k=k, edge_weight=edge_weight)
    blocked = build_token_graph(states, mask, block_elements=block, **kwargs)
    whole = build_token_graph(states, mask, block_elements=HUGE, **kwargs)
    assert torch.equal(blocked.src, whole.src)
    assert torch.equal(blocked.dst, whole.dst)
    assert torch.equal(blocked.rowptr, whole.rowptr)
    torch.testing.assert_close(blocked.weight, whole.weight, atol=1e-6, rtol=0)


@SETTINGS
@given(batch=batches(), graph=graph_kinds, tau=taus, k=ks, edge_weight=weights)
def test_dense_layout_equals_sparse_edge_set(batch, graph, tau, k, edge_weight):
    states, mask = batch
    bsz, length, _ = states.shape
    kwargs = dict(tau=tau, graph=graph, k=k, edge_weight=edge_weight)
    sparse = build_token_graph(states, mask, layout="sparse", **kwargs)
    dense = build_token_graph(states, mask, layout="dense", **kwargs)
    assert isinstance(dense, DenseGraph)
    assert dense.adjacency.shape == dense.weight.shape == (bsz, length, length)
    assert dense.adjacency.dtype == torch.bool
    assert torch.equal(dense.node_position, sparse.node_position)
    assert torch.equal(dense.node_batch, sparse.node_batch)
    assert dense.num_nodes == sparse.num_nodes
    assert dense.num_edges == sparse.num_edges

    valid = mask.bool()
    pair_valid = valid.unsqueeze(2) & valid.unsqueeze(1)
    b, i, j = (dense.adjacency & pair_valid).nonzero(as_tuple=True)
    dense_edges = set(zip((b * length + i).tolist(), (b * length + j).tolist()))
    assert dense_edges == _edges(sparse)

    # padding rows hold only their own self-loop, padding columns nothing from valid rows
    eye = torch.eye(length, dtype=torch.bool).expand(bsz, -1, -1)
    padding_rows = ~valid.unsqueeze(2).expand(-1, -1, length)
    assert torch.equal(dense.adjacency & padding_rows, eye & padding_rows)
    assert not bool((dense.adjacency & valid.unsqueeze(2) & ~valid.unsqueeze(1)).any())

    # weights: the sparse ones on the valid edges, zero off the graph and at padding rows
    dense_weight = dense.weight[b, i, j]
    lookup = _edge_weights(sparse)
    want = torch.tensor(
        [lookup[(int(bb) * length + int(ii), int(bb) * length + int(jj))] for bb, ii, jj in zip(b, i, j)]
    )
    torch.testing.assert_close(dense_weight, want.reshape(dense_weight.shape), atol=1e-6, rtol=0)
    assert not bool(dense.weight[~(dense.adjacency & pair_valid)].any())
