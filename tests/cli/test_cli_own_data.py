"""The ``train`` / ``evaluate`` / ``encode`` commands on the user's own data: string labels, regression, and
one-line errors before any work."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import glot_st
import glot_st.train.loop as loop_mod

from conftest import PAIRS_B, SCORES, STRING_LABELS, TEXTS, frame, run_cli, write_table


@pytest.fixture(scope="module")
def backbone(tiny_bert):
    return tiny_bert


# ------------------------------------------------------------------------------------------ command line


TINY_GLOT = ("--hidden-dim", "8", "--num-layers", "1", "--quiet", "--batch-size", "8", "--cache-dtype", "float32")


def test_cli_train_evaluate_encode_with_string_labels(backbone, tmp_path, capsys):
    train = write_table(frame(), tmp_path / "train.csv")
    valid = write_table(frame().iloc[::2], tmp_path / "valid.jsonl")
    out = tmp_path / "model"
    status, stdout, stderr = run_cli(
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
    status, stdout, stderr = run_cli(
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
    status, stdout, stderr = run_cli(capsys, "encode", "--model", out, "--input", texts, "--output", tmp_path / "e.npy",
                                 "--batch-size", "2", "--quiet")
    assert status == 0, stderr
    embeddings = np.load(tmp_path / "e.npy")
    model = glot_st.load(str(out), device="cpu")
    np.testing.assert_allclose(embeddings, model.encode(TEXTS[:5], convert_to_numpy=True), atol=1e-5)
    status, stdout, stderr = run_cli(capsys, "encode", "--model", out, "--input", train, "--text-column", "sentence",
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
    status, _, stderr = run_cli(capsys, "train", "--train-file", train, "--text-column", "a", "--text-b-column", "b",
                            "--label-column", "score", "--output-dir", out, "--model", backbone, *TINY_GLOT)
    assert status == 0, stderr
    assert "task: sentence-pair regression, scores in [0.5, 4.5], metric spearman" in stderr
    predictions = tmp_path / "p.jsonl"
    status, stdout, stderr = run_cli(capsys, "evaluate", "--model", out, "--eval-file", train, "--text-column", "a",
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
        status, stdout, stderr = run_cli(capsys, *argv)
        lines = [line for line in stderr.splitlines() if "error:" in line]
        assert status != 0 and len(lines) == 1 and needle in lines[0], (argv, stderr)
        assert "Traceback" not in stderr and stdout == ""
    assert not (tmp_path / "o").exists()
