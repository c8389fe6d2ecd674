"""The best of several whole runs: a search over ``seed`` re-initialises the pooler under each seed, so a trial
is the run that seed gives alone, and the validation score (never the eval split) picks the winner."""

from __future__ import annotations

import json

import pytest
import torch

import glot_st
from glot_st.cli import main
from glot_st.train import load_split, train_cached
from glot_st.train.recipe import restart_seeds


@pytest.fixture(scope="module")
def model(minilm_dir):
    return glot_st.from_backbone(minilm_dir, max_seq_length=32, device="cpu", hidden_dim=16, num_layers=1, seed=0)


@pytest.fixture(scope="module")
def stsb():
    return load_split("stsb", "train", limit=64), load_split("stsb", "dev", limit=16)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_restart_seeds():
    assert restart_seeds(42, 3) == [42, 43, 44]
    assert restart_seeds(7, 1) == [7]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="restarts must be an int >= 1"):
            restart_seeds(0, bad)


def test_a_seed_trial_is_that_seeds_whole_run(model, stsb, tmp_path):
    options = dict(validation_fraction=0.25, epochs=2, batch_size=8, cache_dir=tmp_path, show_progress_bar=False)
    searched = train_cached(model, *stsb, search={"seed": [3, 4]}, **options)
    trials = searched.search["trials"]
    assert [t["setting"] for t in trials] == [{"seed": 3}, {"seed": 4}]
    assert trials[0]["validation_metric"] != trials[1]["validation_metric"]  # two different runs
    best = max(trials, key=lambda t: t["validation_metric"])
    assert searched.search["chosen"] == best["setting"] and searched.validation_metric == best["validation_metric"]
    kept = _state(model[1])

    seed = best["setting"]["seed"]
    glot_st.reinitialize(model[1], seed)  # the documented way to run one seed alone
    alone = train_cached(model, *stsb, seed=seed, **options)
    assert alone.validation_metric == searched.validation_metric
    assert all(torch.equal(kept[k], v) for k, v in model[1].state_dict().items())


def test_cli_restarts_keeps_the_best_of_its_seeds(tiny_bert, tmp_path, capsys):
    base = ["train", "--task", "stsb", "--limit", "16", "--eval-limit", "8", "--model", tiny_bert, "--cache-dir",
            str(tmp_path), "--quiet", "--epochs", "1", "--batch-size", "4", "--hidden-dim", "8", "--num-layers", "1",
            "--validation-fraction", "0.25", "--seed", "5"]
    assert main([*base, "--restarts", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [t["setting"] for t in result["search"]["trials"]] == [{"seed": 5}, {"seed": 6}, {"seed": 7}]
    best = max(result["search"]["trials"], key=lambda t: t["validation_metric"])
    assert result["search"]["chosen"] == best["setting"]

    assert main([*base, "--restarts", "0"]) == 2
    assert "restarts must be an int >= 1" in capsys.readouterr().err
