"""Tiny end-to-end runs of the stress-test and GLUE-lite runners: files, structure and value ranges."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from glot_st.bench.glue_runner import _cap_rows
from glot_st.bench.runners import (
    METHOD_LABELS,
    Budget,
    glue_markdown,
    run_glue,
    run_stress,
    stress_markdown,
)
from glot_st.train.data import TASKS, load_split

pytestmark = pytest.mark.slow  # see setup.cfg: run by `make test`, skipped by -m 'not slow'

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def backbone(minilm_backbone):
    return minilm_backbone


def _table_rows(markdown: str, table: int = 0) -> dict[str, list[str]]:
    """The rows of the ``table``-th markdown table: first cell -> the other cells."""
    rows, seen = {}, -1
    for line in markdown.splitlines():
        if line.startswith("| method"):
            seen += 1
        if seen == table and line.startswith("| ") and not line.startswith("| ---") and not line.startswith("| method"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _mean_of(cell: str) -> float:
    return float(re.match(r"\**(-?[0-9.]+)", cell).group(1))


def test_stress_writes_table_json_and_png(stress_run):
    results, out, _ = stress_run
    for name in ("stress.json", "stress.md", "stress_accuracy_vs_rho.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    stored = json.loads((out / "stress.json").read_text())
    assert stored["summary"] == results["summary"]
    assert (out / "stress_accuracy_vs_rho.png").read_bytes()[:8] == PNG_MAGIC

    protocol = stored["protocol"]
    assert protocol["methods"] == ["mean", "glot"] and protocol["rhos"] == [0.5] and protocol["seeds"] == [0]
    assert protocol["n_train"] == 64 and protocol["n_eval"] == 32 and protocol["max_seq_length"] == 256
    assert protocol["glot_config"]["in_dim"] == 384

    runs = stored["runs"]
    assert sorted(r["method"] for r in runs) == ["glot", "mean"]
    for run in runs:
        assert 0.0 <= run["accuracy"] <= 1.0
        assert len(run["history"]) == run["epochs_run"] == 1
        assert run["accuracy"] == run["history"][run["best_epoch"] - 1]["eval_metric"]  # ours: validation-chosen
        assert run["paper_accuracy"] == max(h["eval_metric"] for h in run["history"])  # paper: best eval epoch
        assert run["validation_metric"] == run["history"][run["best_epoch"] - 1]["validation_metric"]
        # 32 eval texts: accuracy is a multiple of 1/32
        assert abs(run["accuracy"] * 32 - round(run["accuracy"] * 32)) < 1e-9
    glot_run = next(r for r in runs if r["method"] == "glot")
    mean_run = next(r for r in runs if r["method"] == "mean")
    assert glot_run["trainable_parameters"] > mean_run["trainable_parameters"] > 0
    # the backbone ran once for the dataset: the second method found the cache ready
    assert mean_run["cache_seconds"] > glot_run["cache_seconds"]

    for method in ("mean", "glot"):
        cell = stored["summary"][method]["0.5"]
        run = next(r for r in runs if r["method"] == method)
        assert cell["n"] == 1 and cell["std"] == 0.0 and cell["mean"] == run["accuracy"]
    for stats in stored["token_stats"].values():
        assert stats["truncated"] == 0 and stats["max_tokens"] <= 256


def test_stress_markdown_matches_json(stress_run):
    results, out, _ = stress_run
    markdown = (out / "stress.md").read_text()
    assert markdown == stress_markdown(results)
    assert "| method | ρ = 0.5 (ours) | ρ = 0.5 (paper) |" in markdown
    rows = _table_rows(markdown)
    assert set(rows) == {METHOD_LABELS["mean"], METHOD_LABELS["glot"]}
    for method in ("mean", "glot"):
        assert _mean_of(rows[METHOD_LABELS[method]][0]) == pytest.approx(
            results["summary"][method]["0.5"]["mean"] * 100, abs=0.05
        )
        assert _mean_of(rows[METHOD_LABELS[method]][1]) == pytest.approx(
            results["summary_paper"][method]["0.5"]["mean"] * 100, abs=0.05
        )


def test_stress_resume_reuses_finished_runs(stress_run, backbone):
    results, out, cache = stress_run
    again = run_stress(
        methods=["mean", "glot"], rhos=[0.5], seeds=[0], n_train=64, n_eval=32,
        budget=Budget(epochs=1, lr=1e-3, batch_size=16), output_dir=out, cache_dir=cache,
        backbone=backbone, resume=True, plot=False, log=lambda message: None,
    )
    assert again["runs"] == results["runs"]
    assert again["token_stats"] == results["token_stats"] and again["summary"] == results["summary"]


def test_cap_rows_is_a_fixed_subset():
    split = load_split("cola", "train", limit=200)
    first, second = _cap_rows(split, 50), _cap_rows(split, 50)
    assert first == second and len(first) == 50
    positions = [split.texts_a.index(t) for t in first.texts_a]
    assert positions == sorted(positions)
    assert all(split.labels[p] == y for p, y in zip(positions, first.labels))
    assert _cap_rows(split, 500) is split


def test_glue_tiny_run(backbone, tmp_path):
    results = run_glue(
        tasks=["cola", "stsb"], methods=["mean", "glot"], seeds=[0], max_train=32, max_eval=24,
        budget=Budget(epochs=1, lr=1e-3, batch_size=16), output_dir=tmp_path, backbone=backbone,
        log=lambda message: None,
    )
    stored = json.loads((tmp_path / "glue.json").read_text())
    assert stored["summary"] == results["summary"]
    assert stored["split_sizes"]["cola"]["train_used"] == 32
    assert stored["split_sizes"]["stsb"]["eval_rows"] == 24
    assert stored["split_sizes"]["cola"]["train_rows"] == len(load_split("cola", "train"))
    assert len(stored["runs"]) == 4
    for run in stored["runs"]:
        assert run["metric_name"] == TASKS[run["task"]].metric
        assert -1.0 <= run["value"] <= 1.0
    untrained = stored["untrained"]["minilm_mean_untrained"]["stsb"]
    assert 0.0 < untrained <= 1.0  # MiniLM's own embeddings rank STS-B pairs well even on 24 pairs

    markdown = (tmp_path / "glue.md").read_text()
    assert markdown == glue_markdown(results)
    assert markdown.count("| method | CoLA (MCC) | STS-B (Spearman) |") == 2  # ours, then the paper's protocol
    assert markdown.index("**Ours**") < markdown.index("**Paper's protocol**")
    for table, scored in enumerate((results, results["paper"])):
        rows = _table_rows(markdown, table)
        assert set(rows) == {"MiniLM mean pooling, untrained (cosine)", "Mean", "GLOT"}
        assert _mean_of(rows["MiniLM mean pooling, untrained (cosine)"][1]) == pytest.approx(untrained * 100, abs=0.05)
        for method in ("mean", "glot"):
            for column, task in enumerate(["cola", "stsb"]):
                expected = scored["summary"][method][task]["mean"] * 100
                assert _mean_of(rows[METHOD_LABELS[method]][column]) == pytest.approx(expected, abs=0.05)
    for run in stored["runs"]:
        assert run["paper_value"] >= run["value"]  # the best eval epoch is at least the validation-chosen one
    for task, best in stored["best_method"].items():
        top = max(stored["summary"][m][task]["mean"] for m in ("mean", "glot"))
        assert all(np.isclose(stored["summary"][m][task]["mean"], top) for m in best)
    assert stored["targets"]["glot_best_count"] == sum("glot" in v for v in stored["best_method"].values())
    for task, gap in stored["targets"]["gaps"].items():
        rival = stored["summary"][gap["best_baseline"]][task]["mean"]
        assert gap["gap"] == pytest.approx(rival - stored["summary"]["glot"][task]["mean"])


def test_resume_ignores_the_backbone_path_and_config_keys_added_later(tmp_path):
    from glot_st.bench.experiment import _load_resumable

    protocol = {"experiment": "x", "backbone": {"name": "/old/checkout/model", "weights_digest": "abc"},
                "glot_config": {"tau": 0.6, "include_prompt": True}}
    older = {"experiment": "x", "backbone": {"name": "/somewhere/else", "weights_digest": "abc"},
             "glot_config": {"tau": 0.6}}  # written before include_prompt existed
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"protocol": older, "runs": [{"done": 1}]}))
    assert _load_resumable(path, protocol, lambda m: None)["runs"] == [{"done": 1}]
    other = dict(older, backbone={"name": "/somewhere/else", "weights_digest": "other weights"})
    path.write_text(json.dumps({"protocol": other, "runs": [{"done": 1}]}))
    assert _load_resumable(path, protocol, lambda m: None) == {}  # another backbone is never reused


def test_the_committed_results_resume_under_todays_protocol():
    from pathlib import Path

    from glot_st.bench.experiment import Budget, _comparable
    from glot_st.module import GLOT

    root = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    today = GLOT(in_dim=384).get_config_dict()
    budget = dataclasses.asdict(Budget())
    for name in ("stress/stress.json", "glue/glue.json"):
        stored = json.loads((root / name).read_text())["protocol"]
        assert _comparable(stored)["glot_config"] == today, name
        assert _comparable(stored)["budget"] == budget, name  # fields added later read as today's defaults
