"""Graph construction that scales: blocked similarity, and the semantics of the topk / mutual_knn graphs.

The similarity is computed in blocks of at most ``block_elements`` entries, so an 8192-token input never
holds its ``L x L`` matrix; the edges do not depend on the block size. ``topk`` gives every valid token
exactly ``min(k, n - 1)`` in-neighbours plus its self-loop; ``mutual_knn`` is ``topk`` intersected with its
transpose (so symmetric); ``threshold`` is ``cos > tau`` plus self-loops. All are checked against brute force.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from glot_st import GLOT
from glot_st.graph import DEFAULT_BLOCK_ELEMENTS, _blocks, build_token_graph

from conftest import random_batch

GRAPHS = ("threshold", "topk", "mutual_knn")


def _edge_set(graph) -> set[tuple[int, int]]:
    """``{(src_position, dst_position)}`` in padded flat positions, from a sparse graph."""
    src = graph.node_position[graph.src].tolist()
    dst = graph.node_position[graph.dst].tolist()
    return set(zip(src, dst))


def _edge_weights(graph) -> dict[tuple[int, int], float]:
    src = graph.node_position[graph.src].tolist()
    dst = graph.node_position[graph.dst].tolist()
    return dict(zip(zip(src, dst), graph.weight.tolist()))


def _sentences(states: torch.Tensor, mask: torch.Tensor):
    """Yield ``(b, positions (n,), unit (n, d), sim (n, n))`` for every sentence with tokens."""
    length = states.shape[1]
    for b in range(states.shape[0]):
        positions = mask[b].nonzero().flatten()
        if positions.numel() == 0:
            continue
        unit = F.normalize(states[b, positions].double(), dim=-1)
        yield b, b * length + positions, unit, unit @ unit.T


# ---- the block iterator ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "batch, length, block_elements",
    [(1, 8192, DEFAULT_BLOCK_ELEMENTS), (3, 8192, 1 << 20), (64, 128, DEFAULT_BLOCK_ELEMENTS), (64, 128, 50_000),
     (5, 300, 1000), (2, 50, 10)],
)
def test_blocks_stay_within_bound_and_cover_every_row_once(batch, length, block_elements):
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[-1, length // 2 :] = False  # a shorter last sentence
    covered = torch.zeros(batch, length, dtype=torch.long)
    previous = (-1, -1)
    for b0, b1, r0, r1 in _blocks(mask, batch, length, block_elements):
        assert (b1 - b0) * (r1 - r0) * length <= max(block_elements, length)
        assert (b0, r0) > previous  # sorted: sentences, then rows
        previous = (b0, r0)
        covered[b0:b1, r0:r1] += 1
    assert bool((covered[mask] == 1).all())
    assert int(covered.max()) == 1


def test_fully_padded_long_sentence_is_skipped():
    mask = torch.zeros(2, 4096, dtype=torch.bool)
    mask[1, :10] = True
    blocks = list(_blocks(mask, 2, 4096, 1 << 20))
    assert blocks == [(1, 2, 0, 256)]


@pytest.mark.parametrize("graph", GRAPHS)
def test_8192_tokens_never_materialise_the_full_similarity(graph, monkeypatch):
    """Every similarity block of an 8192-token input stays within ``block_elements`` (64 Mi entries in full)."""
    length, block_elements = 8192, 1 << 22
    states = torch.randn(1, length, 8, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, length, dtype=torch.long)
    mask[0, -100:] = 0
    largest = []
    real_bmm = torch.bmm

    def recording_bmm(a, b, *args, **kwargs):
        out = real_bmm(a, b, *args, **kwargs)
        largest.append(out.numel())
        return out

    monkeypatch.setattr(torch, "bmm", recording_bmm)
    built = build_token_graph(states, mask, graph=graph, tau=0.9, k=4, block_elements=block_elements)
    monkeypatch.undo()
    assert largest and max(largest) <= block_elements < length * length
    assert built.num_nodes == length - 100
    assert built.rowptr[-1] == built.num_edges
    assert bool((built.rowptr[1:] > built.rowptr[:-1]).all())  # every token has at least its self-loop
    assert built.src.dtype == built.dst.dtype == torch.long


def test_long_input_through_glot_with_topk():
    """An 8192-token sentence goes through the module (sparse layout chosen automatically)."""
    torch.manual_seed(0)
    glot = GLOT(in_dim=16, hidden_dim=8, graph="topk", k=4, dropout=0.0).eval()
    assert glot._choose_layout(1, 8192) == "sparse"
    states = torch.randn(1, 8192, 16)
    with torch.no_grad():
        out = glot.pool(states, torch.ones(1, 8192))
    assert out.shape == (1, glot.get_sentence_embedding_dimension()) and bool(torch.isfinite(out).all())


# ---- blocked == unblocked ----------------------------------------------------------------------------------
@pytest.mark.parametrize("graph, edge_weight", list(itertools.product(GRAPHS, ("binary", "cosine"))))
def test_blocked_equals_unblocked(graph, edge_weight):
    states, mask = random_batch(4, 300, 6, seed=1, lengths=[300, 120, 0, 271], left_pad=True)
    kwargs = dict(graph=graph, edge_weight=edge_weight, tau=0.5, k=5)
    whole = build_token_graph(states, mask, block_elements=10**9, **kwargs)
    for block_elements in (300 * 300 * 2, 300 * 37, 1):  # sentence groups, row blocks, one row at a time
        blocked = build_token_graph(states, mask, block_elements=block_elements, **kwargs)
        for name in ("src", "dst", "rowptr", "node_position", "node_batch"):
            assert torch.equal(getattr(blocked, name), getattr(whole, name)), (name, block_elements)
        torch.testing.assert_close(blocked.weight, whole.weight, atol=1e-6, rtol=0)


# ---- semantics ---------------------------------------------------------------------------------------------
def _common_invariants(built, mask):
    """Destination-sorted CSR, self-loops everywhere, no padding, no edge across sentences."""
    length = mask.shape[1]
    assert built.num_nodes == int(mask.sum())
    assert bool((built.dst[1:] >= built.dst[:-1]).all())
    same_dst = built.dst[1:] == built.dst[:-1]
    assert bool((built.src[1:][same_dst] > built.src[:-1][same_dst]).all())  # ties by ascending source
    assert torch.equal(built.rowptr, torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(built.dst, minlength=built.num_nodes).cumsum(0)]))
    assert bool(mask.reshape(-1)[built.node_position].all())
    assert torch.equal(built.node_batch[built.src], built.node_batch[built.dst])
    edges = _edge_set(built)
    assert all((p, p) in edges for p in built.node_position.tolist())
    assert all(s // length == d // length for s, d in edges)
    return edges


@pytest.mark.parametrize("k", [1, 3, 50])
def test_topk_semantics(k):
    states, mask = random_batch(4, 20, 5, seed=2, lengths=[20, 7, 1, 0])
    built = build_token_graph(states, mask, graph="topk", k=k, edge_weight="cosine")
    edges = _common_invariants(built, mask)
    weights = _edge_weights(built)
    for _, positions, _, sim in _sentences(states, mask):
        n = positions.numel()
        for a in range(n):
            chosen = [c for c in range(n) if c != a and (int(positions[c]), int(positions[a])) in edges]
            assert len(chosen) == min(k, n - 1)  # exactly min(k, n-1) others, plus the self-loop
            others = [c for c in range(n) if c != a and c not in chosen]
            if chosen and others:  # the chosen are the most similar
                assert float(sim[a, chosen].min()) >= float(sim[a, others].max()) - 1e-6
            assert weights[(int(positions[a]), int(positions[a]))] == 1.0
            for c in chosen:
                expected = max(float(sim[a, c]), 0.0)
                assert abs(weights[(int(positions[c]), int(positions[a]))] - expected) < 1e-5


@pytest.mark.parametrize("k", [1, 2, 4, 50])
def test_mutual_knn_is_topk_intersected_with_its_transpose(k):
    states, mask = random_batch(3, 16, 4, seed=3, lengths=[16, 9, 2])
    topk = _edge_set(build_token_graph(states, mask, graph="topk", k=k))
    built = build_token_graph(states, mask, graph="mutual_knn", k=k, edge_weight="cosine")
    mutual = _common_invariants(built, mask)
    assert mutual == {(s, d) for s, d in topk if (d, s) in topk}
    assert all((d, s) in mutual for s, d in mutual)  # symmetric
    assert mutual <= topk | {(d, s) for s, d in topk}
    weights = _edge_weights(built)
    assert all(abs(weights[(s, d)] - weights[(d, s)]) < 1e-6 for s, d in mutual)
    if k >= 15:  # every other token is among the k nearest: the complete graph
        for _, positions, _, _ in _sentences(states, mask):
            assert all((int(s), int(d)) in mutual for s in positions for d in positions)


@pytest.mark.parametrize("tau", [-0.3, 0.0, 0.4])
def test_threshold_semantics(tau):
    states, mask = random_batch(3, 12, 4, seed=4, lengths=[12, 5, 1])
    built = build_token_graph(states, mask, graph="threshold", tau=tau, edge_weight="cosine")
    edges = _common_invariants(built, mask)
    weights = _edge_weights(built)
    expected = set()
    for _, positions, _, sim in _sentences(states, mask):
        for a, c in itertools.product(range(positions.numel()), repeat=2):
            if a == c or float(sim[a, c]) > tau:
                expected.add((int(positions[c]), int(positions[a])))
                want = 1.0 if a == c else max(float(sim[a, c]), 0.0)
                assert abs(weights[(int(positions[c]), int(positions[a]))] - want) < 1e-5
    assert edges == expected


@pytest.mark.parametrize("graph, edge_weight", list(itertools.product(GRAPHS, ("binary", "cosine"))))
def test_dense_layout_holds_the_same_graph(graph, edge_weight):
    states, mask = random_batch(3, 10, 4, seed=5, lengths=[10, 0, 6], left_pad=True)
    kwargs = dict(graph=graph, edge_weight=edge_weight, tau=0.2, k=3)
    sparse = build_token_graph(states, mask, layout="sparse", **kwargs)
    dense = build_token_graph(states, mask, layout="dense", **kwargs)
    batch, length = mask.shape
    adjacency = torch.zeros(batch * length, batch * length, dtype=torch.bool)
    weight = torch.zeros(batch * length, batch * length)
    dst, src = sparse.node_position[sparse.dst], sparse.node_position[sparse.src]
    adjacency[dst, src] = True
    weight[dst, src] = sparse.weight
    for b in range(batch):
        rows = slice(b * length, (b + 1) * length)
        valid = mask[b].bool()
        block = dense.adjacency[b] & valid.unsqueeze(1)  # padding rows hold a lone self-loop in dense
        assert torch.equal(block, adjacency[rows, rows])
        torch.testing.assert_close(dense.weight[b], weight[rows, rows], atol=1e-6, rtol=0)
    assert dense.num_edges == sparse.num_edges
