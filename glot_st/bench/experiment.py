"""What the stress-test and GLUE-lite runners share: the methods, the training budget, one method's training
run, and the run loop (protocol, resume, per-run records, writing) with the task-specific parts passed in.

Both runners compare the same poolers (``METHODS``: CLS, mean, max, AdaPool, GLOT) under one training
budget (:class:`Budget`: the recipe of :func:`glot_st.train.train_cached`) with cached training
(:func:`glot_st.train.train_cached`): the frozen backbone runs once per dataset and every method trains
its pooler (if it has weights) and a task head from the same token-state cache.

A runner opens a :class:`RunBook` (its protocol, the runs an earlier call with the same protocol finished,
how its results are summarised) and hands each dataset's pending runs to :func:`run_jobs`, which trains them
one by one from a shared cache and rewrites the results file after every run.

Public API::

    METHODS, EXTRA_METHODS, METHOD_LABELS, Budget, load_backbone(...), backbone_record(backbone),
    make_method_pooler(name, in_dim, glot_config=None), train_method(...), summarize(values),
    RunSetup, start_run(...), RunBook, run_jobs(...)
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
from glot_st.module import ADDED_CONFIG_KEYS, AUTHORS_GLOT, GLOT
from glot_st.train.cache import backbone_identity
from glot_st.train.guards import check_training_arguments
from glot_st.train.loop import recipe_defaults, seed_everything, train_cached
from glot_st.train.splits import TextSplit

__all__ = [
    "EXTRA_METHODS",
    "GLOT_VARIANTS",
    "METHODS",
    "METHOD_LABELS",
    "Budget",
    "RunBook",
    "RunSetup",
    "backbone_record",
    "table_cell",
    "check_methods",
    "environment",
    "load_backbone",
    "log_to_stderr",
    "make_method_pooler",
    "recipe_words",
    "run_jobs",
    "start_run",
    "summarize",
    "token_stats",
    "token_width",
    "train_method",
    "write_json",
]

METHODS: tuple[str, ...] = ("cls", "mean", "max", "adapool", "glot")
# GLOT variants by name: the config keys each sets, laid over the run's glot_config (the authors' exact module;
# the library defaults without PyG's GAT edge term, as GLOT was before it became the default; the learned graph,
# measured without the edge term)
GLOT_VARIANTS: dict[str, dict[str, Any]] = {
    "glot_authors": AUTHORS_GLOT,
    "glot_no_edge_term": {"gat_edge_term": False},
    "glot_learned": {"graph": "learned", "gat_edge_term": False},
}
# methods a run may ask for beyond the default comparison: GLOT started from mean pooling (init_as_mean_pooling)
# and the GLOT_VARIANTS
EXTRA_METHODS: tuple[str, ...] = ("glot_mean_init", *GLOT_VARIANTS)
METHOD_LABELS: dict[str, str] = {
    "cls": "CLS", "mean": "Mean", "max": "Max", "adapool": "AdaPool", "glot": "GLOT", "glot_mean_init": "GLOT (mean init)",
    "glot_authors": "GLOT (authors')", "glot_no_edge_term": "GLOT (no edge term)", "glot_learned": "GLOT (learned graph, no edge term)",
}
Log = Callable[[str], None]


def log_to_stderr(message: str) -> None:
    """The runners' default ``log``: the message on stderr, flushed."""
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


def token_width(backbone: Any) -> int:
    """Token width ``d`` of the backbone's first module (its word-embedding dimension)."""
    first = backbone[0]
    if hasattr(first, "get_embedding_dimension"):
        return int(first.get_embedding_dimension())
    return int(first.get_word_embedding_dimension())


def make_method_pooler(name: str, in_dim: int, glot_config: dict[str, Any] | None = None) -> torch.nn.Module:
    """A fresh pooler with the ``pool(token_states, mask)`` interface.

    Args:
        name: one of ``METHODS`` (``cls``, ``mean``, ``max``, ``adapool``, ``glot``) or ``EXTRA_METHODS``
            (``glot_mean_init``: GLOT after :meth:`~glot_st.GLOT.init_as_mean_pooling`; a ``GLOT_VARIANTS`` name:
            GLOT with that variant's keys over ``glot_config``).
        in_dim: token width of the backbone.
        glot_config: GLOT arguments other than ``in_dim`` (``None``: the library defaults).
    """
    if name == "glot":
        return GLOT(in_dim=in_dim, **(glot_config or {}))
    if name == "glot_mean_init":
        return GLOT(in_dim=in_dim, **(glot_config or {})).init_as_mean_pooling()
    if name in GLOT_VARIANTS:
        return GLOT(in_dim=in_dim, **{**(glot_config or {}), **GLOT_VARIANTS[name]})
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
    pooler = make_method_pooler(method, token_width(backbone), glot_config)
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


def environment(started: float, load_start: tuple[float, float, float] | None) -> dict[str, Any]:
    """Versions, threads, CPUs, load averages at ``load_start`` and now, and wall seconds since ``started``
    (a ``time.perf_counter()`` value)."""
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


def write_json(path: Path, obj: dict[str, Any]) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (a temporary file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def table_cell(summary: dict[str, Any] | None, scale: float = 100.0, digits: int = 1) -> str:
    """A table cell of a :func:`summarize` dict: ``mean ± std`` times ``scale`` (the mean alone for one value,
    ``–`` for ``None``), ``digits`` decimals."""
    if summary is None:
        return "–"
    if summary["n"] == 1:
        return f"{summary['mean'] * scale:.{digits}f}"
    return f"{summary['mean'] * scale:.{digits}f} ± {summary['std'] * scale:.{digits}f}"


def recipe_words(budget: dict[str, Any]) -> str:
    """The recipe options of a protocol's budget (a ``Budget`` as a dict) beyond AdamW at a constant rate, as a
    clause (``""`` if none); budgets written before these options existed read as the plain recipe."""
    words = []
    if budget.get("lr_schedule", "constant") != "constant" or budget.get("warmup_fraction", 0.0):
        words.append(f"{budget.get('lr_schedule', 'constant')} rate with {budget.get('warmup_fraction', 0.0):.0%} warm-up")
    if budget.get("ema_decay") is not None:
        words.append(f"scored and kept with averaged weights (EMA decay {budget['ema_decay']:g})")
    if budget.get("search") is not None:
        grid = budget["search"] if isinstance(budget["search"], dict) else "the default grid"
        words.append(f"the best of a validation-selected search over {grid}")
    return "".join(f", {w}" for w in words)


def token_stats(backbone: Any, texts: Sequence[str]) -> dict[str, int]:
    """Tokens per text before truncation (special tokens included) and how many exceed max_seq_length."""
    limit = int(backbone[0].max_seq_length)
    lengths = [len(ids) for ids in backbone.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]
    return {"max_tokens": int(max(lengths)), "max_seq_length": limit, "truncated": int(sum(n > limit for n in lengths))}


# budget fields added after results were published, at the value that reproduces the older computation
ADDED_BUDGET_KEYS: dict[str, Any] = {"ema_decay": None, "lr_schedule": "constant", "warmup_fraction": 0.0, "search": None}


def _comparable(protocol: Any) -> Any:
    """A protocol without what does not change results: the backbone's path (its identity digests stay), and GLOT
    config keys and budget fields added after a run was written, at the value that reproduces the older
    computation."""
    if not isinstance(protocol, dict):
        return protocol
    protocol = json.loads(json.dumps(protocol))
    if isinstance(protocol.get("backbone"), dict):
        protocol["backbone"].pop("name", None)
    if isinstance(protocol.get("glot_config"), dict):
        for key, value in ADDED_CONFIG_KEYS.items():
            protocol["glot_config"].setdefault(key, value)
    if isinstance(protocol.get("budget"), dict):
        for key, value in ADDED_BUDGET_KEYS.items():
            protocol["budget"].setdefault(key, value)
    return protocol


@dataclasses.dataclass(frozen=True)
class RunSetup:
    """What every run of one runner call shares.

    Attributes:
        methods: the checked methods (``METHODS`` / ``EXTRA_METHODS`` names).
        seeds: the seeds as ints.
        output_dir: the results folder (created).
        backbone: the frozen ``SentenceTransformer`` (loaded unless the caller gave one).
        glot_effective: GLOT's effective config (``get_config_dict()``), for the protocol.
        budget: the shared training budget.
        glot_config: GLOT arguments as given (``None``: the defaults).
        cache_dir: token-state cache root, or ``None`` (a temporary folder per dataset).
        show_progress_bar: tqdm bars of caching and training.
        log: progress messages.
    """

    methods: list[str]
    seeds: list[int]
    output_dir: Path
    backbone: Any
    glot_effective: dict[str, Any]
    budget: Budget
    glot_config: dict[str, Any] | None
    cache_dir: str | os.PathLike | None
    show_progress_bar: bool
    log: Log


def start_run(
    methods: Sequence[str],
    seeds: Sequence[int],
    output_dir: str | os.PathLike,
    backbone: Any,
    max_seq_length: int,
    *,
    budget: Budget,
    glot_config: dict[str, Any] | None,
    cache_dir: str | os.PathLike | None,
    show_progress_bar: bool,
    log: Log,
) -> RunSetup:
    """What both runners set up first: checked methods, int seeds, the output folder (created), the backbone
    (loaded with ``max_seq_length`` unless given) and GLOT's effective config for the protocol; the other
    arguments are kept as they are (see :class:`RunSetup`)."""
    methods = check_methods(methods)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    backbone = load_backbone(max_seq_length) if backbone is None else backbone
    glot_effective = make_method_pooler("glot", token_width(backbone), glot_config).get_config_dict()
    return RunSetup(
        methods, [int(s) for s in seeds], output_dir, backbone, glot_effective, budget, glot_config, cache_dir,
        show_progress_bar, log,
    )


@dataclasses.dataclass
class RunBook:
    """The runs of one experiment and its results file: the protocol, resume, per-run records, writing.

    Attributes:
        path: the results JSON.
        protocol: what the runs were made under (a resumed call reuses runs only under an equal protocol).
        key_fields: the fields naming one run (e.g. ``("rho", "seed", "method")``).
        results: turns the book into the results dict the file holds (the runner's summaries).
        previous: the results of the earlier call resumed (``{}`` if none).
        runs: one dict per finished run, the resumed ones first.
    """

    path: Path
    protocol: dict[str, Any]
    key_fields: tuple[str, ...]
    results: Callable[[RunBook], dict[str, Any]]
    previous: dict[str, Any]
    runs: list[dict[str, Any]]

    @classmethod
    def open(
        cls,
        path: Path,
        protocol: dict[str, Any],
        key_fields: tuple[str, ...],
        results: Callable[[RunBook], dict[str, Any]],
        *,
        resume: bool,
        log: Log,
    ) -> RunBook:
        """A book for ``path``, holding the finished runs of an earlier call with the same protocol when
        ``resume`` (else none); the arguments are the attributes of the same name."""
        previous = _load_resumable(path, protocol, log) if resume else {}
        return cls(path, protocol, tuple(key_fields), results, previous, list(previous.get("runs", [])))

    def pending(self, jobs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The jobs (dicts holding every key field) without a finished run."""
        done = {tuple(run[f] for f in self.key_fields) for run in self.runs}
        return [job for job in jobs if tuple(job[f] for f in self.key_fields) not in done]

    def write(self) -> dict[str, Any]:
        """Write the results file (atomically) and return its dict."""
        results = self.results(self)
        write_json(self.path, results)
        return results


def run_jobs(
    setup: RunSetup,
    book: RunBook,
    jobs: Sequence[dict[str, Any]],
    train: Any,
    evaluation: Any,
    *,
    task: Any,
    record: Callable[[dict[str, Any]], dict[str, Any]],
    describe: Callable[[dict[str, Any]], str],
    cache_prefix: str,
) -> None:
    """Train every job (a dict with ``seed``, ``method`` and the runner's other key fields) on one dataset,
    from one token-state cache, and add its run to the book, rewriting the results file after each.

    Args:
        setup: the runner call's shared settings.
        book: where the runs go.
        jobs: the runs to make (already filtered by :meth:`RunBook.pending`).
        train, evaluation: the dataset's splits (``TextSplit``).
        task: its ``TaskSpec``.
        record: the runner's fields of a run from :func:`train_method`'s outcome (the job's fields come first).
        describe: the log line of a finished run.
        cache_prefix: prefix of the temporary cache folder (when ``setup.cache_dir`` is ``None``).
    """
    tmp = tempfile.TemporaryDirectory(prefix=cache_prefix) if setup.cache_dir is None else None
    root = Path(tmp.name) if tmp is not None else Path(setup.cache_dir)
    try:
        for job in jobs:
            outcome = train_method(
                setup.backbone, job["method"], train, evaluation, task=task, budget=setup.budget, seed=job["seed"],
                cache_dir=root, glot_config=setup.glot_config, show_progress_bar=setup.show_progress_bar,
            )
            book.runs.append({**job, **record(outcome)})
            setup.log(describe(book.runs[-1]))
            book.write()
    finally:
        if tmp is not None:
            tmp.cleanup()


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


def check_methods(methods: Sequence[str]) -> list[str]:
    """``methods`` as a list; ``ValueError`` naming unknown ones (or none given)."""
    methods = list(methods)
    unknown = [m for m in methods if m not in METHODS + EXTRA_METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown or no method(s) {unknown}; choose from {', '.join(METHODS + EXTRA_METHODS)}")
    return methods
