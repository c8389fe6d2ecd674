"""Parity with the authors' own GLOT and AdaPool classes (ipsitmantri/GLOT, ``main.py``).

``tests/fixtures/authors_glot.safetensors`` was written by ``scripts/authors_glot_fixture.py`` from the authors'
file (commit and sha256 in ``authors_glot.json``): their modules, built with their defaults, run on fixed
MiniLM-like token states with padded rows, at tau 0.3 and 0.6. Here their weights go into
``GLOT(in_dim, **AUTHORS_GLOT)`` and ``AdaPool(in_dim, scorer_hidden=256)`` under the same parameter names and
the outputs must agree within 1e-5 relative, in both layouts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import glot_st

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
RECORD = json.loads((FIXTURES / "authors_glot.json").read_text(encoding="utf-8"))
TENSORS = load_file(str(FIXTURES / "authors_glot.safetensors"))
TOLERANCE = 1e-5
# the authors' module names -> glot-st's; the parameter names inside (lin.weight, att_src, ...) are PyG's in both
RENAMES = {"convs.": "layers.", "score_layer.": "readout.scorer."}


def _renamed(prefix: str) -> dict[str, torch.Tensor]:
    weights = {}
    for name, value in TENSORS.items():
        if name.startswith(prefix):
            name = name[len(prefix) :]
            for theirs, ours in RENAMES.items():
                name = name.replace(theirs, ours)
            weights[name] = value
    return weights


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """The largest entry error of a sentence embedding relative to that embedding's largest entry."""
    return ((got - want).abs().amax(1) / want.abs().amax(1)).max().item()


def _authors_glot(tau: float, layout: str, **changes) -> glot_st.GLOT:
    glot = glot_st.GLOT(RECORD["token_width"], **{**glot_st.AUTHORS_GLOT, "tau": tau, **changes}, layout=layout)
    glot.load_state_dict(_renamed("glot."), strict=not changes)
    return glot.eval()


def test_the_fixture_names_its_source():
    assert RECORD["commit"] == "59f897e1c8be735fd99c931d76886ac23dd0ec34"
    assert len(RECORD["main_py_sha256"]) == 64
    assert RECORD["glot_defaults"] == {
        "hidden_dim": 128, "num_layers": 2, "jk_mode": "cat", "tau": 0.3, "adjacency": "threshold", "conv": "GATConv"
    }
    assert glot_st.AUTHORS_GLOT["tau"] == RECORD["glot_defaults"]["tau"]


@pytest.mark.parametrize("tau", RECORD["taus"])
@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_glot_matches_the_authors_module(tau, layout):
    glot = _authors_glot(tau, layout)
    states, mask = TENSORS["inputs.token_states"], TENSORS["inputs.attention_mask"]
    with torch.no_grad():
        got = glot.pool(states, mask)
    want = TENSORS[f"outputs.glot.tau_{tau:g}"]
    assert got.shape == want.shape
    assert _relative_error(got, want) < TOLERANCE


@pytest.mark.parametrize("tau", RECORD["taus"])
def test_the_graphs_have_the_authors_edges(tau):
    states, mask = TENSORS["inputs.token_states"], TENSORS["inputs.attention_mask"]
    graph = glot_st.build_token_graph(states, mask, tau=tau)
    assert graph.num_edges == RECORD["edges"][f"tau_{tau:g}"]
    assert sum(RECORD["row_lengths"]) < graph.num_edges < sum(n * n for n in RECORD["row_lengths"])  # nontrivial


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_without_the_edge_term_the_outputs_differ(layout):
    """The check is sharp: the same weights without PyG's edge term (a constant inside the LeakyReLU, which
    matters where logits change sign: more so on the denser graph at tau 0.3) miss the authors' outputs by far."""
    glot = _authors_glot(0.3, layout, gat_edge_term=False)
    with torch.no_grad():
        got = glot.pool(TENSORS["inputs.token_states"], TENSORS["inputs.attention_mask"])
    assert _relative_error(got, TENSORS["outputs.glot.tau_0.3"]) > 100 * TOLERANCE


def test_adapool_matches_the_authors_adapool():
    pool = glot_st.AdaPool(RECORD["token_width"], scorer_hidden=RECORD["adapool_scorer_width"])
    pool.load_state_dict(_renamed("adapool."), strict=True)
    with torch.no_grad():
        got = pool.pool(TENSORS["inputs.token_states"], TENSORS["inputs.attention_mask"])
    assert _relative_error(got, TENSORS["outputs.adapool"]) < TOLERANCE
