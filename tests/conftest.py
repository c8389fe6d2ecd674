"""Shared test setup, for every folder of ``tests/``: the offline Hugging Face hub, session-scoped backbones (MiniLM,
a tiny BERT, the bench's MiniLM and one small stress run), running the CLI in-process, and small data helpers."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd  # noqa: E402
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


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> str:
    """Folder of a tiny random BERT-style backbone (``tiny_backbones``), built once per session."""
    from tiny_backbones import save_tiny_backbone

    return save_tiny_backbone(tmp_path_factory.mktemp("tiny_bert") / "bert", "bert", seed=2)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """Run ``glot-st`` in this process with ``argv`` (any objects, passed as strings): ``(status, stdout, stderr)``."""
    from glot_st.cli import main

    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


# ------------------------------------------------------------------------------ the user's own data: a small sample
POS = ["a good dog", "a great cat", "nice music today", "good food", "a lovely park", "great weather today",
       "the nice piano", "good coffee"]
NEG = ["a bad dog", "terrible food", "bad weather", "a terrible song", "cold rain", "bad coffee", "the bad car",
       "terrible music"]
TEXTS = POS + NEG
STRING_LABELS = ["pos"] * len(POS) + ["neg"] * len(NEG)
INT_LABELS = [1] * len(POS) + [0] * len(NEG)
PAIRS_B = list(reversed(TEXTS))
SCORES = [float(i % 5) + 0.5 for i in range(len(TEXTS))]


def frame() -> pd.DataFrame:
    """The sample as a table: column ``sentence`` (``TEXTS``) and string column ``label`` (``STRING_LABELS``)."""
    return pd.DataFrame({"sentence": TEXTS, "label": STRING_LABELS})


def write_table(df: pd.DataFrame, path):
    """Write ``df`` to ``path`` in the format its suffix names (csv, tsv, jsonl, json array, parquet); returns ``path``."""
    suffix = path.suffix
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        df.to_json(path, orient="records")  # one JSON array of records
    elif suffix == ".parquet":
        df.to_parquet(path)
    return path


# ------------------------------------------------------------------------------ the bench: one backbone, one small run


@pytest.fixture(scope="session")
def minilm_backbone():
    """The bench's frozen MiniLM (``glot_st.bench.experiment.load_backbone(256)``), loaded once per session."""
    from glot_st.bench.experiment import load_backbone

    return load_backbone(max_seq_length=256)


@pytest.fixture(scope="session")
def stress_run(minilm_backbone, tmp_path_factory):
    """A tiny stress-test run (mean and GLOT, rho 0.5, one seed): ``(results, output folder, cache folder)``."""
    from glot_st.bench.experiment import Budget
    from glot_st.bench.stress_runner import run_stress

    out = tmp_path_factory.mktemp("stress")
    cache = tmp_path_factory.mktemp("stress_cache")
    results = run_stress(
        methods=["mean", "glot"], rhos=[0.5], seeds=[0], n_train=64, n_eval=32,
        budget=Budget(epochs=1, lr=1e-3, batch_size=16), output_dir=out, cache_dir=cache,
        backbone=minilm_backbone, log=lambda message: None,
    )
    return results, out, cache
