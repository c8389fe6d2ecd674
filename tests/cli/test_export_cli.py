"""``glot-st export``: a saved model with its classification head as one ONNX graph; heads it cannot hold refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import glot_st  # noqa: E402
from glot_st.cli import main  # noqa: E402
from glot_st.onnx_export import read_manifest, tokenizer_arrays  # noqa: E402
from glot_st.train.heads import HEAD_SUBFOLDER, make_head  # noqa: E402

TEXTS = ["a man plays a guitar .", "the weather is lovely today", "nice"]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A saved tiny-BERT + GLOT model folder (no head yet) and the model."""
    from tiny_backbones import save_tiny_backbone

    root = tmp_path_factory.mktemp("cli-export")
    backbone = save_tiny_backbone(root / "bert", "bert")
    torch.manual_seed(0)
    model = glot_st.from_backbone(backbone, device="cpu", hidden_dim=8, num_layers=1, dropout=0.0).eval()
    folder = root / "model"
    glot_st.save(model, str(folder))
    return folder, model


def test_export_includes_the_classification_head(saved_model, tmp_path, capsys):
    import onnxruntime
    from tokenizers import Tokenizer

    folder, model = saved_model
    torch.manual_seed(2)
    head = make_head("single", model.get_sentence_embedding_dimension(), num_labels=2,
                     label_names=["negative", "positive"])
    head.save(folder / HEAD_SUBFOLDER)
    try:
        assert main(["export", "--model", str(folder), "--output", str(tmp_path / "out")]) == 0
    finally:
        import shutil

        shutil.rmtree(folder / HEAD_SUBFOLDER)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["labels"] == ["negative", "positive"] and "model_int8" not in printed["files"]
    manifest = read_manifest(tmp_path / "out")
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "model.onnx"), providers=["CPUExecutionProvider"])
    feeds = tokenizer_arrays(Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json")), TEXTS,
                             list(manifest["inputs"]))
    embeddings, probabilities = session.run(["sentence_embedding", "probabilities"], feeds)
    expected = model.encode(TEXTS, convert_to_tensor=True).clone()
    with torch.no_grad():
        expected_probabilities = torch.softmax(head(expected), dim=-1).numpy()
    assert np.abs(embeddings - expected.numpy()).max() <= 1e-4
    assert np.abs(probabilities - expected_probabilities).max() <= 1e-4


def test_pair_heads_are_refused_unless_no_head(saved_model, tmp_path, capsys):
    folder, model = saved_model
    make_head("regression", model.get_sentence_embedding_dimension()).save(folder / HEAD_SUBFOLDER)
    try:
        assert main(["export", "--model", str(folder), "--output", str(tmp_path / "out")]) == 2
        assert "'regression' head scores sentence pairs" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
        assert main(["export", "--model", str(folder), "--output", str(tmp_path / "out"), "--no-head"]) == 0
    finally:
        import shutil

        shutil.rmtree(folder / HEAD_SUBFOLDER)
    assert read_manifest(tmp_path / "out")["labels"] is None


def test_bad_folders_are_refused_before_loading(saved_model, tmp_path, capsys):
    folder, _ = saved_model
    (tmp_path / "taken").mkdir()
    assert main(["export", "--model", str(folder), "--output", str(tmp_path / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "missing"), "--output", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err
    backbone = folder.parent / "bert"  # a plain Hugging Face folder: no GLOT module
    assert main(["export", "--model", str(backbone), "--output", str(tmp_path / "o")]) == 2
    assert "not a saved sentence-transformers model" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
