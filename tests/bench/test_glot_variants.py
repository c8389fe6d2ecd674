"""The bench's GLOT variants by method name: the authors' module, GLOT without the edge term, the learned graph."""

from __future__ import annotations

import pytest

import glot_st
from glot_st.bench.experiment import EXTRA_METHODS, GLOT_VARIANTS, METHOD_LABELS, make_method_pooler


@pytest.mark.parametrize(
    "name, expected",
    [
        ("glot_authors", glot_st.AUTHORS_GLOT),
        ("glot_no_edge_term", {"gat_edge_term": False, "tau": glot_st.GLOT(8).tau}),
        ("glot_learned", {"graph": "learned", "gat_edge_term": False}),
    ],
)
def test_each_variant_builds_its_glot(name, expected):
    assert name in EXTRA_METHODS and name in METHOD_LABELS
    config = make_method_pooler(name, 16).get_config_dict()
    assert {key: config[key] for key in expected} == expected


def test_a_variant_keeps_its_keys_over_the_runs_config():
    pooler = make_method_pooler("glot_authors", 16, {"tau": 0.9, "layout": "sparse"})
    assert pooler.tau == glot_st.AUTHORS_GLOT["tau"] and pooler.layout == "sparse"
    assert set(GLOT_VARIANTS) == {"glot_authors", "glot_no_edge_term", "glot_learned"}
