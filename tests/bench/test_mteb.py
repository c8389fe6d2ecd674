"""A GLOT model evaluates through mteb on the local STS-B task, offline, and mteb agrees with our metric."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("mteb")

from glot_st.bench.mteb_tasks import TASK_NAME, evaluate_mteb, make_stsb_task  # noqa: E402
from glot_st.train.data import load_split  # noqa: E402
from glot_st.train.metrics import pearson, spearman  # noqa: E402

pytestmark = pytest.mark.slow  # see setup.cfg: run by `make test`, skipped by -m 'not slow'

LIMIT = 48


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_offline_environment():
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_task_loads_bundled_rows_without_download():
    task = make_stsb_task(limit=LIMIT)
    assert task.metadata.name == TASK_NAME
    assert task.metadata.type == "STS"
    task.load_data()
    test = task.dataset["test"]
    split = load_split("stsb", "test", limit=LIMIT)
    assert len(test) == LIMIT
    assert list(test["sentence1"]) == split.texts_a
    assert list(test["sentence2"]) == split.texts_b
    assert np.allclose(test["score"], split.labels)


def test_task_honours_data_dir(tmp_path):
    source = load_split("stsb", "test", limit=3)
    folder = tmp_path / "stsb"
    folder.mkdir()
    rows = [
        "\t".join(["main-captions", "MSRvid", "2012test", f"{i:04d}", f"{score:.3f}", a, b])
        for i, (a, b, score) in enumerate(zip(source.texts_a, source.texts_b, [4.0, 1.5, 0.0]))
    ]
    (folder / "sts-test.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    task = make_stsb_task(data_dir=tmp_path)
    task.load_data()
    assert list(task.dataset["test"]["score"]) == [4.0, 1.5, 0.0]


def test_mteb_spearman_equals_our_spearman_of_encode_cosines(glot_model):
    scores = evaluate_mteb(glot_model, limit=LIMIT, batch_size=16)
    split = load_split("stsb", "test", limit=LIMIT)
    emb_a = glot_model.encode(split.texts_a, batch_size=16, convert_to_numpy=True)
    emb_b = glot_model.encode(split.texts_b, batch_size=16, convert_to_numpy=True)
    cos = _cosines(emb_a, emb_b)
    ours = spearman(cos, split.labels)
    for key in ("spearman", "cosine_spearman", "main_score"):
        assert -1.0 <= scores[key] <= 1.0
        assert abs(scores[key] - ours) < 1e-6, (key, scores[key], ours)
    assert abs(scores["cosine_pearson"] - pearson(cos, split.labels)) < 1e-5
    # a real signal, not a degenerate constant: MiniLM tokens + GLOT correlate with the gold scores
    assert ours > 0.3


def test_module_import_does_not_import_mteb():
    code = "import sys, glot_st.bench.mteb_tasks; print('mteb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
