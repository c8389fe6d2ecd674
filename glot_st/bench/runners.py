"""The paper's evidence on real data: the signal-dilution stress test and GLUE-lite, on a frozen MiniLM.

Both runners compare the same poolers (``METHODS``: CLS, mean, max, AdaPool, GLOT) under one training
budget (:class:`Budget`: the recipe of :func:`glot_st.train.train_cached`) with cached training
(:func:`glot_st.train.train_cached`): the frozen backbone runs once per dataset and every method trains
its pooler (if it has weights) and a task head from the same token-state cache.

* :func:`run_stress`: ``make_stress_task(rho, n_train, n_eval, seed)`` for every (rho, seed); a linear
  head on the pooled embedding; eval accuracy. Writes ``stress.json``, ``stress.md`` and
  ``stress_accuracy_vs_rho.png``.
* :func:`run_glue`: CoLA (MCC), SST-2 (accuracy), STS-B (Spearman), MRPC (F1), RTE (accuracy) on their
  dev splits (STS-B: test); heads from :mod:`glot_st.train.heads` by task kind (linear; linear on
  ``[z1; z2; |z1 - z2|; z1 * z2]``; cosine of a projected pair for STS-B). Training rows are capped at ``max_train`` by a fixed random
  subset, the same for every method and seed. Also scores the backbone's own untrained pooling on STS-B.
  Writes ``glue.json`` and ``glue.md``.

Two protocols are reported from the same runs: ours, the eval split at the epoch chosen on a validation slice
of the training rows (never on the eval split), and the paper's, the best eval-split epoch. GLOT is built with
the library defaults (``GLOT(in_dim)``), unless the caller passes ``glot_config``.

Public API::

    METHODS, Budget, make_method_pooler(name, in_dim, glot_config=None), train_method(...),
    run_stress(...), run_glue(...), stress_markdown(results), glue_markdown(results), plot_stress(results, path)

The ``glot-st stress`` / ``glot-st glue`` commands (:mod:`glot_st.cli`) call the runners.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glot_st.baselines import make_pooler
from glot_st.bench.paths import results_dir
from glot_st.bench.stress import PAPER_RHOS, STRESS_TASK, make_stress_task
from glot_st.module import ADDED_CONFIG_KEYS, GLOT
from glot_st.train.cache import backbone_identity
from glot_st.train.data import TASKS, TextSplit, load_split
from glot_st.train.guards import check_training_arguments
from glot_st.train.loop import recipe_defaults, seed_everything, train_cached
from glot_st.train.metrics import spearman

__all__ = [
    "DEFAULT_GLUE_DIR",
    "DEFAULT_STRESS_DIR",
    "GLUE_TASKS",
    "METHODS",
    "METHOD_LABELS",
    "STRESS_TARGET",
    "Budget",
    "glue_markdown",
    "backbone_record",
    "load_backbone",
    "make_method_pooler",
    "plot_stress",
    "run_glue",
    "run_stress",
    "stress_markdown",
    "summarize",
    "train_method",
    "untrained_stsb",
]

METHODS: tuple[str, ...] = ("cls", "mean", "max", "adapool", "glot")
# methods a run may ask for beyond the default comparison: GLOT started from mean pooling (init_as_mean_pooling)
EXTRA_METHODS: tuple[str, ...] = ("glot_mean_init",)
METHOD_LABELS: dict[str, str] = {
    "cls": "CLS", "mean": "Mean", "max": "Max", "adapool": "AdaPool", "glot": "GLOT", "glot_mean_init": "GLOT (mean init)",
}
GLUE_TASKS: tuple[str, ...] = ("cola", "sst2", "stsb", "mrpc", "rte")
METRIC_LABELS: dict[str, str] = {"mcc": "MCC", "accuracy": "Acc", "spearman": "Spearman", "f1": "F1"}
#: the paper's stress-test claim: GLOT keeps >= 97% accuracy at every rho
STRESS_TARGET = 0.97
#: the rows of a capped training set are drawn with this seed (independent of the training seeds)
SUBSET_SEED = 12345
DEFAULT_STRESS_DIR = results_dir("stress")
DEFAULT_GLUE_DIR = results_dir("glue")
UNTRAINED_ROW = "minilm_mean_untrained"

Log = Callable[[str], None]


def _print(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


_TRAIN_DEFAULTS = recipe_defaults()


@dataclasses.dataclass(frozen=True)
class Budget:
    """One training budget shared by every method of a comparison; defaults are :func:`train_cached`'s.

    Attributes:
        epochs: the most passes over the training rows.
        patience: stop after this many epochs without a better validation score.
        lr: AdamW learning rate (pooler and head).
        batch_size: examples per step.
        weight_decay: AdamW weight decay.
        validation_fraction: share of the training rows carved out (stratified, fixed seed) to select the
            epoch on; the dev / test split is never used to select.
        ema_decay: average the pooler and head weights (``None``: no averaging); see ``train_cached``.
        lr_schedule: ``"constant"``, ``"cosine"`` or ``"linear"`` decay of the rate over the planned steps.
        warmup_fraction: share of the planned steps with a linear warm-up.
        search: ``None``, or a grid (``True``: the default grid) that every method searches over its own
            runs, the same number of trials each, chosen on its validation slice.
    """

    epochs: int = _TRAIN_DEFAULTS["epochs"]
    patience: int = _TRAIN_DEFAULTS["patience"]
    lr: float = _TRAIN_DEFAULTS["lr"]
    batch_size: int = _TRAIN_DEFAULTS["batch_size"]
    weight_decay: float = _TRAIN_DEFAULTS["weight_decay"]
    validation_fraction: float = _TRAIN_DEFAULTS["validation_fraction"]
    ema_decay: float | None = _TRAIN_DEFAULTS["ema_decay"]
    lr_schedule: str = _TRAIN_DEFAULTS["lr_schedule"]
    warmup_fraction: float = _TRAIN_DEFAULTS["warmup_fraction"]
    search: Any = _TRAIN_DEFAULTS["search"]

    def __post_init__(self) -> None:
        check_training_arguments(**dataclasses.asdict(self))
        if not self.validation_fraction > 0:  # the bench reports the validation-chosen epoch: it needs a slice
            raise ValueError(f"a budget needs validation_fraction > 0, got {self.validation_fraction}")


# --------------------------------------------------------------------------------------------- pieces


def load_backbone(max_seq_length: int = 256, device: str | None = "cpu") -> Any:
    """The offline all-MiniLM-L6-v2 ``SentenceTransformer`` (Transformer + mean Pooling + Normalize).

    Only its first module (the Transformer) is used for the token-state caches; the whole model gives the
    untrained mean-pooling baseline.

    Args:
        max_seq_length: token limit of the Transformer (256 = MiniLM's maximum; holds a 128-word text).
        device: where the backbone runs.
    """
    from sentence_transformers import SentenceTransformer

    from glot_st.resources import minilm_path

    model = SentenceTransformer(minilm_path(), device=device)
    model[0].max_seq_length = int(max_seq_length)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def backbone_record(backbone: Any) -> dict[str, str]:
    """What the protocol records about the frozen backbone: its name or path and its identity digests.

    A resumed run reuses earlier runs only when this record is equal, so runs of another backbone (or of the
    same name with other weights, tokenizer or settings) are never mixed in.
    """
    name = getattr(backbone[0].auto_model.config, "_name_or_path", "") or "unnamed"
    return {"name": str(name), **backbone_identity(backbone)}


def _token_width(backbone: Any) -> int:
    first = backbone[0]
    if hasattr(first, "get_embedding_dimension"):
        return int(first.get_embedding_dimension())
    return int(first.get_word_embedding_dimension())


def make_method_pooler(name: str, in_dim: int, glot_config: dict[str, Any] | None = None) -> torch.nn.Module:
    """A fresh pooler with the ``pool(token_states, mask)`` interface.

    Args:
        name: one of ``METHODS`` (``cls``, ``mean``, ``max``, ``adapool``, ``glot``) or ``EXTRA_METHODS``
            (``glot_mean_init``: GLOT after :meth:`~glot_st.GLOT.init_as_mean_pooling`).
        in_dim: token width of the backbone.
        glot_config: GLOT arguments other than ``in_dim`` (``None``: the library defaults).
    """
    if name == "glot":
        return GLOT(in_dim=in_dim, **(glot_config or {}))
    if name == "glot_mean_init":
        return GLOT(in_dim=in_dim, **(glot_config or {})).init_as_mean_pooling()
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    return make_pooler(name, in_dim)


def train_method(
    backbone: Any,
    method: str,
    train: TextSplit,
    evaluation: TextSplit,
    *,
    task: Any,
    budget: Budget,
    seed: int,
    cache_dir: str | os.PathLike,
    glot_config: dict[str, Any] | None = None,
    show_progress_bar: bool = False,
) -> dict[str, Any]:
    """Train one method (pooler + task head) from the token-state cache and score it on ``evaluation``.

    Args:
        backbone: the frozen ``SentenceTransformer`` whose first module makes the token states.
        method: one of ``METHODS``.
        train, evaluation: the splits. A stratified slice of ``train`` (``budget.validation_fraction``) selects
            the epoch; ``evaluation`` is scored after every epoch for the history only.
        task: the ``TaskSpec`` (kind, number of labels, metric).
        budget: the shared training budget.
        seed: seeds the pooler's and head's initialisation, dropout and the batch order.
        cache_dir: token-state cache root shared by all methods (built by the first, reused by the rest).
        glot_config: GLOT arguments (``None``: the defaults).
        show_progress_bar: tqdm bars of the training loop.

    Returns:
        ``metric``: the eval split at the epoch chosen on the validation slice (our protocol);
        ``paper_metric``: the best eval-split epoch among those run (the paper's protocol, which selects on
        the split it reports); ``last_metric``, ``validation_metric``, ``best_epoch``, ``epochs_run``,
        ``history`` (one dict per epoch), ``train_seconds``, ``eval_seconds``, ``cache_seconds``,
        ``trainable_parameters``.
    """
    seed_everything(seed)
    pooler = make_method_pooler(method, _token_width(backbone), glot_config)
    result = train_cached(
        backbone,
        train,
        evaluation,
        pooler=pooler,
        task=task,
        validation_fraction=budget.validation_fraction,
        epochs=budget.epochs,
        patience=budget.patience,
        batch_size=budget.batch_size,
        lr=budget.lr,
        weight_decay=budget.weight_decay,
        ema_decay=budget.ema_decay,
        lr_schedule=budget.lr_schedule,
        warmup_fraction=budget.warmup_fraction,
        search=budget.search,
        seed=seed,
        cache_dir=cache_dir,
        show_progress_bar=show_progress_bar,
    )
    history = [dict(h) for h in result.history]
    return {
        "metric": float(result.eval_metric),
        "paper_metric": float(max(h["eval_metric"] for h in history)),
        "last_metric": float(history[-1]["eval_metric"]),
        "validation_metric": float(result.validation_metric),
        "best_epoch": int(result.best_epoch),
        "epochs_run": len(history),
        "history": history,
        "train_seconds": float(sum(h["seconds"] for h in history)),
        "eval_seconds": float(sum(h["eval_seconds"] for h in history)),
        "cache_seconds": float(result.cache_seconds),
        "trainable_parameters": int(result.trainable_parameters),
        "search": result.search,
    }


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (``ddof=1``; 0 for one value), min, max and count of ``values``."""
    array = np.asarray(list(values), dtype=np.float64)
    if array.size == 0:
        raise ValueError("no values to summarize")
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return {"mean": float(array.mean()), "std": std, "min": float(array.min()), "max": float(array.max()), "n": int(array.size)}


def _environment(started: float, load_start: tuple[float, float, float] | None) -> dict[str, Any]:
    import sentence_transformers

    load_end = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_start": list(load_start) if load_start else None,
        "load_average_end": list(load_end) if load_end else None,
        "wall_seconds": time.perf_counter() - started,
    }


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _cell(summary: dict[str, Any] | None, scale: float = 100.0, digits: int = 1) -> str:
    if summary is None:
        return "–"
    if summary["n"] == 1:
        return f"{summary['mean'] * scale:.{digits}f}"
    return f"{summary['mean'] * scale:.{digits}f} ± {summary['std'] * scale:.{digits}f}"


def _recipe_words(budget: dict[str, Any]) -> str:
    """The recipe options of a protocol's budget beyond AdamW at a constant rate, as a clause (``""`` if none);
    budgets written before these options existed read as the plain recipe."""
    words = []
    if budget.get("lr_schedule", "constant") != "constant" or budget.get("warmup_fraction", 0.0):
        words.append(f"{budget.get('lr_schedule', 'constant')} rate with {budget.get('warmup_fraction', 0.0):.0%} warm-up")
    if budget.get("ema_decay") is not None:
        words.append(f"scored and kept with averaged weights (EMA decay {budget['ema_decay']:g})")
    if budget.get("search") is not None:
        grid = budget["search"] if isinstance(budget["search"], dict) else "the default grid"
        words.append(f"the best of a validation-selected search over {grid}")
    return "".join(f", {w}" for w in words)


def _token_stats(backbone: Any, texts: Sequence[str]) -> dict[str, int]:
    """Tokens per text before truncation (special tokens included) and how many exceed max_seq_length."""
    limit = int(backbone[0].max_seq_length)
    lengths = [len(ids) for ids in backbone.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    return {"max_tokens": int(max(lengths)), "max_seq_length": limit, "truncated": int(sum(n > limit for n in lengths))}


def _run_key(run: dict[str, Any], fields: Sequence[str]) -> tuple:
    return tuple(run[f] for f in fields)


def _comparable(protocol: Any) -> Any:
    """A protocol without what does not change results: the backbone's path (its identity digests stay) and GLOT
    config keys added after a run was written, at the value that reproduces the older computation."""
    if not isinstance(protocol, dict):
        return protocol
    protocol = json.loads(json.dumps(protocol))
    if isinstance(protocol.get("backbone"), dict):
        protocol["backbone"].pop("name", None)
    if isinstance(protocol.get("glot_config"), dict):
        for key, value in ADDED_CONFIG_KEYS.items():
            protocol["glot_config"].setdefault(key, value)
    return protocol


def _start_run(
    methods: Sequence[str],
    seeds: Sequence[int],
    output_dir: str | os.PathLike,
    backbone: Any,
    max_seq_length: int,
    glot_config: dict[str, Any] | None,
) -> tuple[list[str], list[int], Path, Any, dict[str, Any]]:
    """What both runners set up first: checked methods, int seeds, the output folder (created), the backbone
    (loaded unless given) and GLOT's effective config for the protocol."""
    methods = _check_methods(methods)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone(max_seq_length) if backbone is None else backbone
    glot_effective = make_method_pooler("glot", _token_width(backbone), glot_config).get_config_dict()
    return methods, [int(s) for s in seeds], output_dir, backbone, glot_effective


def _load_resumable(path: Path, protocol: dict[str, Any], log: Log) -> dict[str, Any]:
    """The results of an earlier call with the same protocol (``{}`` if there is none)."""
    if not path.is_file():
        return {}
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {}
    if _comparable(previous.get("protocol")) != _comparable(protocol):
        log(f"resume: {path} was written under another protocol; starting afresh")
        return {}
    log(f"resume: reusing {len(previous.get('runs', []))} finished runs from {path}")
    return previous


# --------------------------------------------------------------------------------------------- stress


def run_stress(
    *,
    methods: Sequence[str] = METHODS,
    rhos: Sequence[float] = PAPER_RHOS,
    seeds: Sequence[int] = (0, 1, 2),
    n_train: int = 2000,
    n_eval: int = 500,
    length: int = 128,
    budget: Budget = Budget(),
    max_seq_length: int = 256,
    output_dir: str | os.PathLike = DEFAULT_STRESS_DIR,
    cache_dir: str | os.PathLike | None = None,
    glot_config: dict[str, Any] | None = None,
    resume: bool = False,
    plot: bool = True,
    backbone: Any = None,
    show_progress_bar: bool = False,
    log: Log = _print,
) -> dict[str, Any]:
    """The signal-dilution stress test: every method at every rho and seed, one shared budget.

    For each (rho, seed) the dataset is ``make_stress_task(rho, n_train, n_eval, seed, length)``; the frozen
    backbone runs once over it (token-state cache) and every method trains a linear head (and its own
    weights, for AdaPool and GLOT) from that cache.

    Args:
        methods: subset of ``METHODS``.
        rhos: distractor fractions.
        seeds: dataset and training seeds.
        n_train, n_eval: rows per split (even).
        length: words per text.
        budget: the shared training budget.
        max_seq_length: backbone token limit (a 128-word text is ~130-140 MiniLM tokens).
        output_dir: where ``stress.json``, ``stress.md`` and ``stress_accuracy_vs_rho.png`` go.
        cache_dir: keep the token-state caches here (reused by later runs); ``None``: a temporary folder per
            dataset, deleted once every method trained on it.
        glot_config: GLOT arguments (``None``: the library defaults).
        resume: reuse finished runs of an earlier, interrupted call with the same protocol.
        plot: write the PNG (needs matplotlib).
        backbone: a ready backbone from :func:`load_backbone` (``None``: load it).
        show_progress_bar: tqdm bars of caching and training.
        log: progress messages.

    Returns:
        The results dict that ``stress.json`` holds (``protocol``, ``runs``, ``summary``, ``targets``,
        ``token_stats``, ``environment``).
    """
    started = time.perf_counter()
    load_start = os.getloadavg() if hasattr(os, "getloadavg") else None
    rhos = [float(r) for r in rhos]
    methods, seeds, output_dir, backbone, glot_effective = _start_run(
        methods, seeds, output_dir, backbone, max_seq_length, glot_config
    )
    protocol = {
        "experiment": "stress",
        "methods": methods,
        "rhos": rhos,
        "seeds": seeds,
        "n_train": int(n_train),
        "n_eval": int(n_eval),
        "length": int(length),
        "budget": dataclasses.asdict(budget),
        "optimizer": "AdamW",
        "head": "linear (single sentence)",
        "max_seq_length": int(backbone[0].max_seq_length),
        "backbone": backbone_record(backbone),
        "glot_config": glot_effective,
        "reported": {
            "ours": "eval accuracy at the epoch chosen on a validation slice of the training rows",
            "paper": "best eval accuracy over the epochs run (selects on the reported split)",
        },
    }
    json_path = output_dir / "stress.json"
    previous = _load_resumable(json_path, protocol, log) if resume else {}
    runs = list(previous.get("runs", []))
    done = {_run_key(r, ("rho", "seed", "method")) for r in runs}
    token_stats: dict[str, Any] = dict(previous.get("token_stats", {}))
    results: dict[str, Any] = {}

    for rho in rhos:
        for seed in seeds:
            todo = [m for m in methods if (rho, seed, m) not in done]
            if not todo:
                continue
            train, evaluation = make_stress_task(rho, n_train=n_train, n_eval=n_eval, seed=seed, length=length)
            token_stats[f"{rho:g}/{seed}"] = _token_stats(backbone, train.texts_a + evaluation.texts_a)
            tmp = tempfile.TemporaryDirectory(prefix="glot_stress_") if cache_dir is None else None
            root = Path(tmp.name) if tmp is not None else Path(cache_dir)
            try:
                for method in todo:
                    outcome = train_method(
                        backbone, method, train, evaluation, task=STRESS_TASK, budget=budget, seed=seed,
                        cache_dir=root, glot_config=glot_config, show_progress_bar=show_progress_bar,
                    )
                    runs.append({
                        "rho": rho, "seed": seed, "method": method, "accuracy": outcome.pop("metric"),
                        "paper_accuracy": outcome.pop("paper_metric"), **outcome,
                    })
                    log(
                        f"stress rho={rho:g} seed={seed} {METHOD_LABELS[method]:>7}: acc {runs[-1]['accuracy']:.4f} "
                        f"(train {outcome['train_seconds']:.0f}s, cache {outcome['cache_seconds']:.0f}s)"
                    )
                    results = _stress_results(protocol, runs, token_stats, started, load_start)
                    _write_json(json_path, results)
            finally:
                if tmp is not None:
                    tmp.cleanup()

    results = _stress_results(protocol, runs, token_stats, started, load_start)
    _write_json(json_path, results)
    (output_dir / "stress.md").write_text(stress_markdown(results), encoding="utf-8")
    if plot:
        plot_stress(results, output_dir / "stress_accuracy_vs_rho.png")
    return results


PROTOCOLS = {"ours": "validation-slice selection", "paper": "best dev epoch (paper's protocol)"}


def _stress_summary(protocol: dict[str, Any], runs: list[dict[str, Any]], field: str) -> dict[str, Any]:
    summary: dict[str, dict[str, Any]] = {}
    for method in protocol["methods"]:
        per_rho = {}
        for rho in protocol["rhos"]:
            values = [r[field] for r in runs if r["method"] == method and r["rho"] == rho]
            if values:
                per_rho[f"{rho:g}"] = summarize(values)
        summary[method] = per_rho
    return summary


def _stress_results(protocol, runs, token_stats, started, load_start) -> dict[str, Any]:
    summary = _stress_summary(protocol, runs, "accuracy")
    targets = {}
    for rho in protocol["rhos"]:
        key = f"{rho:g}"
        reached = [m for m in protocol["methods"] if key in summary[m] and summary[m][key]["mean"] >= STRESS_TARGET]
        targets[key] = {"threshold": STRESS_TARGET, "methods_reaching": reached}
    glot = summary.get("glot", {})
    complete = "glot" in protocol["methods"] and all(f"{r:g}" in glot for r in protocol["rhos"])
    targets["glot_at_every_rho"] = bool(complete and all(glot[f"{r:g}"]["mean"] >= STRESS_TARGET for r in protocol["rhos"]))
    return {
        "protocol": protocol,
        "summary": summary,
        "summary_paper": _stress_summary(protocol, runs, "paper_accuracy"),
        "targets": targets,
        "runs": runs,
        "token_stats": token_stats,
        "environment": _environment(started, load_start),
    }


def stress_markdown(results: dict[str, Any]) -> str:
    """Markdown: one row per method, one column per rho, mean ± std eval accuracy in percent, for both
    protocols side by side (ours, then the paper's)."""
    protocol = results["protocol"]
    rhos = [f"{r:g}" for r in protocol["rhos"]]
    lines = [
        "| method | " + " | ".join(f"ρ = {r} (ours)" for r in rhos) + " | "
        + " | ".join(f"ρ = {r} (paper)" for r in rhos) + " |",
        "| --- | " + " | ".join("---:" for _ in rhos * 2) + " |",
    ]
    for method in protocol["methods"]:
        cells = [_cell(results["summary"][method].get(r)) for r in rhos]
        cells += [_cell(results["summary_paper"][method].get(r)) for r in rhos]
        lines.append(f"| {METHOD_LABELS[method]} | " + " | ".join(cells) + " |")
    budget = protocol["budget"]
    n_seeds = len(protocol["seeds"])
    lines += [
        "",
        f"Eval accuracy (%), mean ± sample std over {n_seeds} seed(s) ({', '.join(map(str, protocol['seeds']))}). "
        f"Ours: the epoch chosen on a {budget['validation_fraction']:.0%} validation slice of the training rows "
        f"(stratified, fixed seed), the eval split scored once. Paper: the best eval epoch of the same runs, as "
        f"the authors' code reports (it selects on the split it reports). {protocol['n_train']} train / "
        f"{protocol['n_eval']} eval texts of {protocol['length']} words; frozen MiniLM (max_seq_length "
        f"{protocol['max_seq_length']}), linear head; at most {budget['epochs']} epochs, patience "
        f"{budget['patience']}, AdamW lr {budget['lr']:g}, batch {budget['batch_size']}, weight decay "
        f"{budget['weight_decay']:g}{_recipe_words(budget)} for every method; GLOT with the library defaults.",
        "",
        f"Methods with mean accuracy ≥ {STRESS_TARGET * 100:.0f}% (ours): "
        + "; ".join(
            f"ρ = {r}: {', '.join(METHOD_LABELS[m] for m in results['targets'][r]['methods_reaching']) or 'none'}"
            for r in rhos
        )
        + ".",
        "",
    ]
    return "\n".join(lines)


def plot_stress(results: dict[str, Any], path: str | os.PathLike) -> Path:
    """PNG of mean eval accuracy (± std error bars) against rho, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    protocol, summary = results["protocol"], results["summary"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for method in protocol["methods"]:
        points = [(r, summary[method][f"{r:g}"]) for r in protocol["rhos"] if f"{r:g}" in summary[method]]
        if not points:
            continue
        xs = [p[0] for p in points]
        ys = [p[1]["mean"] * 100 for p in points]
        errs = [p[1]["std"] * 100 for p in points]
        style = {"linewidth": 2.5, "zorder": 3} if method == "glot" else {"linewidth": 1.5}
        ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=METHOD_LABELS[method], **style)
    ax.axhline(STRESS_TARGET * 100, color="grey", linestyle=":", linewidth=1, label=f"{STRESS_TARGET * 100:.0f}%")
    ax.set_xlabel("distractor ratio ρ")
    ax.set_ylabel("eval accuracy (%)")
    ax.set_title(f"Stress test, frozen MiniLM ({len(protocol['seeds'])} seed(s))")
    ax.set_xticks(protocol["rhos"])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- GLUE-lite


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
    log: Log = _print,
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
    methods, seeds, output_dir, backbone, glot_effective = _start_run(
        methods, seeds, output_dir, backbone, max_seq_length, glot_config
    )
    protocol = {
        "experiment": "glue",
        "tasks": tasks,
        "methods": methods,
        "seeds": seeds,
        "max_train": max_train,
        "max_eval": max_eval,
        "subset_seed": SUBSET_SEED,
        "budget": dataclasses.asdict(budget),
        "optimizer": "AdamW",
        "heads": {t: TASKS[t].kind for t in tasks},
        "metrics": {t: TASKS[t].metric for t in tasks},
        "eval_splits": {t: TASKS[t].eval_split for t in tasks},
        "max_seq_length": int(backbone[0].max_seq_length),
        "backbone": backbone_record(backbone),
        "data_dir": None if data_dir is None else str(data_dir),
        "glot_config": glot_effective,
        "reported": {
            "ours": "eval metric at the epoch chosen on a validation slice of the training rows",
            "paper": "best eval metric over the epochs run (selects on the reported split)",
        },
    }
    json_path = output_dir / "glue.json"
    previous = _load_resumable(json_path, protocol, log) if resume else {}
    runs = list(previous.get("runs", []))
    done = {_run_key(r, ("task", "seed", "method")) for r in runs}
    split_sizes: dict[str, Any] = {}
    untrained: dict[str, float] = dict(previous.get("untrained", {}).get(UNTRAINED_ROW, {}))

    def snapshot() -> dict[str, Any]:
        return _glue_results(protocol, runs, split_sizes, untrained, started, load_start)

    if untrained_baseline and "stsb" in tasks and "stsb" not in untrained:
        untrained["stsb"] = untrained_stsb(backbone, data_dir, limit=max_eval)
        log(f"glue stsb untrained MiniLM mean pooling: spearman {untrained['stsb']:.4f}")

    for task in tasks:
        spec = TASKS[task]
        train_full = load_split(task, "train", data_dir=data_dir)
        train = _cap_rows(train_full, max_train)
        evaluation = load_split(task, spec.eval_split, data_dir=data_dir, limit=max_eval)
        split_sizes[task] = {"train_rows": len(train_full), "train_used": len(train), "eval_rows": len(evaluation)}
        todo = [(s, m) for s in seeds for m in methods if (task, s, m) not in done]
        if not todo:
            continue
        tmp = tempfile.TemporaryDirectory(prefix=f"glot_glue_{task}_") if cache_dir is None else None
        root = Path(tmp.name) if tmp is not None else Path(cache_dir)
        try:
            for seed, method in todo:
                outcome = train_method(
                    backbone, method, train, evaluation, task=spec, budget=budget, seed=seed,
                    cache_dir=root, glot_config=glot_config, show_progress_bar=show_progress_bar,
                )
                runs.append({"task": task, "seed": seed, "method": method, "metric_name": spec.metric,
                             "value": outcome.pop("metric"), "paper_value": outcome.pop("paper_metric"), **outcome})
                log(
                    f"glue {task} seed={seed} {METHOD_LABELS[method]:>7}: {spec.metric} {runs[-1]['value']:.4f} "
                    f"(train {outcome['train_seconds']:.0f}s, cache {outcome['cache_seconds']:.0f}s)"
                )
                _write_json(json_path, snapshot())
        finally:
            if tmp is not None:
                tmp.cleanup()

    results = snapshot()
    _write_json(json_path, results)
    (output_dir / "glue.md").write_text(glue_markdown(results), encoding="utf-8")
    return results


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
        "environment": _environment(started, load_start),
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
            cell = _cell(scored["summary"][method].get(task))
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
        f"{budget['batch_size']}, weight decay {budget['weight_decay']:g}{_recipe_words(budget)}; GLOT with the library defaults"
        + (" (GLOT (mean init): after GLOT.init_as_mean_pooling())" if "glot_mean_init" in protocol["methods"] else "")
        + ". "
        f"Training rows used / available (fixed random subset, seed {protocol['subset_seed']}, same for all "
        f"methods and seeds; the validation slice comes out of these): {used}. Best mean per task in bold.",
        "",
    ]
    return "\n".join(lines)


def _check_methods(methods: Sequence[str]) -> list[str]:
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS + EXTRA_METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown or no method(s) {unknown}; choose from {', '.join(METHODS + EXTRA_METHODS)}")
    return methods
