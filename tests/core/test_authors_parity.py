"""Parity with the authors' own GLOT and AdaPool classes (ipsitmantri/GLOT, ``main.py``).

``tests/fixtures/authors_glot.safetensors`` was written by ``scripts/authors_glot_fixture.py`` from the authors'
file (commit and sha256 in ``authors_glot.json``): their modules, built with their defaults, run on fixed
MiniLM-like token states with padded rows, at tau 0.3 and 0.6. Here their weights go into
``GLOT(in_dim, **AUTHORS_GLOT)`` and ``AdaPool(in_dim, scorer_hidden=256)`` under the same parameter names and
the outputs must agree within 1e-5 relative, in both layouts. ``python tests/core/test_authors_parity.py`` prints
the errors (the README's "Fidelity to the authors' code" table).
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


def _glot_error(tau: float, layout: str, **changes) -> float:
    glot = _authors_glot(tau, layout, **changes)
    with torch.no_grad():
        got = glot.pool(TENSORS["inputs.token_states"], TENSORS["inputs.attention_mask"])
    return _relative_error(got, TENSORS[f"outputs.glot.tau_{tau:g}"])


def _adapool_error() -> float:
    pool = glot_st.AdaPool(RECORD["token_width"], scorer_hidden=RECORD["adapool_scorer_width"])
    pool.load_state_dict(_renamed("adapool."), strict=True)
    with torch.no_grad():
        got = pool.pool(TENSORS["inputs.token_states"], TENSORS["inputs.attention_mask"])
    return _relative_error(got, TENSORS["outputs.adapool"])


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
    assert _glot_error(tau, layout) < TOLERANCE


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
    assert _glot_error(0.3, layout, gat_edge_term=False) > 100 * TOLERANCE


def test_adapool_matches_the_authors_adapool():
    assert _adapool_error() < TOLERANCE


def test_glots_attention_vectors_start_as_pygs():
    """PyG's glorot on a (1, H, C) attention vector draws from +-sqrt(6 / (H + C)), wider than torch's
    xavier_uniform_ on that shape (+-sqrt(6 / (H C + C))): 128 draws all inside torch's bound would be a 1e-19
    event."""
    layer = glot_st.GLOT(64, **glot_st.AUTHORS_GLOT).layers[0]
    pyg_bound, torch_bound = (6 / (1 + 128)) ** 0.5, (6 / (128 + 128)) ** 0.5
    for vector in (layer.att_src, layer.att_dst, layer.att_edge):
        assert torch_bound < vector.abs().max().item() <= pyg_bound


if __name__ == "__main__":
    errors = {f"glot {layout} tau {tau:g}": _glot_error(tau, layout) for layout in ("dense", "sparse") for tau in RECORD["taus"]}
    errors.update({f"glot without edge term sparse tau {tau:g}": _glot_error(tau, "sparse", gat_edge_term=False)
                   for tau in RECORD["taus"]})
    errors["adapool"] = _adapool_error()
    print(json.dumps({name: float(f"{value:.2g}") for name, value in errors.items()}, indent=1))
