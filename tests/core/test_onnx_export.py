"""ONNX export: one graph that matches ``model.encode`` without torch, dynamic shapes, bad input, atomic folders."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import glot_st  # noqa: E402
from glot_st import onnx_export  # noqa: E402
from glot_st.onnx_export import check_exportable, export_onnx, read_manifest, tokenizer_arrays  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "a man plays a guitar in the park .",
    "the cat",
    "children are playing music with a piano and a violin at the beach today",
    "nice",
    "someone drives a car on the road",
]
# Runs first in the child process: torch, glot_st, sentence_transformers and transformers become unimportable.
BLOCKER = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "glot_st", "sentence_transformers", "transformers"):
            raise ImportError(name + " is blocked")
sys.meta_path.insert(0, _Block())
"""


def _glot_model(folder: str, seed: int = 0, normalize: bool = False, **config):
    from sentence_transformers.sentence_transformer.modules import Normalize

    torch.manual_seed(seed)
    model = glot_st.from_backbone(folder, device="cpu", hidden_dim=8, num_layers=2, dropout=0.0, tau=0.1, **config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every GLOT parameter random, so no part of the graph can be skipped unnoticed
        for parameter in model[1].parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.5)
    if normalize:
        model.append(Normalize())
    return model.eval()


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> str:
    from tiny_backbones import save_tiny_backbone

    return save_tiny_backbone(tmp_path_factory.mktemp("tiny") / "bert", "bert")


@pytest.fixture(scope="module")
def exported(backbone, tmp_path_factory):
    """(model, head, export folder): GLOT + Normalize + a 3-class softmax head, exported with int8."""
    model = _glot_model(backbone, normalize=True, heads=2)
    torch.manual_seed(1)
    head = torch.nn.Sequential(torch.nn.Linear(model.get_sentence_embedding_dimension(), 3), torch.nn.Softmax(-1))
    out = export_onnx(model, tmp_path_factory.mktemp("onnx") / "export", head=head, labels=["a", "b", "c"],
                      quantize=True)
    return model, head.eval(), out


def _readme_snippet() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- onnx-snippet:start -->\n```python\n(.*?)```\n<!-- onnx-snippet:end -->", readme, re.S)
    assert block is not None, "the README's ONNX snippet markers are missing"
    return block.group(1)


def test_readme_snippet_matches_encode_and_head_without_torch(exported, tmp_path):
    model, head, folder = exported
    snippet = _readme_snippet()
    snippet = re.sub(r'folder = ".*"', f"folder = {str(folder)!r}", snippet)
    snippet = re.sub(r"texts = \[.*\]", f"texts = {TEXTS!r}", snippet)
    probe = f"""
try:
    import torch
except ImportError:
    pass
else:
    raise SystemExit("torch was importable")
np.savez({str(tmp_path / "out.npz")!r}, **outputs)
print(json.dumps(sorted(sys.modules)))
"""
    result = subprocess.run([sys.executable, "-c", BLOCKER + snippet + probe], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    *printed, modules = result.stdout.strip().splitlines()
    top_level = {name.split(".")[0] for name in json.loads(modules)}
    assert not top_level & {"torch", "glot_st", "sentence_transformers", "transformers"}
    assert "onnxruntime" in top_level and "tokenizers" in top_level
    outputs = np.load(tmp_path / "out.npz")
    expected = model.encode(TEXTS, convert_to_tensor=True)
    assert np.abs(outputs["sentence_embedding"] - expected.numpy()).max() <= 1e-4
    with torch.no_grad():
        probabilities = head(expected.clone()).numpy()
    assert np.abs(outputs["probabilities"] - probabilities).max() <= 1e-4
    labels = ["abc"[i] for i in outputs["probabilities"].argmax(axis=1)]
    assert printed[-1] == repr(labels)  # the snippet printed the predicted labels


def test_dynamic_batch_and_length_and_int8(exported):
    import onnxruntime
    from tokenizers import Tokenizer

    model, _, folder = exported
    manifest = read_manifest(folder)
    features = model.preprocess(TEXTS[:1])
    token_inputs = [name for name in onnx_export.TOKEN_INPUTS if name in features]
    assert manifest["inputs"] == {name: ["batch", "sequence"] for name in token_inputs}
    assert manifest["outputs"] == {"sentence_embedding": ["batch", model.get_sentence_embedding_dimension()],
                                   "probabilities": ["batch", 3]}
    assert manifest["labels"] == ["a", "b", "c"] and manifest["normalized"] is True
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    fp32 = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    int8 = onnxruntime.InferenceSession(str(folder / "model_int8.onnx"), providers=["CPUExecutionProvider"])
    long_text = " ".join(["music"] * 100)  # longer than the tiny backbone's 64 tokens: truncated
    for texts in (TEXTS[:1], TEXTS[1:4], TEXTS + [long_text] * 4):
        feeds = tokenizer_arrays(tokenizer, texts, list(manifest["inputs"]))
        embeddings = fp32.run(["sentence_embedding"], feeds)[0]
        expected = model.encode(texts, convert_to_numpy=True)
        assert embeddings.shape == expected.shape
        assert np.abs(embeddings - expected).max() <= 1e-4
        quantized = int8.run(["sentence_embedding"], feeds)[0]
        assert quantized.shape == expected.shape and np.isfinite(quantized).all()
        assert np.abs(quantized - expected).max() > 0  # a different (quantized) graph really ran
    assert feeds["input_ids"].shape[1] == 64


@pytest.mark.parametrize(
    "config",
    [
        {"conv": "gcn", "edge_weight": "cosine"},
        {"conv": "sage", "graph": "topk", "k": 2},
        {"conv": "gin", "graph": "mutual_knn", "k": 2, "jk": "max"},
        {"conv": "gat", "heads": 2, "concat_heads": False, "edge_weight": "cosine", "jk": "mean", "layout": "sparse"},
    ],
    ids=["gcn-cosine", "sage-topk", "gin-mutual-max", "gat-mean-heads-sparse-config"],
)
def test_other_configs_export_within_tolerance(backbone, tmp_path, config):
    model = _glot_model(backbone, **config)
    folder = export_onnx(model, tmp_path / "out")
    manifest = read_manifest(folder)
    assert manifest["export_max_abs_difference"] <= onnx_export.EXPORT_TOLERANCE
    assert manifest["labels"] is None and list(manifest["outputs"]) == ["sentence_embedding"]


def _no_leftovers(parent: Path) -> list[str]:
    return [p.name for p in parent.iterdir() if ".partial-" in p.name or ".old-" in p.name]


def test_bad_models_are_refused_before_any_file(backbone, tmp_path):
    from sentence_transformers import SentenceTransformer

    mean_model = SentenceTransformer(backbone, device="cpu")
    with pytest.raises(ValueError, match="no GLOT module"):
        export_onnx(mean_model, tmp_path / "a")
    with pytest.raises(ValueError, match="gine"):
        check_exportable(_glot_model(backbone, conv="gine"))
    with pytest.raises(ValueError, match="include_prompt=False"):
        check_exportable(_glot_model(backbone, include_prompt=False))
    model = _glot_model(backbone)
    with pytest.raises(ValueError, match="3 outputs; pass labels"):
        export_onnx(model, tmp_path / "b", head=torch.nn.Linear(model.get_sentence_embedding_dimension(), 3),
                    labels=["x"])
    with pytest.raises(ValueError, match="head fails"):
        export_onnx(model, tmp_path / "c", head=torch.nn.Linear(5, 2), labels=[0, 1])
    model.default_prompt_name = "query"
    model.prompts = {"query": "query: "}
    with pytest.raises(ValueError, match="prompt"):
        export_onnx(model, tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_output_folder_checks(backbone, tmp_path):
    model = _glot_model(backbone)
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        export_onnx(model, tmp_path / "taken")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        export_onnx(model, tmp_path / "file" / "out")
    with pytest.raises(NotADirectoryError):
        export_onnx(model, tmp_path / "file", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "taken"]


def test_a_failed_export_leaves_nothing_and_keeps_the_old_folder(backbone, tmp_path, monkeypatch):
    model = _glot_model(backbone)
    old = tmp_path / "out"
    old.mkdir()
    (old / "keep.txt").write_text("old")

    def broken(source, target):
        Path(target).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(onnx_export, "_quantize", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_onnx(model, tmp_path / "new", quantize=True)
    with pytest.raises(RuntimeError, match="disk full"):
        export_onnx(model, old, quantize=True, overwrite=True)
    assert not (tmp_path / "new").exists() and (old / "keep.txt").read_text() == "old"
    assert _no_leftovers(tmp_path) == []
    monkeypatch.undo()
    export_onnx(model, old, overwrite=True)  # replaces the old folder once the new one is complete
    assert not (old / "keep.txt").exists() and read_manifest(old)["files"]["model"] == "model.onnx"
    assert _no_leftovers(tmp_path) == []


def test_read_manifest_refuses_an_incomplete_folder(exported, tmp_path):
    _, _, folder = exported
    with pytest.raises(FileNotFoundError, match="not a complete"):
        read_manifest(tmp_path)
    manifest = json.loads((folder / "glot_onnx.json").read_text())
    (tmp_path / "glot_onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(FileNotFoundError, match="missing"):
        read_manifest(tmp_path)


def test_export_leaves_the_model_and_its_modes_unchanged(backbone, tmp_path):
    model = _glot_model(backbone)
    before = model.encode(TEXTS, convert_to_numpy=True)
    model.train()
    export_onnx(model, tmp_path / "out")
    assert model.training and model[1].training and model[1].layout == "auto" and model[1].validate_inputs
    model.eval()
    assert np.array_equal(model.encode(TEXTS, convert_to_numpy=True), before)
