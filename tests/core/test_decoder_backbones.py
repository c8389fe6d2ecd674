"""GLOT on decoder-only (causal) backbones: tiny random Llama- and GPT-2-style models built offline.

- GLOT itself does not care where the padding sits (same token states, left or right padded -> same output).
- Llama (rotary positions): attention sees only position *differences*, so left and right padding give the
  same token states for the real tokens, hence the same GLOT embedding end to end.
- GPT-2 (learned absolute positions, ``position_ids = arange(L)``): left padding shifts the positions of
  the real tokens, so their states change; right padding (the ``Transformer`` default for feature
  extraction) is the correct choice. Deriving ``position_ids`` from the mask would undo the shift.
- The last-token (EOS) baseline through sentence-transformers' ``Pooling(pooling_mode="lasttoken")``.
"""

from __future__ import annotations

import pytest
import torch
from sentence_transformers import SentenceTransformer

import glot_st
from glot_st import GLOT
from glot_st._compat import Pooling

from tiny_backbones import save_tiny_backbone

SENTENCES = [
    "a man plays the guitar .",
    "the dog runs",
    "it is sunny outside today and the weather is lovely",
    "children eat pizza in the park",
]


@pytest.fixture(scope="module")
def backbones(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("decoders")
    return {style: save_tiny_backbone(root / style, style, seed=1) for style in ("llama", "gpt2")}


def _glot_model(folder: str) -> SentenceTransformer:
    torch.manual_seed(0)
    return glot_st.from_backbone(folder, device="cpu", hidden_dim=16, num_layers=2, tau=0.2, dropout=0.0).eval()


def _encode(model: SentenceTransformer, side: str, sentences=SENTENCES) -> torch.Tensor:
    model[0].tokenizer.padding_side = side
    return model.encode(sentences, convert_to_tensor=True, batch_size=len(sentences))


def _features(model: SentenceTransformer, side: str, sentences=SENTENCES) -> dict:
    model[0].tokenizer.padding_side = side
    features = model[0].preprocess(sentences)
    with torch.no_grad():
        return model[0](dict(features))


def _repad(states: torch.Tensor, mask: torch.Tensor, side: str, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same real token states re-padded on ``side`` to ``length`` slots (pad states are random junk)."""
    batch, _, dim = states.shape
    out = torch.randn(batch, length, dim) * 100
    out_mask = torch.zeros(batch, length, dtype=torch.long)
    for row in range(batch):
        real = states[row][mask[row].bool()]
        n = real.shape[0]
        where = slice(0, n) if side == "right" else slice(length - n, length)
        out[row, where] = real
        out_mask[row, where] = 1
    return out, out_mask


@pytest.mark.parametrize("conv,layout", [("gat", "dense"), ("gat", "sparse"), ("gcn", "auto"), ("sage", "auto")])
def test_glot_pool_does_not_depend_on_padding_side(conv, layout):
    torch.manual_seed(0)
    glot = GLOT(in_dim=12, hidden_dim=8, num_layers=2, conv=conv, layout=layout, tau=0.0, dropout=0.0).eval()
    lengths = [5, 1, 7, 3]
    states = torch.randn(len(lengths), max(lengths), 12)
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, n in enumerate(lengths):
        mask[row, :n] = 1
    with torch.no_grad():
        reference = glot.pool(*_repad(states, mask, "right", 7))
        for side, length in (("left", 7), ("left", 10), ("right", 10)):
            torch.testing.assert_close(glot.pool(*_repad(states, mask, side, length)), reference, rtol=0, atol=1e-5)


def test_llama_left_and_right_padding_give_the_same_glot_embedding(backbones):
    model = _glot_model(backbones["llama"])
    right_features, left_features = _features(model, "right"), _features(model, "left")
    assert not bool(left_features["attention_mask"][:, 0].all()), "the batch was not left padded"
    assert not bool(right_features["attention_mask"][:, -1].all()), "the batch was not right padded"

    right, left = _encode(model, "right"), _encode(model, "left")
    torch.testing.assert_close(left, right, rtol=0, atol=1e-5)
    # and both equal each sentence encoded alone (no padding at all)
    alone = torch.stack([_encode(model, "right", [s])[0] for s in SENTENCES])
    torch.testing.assert_close(right, alone, rtol=0, atol=1e-5)


def test_gpt2_needs_right_padding(backbones):
    model = _glot_model(backbones["gpt2"])
    right, left = _encode(model, "right"), _encode(model, "left")
    alone = torch.stack([_encode(model, "right", [s])[0] for s in SENTENCES])
    torch.testing.assert_close(right, alone, rtol=0, atol=1e-5)  # right padding: exact
    longest = max(range(len(SENTENCES)), key=lambda i: len(SENTENCES[i].split()))
    torch.testing.assert_close(left[longest], alone[longest], rtol=0, atol=1e-5)  # no padding in that row
    shorter = [i for i in range(len(SENTENCES)) if i != longest]
    shift = (left[shorter] - alone[shorter]).abs().amax(-1)
    assert bool((shift > 1e-3).all()), f"left padding was expected to move GPT-2 embeddings; moved by {shift}"


def test_gpt2_left_padding_is_fixed_by_position_ids_from_the_mask(backbones):
    """Why: GPT-2 numbers positions 0..L-1 by slot. With position ids counted over real tokens only, a
    left-padded batch reproduces the right-padded token states."""
    model = _glot_model(backbones["gpt2"])
    hf_model = model[0].model
    right, left = _features(model, "right"), _features(model, "left")
    mask = left["attention_mask"]
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        fixed = hf_model(input_ids=left["input_ids"], attention_mask=mask, position_ids=position_ids).last_hidden_state
    for row in range(mask.shape[0]):
        real_right = right["token_embeddings"][row][right["attention_mask"][row].bool()]
        real_fixed = fixed[row][mask[row].bool()]
        real_shifted = left["token_embeddings"][row][mask[row].bool()]
        torch.testing.assert_close(real_fixed, real_right, rtol=0, atol=1e-5)
        if not bool(mask[row].all()):
            assert (real_shifted - real_right).abs().max() > 1e-3


@pytest.mark.parametrize("style", ["llama", "gpt2"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_last_token_pooling_baseline(backbones, style, side):
    transformer = glot_st.from_backbone(backbones[style], device="cpu")[0]
    model = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode="lasttoken")], device="cpu"
    ).eval()
    features = _features(model, side)
    mask = features["attention_mask"]
    eos = model[0].tokenizer.eos_token_id
    last = torch.stack([mask[row].nonzero().max() for row in range(mask.shape[0])])
    assert bool((features["input_ids"][torch.arange(len(last)), last] == eos).all())  # the last real token is EOS
    expected = features["token_embeddings"][torch.arange(len(last)), last]
    torch.testing.assert_close(_encode(model, side), expected, rtol=0, atol=1e-6)
    if style == "llama":  # rotary: also the same vector whichever side the padding sits
        torch.testing.assert_close(_encode(model, side), _encode(model, "right"), rtol=0, atol=1e-5)
