"""A trained classifier in one object (``GLOTClassifier``), ``glot-st predict``, and the head read without glot-st.

The classifier, ``glot-st predict`` and ``predict(model, head, texts)`` must give the same predictions (and the
same probabilities) on one tiny trained model; the head saved beside the model (safetensors + JSON) must give the
same probabilities through the generated ``glot_modeling.py`` in a process where glot-st cannot be imported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import glot_st
from glot_st.train import GLOTClassifier, load_head, predict, predict_proba, train_cached
from glot_st.train.heads import make_head

from conftest import PAIRS_B, TEXTS, frame, run_cli, write_table

try:  # sentence-transformers 6
    import sentence_transformers.base.model as st_model_module
except ImportError:  # pragma: no cover - sentence-transformers 5
    import sentence_transformers.SentenceTransformer as st_model_module

REPO_ID = "glot-org/tiny-classifier"
SHA = "fedcba9876543210fedcba9876543210fedcba98"
NEW_TEXTS = ["a good song", "terrible weather today", "a nice dog", "bad music"]


@pytest.fixture(scope="module")
def trained(tiny_bert, tmp_path_factory) -> Path:
    """A training output folder: a tiny GLOT + a 2-class head over string labels (neg, pos)."""
    torch.manual_seed(0)
    model = glot_st.from_backbone(tiny_bert, device="cpu", hidden_dim=8, num_layers=1, dropout=0.0)
    out = tmp_path_factory.mktemp("trained") / "model"
    train_cached(model, frame(), columns={"text": "sentence", "label": "label"}, epochs=2, batch_size=8,
                 cache_dtype="float32", output_dir=out, show_progress_bar=False)
    return out


@pytest.fixture(scope="module")
def classifier(trained) -> GLOTClassifier:
    return GLOTClassifier.from_pretrained(trained, device="cpu")


def test_classifier_cli_and_predict_give_identical_predictions(trained, classifier, tmp_path, capsys):
    assert classifier.labels == ["neg", "pos"]
    expected = predict(glot_st.load(str(trained), device="cpu"), load_head(trained), NEW_TEXTS)
    assert classifier.predict(NEW_TEXTS) == expected
    assert set(expected) <= {"neg", "pos"}
    proba = classifier.predict_proba(NEW_TEXTS)
    assert proba.shape == (len(NEW_TEXTS), 2) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert [classifier.labels[i] for i in proba.argmax(axis=1)] == expected
    np.testing.assert_allclose(proba, predict_proba(classifier.model, classifier.head, NEW_TEXTS), rtol=0, atol=1e-6)

    txt = tmp_path / "in.txt"
    txt.write_text("\n".join(NEW_TEXTS) + "\n")
    table = write_table(pd.DataFrame({"s": NEW_TEXTS}), tmp_path / "in.jsonl")
    for source, extra in ((txt, ()), (table, ("--text-column", "s"))):
        output = tmp_path / f"{source.suffix[1:]}.csv"
        status, stdout, stderr = run_cli(capsys, "predict", "--model", trained, "--input", source, *extra,
                                         "--output", output, "--quiet")
        assert status == 0, stderr
        assert json.loads(stdout)["rows"] == len(NEW_TEXTS)
        written = pd.read_csv(output)
        assert list(written.columns) == [extra[1] if extra else "text", "prediction", "probability_neg",
                                         "probability_pos"]
        assert written.iloc[:, 0].tolist() == NEW_TEXTS
        assert written["prediction"].tolist() == expected
        np.testing.assert_allclose(written[["probability_neg", "probability_pos"]].to_numpy(), proba, rtol=0,
                                   atol=1e-6)


def test_predict_refuses_bad_output_before_loading(trained, tmp_path, capsys, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(GLOTClassifier, "from_pretrained", never)
    txt = tmp_path / "in.txt"
    txt.write_text("a good dog\n")
    existing = tmp_path / "p.csv"
    existing.write_text("keep me")
    cases = (
        (existing, (), "exists; pass --overwrite"),
        (tmp_path / "p.json", (), "must end in .csv"),
        (tmp_path / "q.csv", ("--text-b-column", "b"), "needs a table --input"),
    )
    for output, extra, message in cases:
        status, _, stderr = run_cli(capsys, "predict", "--model", trained, "--input", txt, "--output", output, *extra)
        assert status != 0 and message in stderr, stderr
    assert existing.read_text() == "keep me"


def test_predict_without_a_head_names_the_folder(tiny_bert, tmp_path, capsys):
    model = glot_st.from_backbone(tiny_bert, device="cpu", hidden_dim=8, num_layers=1)
    glot_st.save(model, tmp_path / "plain")
    txt = tmp_path / "in.txt"
    txt.write_text("a good dog\n")
    status, _, stderr = run_cli(capsys, "predict", "--model", tmp_path / "plain", "--input", txt,
                                "--output", tmp_path / "p.csv")
    assert status != 0 and "no saved head" in stderr and "plain" in stderr
    assert not (tmp_path / "p.csv").exists()


def test_pair_and_regression_heads(classifier, tmp_path, capsys):
    dim = classifier.head.dim
    torch.manual_seed(1)
    pair = GLOTClassifier(classifier.model, make_head("pair", dim, num_labels=2, label_names=["no", "yes"]))
    pairs = list(zip(TEXTS[:5], PAIRS_B[:5]))
    assert pair.predict(pairs) == predict(pair.model, pair.head, TEXTS[:5], PAIRS_B[:5])
    assert pair.predict_proba(pairs).shape == (5, 2)
    with pytest.raises(ValueError, match="not an \\(a, b\\) pair"):
        pair.predict(TEXTS[:2])
    regression = GLOTClassifier(classifier.model, make_head("regression", dim))
    scores = regression.predict(pairs)
    assert len(scores) == 5 and all(isinstance(s, float) for s in scores)
    with pytest.raises(ValueError, match="no class probabilities"):
        regression.predict_proba(pairs)
    with pytest.raises(ValueError, match="dimensions but the head takes"):
        GLOTClassifier(classifier.model, make_head("single", dim + 1, num_labels=2))


def test_save_pretrained_round_trip_has_no_pickle(classifier, tmp_path):
    folder = tmp_path / "saved"
    classifier.save_pretrained(folder)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert "glot_head/glot_head.safetensors" in names and "glot_head/glot_head.json" in names
    assert "glot_modeling.py" in names
    assert not [n for n in names if n.endswith((".pkl", ".pickle", ".bin", ".pt", ".joblib"))], names
    again = GLOTClassifier.from_pretrained(folder, device="cpu")
    np.testing.assert_allclose(again.predict_proba(NEW_TEXTS), classifier.predict_proba(NEW_TEXTS), rtol=0,
                               atol=1e-6)
    np.testing.assert_allclose(again.encode(NEW_TEXTS), classifier.encode(NEW_TEXTS), rtol=0, atol=1e-6)


class FakeHfApi:
    """Records the uploaded folder instead of sending it."""

    uploads: list[dict] = []

    def __init__(self, token=None, **kwargs):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def create_branch(self, repo_id, branch, **kwargs):
        return None

    def upload_folder(self, repo_id, folder_path, **kwargs):
        files = {p.relative_to(folder_path).as_posix(): p.read_bytes()
                 for p in sorted(Path(folder_path).rglob("*")) if p.is_file()}
        FakeHfApi.uploads.append({"repo_id": repo_id, "files": files})
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/{SHA}", pr_url=None)


def as_hf_cache(files: dict[str, bytes], cache: Path) -> None:
    """Lay ``files`` out as the Hugging Face cache holds ``REPO_ID`` at ``SHA``."""
    repo_dir = cache / ("models--" + REPO_ID.replace("/", "--"))
    for name, data in files.items():
        target = repo_dir / "snapshots" / SHA / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(SHA)


def test_push_to_hub_then_from_pretrained_by_repo_id(classifier, tmp_path, monkeypatch):
    FakeHfApi.uploads = []
    monkeypatch.setattr(st_model_module, "HfApi", FakeHfApi)
    original = st_model_module.load_file_path
    monkeypatch.setattr(st_model_module, "load_file_path", lambda name, filename, *a, **k: None
                        if (name, filename) == (REPO_ID, "README.md") else original(name, filename, *a, **k))
    assert classifier.push_to_hub(REPO_ID).endswith(SHA)
    files = FakeHfApi.uploads[0]["files"]
    assert {"glot_head/glot_head.json", "glot_head/glot_head.safetensors", "glot_modeling.py"} <= set(files)
    as_hf_cache(files, tmp_path / "cache")
    pulled = GLOTClassifier.from_pretrained(REPO_ID, device="cpu", cache_folder=str(tmp_path / "cache"),
                                            local_files_only=True)
    assert pulled.labels == classifier.labels
    np.testing.assert_allclose(pulled.predict_proba(NEW_TEXTS), classifier.predict_proba(NEW_TEXTS), rtol=0,
                               atol=1e-6)


NO_GLOT_SCRIPT = r"""
import importlib.abc, json, sys
import numpy as np

class RefuseGlotSt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "glot_st" or name.startswith("glot_st."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, RefuseGlotSt())
try:
    import glot_st  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("glot_st is importable: the test would prove nothing")

from sentence_transformers import SentenceTransformer

request = json.loads(sys.argv[1])
model = SentenceTransformer(request["folder"], trust_remote_code=True, device="cpu")
modeling = sys.modules[type(model[1]).__module__]
report = {}
for name, source in (("folder", request["folder"]), ("repo", request["repo"])):
    head = modeling.load_glot_head(source)
    probabilities = head(model.encode(request["texts"], convert_to_tensor=True))
    np.save(request["out"] + "/" + name + ".npy", probabilities.detach().numpy())
    report[name] = head.labels
report["glot_st_modules"] = sorted(m for m in sys.modules if m == "glot_st" or m.startswith("glot_st."))
print(json.dumps(report))
"""


def test_the_head_gives_the_same_probabilities_without_glot_st(classifier, tmp_path):
    folder = tmp_path / "saved"
    classifier.save_pretrained(folder)
    cache = tmp_path / "cache"
    as_hf_cache({p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}, cache)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HF_HOME": str(tmp_path / "hf-home"),
           "HF_MODULES_CACHE": str(tmp_path / "hf-modules"), "HF_HUB_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    request = {"folder": str(folder), "repo": REPO_ID, "texts": NEW_TEXTS, "out": str(tmp_path)}
    done = subprocess.run([sys.executable, "-I", "-c", NO_GLOT_SCRIPT, json.dumps(request)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["glot_st_modules"] == []
    expected = classifier.predict_proba(NEW_TEXTS)
    for source in ("folder", "repo"):
        assert report[source] == classifier.labels
        np.testing.assert_allclose(np.load(tmp_path / f"{source}.npy"), expected, rtol=0, atol=1e-6)
