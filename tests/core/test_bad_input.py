"""Edge cases and bad input: empty texts, empty rows, non-finite states, width mismatches, invalid configs,
broken saved files, half-precision inputs and a missing optional backend."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

import glot_st
import glot_st.kernels
from glot_st import GLOT, build_token_graph

from conftest import random_batch, randomized_glot

MINILM_DIM = 384

EVERY_CONV = [
    dict(conv="gat", heads=2, edge_weight="cosine", layout="sparse"),
    dict(conv="gat", heads=2, edge_weight="cosine", layout="dense"),
    dict(conv="gcn", edge_weight="cosine", jk="max", layout="sparse"),
    dict(conv="gcn", edge_weight="cosine", jk="max", layout="dense"),
    dict(conv="gin", jk="mean", layout="sparse"),
    dict(conv="gin", jk="mean", layout="dense"),
    dict(conv="gine", edge_weight="cosine", layout="sparse"),
    dict(conv="sage", graph="topk", k=2, layout="sparse"),
    dict(conv="sage", graph="mutual_knn", k=2, layout="dense"),
]


def _ids(config):
    return "-".join(str(v) for v in config.values())


# ---- texts -------------------------------------------------------------------------------------------------------
def test_empty_and_one_token_texts_are_finite(glot_model):
    texts = ["", "a", "hi", "A normal sentence with several tokens."]
    out = glot_model.encode(texts, convert_to_tensor=True)
    assert out.shape == (4, glot_model.get_embedding_dimension())
    assert torch.isfinite(out).all()
    assert bool((out.abs().sum(1) > 0).all())
    np.testing.assert_allclose(glot_model.encode(""), out[0].numpy(), atol=1e-5, rtol=0)


# ---- rows without tokens -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("config", EVERY_CONV, ids=[_ids(c) for c in EVERY_CONV])
def test_row_without_tokens_pools_to_zero(config):
    glot = randomized_glot(1, **config)
    states, mask = random_batch(4, 6, 8, seed=2, lengths=[6, 0, 3, 0])
    states = states.requires_grad_(True)
    out = glot.pool(states, mask)
    assert torch.isfinite(out).all()
    values = out.detach()
    assert float(values[1].abs().max()) == 0.0 and float(values[3].abs().max()) == 0.0
    assert bool((values[0].abs() > 0).any()) and bool((values[2].abs() > 0).any())
    # gradients stay finite too, and nothing flows into the empty rows
    out.sum().backward()
    assert torch.isfinite(states.grad).all()
    assert float(states.grad[1].abs().max()) == 0.0
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in glot.parameters())


@pytest.mark.parametrize("config", EVERY_CONV, ids=[_ids(c) for c in EVERY_CONV])
def test_batch_without_any_token(config):
    glot = randomized_glot(2, output_token_states=True, **config)
    states, mask = random_batch(3, 5, 8, seed=3, lengths=[0, 0, 0])
    with torch.no_grad():
        out = glot.pool(states, mask)
        features = glot({"token_embeddings": states, "attention_mask": mask})
    dim = glot.get_sentence_embedding_dimension()
    assert out.shape == (3, dim)
    assert torch.equal(out, torch.zeros(3, dim))
    assert torch.equal(features["sentence_embedding"], torch.zeros(3, dim))
    assert torch.equal(features["glot_token_embeddings"], torch.zeros(3, 5, dim))


@pytest.mark.parametrize("config", EVERY_CONV, ids=[_ids(c) for c in EVERY_CONV])
@pytest.mark.parametrize("batch,length", [(0, 5), (3, 0), (0, 0)])
def test_zero_sized_batches(config, batch, length):
    glot = randomized_glot(2, output_token_states=True, **config)
    states, mask = torch.randn(batch, length, 8), torch.ones(batch, length, dtype=torch.long)
    with torch.no_grad():
        features = glot({"token_embeddings": states, "attention_mask": mask})
    dim = glot.get_sentence_embedding_dimension()
    assert torch.equal(features["sentence_embedding"], torch.zeros(batch, dim))
    assert features["glot_token_embeddings"].shape == (batch, length, dim)


def test_bool_and_integer_masks_agree():
    glot = randomized_glot(4)
    states, mask = random_batch(3, 6, 8, seed=5, lengths=[6, 2, 4])
    with torch.no_grad():
        want = glot.pool(states, mask)
        torch.testing.assert_close(glot.pool(states, mask.bool()), want, atol=0, rtol=0)
        torch.testing.assert_close(glot.pool(states, mask.float()), want, atol=0, rtol=0)


# ---- non-finite token states ------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_token_states_name_the_row(bad):
    glot = randomized_glot(5)
    states, mask = random_batch(4, 6, 8, seed=6, lengths=[6, 6, 3, 5])
    states[2, 1, 3] = bad
    with pytest.raises(ValueError, match=r"row\(s\) \[2\]"):
        glot.pool(states, mask)
    with pytest.raises(ValueError, match=r"\[2\]"):
        glot({"token_embeddings": states, "attention_mask": mask})
    states[0, 4, 0] = bad
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        glot.pool(states, mask)


# ---- width mismatches -------------------------------------------------------------------------------------------
def test_glot_with_wrong_in_dim_after_minilm(minilm_transformer):
    glot = GLOT(in_dim=100, hidden_dim=8, num_layers=1)
    model = SentenceTransformer(modules=[minilm_transformer, glot], device="cpu")
    with pytest.raises(ValueError) as info:
        model.encode(["a sentence"])
    assert "100" in str(info.value) and str(MINILM_DIM) in str(info.value)


def test_from_backbone_with_wrong_in_dim(minilm_dir):
    with pytest.raises(ValueError) as info:
        glot_st.from_backbone(minilm_dir, in_dim=100, hidden_dim=8)
    assert "100" in str(info.value) and str(MINILM_DIM) in str(info.value)


def test_wrong_width_and_shapes_in_pool():
    glot = randomized_glot(6)
    states, mask = random_batch(2, 5, 8, seed=7)
    with pytest.raises(ValueError, match="in_dim=8"):
        glot.pool(torch.randn(2, 5, 9), mask)
    with pytest.raises(ValueError, match="attention_mask"):
        glot.pool(states, mask[:, :4])
    with pytest.raises(ValueError):
        glot.pool(states[0], mask[0])
    with pytest.raises(ValueError, match="float"):
        glot.pool(states.long(), mask)
    with pytest.raises(ValueError, match="token_embeddings"):
        glot({"attention_mask": mask})


# ---- invalid configs ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs,needle",
    [
        (dict(tau=1.01), "tau"),
        (dict(tau=-1.5), "tau"),
        (dict(tau=float("nan")), "tau"),
        (dict(conv="gcnn"), "gcnn"),
        (dict(jk="sum"), "sum"),
        (dict(num_layers=-1), "num_layers"),
        (dict(hidden_dim=0), "hidden_dim"),
        (dict(hidden_dim=10, heads=3, conv="gat"), "heads"),
        (dict(heads=0), "heads"),
        (dict(graph="knn"), "knn"),
        (dict(edge_weight="euclid"), "euclid"),
        (dict(layout="csr"), "csr"),
        (dict(k=0), "k"),
        (dict(dropout=1.0), "dropout"),
        (dict(in_dim=0), "in_dim"),
        (dict(conv="gine", layout="dense"), "gine"),
        (dict(backend="cuda_magic"), "cuda_magic"),
    ],
)
def test_invalid_config_raises_at_construction(kwargs, needle):
    config = {"in_dim": 8, "hidden_dim": 8, **kwargs}
    with pytest.raises(ValueError, match=needle):
        GLOT(**config)


@pytest.mark.parametrize(
    "kwargs", [dict(tau=-1.0), dict(tau=1.0), dict(num_layers=0), dict(hidden_dim=10, heads=3, concat_heads=False)]
)
def test_boundary_configs_are_valid(kwargs):
    glot = GLOT(**{"in_dim": 8, "hidden_dim": 8, "dropout": 0.0, **kwargs}).eval()
    states, mask = random_batch(2, 5, 8, seed=8)
    with torch.no_grad():
        assert torch.isfinite(glot.pool(states, mask)).all()


# ---- broken saved files ------------------------------------------------------------------------------------------
@pytest.fixture
def saved_glot(tmp_path):
    glot = randomized_glot(7)
    glot.save(str(tmp_path))
    assert (tmp_path / "glot_config.json").is_file() and (tmp_path / "model.safetensors").is_file()
    return tmp_path


def test_missing_weights_file(saved_glot):
    (saved_glot / "model.safetensors").unlink()
    with pytest.raises(Exception, match="model.safetensors"):
        GLOT.load(str(saved_glot))


@pytest.mark.parametrize("content", [b"", b"not a safetensors file at all", b"\xff" * 64])
def test_corrupt_weights_file(saved_glot, content):
    (saved_glot / "model.safetensors").write_bytes(content)
    with pytest.raises(Exception, match="model.safetensors"):
        GLOT.load(str(saved_glot))


def test_weights_of_another_shape(saved_glot):
    other = randomized_glot(8, hidden_dim=5)
    other.save_torch_weights(str(saved_glot))
    with pytest.raises(Exception, match="model.safetensors"):
        GLOT.load(str(saved_glot))


def test_missing_config_file(saved_glot):
    (saved_glot / "glot_config.json").unlink()
    with pytest.raises(Exception, match="glot_config.json"):
        GLOT.load(str(saved_glot))


@pytest.mark.parametrize(
    "content", ["{not json", "[1, 2, 3]", json.dumps({"in_dim": 8, "tau": 7.0}), json.dumps({"hidden_dim": 4})]
)
def test_corrupt_config_file(saved_glot, content):
    (saved_glot / "glot_config.json").write_text(content)
    with pytest.raises(Exception, match="glot_config.json"):
        GLOT.load(str(saved_glot))


def test_broken_files_in_a_full_model(glot_model, tmp_path):
    glot_model.save(str(tmp_path))
    weights = tmp_path / "1_GLOT" / "model.safetensors"
    weights.write_bytes(b"garbage")
    with pytest.raises(Exception, match="model.safetensors"):
        glot_st.load(str(tmp_path), device="cpu")
    weights.unlink()
    with pytest.raises(Exception, match="model.safetensors"):
        glot_st.load(str(tmp_path), device="cpu")
    (tmp_path / "1_GLOT" / "glot_config.json").unlink()
    with pytest.raises(Exception, match="glot_config.json"):
        glot_st.load(str(tmp_path), device="cpu")


# ---- half precision ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("config", EVERY_CONV, ids=[_ids(c) for c in EVERY_CONV])
def test_half_precision_token_states(dtype, config):
    glot = randomized_glot(9, tau=0.3, **config)
    states, mask = random_batch(3, 7, 8, seed=10, lengths=[7, 4, 1])
    with torch.no_grad():
        want = glot.pool(states, mask)
        got = glot.pool(states.to(dtype), mask)
    assert got.dtype == torch.float32  # the module's parameter dtype
    assert torch.isfinite(got).all()
    scale = float(want.abs().max())
    torch.testing.assert_close(got, want, atol=0.05 * scale, rtol=0.05)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("config", EVERY_CONV, ids=[_ids(c) for c in EVERY_CONV])
def test_half_precision_module(dtype, config):
    """The whole module in half precision gives finite (B, D) output in that dtype."""
    glot = randomized_glot(11, tau=0.3, **config)
    states, mask = random_batch(3, 7, 8, seed=12, lengths=[7, 4, 0])
    with torch.no_grad():
        want = glot.pool(states, mask)
        glot = glot.to(dtype)
        got = glot.pool(states.to(dtype), mask)
    assert got.dtype == dtype
    assert torch.isfinite(got).all()
    scale = float(want.abs().max())
    torch.testing.assert_close(got.float(), want, atol=0.1 * scale, rtol=0.1)


# ---- missing optional backend -----------------------------------------------------------------------------------
def test_torch_scatter_backend_missing(monkeypatch):
    monkeypatch.setattr(glot_st.kernels, "torch_scatter_available", lambda: False)
    with pytest.raises(ImportError, match="pip install") as info:
        GLOT(in_dim=8, backend="torch_scatter")
    assert "torch-scatter" in str(info.value)
    states, mask = random_batch(2, 4, 8, seed=13)
    with pytest.raises(ImportError, match="pip install"):
        build_token_graph(states, mask, backend="torch_scatter")
    # the default backend does not need it
    assert math.isfinite(float(GLOT(in_dim=8, dropout=0.0).eval().pool(states, mask).sum()))
