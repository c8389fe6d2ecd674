"""Multi-label classification: a label column of lists (or several 0/1 columns), a sigmoid head, per-label
thresholds chosen on the validation split and saved with the head, micro and macro F1."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import glot_st
from glot_st.head_math import load_glot_head
from glot_st.train import GLOTClassifier, evaluate, infer_task, load_head, predict, train_cached
from glot_st.train.inputs import as_text_split
from glot_st.train.metrics import best_f1_thresholds, macro_f1, micro_f1

from conftest import TEXTS, run_cli, write_table


def label_sets(text: str) -> list[str]:
    labels = []
    if any(word in text for word in ("good", "great", "nice", "lovely")):
        labels.append("positive")
    if any(word in text for word in ("dog", "cat")):
        labels.append("animal")
    if any(word in text for word in ("food", "coffee")):
        labels.append("food")
    return labels


LABELS = [label_sets(t) for t in TEXTS]


def test_onnx_export_refuses_a_multilabel_head():
    from glot_st.train.export_head import probability_head
    from glot_st.train.heads import make_head

    with pytest.raises(ValueError, match="multi-label head is not exported"):
        probability_head(make_head("multilabel", 4, num_labels=3))


def test_micro_macro_f1_and_thresholds_on_a_hand_example():
    gold = [[1, 0], [1, 1], [0, 1], [0, 0]]
    pred = [[1, 0], [0, 1], [0, 0], [0, 1]]
    # label 0: tp 1, fn 1 -> F1 2/3; label 1: tp 1, fp 1, fn 1 -> F1 1/2; micro: tp 2, fp 1, fn 2 -> 4/7
    assert micro_f1(pred, gold) == pytest.approx(4 / 7)
    assert macro_f1(pred, gold) == pytest.approx((2 / 3 + 1 / 2) / 2)
    with pytest.raises(ValueError, match="0 and 1"):
        micro_f1([[2, 0]], [[1, 0]])
    probabilities = np.array([[0.9, 0.2], [0.3, 0.8], [0.2, 0.35], [0.1, 0.3]])
    chosen = best_f1_thresholds(probabilities, np.array(gold), 0.5)
    # label 0: positives at 0.9 and 0.3 -> threshold 0.3 gives F1 1; label 1: positives 0.8, 0.35 -> 0.35
    np.testing.assert_allclose(chosen, [0.3, 0.35])
    assert best_f1_thresholds(probabilities, np.zeros((4, 2)), 0.5).tolist() == [0.5, 0.5]


def test_inference_from_lists_and_from_several_01_columns(tmp_path):
    task = infer_task(as_text_split({"text": TEXTS, "label": LABELS}))
    for suffix in (".jsonl", ".parquet"):  # files holding a list column
        path = write_table(pd.DataFrame({"text": TEXTS, "label": LABELS}), tmp_path / f"d{suffix}")
        assert infer_task(as_text_split(path)) == task
    assert task.describe() == "multi-label classification, 3 labels (animal, food, positive), metric micro_f1"
    columns = {name: [int(name in row) for row in LABELS] for name in ("positive", "animal", "food")}
    split = as_text_split({"text": TEXTS, **columns}, {"label": "positive,animal,food"})
    assert split.labels == LABELS
    assert infer_task(split).describe() == task.describe()
    with pytest.raises(ValueError, match="must each hold 0 or 1"):
        as_text_split({"text": TEXTS, **columns, "food": [2] * len(TEXTS)}, {"label": "positive,animal,food"})
    with pytest.raises(ValueError, match="not a list"):
        infer_task(as_text_split({"text": TEXTS[:3], "label": [["a"], "b", ["c"]]}))
    with pytest.raises(ValueError, match="one text a row"):
        infer_task(as_text_split({"text": TEXTS, "b": TEXTS, "label": LABELS}, {"text_b": "b"}))
    unseen = as_text_split({"text": TEXTS[:1], "label": [["weather"]]}, split="eval")
    with pytest.raises(ValueError, match="'weather'"):
        task.encode_labels(unseen)


def test_train_saves_thresholds_and_every_path_predicts_the_same(tiny_bert, tmp_path):
    torch.manual_seed(0)
    model = glot_st.from_backbone(tiny_bert, device="cpu", hidden_dim=8, num_layers=1, dropout=0.0)
    data = pd.DataFrame({"text": TEXTS, "label": LABELS})
    out = tmp_path / "model"
    result = train_cached(model, data, validation_split=data, epochs=3, batch_size=8, cache_dtype="float32",
                          output_dir=out, show_progress_bar=False)
    assert result.task == "multi-label classification, 3 labels (animal, food, positive), metric micro_f1"
    assert result.metric_name == "micro_f1" and 0.0 <= result.validation_metric <= 1.0
    head = load_head(out)
    assert head.kind == "multilabel"
    # thresholds were chosen on the validation split and saved with the head
    torch.testing.assert_close(head.thresholds, result.head.thresholds.cpu())
    assert not torch.equal(head.thresholds, torch.full((3,), 0.5))

    loaded = glot_st.load(str(out), device="cpu")
    expected = predict(loaded, head, TEXTS)
    assert all(isinstance(row, list) and set(row) <= {"animal", "food", "positive"} for row in expected)
    classifier = GLOTClassifier.from_pretrained(out, device="cpu")
    assert classifier.predict(TEXTS) == expected
    proba = classifier.predict_proba(TEXTS)
    on = proba >= head.thresholds.numpy()
    assert [[name for name, flag in zip(classifier.labels, row) if flag] for row in on] == expected

    scored = evaluate(loaded, head, data)
    gold = np.array([[int(name in row) for name in classifier.labels] for row in LABELS])
    got = np.array([[int(name in row) for name in classifier.labels] for row in expected])
    assert scored.metric == pytest.approx(micro_f1(got, gold))
    assert scored.to_dict()["macro_f1"] == pytest.approx(macro_f1(got, gold))
    assert scored.metric == pytest.approx(result.validation_metric)  # validation was this data, same head

    plain = load_glot_head(out)  # the core loader bundled into glot_modeling.py
    z = loaded.encode(TEXTS, convert_to_tensor=True)
    np.testing.assert_allclose(plain(z).numpy(), proba, rtol=0, atol=1e-6)
    torch.testing.assert_close(plain.thresholds, head.thresholds)


def test_cli_train_with_01_columns_prints_the_task_and_predicts_lists(tiny_bert, tmp_path, capsys):
    columns = {name: [int(name in row) for row in LABELS] for name in ("positive", "animal", "food")}
    train = write_table(pd.DataFrame({"sentence": TEXTS, **columns}), tmp_path / "train.csv")
    out = tmp_path / "model"
    status, stdout, stderr = run_cli(
        capsys, "train", "--train-file", train, "--validation-file", train, "--text-column", "sentence",
        "--label-column", "positive,animal,food", "--output-dir", out, "--model", tiny_bert, "--epochs", "1",
        "--hidden-dim", "8", "--num-layers", "1", "--quiet", "--batch-size", "8", "--cache-dtype", "float32",
    )
    assert status == 0, stderr
    assert "task: multi-label classification, 3 labels (animal, food, positive), metric micro_f1" in stderr
    assert json.loads(stdout)["metric_name"] == "micro_f1"
    texts = tmp_path / "in.txt"
    texts.write_text("\n".join(TEXTS[:4]) + "\n")
    status, _, stderr = run_cli(capsys, "predict", "--model", out, "--input", texts, "--output", tmp_path / "p.csv",
                                "--quiet")
    assert status == 0, stderr
    written = pd.read_csv(tmp_path / "p.csv")
    assert [c for c in written.columns if c.startswith("probability_")] == [
        "probability_animal", "probability_food", "probability_positive"]
    expected = GLOTClassifier.from_pretrained(out, device="cpu").predict(TEXTS[:4])
    assert [json.loads(p) for p in written["prediction"]] == expected
