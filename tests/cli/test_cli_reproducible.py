"""The same ``glot-st train`` command gives the same model: GLOT's initial weights follow ``--seed`` whatever the
process drew from torch's generator before."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from conftest import frame, run_cli, write_table

TINY = ("--hidden-dim", "8", "--num-layers", "1", "--quiet", "--batch-size", "8", "--cache-dtype", "float32",
        "--epochs", "2")


def _train(capsys, backbone: str, train_file: Path, out: Path, seed: int, prior_draws: int) -> dict:
    """One CLI run after the process moved torch's global generator (as another process would have it)."""
    torch.manual_seed(prior_draws)
    torch.rand(prior_draws)
    status, stdout, stderr = run_cli(
        capsys, "train", "--train-file", train_file, "--text-column", "sentence", "--label-column", "label",
        "--output-dir", out, "--model", backbone, "--seed", seed, *TINY,
    )
    assert status == 0, stderr
    return json.loads(stdout)


def _weights(folder: Path) -> dict[str, bytes]:
    """Every safetensors file of a saved model (GLOT, head, backbone) by its path in the folder."""
    files = sorted(folder.rglob("*.safetensors"))
    assert any("glot_head" in str(f) for f in files) and len(files) >= 3
    return {str(f.relative_to(folder)): f.read_bytes() for f in files}


def _scores(result: dict) -> list:
    return [(r["loss"], r["validation_metric"]) for r in result["history"]]


def test_same_command_same_model_and_metric(tiny_bert, tmp_path, capsys):
    train = write_table(frame(), tmp_path / "train.csv")
    first = _train(capsys, tiny_bert, train, tmp_path / "a", seed=7, prior_draws=1)
    second = _train(capsys, tiny_bert, train, tmp_path / "b", seed=7, prior_draws=977)
    assert _weights(tmp_path / "a") == _weights(tmp_path / "b")
    assert _scores(first) == _scores(second)
    assert first["validation_metric"] == second["validation_metric"]

    other = _train(capsys, tiny_bert, train, tmp_path / "c", seed=8, prior_draws=1)
    a, c = _weights(tmp_path / "a"), _weights(tmp_path / "c")
    glot_files = [name for name in a if "GLOT" in name]
    assert glot_files and all(a[name] != c[name] for name in glot_files)
    assert _scores(other) != _scores(first)
