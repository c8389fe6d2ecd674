"""A GLOT model saved by the code of December 2026 (before the edge-term and learned-graph keys) keeps loading
with the embeddings it gave then.

The fixture ``tests/fixtures/glot_main_2026_12`` (a tiny random BERT and a GAT GLOT on a cosine graph, two heads,
random weights) was written once by that code; its texts, the commit it came from and its embeddings sit next to
it. It must never be regenerated: it stands for the models users saved then.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import glot_st

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SAVED = FIXTURES / "glot_main_2026_12"


def _texts_and_embeddings() -> tuple[dict, np.ndarray]:
    record = json.loads((FIXTURES / "glot_main_2026_12_texts.json").read_text(encoding="utf-8"))
    return record, np.load(FIXTURES / "glot_main_2026_12_embeddings.npy")


def test_the_saved_config_lacks_the_keys_added_since():
    config = json.loads((SAVED / "1_GLOT" / "glot_config.json").read_text(encoding="utf-8"))
    assert "gat_edge_term" not in config and "learned_floor" not in config
    assert config["edge_weight"] == "cosine" and config["conv"] == "gat"


def test_the_model_saved_by_main_loads_with_identical_embeddings():
    record, expected = _texts_and_embeddings()
    model = glot_st.load(str(SAVED))
    got = model.encode(record["texts"], convert_to_numpy=True, batch_size=record["batch_size"])
    assert got.shape == expected.shape == (len(record["texts"]), 48)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_the_model_saved_by_main_gives_the_same_embeddings_in_either_layout(layout):
    record, expected = _texts_and_embeddings()
    model = glot_st.load(str(SAVED))
    model[1].layout = layout
    got = model.encode(record["texts"], convert_to_numpy=True, batch_size=len(record["texts"]))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
