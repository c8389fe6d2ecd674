"""The learned graph (``graph="learned"``) and the GAT edge-term key (``gat_edge_term``)."""

from __future__ import annotations

import math

import pytest
import torch

from glot_st import GLOT
from glot_st.graph import LEARNED_TEMPERATURE_INIT

from conftest import random_batch, randomized_glot

LENGTHS = [9, 4, 0, 1, 7]  # padding, an empty row, a single token
CONVS = ["gat", "gcn", "gin", "sage"]


def _batch(seed: int = 0):
    states, mask = random_batch(5, 9, 8, seed=seed, lengths=LENGTHS)
    # anisotropic states (as a backbone's): cosines spread over (-1, 1) instead of clustering at 0
    return states + 0.8 * torch.randn(8, generator=torch.Generator().manual_seed(seed)), mask


def _learned(conv: str, layout: str, **config) -> GLOT:
    config = {"graph": "learned", "conv": conv, "heads": 2 if conv == "gat" else 1, "learned_floor": -0.2, **config}
    glot = randomized_glot(1, layout=layout, **config)
    with torch.no_grad():  # a threshold inside the cosines' range and a temperature that leaves edges partial
        glot.learned_edges.tau.fill_(0.1)
        glot.learned_edges.log_temperature.fill_(math.log(0.2))
    return glot


@pytest.mark.parametrize("conv", CONVS)
def test_both_layouts_give_the_same_embeddings_and_gradients(conv):
    states, mask = _batch()
    results = []
    for layout in ("dense", "sparse"):
        glot = _learned(conv, layout)
        out = glot.pool(states, mask)
        out.pow(2).sum().backward()
        edges = glot.learned_edges
        results.append((out.detach(), edges.tau.grad.clone(), edges.log_temperature.grad.clone()))
    (dense, *dense_grads), (sparse, *sparse_grads) = results
    torch.testing.assert_close(dense, sparse, rtol=1e-5, atol=1e-5)
    for got, want in zip(dense_grads, sparse_grads):
        assert torch.isfinite(got) and got.abs() > 0
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
@pytest.mark.parametrize("conv", CONVS)
def test_padding_and_empty_rows_give_no_nan_and_empty_rows_pool_to_zero(conv, layout):
    states, mask = _batch(seed=3)
    states[~mask.bool()] = 1e6  # large but finite padding must not leak into anything
    glot = _learned(conv, layout)
    glot.train()
    out = glot.pool(states, mask)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert torch.equal(out[2], torch.zeros_like(out[2]))
    for parameter in glot.parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all()


@pytest.mark.parametrize("conv", ["gat", "gcn"])
@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_at_a_tiny_temperature_the_learned_graph_is_the_threshold_graph(conv, layout):
    """sigmoid((cos - tau) / T) -> the indicator of cos > tau: GCN's weights and GAT's log-weights then keep
    exactly the threshold graph's edges (with the candidate floor at -1, every pair is a candidate)."""
    states, mask = _batch(seed=5)
    learned = _learned(conv, layout, learned_floor=-1.0)
    with torch.no_grad():
        learned.learned_edges.log_temperature.fill_(math.log(1e-6))
    fixed = randomized_glot(1, layout=layout, conv=conv, heads=learned.heads, tau=0.1)
    fixed.load_state_dict({k: v for k, v in learned.state_dict().items() if not k.startswith("learned_edges.")})
    with torch.no_grad():
        torch.testing.assert_close(learned.pool(states, mask), fixed.pool(states, mask), rtol=1e-5, atol=1e-5)
        moved = _learned(conv, layout, learned_floor=-1.0)  # a soft graph is another graph
        assert (moved.pool(states, mask) - fixed.pool(states, mask)).abs().max() > 1e-3


def test_the_threshold_and_temperature_start_from_the_config_and_are_saved(tmp_path):
    glot = GLOT(8, hidden_dim=6, graph="learned", tau=0.45)
    assert glot.learned_edges.tau.item() == pytest.approx(0.45)
    assert glot.learned_edges.log_temperature.exp().item() == pytest.approx(LEARNED_TEMPERATURE_INIT)
    assert {"learned_edges.tau", "learned_edges.log_temperature"} <= set(glot.state_dict())
    assert "learned_edges.tau" not in GLOT(8, hidden_dim=6).state_dict()  # fixed graphs keep their old weights
    trained = _learned("gcn", "auto", learned_floor=0.05)
    trained.save(str(tmp_path))
    loaded = GLOT.load(str(tmp_path))
    assert loaded.graph == "learned" and loaded.learned_floor == 0.05
    states, mask = _batch(seed=2)
    with torch.no_grad():
        torch.testing.assert_close(loaded.pool(states, mask), trained.pool(states, mask), rtol=0, atol=0)


def test_training_moves_the_threshold_and_temperature():
    states, mask = _batch(seed=4)
    glot = _learned("gat", "dense")
    before = [p.detach().clone() for p in glot.learned_edges.parameters()]
    optimizer = torch.optim.SGD(glot.learned_edges.parameters(), lr=0.1)
    glot.pool(states, mask).pow(2).sum().backward()
    optimizer.step()
    assert all((p.detach() - b).abs() > 0 for p, b in zip(glot.learned_edges.parameters(), before))


@pytest.mark.parametrize(
    "config, message",
    [
        (dict(graph="learned", edge_weight="cosine"), "sets its own soft edge weights"),
        (dict(graph="learned", learned_floor=1.0), "learned_floor must be"),
        (dict(learned_floor=True), "learned_floor must be"),
        (dict(gat_edge_term="yes"), "gat_edge_term must be"),
    ],
)
def test_bad_graph_options_are_refused_at_construction(config, message):
    with pytest.raises(ValueError, match=message):
        GLOT(8, hidden_dim=6, **config)


def test_convs_other_than_gat_ignore_the_edge_term_key():
    states, mask = _batch(seed=3)
    on = randomized_glot(1, conv="gcn", gat_edge_term=True)
    off = randomized_glot(1, conv="gcn", gat_edge_term=False)
    assert on.state_dict().keys() == off.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(on.pool(states, mask), off.pool(states, mask))


@pytest.mark.parametrize(
    "edge_weight, edge_term, has_term",
    [("binary", None, False), ("cosine", None, True), ("binary", True, True), ("cosine", False, False),
     ("binary", "default", True)],
)
def test_the_edge_term_key_switches_pygs_edge_feature_on_every_gat_layer(edge_weight, edge_term, has_term):
    key = {} if edge_term == "default" else {"gat_edge_term": edge_term}
    glot = GLOT(8, hidden_dim=6, edge_weight=edge_weight, **key)
    assert all((layer.lin_edge is not None) == has_term for layer in glot.layers)
    assert glot.get_config_dict()["gat_edge_term"] is (True if edge_term == "default" else edge_term)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_the_edge_term_on_a_binary_graph_adds_a_constant_inside_the_leaky_relu(layout):
    """With the term on, every binary edge gets ``a_edge . W_e`` in its logit; it changes the attention (through
    the LeakyReLU) unless it is zero."""
    states, mask = _batch(seed=6)
    with_term = randomized_glot(2, layout=layout, gat_edge_term=True)
    without = randomized_glot(2, layout=layout, gat_edge_term=False)
    without.load_state_dict(with_term.state_dict(), strict=False)
    with torch.no_grad():
        assert (with_term.pool(states, mask) - without.pool(states, mask)).abs().max() > 1e-4
        for layer in with_term.layers:
            layer.att_edge.zero_()
        torch.testing.assert_close(with_term.pool(states, mask), without.pool(states, mask), rtol=1e-6, atol=1e-6)
