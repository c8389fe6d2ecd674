"""GLOT as a sentence-transformers module: save / load round trips, dimensions, encode, training and freezing."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sentence_transformers import SentenceTransformer

import glot_st
from glot_st import GLOT

from conftest import random_batch, randomized_glot

TEXTS = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch.",
    "Hi",
    "Graph pooling over token similarity graphs.",
    "",
]
MINILM_DIM = 384


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Move every parameter away from its initial value (so a reload that re-initialises would be caught)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=gen) * 0.3)


@pytest.fixture(scope="module")
def trained_like_model(minilm_dir):
    """A MiniLM + GLOT model with non-default config and perturbed GLOT weights (private to this module)."""
    torch.manual_seed(1)
    model = glot_st.from_backbone(
        minilm_dir,
        device="cpu",
        hidden_dim=12,
        num_layers=2,
        conv="gat",
        heads=2,
        jk="cat",
        tau=0.3,
        edge_weight="cosine",
        scorer_hidden=9,
    )
    _perturb(model[1], 5)
    return model


# ---- save / load -------------------------------------------------------------------------------------------------
def test_save_and_reload_bitwise(trained_like_model, tmp_path):
    model = trained_like_model
    path = tmp_path / "glot-model"
    model.save(str(path))

    assert (path / "modules.json").is_file()
    modules = json.loads((path / "modules.json").read_text())
    assert [m["type"] for m in modules][-1] == "glot_st.module.GLOT"
    assert modules[-1]["path"] == "1_GLOT"
    config_file = path / "1_GLOT" / "glot_config.json"
    weights_file = path / "1_GLOT" / "model.safetensors"
    assert config_file.is_file() and weights_file.is_file()
    config = json.loads(config_file.read_text())
    assert config == model[1].get_config_dict()
    assert set(config) == set(GLOT.config_keys)
    assert config["tau"] == 0.3 and config["heads"] == 2 and config["edge_weight"] == "cosine"
    saved = load_file(str(weights_file))
    state = model[1].state_dict()
    assert set(saved) == set(state)
    for name, tensor in saved.items():
        assert torch.equal(tensor, state[name]), name

    want = model.encode(TEXTS, convert_to_tensor=True)
    reloads = (
        SentenceTransformer(str(path), trust_remote_code=True, device="cpu"),
        glot_st.load(str(path), device="cpu"),
    )
    for reloaded in reloads:
        assert isinstance(reloaded[1], GLOT)
        assert reloaded[1].get_config_dict() == model[1].get_config_dict()
        for name, tensor in reloaded[1].state_dict().items():
            assert torch.equal(tensor, state[name]), name
        got = reloaded.encode(TEXTS, convert_to_tensor=True)
        assert torch.equal(got, want)
        # the reloaded backbone is frozen again and stays in eval mode through train()
        assert not any(p.requires_grad for p in reloaded[0].parameters())
        assert all(p.requires_grad for p in reloaded[1].parameters())
        _assert_backbone_pinned_to_eval(reloaded)


@pytest.mark.parametrize(
    "config",
    [
        dict(conv="gat", heads=3, concat_heads=False, jk="max", edge_weight="cosine", graph="topk", k=2),
        dict(conv="gcn", jk="mean", edge_weight="cosine", layout="dense"),
        dict(conv="gin", jk="cat", graph="mutual_knn", k=2),
        dict(conv="gine", jk="max", edge_weight="cosine", layout="sparse"),
        dict(conv="sage", jk="cat", num_layers=0, scorer_hidden=None),
    ],
)
def test_module_save_load_every_conv(config, tmp_path):
    glot = randomized_glot(3, **config)
    glot.save(str(tmp_path))
    assert json.loads((tmp_path / "glot_config.json").read_text()) == glot.get_config_dict()
    loaded = GLOT.load(str(tmp_path)).eval()
    assert loaded.get_config_dict() == glot.get_config_dict()
    states, mask = random_batch(3, 6, 8, seed=4, lengths=[6, 2, 4])
    with torch.no_grad():
        assert torch.equal(loaded.pool(states, mask), glot.pool(states, mask))


# ---- dimensions --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("jk", ["cat", "max", "mean"])
@pytest.mark.parametrize("num_layers", [0, 1, 3])
def test_embedding_dimension(jk, num_layers):
    glot = GLOT(in_dim=10, hidden_dim=7, num_layers=num_layers, jk=jk, dropout=0.0)
    want = 10 + num_layers * 7 if jk == "cat" else 7
    assert glot.get_sentence_embedding_dimension() == want
    assert glot.get_embedding_dimension() == want
    states, mask = random_batch(2, 5, 10, seed=num_layers)
    with torch.no_grad():
        assert glot.pool(states, mask).shape == (2, want)


def test_model_dimension_matches_encode(glot_model):
    want = MINILM_DIM + 2 * 16
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        assert glot_model.get_sentence_embedding_dimension() == want
    assert glot_model.get_embedding_dimension() == want
    assert glot_model.encode(TEXTS[:2]).shape == (2, want)


# ---- encode ------------------------------------------------------------------------------------------------------
def test_encode_inputs_and_options(glot_model):
    dim = MINILM_DIM + 2 * 16
    batch = glot_model.encode(TEXTS)
    assert isinstance(batch, np.ndarray) and batch.shape == (len(TEXTS), dim)
    assert np.isfinite(batch).all()

    single = glot_model.encode(TEXTS[1])
    assert isinstance(single, np.ndarray) and single.shape == (dim,)
    np.testing.assert_allclose(single, batch[1], atol=1e-5, rtol=0)

    empty = glot_model.encode([])
    assert len(empty) == 0

    tensor = glot_model.encode(TEXTS, convert_to_tensor=True)
    assert isinstance(tensor, torch.Tensor) and tensor.shape == (len(TEXTS), dim)
    np.testing.assert_allclose(tensor.numpy(), batch, atol=1e-6, rtol=0)

    unit = glot_model.encode(TEXTS, normalize_embeddings=True, convert_to_tensor=True)
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(len(TEXTS)), atol=1e-5, rtol=0)
    torch.testing.assert_close(unit, torch.nn.functional.normalize(tensor, dim=1), atol=1e-5, rtol=0)

    # different texts give different embeddings (the model is not constant)
    assert float((tensor[0] - tensor[1]).abs().max()) > 1e-3


def test_encode_batch_size_does_not_matter(glot_model):
    want = glot_model.encode(TEXTS, batch_size=len(TEXTS), convert_to_tensor=True)
    for batch_size in range(1, len(TEXTS)):
        got = glot_model.encode(TEXTS, batch_size=batch_size, convert_to_tensor=True)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=f"batch_size={batch_size}")


# ---- training and freezing ---------------------------------------------------------------------------------------
def _copy(features: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in features.items()}


def _assert_backbone_pinned_to_eval(model: SentenceTransformer) -> None:
    """After model.train(), a forward pass runs the backbone in eval mode with unchanged token states."""
    features = model.preprocess(TEXTS[:3])
    model.eval()
    with torch.no_grad():
        eval_tokens = model[0](_copy(features))["token_embeddings"].clone()
    model.train()
    assert model[1].training
    try:
        with torch.no_grad():
            out = model(_copy(features))
        assert not any(m.training for m in model[0].modules()), "a backbone submodule is in training mode"
        assert torch.equal(out["token_embeddings"], eval_tokens)
        assert model[1].training  # GLOT itself does train
    finally:
        model.eval()


def test_only_glot_gets_gradients(minilm_dir):
    torch.manual_seed(2)
    model = glot_st.from_backbone(minilm_dir, device="cpu", hidden_dim=8, num_layers=2, conv="gcn", dropout=0.1)
    backbone, glot = model[0], model[1]
    assert not any(p.requires_grad for p in backbone.parameters())
    assert all(p.requires_grad for p in glot.parameters())

    model.train()
    features = model.preprocess(TEXTS)
    out = model(features)["sentence_embedding"]
    assert out.requires_grad
    (out.pow(2).sum()).backward()
    for name, parameter in glot.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    assert sum(float(p.grad.abs().sum()) for p in glot.parameters()) > 0
    assert all(p.grad is None for p in backbone.parameters())
    assert not any(m.training for m in backbone.modules())

    # an optimizer step moves GLOT and leaves the backbone untouched
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    glot_before = [p.detach().clone() for p in glot.parameters()]
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())
    assert any(not torch.equal(a, p) for a, p in zip(glot_before, glot.parameters()))
    _assert_backbone_pinned_to_eval(model)


def test_unfrozen_backbone_gets_gradients(minilm_dir):
    """freeze=False leaves the backbone trainable (the freezing above is not an accident of the setup)."""
    model = glot_st.from_backbone(minilm_dir, device="cpu", freeze=False, hidden_dim=8, num_layers=1, conv="sage")
    assert all(p.requires_grad for p in model[0].parameters())
    model.train()
    model(model.preprocess(TEXTS[:2]))["sentence_embedding"].sum().backward()
    assert any(p.grad is not None for p in model[0].parameters())


# ---- token states output -----------------------------------------------------------------------------------------
def test_output_token_states(minilm_transformer):
    torch.manual_seed(3)
    glot = GLOT(
        in_dim=MINILM_DIM, hidden_dim=8, num_layers=2, jk="cat", conv="gat", output_token_states=True, dropout=0.0
    )
    model = SentenceTransformer(modules=[minilm_transformer, glot], device="cpu").eval()
    features = model.preprocess(TEXTS)
    with torch.no_grad():
        out = model(features)
    tokens = out["glot_token_embeddings"]
    mask = out["attention_mask"].bool()
    dim = MINILM_DIM + 2 * 8
    assert tokens.shape == (*mask.shape, dim)
    assert not bool(mask.all()), "the batch must contain padding"
    assert float(tokens[~mask].abs().max()) == 0.0
    assert bool((tokens[mask].abs().sum(-1) > 0).all())
    # jumping knowledge "cat" keeps the input token states as the first in_dim columns
    torch.testing.assert_close(tokens[mask][:, :MINILM_DIM], out["token_embeddings"][mask], atol=0, rtol=0)
    # the sentence embedding is a convex combination of the sentence's token states
    emb = out["sentence_embedding"]
    for b in range(len(TEXTS)):
        rows = tokens[b][mask[b]]
        lo, hi = rows.min(0).values, rows.max(0).values
        assert bool((emb[b] >= lo - 1e-5).all() and (emb[b] <= hi + 1e-5).all())
    # and equals pool()
    torch.testing.assert_close(emb, glot.pool(out["token_embeddings"], out["attention_mask"]), atol=1e-6, rtol=0)
