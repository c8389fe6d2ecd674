"""The user's own data: every input form trains, the task is inferred, string labels round-trip through
save / load / predict, bad arguments fail before any cache is built, a diverging run restores the weights,
and the ``train`` / ``evaluate`` / ``encode`` commands."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import glot_st
import glot_st.train.loop as loop_mod
from glot_st.train import Columns, as_text_split, infer_task, load_head, predict, read_table, train_cached
from glot_st.train.data import TextSplit

from conftest import INT_LABELS, PAIRS_B, SCORES, STRING_LABELS, TEXTS, frame, write_table


@pytest.fixture(scope="module")
def backbone(tiny_bert):
    return tiny_bert


def tiny_model(backbone):
    torch.manual_seed(0)
    return glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=1, dropout=0.0)


def fit(model, data, eval_data=None, **kwargs):
    kwargs.setdefault("epochs", 1)
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("cache_dtype", "float32")
    return train_cached(model, data, eval_data, show_progress_bar=False, **kwargs)


# ------------------------------------------------------------------------------------------ forms and inference


@pytest.mark.parametrize("form", ["textsplit", "dataset", "dataframe", "dict", "lists", "csv", "tsv", "jsonl",
                                  "json", "parquet"])
def test_every_input_form_trains(form, backbone, tmp_path):
    columns = Columns(text="sentence")
    df = frame()
    if form == "textsplit":
        data, columns = TextSplit("mine", "train", TEXTS, None, STRING_LABELS), None
    elif form == "dataset":
        import datasets

        data = datasets.Dataset.from_pandas(df)
    elif form == "dataframe":
        data = df
    elif form == "dict":
        data = {"sentence": TEXTS, "label": STRING_LABELS}
    elif form == "lists":
        data, columns = (TEXTS, STRING_LABELS), None
    else:
        data = str(write_table(df, tmp_path / f"train.{form}"))
    split = as_text_split(data, columns)
    assert split.texts_a == TEXTS and split.labels == STRING_LABELS and split.texts_b is None
    model = tiny_model(backbone)
    before = {k: v.clone() for k, v in model[1].state_dict().items()}
    result = fit(model, data, columns=columns, output_dir=tmp_path / "out")
    assert result.task.startswith("single-sentence classification, 2 classes (neg, pos)")
    assert result.head.label_names == ["neg", "pos"]
    assert math.isfinite(result.history[0]["loss"])
    assert any(not torch.equal(before[k], v) for k, v in model[1].state_dict().items())  # it trained


def test_task_inference_from_columns_and_labels():
    single = infer_task(as_text_split((TEXTS, INT_LABELS)))
    assert (single.kind, single.num_labels, single.label_names, single.metric) == ("single", 2, None, "accuracy")
    pair = infer_task(as_text_split((TEXTS, PAIRS_B, STRING_LABELS)))
    assert (pair.kind, pair.label_names) == ("pair", ("neg", "pos"))
    regression = infer_task(as_text_split((TEXTS, PAIRS_B, SCORES)))
    assert (regression.kind, regression.min_score, regression.max_score) == ("regression", 0.5, 4.5)
    assert regression.metric == "spearman" and "scores in [0.5, 4.5]" in regression.describe()
    given = infer_task(as_text_split((TEXTS, PAIRS_B, SCORES)), head_config={"min_score": 0, "max_score": 5})
    assert (given.min_score, given.max_score) == (0, 5)
    assert infer_task(as_text_split((TEXTS, PAIRS_B, None))).kind == "contrastive"
    signed = infer_task(as_text_split((TEXTS, [-1, 1] * 8)))
    assert signed.label_names == (-1, 1) and signed.decode([0, 1]) == [-1, 1]
    booleans = infer_task(as_text_split((TEXTS, [True, False] * 8)))
    assert booleans.num_labels == 2 and booleans.label_names is None


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ((TEXTS, ["a"] * 15 + [1]), "labels mix str and int"),
        ((TEXTS, ["a"] * 8 + [None] * 8), "row 8 column 'labels': label is missing"),
        ((TEXTS, ["same"] * 16), "at least 2 classes"),
        ((TEXTS, SCORES), "float labels mean regression"),
        ((TEXTS, None, None), "label-free training needs anchor/positive pairs"),
    ],
)
def test_inference_errors_name_the_problem(data, needle):
    with pytest.raises(ValueError, match=needle):
        infer_task(as_text_split(data))


def test_unseen_eval_label_is_an_error_naming_it(backbone):
    with pytest.raises(ValueError, match=r"label 'maybe' at row 1 was not seen in the training data"):
        fit(tiny_model(backbone), (TEXTS, STRING_LABELS), (TEXTS[:2], ["pos", "maybe"]))


def test_missing_column_and_unknown_extension(tmp_path):
    path = write_table(frame(), tmp_path / "train.csv")
    with pytest.raises(ValueError, match=r"no column 'text'; available columns: sentence, label"):
        as_text_split(str(path))
    (tmp_path / "train.xlsx").write_text("x")
    with pytest.raises(ValueError, match=r"unknown file type '.xlsx'; expected one of .csv, .tsv"):
        read_table(tmp_path / "train.xlsx")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_table(tmp_path / "missing.csv")
    with pytest.raises(TypeError, match="unsupported data of type list"):
        as_text_split(TEXTS)


def test_pair_regression_and_contrastive_train(backbone, tmp_path):
    model = tiny_model(backbone)
    result = fit(model, (TEXTS, PAIRS_B, SCORES), (TEXTS[:8], PAIRS_B[:8], SCORES[:8]))
    assert result.metric_name == "spearman" and result.head.kind == "regression"
    assert (result.head.min_score, result.head.max_score) == (0.5, 4.5)
    pairs = pd.DataFrame({"anchor": TEXTS, "positive": PAIRS_B})
    result = fit(model, pairs, columns={"text": "anchor", "text_b": "positive", "label": None})
    assert result.head.kind == "contrastive" and result.task.startswith("contrastive")
    result = fit(model, (TEXTS, PAIRS_B, STRING_LABELS))
    assert result.head.kind == "pair" and result.head.label_names == ["neg", "pos"]


def test_string_labels_round_trip_through_save_load_predict(backbone, tmp_path):
    model = tiny_model(backbone)
    out = tmp_path / "model"
    result = fit(model, frame(), columns={"text": "sentence"}, output_dir=out, epochs=2)
    reloaded, head = glot_st.load(str(out), device="cpu"), load_head(out)
    assert head.config["label_names"] == ["neg", "pos"]
    got = predict(reloaded, head, TEXTS)
    assert set(got) <= {"neg", "pos"} and len(got) == len(TEXTS)
    z = torch.as_tensor(model.encode(TEXTS, convert_to_numpy=True))
    expected = [["neg", "pos"][i] for i in result.head.predict(z).tolist()]
    assert got == expected


# ------------------------------------------------------------------------------------------ fail safe


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"lr": float("nan")}, "lr must be a finite number > 0"),
        ({"lr": -1e-3}, "lr must be a finite number > 0"),
        ({"epochs": 0}, "epochs must be an int >= 1"),
        ({"epochs": 1.5}, "epochs must be an int >= 1"),
        ({"batch_size": 0}, "batch_size must be an int >= 1"),
        ({"eval_batch_size": 0}, "eval_batch_size must be an int >= 1"),
        ({"cache_batch_size": -2}, "cache_batch_size must be an int >= 1"),
        ({"weight_decay": float("inf")}, "weight_decay must be a finite number >= 0"),
        ({"max_seq_length": 0}, "max_seq_length must be an int > 0"),
        ({"max_seq_length": 10_000}, "exceeds the backbone's limit of 64 tokens"),
        ({"output_dir": "FILE"}, "is a file, not a folder"),
        ({"output_dir": "FILE/below"}, "cannot be created"),
        ({"output_dir": "FULL"}, "is not empty and holds no saved model"),
    ],
)
def test_bad_arguments_fail_before_any_cache_is_built(kwargs, needle, backbone, tmp_path, monkeypatch):
    def never(*args, **kw):
        raise AssertionError("a cache was built")

    monkeypatch.setattr(loop_mod, "_build_unique_cache", never)
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "FULL").mkdir()
    (tmp_path / "FULL" / "notes.txt").write_text("mine")
    model = tiny_model(backbone)
    kwargs = dict(kwargs)
    if "max_seq_length" in kwargs:
        model.max_seq_length = kwargs.pop("max_seq_length")
    if "output_dir" in kwargs:
        kwargs["output_dir"] = tmp_path / kwargs["output_dir"]
    with pytest.raises(ValueError, match=needle):
        fit(model, (TEXTS, STRING_LABELS), **kwargs)
    assert (tmp_path / "FULL" / "notes.txt").read_text() == "mine"


def test_output_dir_may_be_a_saved_model_or_overwritten(backbone, tmp_path, monkeypatch):
    def stop(*args, **kw):
        raise RuntimeError("reached caching")

    monkeypatch.setattr(loop_mod, "_build_unique_cache", stop)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    (tmp_path / "model").mkdir()  # another model: only with overwrite
    (tmp_path / "model" / "modules.json").write_text("[]")
    (tmp_path / "trained" / "glot_head").mkdir(parents=True)  # what a glot-st training run wrote: replaced
    (tmp_path / "trained" / "glot_training.json").write_text("{}")
    cases = [("full", {"overwrite": True}), ("model", {"overwrite": True}), ("trained", {}), ("new/deeper", {})]
    for out, extra in cases:
        with pytest.raises(RuntimeError, match="reached caching"):
            fit(tiny_model(backbone), (TEXTS, STRING_LABELS), output_dir=tmp_path / out, **extra)
    assert not (tmp_path / "new" / "deeper").exists()  # a failed run creates no output folder


def test_diverging_run_restores_the_weights_from_before_it(backbone, monkeypatch):
    model = tiny_model(backbone)
    before = {k: v.clone() for k, v in model[1].state_dict().items()}
    embeddings = model.encode(TEXTS, convert_to_numpy=True)
    from glot_st.train.heads import ClassificationHead

    real_loss, calls = ClassificationHead.loss, []

    def diverging(self, z_a, z_b, targets):
        calls.append(1)
        loss = real_loss(self, z_a, z_b, targets)
        return loss if len(calls) < 3 else loss * float("nan")  # two real steps, then NaN

    monkeypatch.setattr(ClassificationHead, "loss", diverging)
    with pytest.raises(FloatingPointError, match="training loss is nan at epoch 1, batch 2"):
        fit(model, (TEXTS, STRING_LABELS), batch_size=4, lr=1e-1)
    assert len(calls) == 3
    assert all(torch.equal(before[k], v) for k, v in model[1].state_dict().items())
    after = model.encode(TEXTS, convert_to_numpy=True)
    assert np.isfinite(after).all()
    np.testing.assert_array_equal(after, embeddings)
    monkeypatch.setattr(ClassificationHead, "loss", real_loss)
    assert math.isfinite(fit(model, (TEXTS, STRING_LABELS)).history[0]["loss"])  # a retry works


def test_non_finite_weights_after_training_raise_and_restore(backbone, monkeypatch):
    model = tiny_model(backbone)
    before = {k: v.clone() for k, v in model[1].state_dict().items()}
    real_step = torch.optim.AdamW.step

    def poisoning_step(self, *args, **kwargs):
        out = real_step(self, *args, **kwargs)
        with torch.no_grad():
            self.param_groups[0]["params"][0].fill_(float("inf"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoning_step)
    with pytest.raises(FloatingPointError, match="non-finite"):
        fit(model, (TEXTS, STRING_LABELS), batch_size=16)
    assert all(torch.equal(before[k], v) for k, v in model[1].state_dict().items())
