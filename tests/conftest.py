"""Shared test setup: offline Hugging Face hub, a session-scoped MiniLM backbone, small helpers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

# The tests run tiny tensors on 2 shared cores: intra-op threads only add synchronisation overhead there
# (a (3, 20) index_add measured 18 ms with 2 threads on a loaded machine, 0.05 ms with one).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def minilm_dir() -> str:
    """Folder of the offline all-MiniLM-L6-v2 sentence-transformers model."""
    from glot_st.resources import minilm_path

    return minilm_path()


@pytest.fixture(scope="session")
def minilm_transformer(minilm_dir):
    """The MiniLM ``Transformer`` module (loaded once; tests must not modify it)."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(minilm_dir, device="cpu")[0]


@pytest.fixture(scope="session")
def glot_model(minilm_dir):
    """``from_backbone(MiniLM)`` with a small GLOT (shared; tests must not train or modify it)."""
    import glot_st

    torch.manual_seed(0)
    model = glot_st.from_backbone(minilm_dir, device="cpu", hidden_dim=16, num_layers=2, conv="gat", dropout=0.0)
    model.eval()
    return model


def random_batch(
    batch: int, length: int, dim: int, *, seed: int = 0, lengths: list[int] | None = None, left_pad: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token states ``(B, L, d)`` and a 0/1 mask with the given per-row lengths (default random >= 1)."""
    gen = torch.Generator().manual_seed(seed)
    states = torch.randn(batch, length, dim, generator=gen)
    if lengths is None:
        lengths = torch.randint(1, length + 1, (batch,), generator=gen).tolist()
    mask = torch.zeros(batch, length, dtype=torch.long)
    for b, n in enumerate(lengths):
        if left_pad:
            mask[b, length - n :] = 1
        else:
            mask[b, :n] = 1
    return states, mask


def randomized_glot(seed: int = 0, **config):
    """A small GLOT in eval mode with every parameter random (biases and attention vectors included)."""
    from glot_st import GLOT

    config = {"in_dim": 8, "hidden_dim": 6, "scorer_hidden": 5, "dropout": 0.0, "tau": 0.2, **config}
    torch.manual_seed(seed)
    glot = GLOT(**config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in glot.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.5)
    return glot.eval()
