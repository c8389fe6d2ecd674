"""Multi-process encoding: sentence-transformers' pool (spawned workers) gives the single-process embeddings.

``start_multi_process_pool`` spawns workers and sends them the model by pickling it, so GLOT must pickle
(its kernel set, a Python module, is dropped and resolved again on unpickling).
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

import glot_st

from tiny_backbones import save_tiny_backbone

pytestmark = pytest.mark.slow  # see setup.cfg: run by `make test`, skipped by -m 'not slow'

SENTENCES = [
    "a man plays the guitar .",
    "the dog runs in the park",
    "it is sunny outside today",
    "children eat pizza",
    "someone drives a car to the stadium",
    "the weather is lovely",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = save_tiny_backbone(tmp_path_factory.mktemp("tiny_bert"), "bert")
    torch.manual_seed(0)
    return glot_st.from_backbone(folder, device="cpu", hidden_dim=16, num_layers=2, tau=0.3, dropout=0.0).eval()


def test_glot_model_pickles_and_deep_copies(model):
    expected = model.encode(SENTENCES, convert_to_tensor=True)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        torch.testing.assert_close(clone.encode(SENTENCES, convert_to_tensor=True), expected, rtol=0, atol=0)


def test_multi_process_pool_matches_single_process(model):
    expected = model.encode(SENTENCES, convert_to_tensor=True)
    pool = model.start_multi_process_pool(["cpu", "cpu"])
    try:
        got = model.encode(SENTENCES, pool=pool, chunk_size=2, convert_to_tensor=True)
        got_numpy = model.encode(SENTENCES, pool=pool, chunk_size=1)
    finally:
        model.stop_multi_process_pool(pool)
    torch.testing.assert_close(got.cpu(), expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(got_numpy), expected, rtol=0, atol=1e-6)
