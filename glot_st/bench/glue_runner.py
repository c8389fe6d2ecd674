"""GLUE-lite on a frozen MiniLM: its runner and its report.

:func:`run_glue` trains every method of :mod:`glot_st.bench.experiment` on CoLA (MCC), SST-2 (accuracy), STS-B
(Spearman), MRPC (F1) and RTE (accuracy), scored on their dev splits (STS-B: test); heads from
:mod:`glot_st.train.heads` by task kind (linear; linear on ``[z1; z2; |z1 - z2|; z1 * z2]``; cosine of a
projected pair for STS-B). Training rows are capped at ``max_train`` by a fixed random subset, the same for
every method and seed. Also scores the backbone's own untrained pooling on STS-B. Writes ``glue.json`` and
``glue.md``, with our protocol (the epoch chosen on a validation slice) and the paper's (the best dev epoch).

Public API::

    GLUE_TASKS, DEFAULT_GLUE_DIR, run_glue(...), untrained_stsb(backbone, ...), glue_markdown(results),
    glot_method(methods)
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from glot_st.bench.experiment import (
    EXTRA_METHODS,
    METHOD_LABELS,
    METHODS,
    Budget,
    RunBook,
    RunSetup,
    backbone_record,
    environment,
    log_to_stderr,
    recipe_words,
    run_jobs,
    start_run,
    summarize,
    table_cell,
)
from glot_st.bench.paths import results_dir
from glot_st.train.data import TASKS, load_split
from glot_st.train.metrics import spearman
from glot_st.train.splits import TextSplit

__all__ = ["DEFAULT_GLUE_DIR", "GLUE_TASKS", "glot_method", "glue_markdown", "run_glue", "untrained_stsb"]

GLUE_TASKS: tuple[str, ...] = ("cola", "sst2", "stsb", "mrpc", "rte")
METRIC_LABELS: dict[str, str] = {"mcc": "MCC", "accuracy": "Acc", "spearman": "Spearman", "f1": "F1"}
#: the rows of a capped training set are drawn with this seed (independent of the training seeds)
SUBSET_SEED = 12345
DEFAULT_GLUE_DIR = results_dir("glue")
UNTRAINED_ROW = "minilm_mean_untrained"

Log = Callable[[str], None]


def _cap_rows(split: TextSplit, max_rows: int | None) -> TextSplit:
    """A fixed random subset of ``max_rows`` rows (file order kept), or ``split`` itself if it is smaller."""
    if max_rows is None or len(split) <= max_rows:
        return split
    keep = np.sort(np.random.default_rng(SUBSET_SEED).choice(len(split), size=max_rows, replace=False))
    pick = lambda values: [values[i] for i in keep]  # noqa: E731
    return TextSplit(
        task=split.task,
        split=split.split,
        texts_a=pick(split.texts_a),
        texts_b=None if split.texts_b is None else pick(split.texts_b),
        labels=pick(split.labels),
    )


def untrained_stsb(
    backbone: Any, data_dir: str | os.PathLike | None = None, limit: int | None = None, batch_size: int = 64
) -> float:
    """Spearman of the backbone's own (mean-pooled, normalized) embeddings' cosine vs the STS-B test scores.

    Args:
        backbone: the full MiniLM ``SentenceTransformer`` (Transformer + Pooling + Normalize).
        data_dir: another copy of the data (``None``: bundled).
        limit: first ``limit`` test pairs (``None``: all), as the runner's ``max_eval``.
        batch_size: encode batch size.
    """
    test = load_split("stsb", TASKS["stsb"].eval_split, data_dir=data_dir, limit=limit)
    emb_a = backbone.encode(test.texts_a, batch_size=batch_size, convert_to_numpy=True).astype(np.float64)
    emb_b = backbone.encode(test.texts_b, batch_size=batch_size, convert_to_numpy=True).astype(np.float64)
    cosine = (emb_a * emb_b).sum(1) / (np.linalg.norm(emb_a, axis=1) * np.linalg.norm(emb_b, axis=1))
    return float(spearman(cosine, test.labels))


def run_glue(
    *,
    tasks: Sequence[str] = GLUE_TASKS,
    methods: Sequence[str] = METHODS,
    seeds: Sequence[int] = (0, 1, 2),
    max_train: int | None = 20000,
    max_eval: int | None = None,
    budget: Budget = Budget(),
    max_seq_length: int = 256,
    data_dir: str | os.PathLike | None = None,
    output_dir: str | os.PathLike = DEFAULT_GLUE_DIR,
    cache_dir: str | os.PathLike | None = None,
    glot_config: dict[str, Any] | None = None,
    resume: bool = False,
    untrained_baseline: bool = True,
    backbone: Any = None,
    show_progress_bar: bool = False,
    log: Log = log_to_stderr,
) -> dict[str, Any]:
    """GLUE-lite on a frozen MiniLM: every method on every task and seed, one shared budget.

    Args:
        tasks: subset of ``GLUE_TASKS``.
        methods: subset of ``METHODS``.
        seeds: training seeds (the capped training rows are the same for all seeds).
        max_train: cap on training rows per task (a fixed random subset, seed ``SUBSET_SEED``); ``None``: all.
        max_eval: cap on eval rows (``None``: the whole dev / test split; only for quick runs).
        budget: the shared training budget.
        max_seq_length: backbone token limit.
        data_dir: another copy of the data laid out like the repository's ``data/`` (``None``: the clone's copy or ``$GLOT_ST_DATA_DIR``).
        output_dir: where ``glue.json`` and ``glue.md`` go.
        cache_dir: keep token-state caches here; ``None``: a temporary folder per task.
        glot_config: GLOT arguments (``None``: the library defaults).
        resume: reuse finished runs of an earlier call with the same protocol.
        untrained_baseline: also score the backbone's own mean pooling on STS-B (no training).
        backbone: a ready backbone from :func:`load_backbone` (``None``: load it).
        show_progress_bar: tqdm bars of caching and training.
        log: progress messages.

    Returns:
        The results dict that ``glue.json`` holds.
    """
    started = time.perf_counter()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    unknown = [t for t in tasks if t not in GLUE_TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {', '.join(GLUE_TASKS)}")
    tasks = list(tasks)
    setup = start_run(
        methods, seeds, output_dir, backbone, max_seq_length, budget=budget, glot_config=glot_config,
        cache_dir=cache_dir, show_progress_bar=show_progress_bar, log=log,
    )
    split_sizes: dict[str, Any] = {}
    untrained: dict[str, float] = {}
    book = RunBook.open(
        setup.output_dir / "glue.json", _glue_protocol(setup, tasks, max_train, max_eval, data_dir),
        ("task", "seed", "method"),
        lambda book: _glue_results(book.protocol, book.runs, split_sizes, untrained, started, load_start),
        resume=resume, log=log,
    )
    untrained.update(book.previous.get("untrained", {}).get(UNTRAINED_ROW, {}))
    if untrained_baseline and "stsb" in tasks and "stsb" not in untrained:
        untrained["stsb"] = untrained_stsb(setup.backbone, data_dir, limit=max_eval)
        log(f"glue stsb untrained MiniLM mean pooling: spearman {untrained['stsb']:.4f}")
    for task in tasks:
        spec = TASKS[task]
        train_full = load_split(task, "train", data_dir=data_dir)
        train = _cap_rows(train_full, max_train)
        evaluation = load_split(task, spec.eval_split, data_dir=data_dir, limit=max_eval)
        split_sizes[task] = {"train_rows": len(train_full), "train_used": len(train), "eval_rows": len(evaluation)}
        jobs = book.pending([{"task": task, "seed": s, "method": m} for s in setup.seeds for m in setup.methods])
        if jobs:
            run_jobs(
                setup, book, jobs, train, evaluation, task=spec,
                record=lambda outcome, metric=spec.metric: _glue_record(outcome, metric),
                describe=_describe_glue_run, cache_prefix=f"glot_glue_{task}_",
            )
    results = book.write()
    (setup.output_dir / "glue.md").write_text(glue_markdown(results), encoding="utf-8")
    return results


def _glue_protocol(
    setup: RunSetup, tasks: list[str], max_train: int | None, max_eval: int | None, data_dir: Any
) -> dict[str, Any]:
    return {
        "experiment": "glue",
        "tasks": tasks,
        "methods": setup.methods,
        "seeds": setup.seeds,
        "max_train": max_train,
        "max_eval": max_eval,
        "subset_seed": SUBSET_SEED,
        "budget": dataclasses.asdict(setup.budget),
        "optimizer": "AdamW",
        "heads": {t: TASKS[t].kind for t in tasks},
        "metrics": {t: TASKS[t].metric for t in tasks},
        "eval_splits": {t: TASKS[t].eval_split for t in tasks},
        "max_seq_length": int(setup.backbone[0].max_seq_length),
        "backbone": backbone_record(setup.backbone),
        "data_dir": None if data_dir is None else str(data_dir),
        "glot_config": setup.glot_effective,
        "reported": {
            "ours": "eval metric at the epoch chosen on a validation slice of the training rows",
            "paper": "best eval metric over the epochs run (selects on the reported split)",
        },
    }


def _glue_record(outcome: dict[str, Any], metric: str) -> dict[str, Any]:
    return {"metric_name": metric, "value": outcome.pop("metric"), "paper_value": outcome.pop("paper_metric"), **outcome}


def _describe_glue_run(run: dict[str, Any]) -> str:
    return (
        f"glue {run['task']} seed={run['seed']} {METHOD_LABELS[run['method']]:>7}: {run['metric_name']} "
        f"{run['value']:.4f} (train {run['train_seconds']:.0f}s, cache {run['cache_seconds']:.0f}s)"
    )


def glot_method(methods: Sequence[str]) -> str | None:
    """The GLOT method of a run: ``glot``, else the first GLOT variant of ``EXTRA_METHODS`` in it, else None."""
    for name in ("glot", *EXTRA_METHODS):
        if name in methods:
            return name
    return None


def _glue_summary(protocol: dict[str, Any], runs: list[dict[str, Any]], field: str) -> dict[str, Any]:
    """Per method and task: the summary of ``field``; per task: the best method(s); GLOT's standing (``glot``,
    or the GLOT variant of ``EXTRA_METHODS`` a run used instead), against the other methods of the run."""
    glot = glot_method(protocol["methods"])
    summary: dict[str, dict[str, Any]] = {}
    for method in protocol["methods"]:
        summary[method] = {}
        for task in protocol["tasks"]:
            values = [r[field] for r in runs if r["method"] == method and r["task"] == task]
            if values:
                summary[method][task] = summarize(values)
    best: dict[str, list[str]] = {}
    gaps: dict[str, dict[str, float]] = {}
    for task in protocol["tasks"]:
        scored = {m: summary[m][task] for m in protocol["methods"] if task in summary[m]}
        if not scored:
            continue
        top = max(v["mean"] for v in scored.values())
        best[task] = [m for m, v in scored.items() if v["mean"] == top]
        baselines = {m: v for m, v in scored.items() if m != glot and m not in EXTRA_METHODS}
        if glot in scored and baselines:
            rival = max(baselines, key=lambda m: baselines[m]["mean"])
            # "below the best baseline by more than one standard deviation": the larger of the two std's
            spread = max(scored[glot]["std"], baselines[rival]["std"])
            gaps[task] = {
                "best_baseline": rival,
                "gap": baselines[rival]["mean"] - scored[glot]["mean"],
                "std": spread,
                "within_one_std": baselines[rival]["mean"] - scored[glot]["mean"] <= spread,
            }
    glot_wins = sorted(t for t, ms in best.items() if glot in ms and t in gaps)  # wins over a baseline
    targets = {
        "glot_method": glot,
        "glot_best_on": glot_wins,
        "glot_best_count": len(glot_wins),
        "needed": 4,
        "gaps": gaps,
        "never_below_by_more_than_one_std": bool(gaps) and all(g["within_one_std"] for g in gaps.values()),
    }
    return {"summary": summary, "best_method": best, "targets": targets}


def _glue_results(protocol, runs, split_sizes, untrained, started, load_start) -> dict[str, Any]:
    ours = _glue_summary(protocol, runs, "value")
    paper = _glue_summary(protocol, runs, "paper_value")
    return {
        "protocol": protocol,
        **ours,
        "paper": paper,
        "untrained": {UNTRAINED_ROW: untrained},
        "split_sizes": split_sizes,
        "runs": runs,
        "environment": environment(started, load_start),
    }


def _glue_table(results: dict[str, Any], scored: dict[str, Any], names: dict[str, str]) -> list[str]:
    protocol = results["protocol"]
    tasks = protocol["tasks"]
    header = [f"{names[t]} ({METRIC_LABELS[protocol['metrics'][t]]})" for t in tasks]
    lines = ["| method | " + " | ".join(header) + " |", "| --- | " + " | ".join("---:" for _ in tasks) + " |"]
    untrained = results["untrained"][UNTRAINED_ROW]
    if untrained:
        cells = [f"{untrained[t] * 100:.1f}" if t in untrained else "–" for t in tasks]
        lines.append("| MiniLM mean pooling, untrained (cosine) | " + " | ".join(cells) + " |")
    for method in protocol["methods"]:
        cells = []
        for task in tasks:
            cell = table_cell(scored["summary"][method].get(task))
            if method in scored["best_method"].get(task, []):
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {METHOD_LABELS[method]} | " + " | ".join(cells) + " |")
    targets = scored["targets"]
    wins = targets["glot_best_on"]
    label = METHOD_LABELS.get(targets["glot_method"], "GLOT")
    if not targets["gaps"]:  # no baseline in this run: nothing to rank GLOT against
        return lines + ["", f"{label} only: no baseline in this run to compare with (see the main table)."]
    lines += [
        "",
        f"{label} best on {targets['glot_best_count']} of {len(tasks)} tasks"
        + (f" ({', '.join(names[t] for t in wins)})" if wins else "")
        + "; below the best baseline by more than one std on: "
        + (", ".join(names[t] for t, g in targets["gaps"].items() if not g["within_one_std"]) or "no task")
        + ".",
    ]
    return lines


def glue_markdown(results: dict[str, Any]) -> str:
    """Paper-style markdown tables (rows = methods, columns = tasks, metric × 100, mean ± std, best in bold):
    our protocol, then the paper's."""
    protocol = results["protocol"]
    tasks = protocol["tasks"]
    names = {"cola": "CoLA", "sst2": "SST-2", "stsb": "STS-B", "mrpc": "MRPC", "rte": "RTE"}
    budget = protocol["budget"]
    sizes = results["split_sizes"]
    used = ", ".join(
        f"{names[t]} {sizes[t]['train_used']}/{sizes[t]['train_rows']}" for t in tasks if t in sizes
    )
    lines = [
        f"**Ours**: the epoch chosen on a {budget['validation_fraction']:.0%} validation slice of the training "
        "rows (stratified, fixed seed); the dev split (STS-B: test) scored once.",
        "",
        *_glue_table(results, results, names),
        "",
        "**Paper's protocol**: the best dev-split epoch of the same runs, as the authors' code reports (it "
        "selects on the split it reports).",
        "",
        *_glue_table(results, results["paper"], names),
        "",
        f"Metric × 100, mean ± sample std over {len(protocol['seeds'])} seed(s) "
        f"({', '.join(map(str, protocol['seeds']))}). Frozen MiniLM (max_seq_length {protocol['max_seq_length']}); "
        "heads: linear on z (CoLA, SST-2), linear on [z1; z2; |z1 - z2|; z1 * z2] (MRPC, RTE), cosine of a learned "
        "linear projection of z1, z2 trained with MSE (STS-B). Every method: at most "
        f"{budget['epochs']} epochs, patience {budget['patience']}, AdamW lr {budget['lr']:g}, batch "
        f"{budget['batch_size']}, weight decay {budget['weight_decay']:g}{recipe_words(budget)}; GLOT with the library defaults"
        + (" (GLOT (mean init): after GLOT.init_as_mean_pooling())" if "glot_mean_init" in protocol["methods"] else "")
        + ". "
        f"Training rows used / available (fixed random subset, seed {protocol['subset_seed']}, same for all "
        f"methods and seeds; the validation slice comes out of these): {used}. Best mean per task in bold.",
        "",
    ]
    return "\n".join(lines)
