"""``torch.compile`` on the dense layout: one graph without breaks (so no host sync) for every batch shape, and
the compiled forward (and backward) equal to eager.

``fullgraph=True`` fails on any graph break, and every host sync (``.item()``, ``bool(tensor)``, ``nonzero``,
``.tolist()``) is one: this is the check that the dense forward with ``validate_inputs=False`` never syncs.
The tracing tests use a counting backend (no code generation, a few seconds); one test runs inductor for real.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from conftest import random_batch, randomized_glot

SHAPES = [(3, 7, [7, 4, 0]), (5, 12, [12, 3, 9, 1, 12]), (2, 5, [5, 5])]  # padding, empty rows, no padding

CONFIGS = [
    dict(conv="gat", heads=2, edge_weight="cosine"),
    dict(conv="gat", jk="max"),
    dict(conv="gcn", edge_weight="cosine", jk="mean"),
    dict(conv="gin", graph="topk", k=2),
    dict(conv="sage", graph="mutual_knn", k=2),
    dict(conv="gat", heads=2, gat_edge_term=True),
    dict(conv="gat", graph="learned"),
    dict(conv="gin", graph="learned", learned_floor=-1.0),
]


def _glot(**config):
    glot = randomized_glot(3, layout="dense", output_token_states=True, **config)
    glot.validate_inputs = False
    return glot


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_dense_forward_is_one_graph_for_every_shape(config):
    glot = _glot(**config)
    counter = CompileCounter()
    compiled = torch.compile(glot, backend=counter, fullgraph=True, dynamic=True)
    for batch, length, lengths in SHAPES:
        states, mask = random_batch(batch, length, 8, seed=batch, lengths=lengths)
        with torch.no_grad():
            got = compiled({"token_embeddings": states, "attention_mask": mask})
            want = glot({"token_embeddings": states, "attention_mask": mask})
        for key in ("sentence_embedding", "glot_token_embeddings"):
            torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-5)
    assert counter.frame_count == 1, f"recompiled or broke the graph: {counter.frame_count} frames"


@pytest.mark.slow
def test_dense_backward_traces_without_breaks():
    glot = _glot(conv="gat", heads=2)
    glot.train()  # dropout 0 (randomized_glot), so train mode is deterministic; the GAT bias is then not folded
    compiled = torch.compile(glot.pool, backend="aot_eager", fullgraph=True, dynamic=True)
    states, mask = random_batch(3, 7, 8, seed=4, lengths=[7, 4, 2])
    want_states = states.clone().requires_grad_(True)
    glot.pool(want_states, mask).square().sum().backward()
    want = {name: p.grad.clone() for name, p in glot.named_parameters()}
    glot.zero_grad()
    got_states = states.clone().requires_grad_(True)
    compiled(got_states, mask).square().sum().backward()
    torch.testing.assert_close(got_states.grad, want_states.grad, atol=1e-5, rtol=1e-5)
    for name, p in glot.named_parameters():
        torch.testing.assert_close(p.grad, want[name], atol=1e-5, rtol=1e-5, msg=name)


def test_validation_is_a_graph_break_not_an_error():
    """With the default ``validate_inputs=True`` compile still works (the check runs eagerly) and still raises."""
    glot = randomized_glot(5, layout="dense")
    compiled = torch.compile(glot.pool, backend="eager", dynamic=True)
    states, mask = random_batch(3, 6, 8, seed=5, lengths=[6, 3, 5])
    with torch.no_grad():
        torch.testing.assert_close(compiled(states, mask), glot.pool(states, mask), atol=1e-5, rtol=1e-5)
        states[1, 0, 0] = float("nan")
        with pytest.raises(ValueError, match=r"row\(s\) \[1\]"):
            compiled(states, mask)


@pytest.mark.slow
def test_inductor_matches_eager():
    """The real compiler (C++ code generation on CPU), with dynamic shapes: one compile, two batch shapes."""
    glot = _glot(conv="gat")
    compiled = torch.compile(glot.pool, dynamic=True, fullgraph=True)
    for batch, length, lengths in SHAPES[:2]:
        states, mask = random_batch(batch, length, 8, seed=7 + batch, lengths=lengths)
        with torch.no_grad():
            torch.testing.assert_close(compiled(states, mask), glot.pool(states, mask), atol=1e-5, rtol=1e-5)
