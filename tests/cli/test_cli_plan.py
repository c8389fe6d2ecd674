"""The train command plans a run once: the task it prints is the one ``glot_training.json`` records, the splits
are prepared once, the planned run equals ``train_cached``'s, and ``--quiet`` leaves no progress bar."""

from __future__ import annotations

import json

import pandas as pd
import torch

import glot_st
import glot_st.train.inputs as inputs_mod
import glot_st.train.loop as loop_mod
from glot_st.train import train_cached
from glot_st.train.inputs import prepare_splits
from glot_st.train.loop import TrainingRecipe, plan_training, run_plan

from conftest import run_cli

TEXTS = ["a good dog", "a great cat", "nice music today", "good food", "a bad dog", "terrible food", "bad weather",
         "cold rain", "a lovely park", "bad coffee", "good coffee", "terrible music"]
LABELS = ["pos", "pos", "pos", "pos", "neg", "neg", "neg", "neg", "pos", "neg", "pos", "neg"]
TINY = ("--hidden-dim", "8", "--num-layers", "1", "--batch-size", "4", "--cache-dtype", "float32", "--epochs", "2")
# what tqdm bars (ours and the libraries': "Loading weights", "Writing model shards") leave on stderr
BAR_MARKS = ("it/s]", "%|", "Loading weights", "Writing model shards")


def _train_file(tmp_path):
    path = tmp_path / "train.csv"
    pd.DataFrame({"sentence": TEXTS, "label": LABELS}).to_csv(path, index=False)
    return path


def _train(capsys, tiny_bert, tmp_path, *extra):
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "model"
    status, stdout, stderr = run_cli(
        capsys, "train", "--train-file", _train_file(tmp_path), "--text-column", "sentence", "--label-column", "label",
        "--output-dir", out, "--model", tiny_bert, *TINY, *extra,
    )
    assert status == 0, stderr
    return out, stdout, stderr


def test_the_task_printed_is_the_task_recorded(tiny_bert, tmp_path, capsys):
    out, stdout, stderr = _train(capsys, tiny_bert, tmp_path, "--quiet")
    printed = next(line for line in stderr.splitlines() if line.startswith("glot-st train: task: "))
    described = printed.removeprefix("glot-st train: task: ")
    recorded = json.loads((out / "glot_training.json").read_text())["task"]
    assert recorded == described == json.loads(stdout)["task"]
    assert described == "single-sentence classification, 2 classes (neg, pos), metric accuracy"


def test_the_splits_are_prepared_once_and_the_recipe_checked_once(tiny_bert, tmp_path, capsys, monkeypatch):
    calls = {"prepare": 0, "recipe": 0}
    real_prepare, real_of = inputs_mod.prepare_splits, TrainingRecipe.of.__func__

    def prepare(*args, **kwargs):
        calls["prepare"] += 1
        return real_prepare(*args, **kwargs)

    def of(cls, **settings):
        calls["recipe"] += 1
        return real_of(cls, **settings)

    monkeypatch.setattr(inputs_mod, "prepare_splits", prepare)
    monkeypatch.setattr(loop_mod, "prepare_splits", prepare)
    monkeypatch.setattr(TrainingRecipe, "of", classmethod(of))
    _train(capsys, tiny_bert, tmp_path, "--quiet")
    assert calls == {"prepare": 1, "recipe": 1}


def test_a_planned_run_equals_train_cached(tiny_bert, tmp_path):
    def model():
        torch.manual_seed(0)
        return glot_st.from_backbone(tiny_bert, device="cpu", hidden_dim=8, num_layers=1)

    settings = dict(epochs=2, batch_size=4, cache_dtype="float32", seed=3, show_progress_bar=False)
    first = model()
    by_function = train_cached(first, (TEXTS, LABELS), cache_dir=tmp_path / "c1", **settings)
    second = model()
    prepared = prepare_splits((TEXTS, LABELS))
    plan = plan_training(second, prepared, TrainingRecipe.of(cache_dir=tmp_path / "c2", **settings))
    by_plan = run_plan(second, plan)
    assert by_plan.history and [h["loss"] for h in by_plan.history] == [h["loss"] for h in by_function.history]
    assert by_plan.task == by_function.task == prepared.describe()
    assert all(torch.equal(a, b) for a, b in zip(first[1].state_dict().values(), second[1].state_dict().values()))
    assert all(torch.equal(a, b) for a, b in zip(by_function.head.state_dict().values(), by_plan.head.state_dict().values()))


def test_quiet_silences_every_progress_bar(tiny_bert, tmp_path, capsys):
    _, _, loud = _train(capsys, tiny_bert, tmp_path / "loud")
    assert any(mark in loud for mark in BAR_MARKS), loud  # the check can fail: bars do show without --quiet
    _, _, quiet = _train(capsys, tiny_bert, tmp_path / "quiet", "--quiet")
    assert not [mark for mark in BAR_MARKS if mark in quiet], quiet
    _, _, again = _train(capsys, tiny_bert, tmp_path / "again")  # --quiet does not outlive its command
    assert "Loading weights" in again or "Writing model shards" in again, again
