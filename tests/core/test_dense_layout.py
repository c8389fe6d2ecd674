"""The dense layout's fast paths: padded-grid rows, padding that holds garbage, the value check and its switch,
and the per-device ``auto`` rule."""

from __future__ import annotations

import pytest
import torch

from glot_st import build_token_graph
from glot_st.layers import GATLayer, GCNLayer, SAGELayer
from glot_st.module import DEFAULT_DENSE_MAX_ELEMENTS

from conftest import random_batch, randomized_glot

CONFIGS = [
    dict(conv="gat", heads=2, edge_weight="cosine"),
    dict(conv="gcn", edge_weight="cosine", jk="max"),
    dict(conv="gin", graph="topk", k=2),
    dict(conv="sage", graph="mutual_knn", k=2, jk="mean"),
    dict(conv="gat", heads=2, graph="learned", gat_edge_term=True),
    dict(conv="gcn", graph="learned", learned_floor=-1.0),
]


def _ids(config):
    return "-".join(map(str, config.values()))


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
@pytest.mark.parametrize("garbage", [float("nan"), float("inf"), 1e30])
def test_padding_content_never_matters(config, garbage):
    """Whatever sits at padding (NaN, inf, huge), the dense and sparse results and gradients are those of zeros."""
    glot = randomized_glot(1, **config)
    states, mask = random_batch(3, 7, 8, seed=1, lengths=[7, 3, 0], left_pad=True)
    dirty = states.masked_fill(~mask.bool().unsqueeze(2), garbage)
    clean = states.masked_fill(~mask.bool().unsqueeze(2), 0.0)
    for layout in ("dense", "sparse"):
        glot.layout = layout
        results = []
        for x in (dirty, clean):
            x = x.clone().requires_grad_(True)
            out = glot.pool(x, mask)
            out.square().sum().backward()
            results.append((out.detach(), x.grad))
        torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=1e-6)
        assert torch.isfinite(results[0][0]).all()


@pytest.mark.parametrize("config", CONFIGS, ids=_ids)
def test_unchecked_non_finite_token_gives_nan_for_its_sentence_only(config):
    """``validate_inputs=False``: no error and no host sync; the bad sentence comes out NaN, the others unchanged."""
    glot = randomized_glot(2, layout="dense", **config)
    states, mask = random_batch(3, 6, 8, seed=2, lengths=[6, 4, 5])
    with torch.no_grad():
        want = glot.pool(states, mask)
        states[1, 2, 0] = float("nan")
        with pytest.raises(ValueError, match=r"row\(s\) \[1\]"):
            glot.pool(states, mask)
        glot.validate_inputs = False
        got = glot.pool(states, mask)
    assert torch.isnan(got[1]).all()
    torch.testing.assert_close(got[[0, 2]], want[[0, 2]], atol=1e-6, rtol=1e-6)
    assert type(glot).validate_inputs is True  # a per-instance switch; the class default is untouched


def test_no_padding_and_padding_paths_agree():
    """A full batch skips the padding pass; the same rows inside a padded batch give the same embeddings."""
    glot = randomized_glot(3, layout="dense")
    states, mask = random_batch(2, 6, 8, seed=3, lengths=[6, 6])
    wider = torch.cat([states, torch.randn(2, 3, 8)], dim=1)
    wider_mask = torch.cat([mask, torch.zeros(2, 3, dtype=mask.dtype)], dim=1)
    with torch.no_grad():
        full = glot.pool(states, mask)
        padded = glot.pool(wider, wider_mask)
        glot.validate_inputs = False  # the unchecked path always zeroes padding with torch.where
        unchecked = glot.pool(states, mask)
    torch.testing.assert_close(full, padded, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(full, unchecked, atol=0, rtol=0)


@pytest.mark.parametrize(
    "layer", [GATLayer(8, 6, heads=2), GCNLayer(8, 6), SAGELayer(8, 6)], ids=["gat", "gcn", "sage"]
)
def test_dense_graph_takes_valid_rows_or_padded_grid_rows(layer):
    """The dense graph's two node forms give the same valid-token outputs (padding rows: any finite values)."""
    states, mask = random_batch(3, 5, 8, seed=4, lengths=[5, 2, 0])
    graph = build_token_graph(states, mask, tau=0.1, edge_weight="cosine", layout="dense")
    valid = states[mask.bool()]
    grid = states.masked_fill(~mask.bool().unsqueeze(2), 3.0).reshape(-1, 8)
    with torch.no_grad():
        from_valid = layer(valid, graph)
        from_grid = layer(grid, graph)
    assert from_valid.shape == (int(mask.sum()), 6) and from_grid.shape == (15, 6)
    torch.testing.assert_close(from_grid[mask.bool().reshape(-1)], from_valid, atol=1e-6, rtol=1e-6)


def test_auto_layout_bound_per_device():
    glot = randomized_glot(6)
    assert glot.dense_max_elements is None
    cpu, cuda = DEFAULT_DENSE_MAX_ELEMENTS["cpu"], DEFAULT_DENSE_MAX_ELEMENTS["cuda"]
    assert cpu < cuda
    length = 128
    batch = cpu // (length * length) + 1  # just above the CPU bound, below the CUDA one
    assert batch * length * length <= cuda
    assert glot._choose_layout(batch, length, torch.device("cpu")) == "sparse"
    assert glot._choose_layout(batch, length, torch.device("cuda")) == "dense"
    assert glot._choose_layout(batch - 1, length, "cpu") == "dense"
    assert glot._choose_layout(batch, length, torch.device("mps")) == "sparse"  # other devices: the CPU rule
    glot.dense_max_elements = 10  # an explicit bound holds on every device
    assert glot._choose_layout(1, 4, torch.device("cuda")) == "sparse"
    assert glot._choose_layout(1, 3, "cpu") == "dense"


def test_auto_layout_on_cpu_needs_a_full_enough_grid():
    from glot_st.module import DENSE_MIN_FILL_CPU

    glot = randomized_glot(7)
    batch, length = 4, 10
    enough = int(DENSE_MIN_FILL_CPU * batch * length + 0.999)
    assert glot._choose_layout(batch, length, "cpu", enough) == "dense"
    assert glot._choose_layout(batch, length, "cpu", enough - 1) == "sparse"
    assert glot._choose_layout(batch, length, torch.device("cuda"), enough - 1) == "dense"  # no count on a GPU
    assert glot._choose_layout(batch, length, "cpu", None) == "dense"
