"""The user's own data: every input form trains, the task is inferred, string labels round-trip through
save / load / predict, bad arguments fail before any cache is built, a diverging run restores the weights,
and the ``train`` / ``evaluate`` / ``encode`` commands."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import glot_st
import glot_st.train.loop as loop_mod
from glot_st.train import Columns, as_text_split, infer_task, load_head, predict, read_table, train_cached
from glot_st.train.data import TextSplit

from tiny_backbones import save_tiny_backbone

POS = ["a good dog", "a great cat", "nice music today", "good food", "a lovely park", "great weather today",
       "the nice piano", "good coffee"]
NEG = ["a bad dog", "terrible food", "bad weather", "a terrible song", "cold rain", "bad coffee", "the bad car",
       "terrible music"]
TEXTS = POS + NEG
STRING_LABELS = ["pos"] * len(POS) + ["neg"] * len(NEG)
INT_LABELS = [1] * len(POS) + [0] * len(NEG)
PAIRS_B = list(reversed(TEXTS))
SCORES = [float(i % 5) + 0.5 for i in range(len(TEXTS))]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory):
    return save_tiny_backbone(tmp_path_factory.mktemp("own_data") / "bert", "bert", seed=2)


def tiny_model(backbone):
    torch.manual_seed(0)
    return glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=1, dropout=0.0)


def fit(model, data, eval_data=None, **kwargs):
    kwargs.setdefault("epochs", 1)
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("cache_dtype", "float32")
    return train_cached(model, data, eval_data, show_progress_bar=False, **kwargs)


def frame() -> pd.DataFrame:
    return pd.DataFrame({"sentence": TEXTS, "label": STRING_LABELS})


def write_table(df: pd.DataFrame, path):
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


# ------------------------------------------------------------------------------------------ command line


def cli(capsys, *argv):
    from glot_st.cli import main

    status = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


TINY_GLOT = ("--hidden-dim", "8", "--num-layers", "1", "--quiet", "--batch-size", "8", "--cache-dtype", "float32")


def test_cli_train_evaluate_encode_with_string_labels(backbone, tmp_path, capsys):
    train = write_table(frame(), tmp_path / "train.csv")
    valid = write_table(frame().iloc[::2], tmp_path / "valid.jsonl")
    out = tmp_path / "model"
    status, stdout, stderr = cli(
        capsys, "train", "--train-file", train, "--validation-file", valid, "--text-column", "sentence",
        "--label-column", "label", "--output-dir", out, "--model", backbone, "--epochs", "2", *TINY_GLOT,
    )
    assert status == 0, stderr
    assert "task: single-sentence classification, 2 classes (neg, pos), metric accuracy" in stderr
    result = json.loads(stdout)
    assert result["metric_name"] == "accuracy" and len(result["history"]) == 2
    assert result["head_config"]["label_names"] == ["neg", "pos"]

    evaluation = write_table(frame().iloc[1::2].rename(columns={"sentence": "s", "label": "y"}), tmp_path / "e.tsv")
    predictions = tmp_path / "preds" / "p.csv"
    status, stdout, stderr = cli(
        capsys, "evaluate", "--model", out, "--eval-file", evaluation, "--text-column", "s", "--label-column", "y",
        "--predictions-file", predictions, "--quiet",
    )
    assert status == 0, stderr
    scored = json.loads(stdout)
    assert scored["metric_name"] == "accuracy" and scored["rows"] == len(TEXTS) // 2
    predicted = pd.read_csv(predictions)["prediction"].tolist()
    assert set(predicted) <= {"neg", "pos"}
    gold = STRING_LABELS[1::2]
    assert scored["metric"] == pytest.approx(np.mean([p == g for p, g in zip(predicted, gold)]), abs=1e-12)

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS[:5]) + "\n")
    status, stdout, stderr = cli(capsys, "encode", "--model", out, "--input", texts, "--output", tmp_path / "e.npy",
                                 "--batch-size", "2", "--quiet")
    assert status == 0, stderr
    embeddings = np.load(tmp_path / "e.npy")
    model = glot_st.load(str(out), device="cpu")
    np.testing.assert_allclose(embeddings, model.encode(TEXTS[:5], convert_to_numpy=True), atol=1e-5)
    status, stdout, stderr = cli(capsys, "encode", "--model", out, "--input", train, "--text-column", "sentence",
                                 "--output", tmp_path / "n.npy", "--normalize", "--quiet")
    assert status == 0, stderr
    normalized = np.load(tmp_path / "n.npy")
    assert normalized.shape[0] == len(TEXTS) and np.allclose(np.linalg.norm(normalized, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(normalized[:5], embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True),
                               atol=1e-5)


def test_cli_regression_metric_is_spearman_of_the_predictions(backbone, tmp_path, capsys):
    from scipy import stats

    df = pd.DataFrame({"a": TEXTS, "b": PAIRS_B, "score": SCORES})
    train = write_table(df, tmp_path / "train.parquet")
    out = tmp_path / "model"
    status, _, stderr = cli(capsys, "train", "--train-file", train, "--text-column", "a", "--text-b-column", "b",
                            "--label-column", "score", "--output-dir", out, "--model", backbone, *TINY_GLOT)
    assert status == 0, stderr
    assert "task: sentence-pair regression, scores in [0.5, 4.5], metric spearman" in stderr
    predictions = tmp_path / "p.jsonl"
    status, stdout, stderr = cli(capsys, "evaluate", "--model", out, "--eval-file", train, "--text-column", "a",
                                 "--text-b-column", "b", "--label-column", "score", "--predictions-file", predictions)
    assert status == 0, stderr
    scored = json.loads(stdout)
    predicted = [json.loads(line)["prediction"] for line in predictions.read_text().splitlines()]
    assert scored["metric_name"] == "spearman"
    assert scored["metric"] == pytest.approx(stats.spearmanr(predicted, SCORES).statistic, abs=1e-12)


def test_cli_errors_are_one_line_without_traceback(backbone, tmp_path, capsys, monkeypatch):
    def never(*args, **kw):
        raise AssertionError("a cache was built")

    monkeypatch.setattr(loop_mod, "_build_unique_cache", never)
    train = write_table(frame(), tmp_path / "train.csv")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    (tmp_path / "data.xlsx").write_text("x")
    base = ("train", "--train-file", train, "--text-column", "sentence", "--label-column", "label", "--model",
            backbone)
    cases = [
        ((*base, "--output-dir", tmp_path / "o", "--lr", "0"), "lr must be a finite number > 0"),
        ((*base, "--output-dir", tmp_path / "o", "--epochs", "0"), "epochs must be an int >= 1"),
        ((*base, "--output-dir", tmp_path / "full"), "is not empty and holds no saved model"),
        ((*base, "--output-dir", train), "is a file, not a folder"),
        ((*base,), "--output-dir is required with --train-file"),
        ((*base, "--output-dir", tmp_path / "o", "--max-seq-length", "100000"), "exceeds the backbone's limit"),
        (("train", "--train-file", train, "--text-column", "text", "--label-column", "label", "--output-dir",
          tmp_path / "o"), "no column 'text'; available columns: sentence, label"),
        (("train", "--train-file", tmp_path / "data.xlsx", "--text-column", "t", "--output-dir", tmp_path / "o"),
         "unknown file type '.xlsx'"),
        (("train", "--output-dir", tmp_path / "o"), "give either --task"),
        (("evaluate", "--model", tmp_path / "none", "--eval-file", train, "--text-column", "sentence",
          "--label-column", "label"), "model folder"),
        (("encode", "--model", backbone, "--input", train, "--output", tmp_path / "e.txt"), "must end in .npy"),
        (("encode", "--model", backbone, "--input", tmp_path / "missing.txt", "--output", tmp_path / "e.npy"),
         "does not exist"),
    ]
    for argv, needle in cases:
        status, stdout, stderr = cli(capsys, *argv)
        lines = [line for line in stderr.splitlines() if "error:" in line]
        assert status != 0 and len(lines) == 1 and needle in lines[0], (argv, stderr)
        assert "Traceback" not in stderr and stdout == ""
    assert not (tmp_path / "o").exists()
