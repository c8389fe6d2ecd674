"""Cached training of a pooler (GLOT by default) and a task head over a frozen backbone.

The backbone runs once per split (see :mod:`glot_st.train.cache`); every epoch then only runs the pooler and
the head on cached token states.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from glot_st.builder import save as save_model
from glot_st.freeze import module_device
from glot_st.model_card import set_training_info
from glot_st.train.cache import (
    LengthBucketBatchSampler,
    TokenCache,
    backbone_identity,
    build_cache,
    cache_key,
    key_fingerprint,
    validate_texts,
)
from glot_st.train.data import VALIDATION_FRACTION, validation_slice
from glot_st.train.guards import check_training_arguments, ensure_finite
from glot_st.train.heads import HEAD_KINDS, HEAD_SUBFOLDER, TaskHead, make_head
from glot_st.train.inputs import prepare_splits
from glot_st.train.metrics import compute_metric
from glot_st.train.recipe import WeightAverage, averaged_weights, grid_settings, make_lr_schedule, run_search

__all__ = [
    "HEAD_SUBFOLDER",
    "TrainResult",
    "build_split_cache",
    "recipe_defaults",
    "default_pooler",
    "seed_everything",
    "split_texts",
    "train_cached",
]

RESULT_FILE = "glot_training.json"
# how the token states of a split are cached by default (train_cached and build_split_cache)
DEFAULT_CACHE_DTYPE = "float16"
DEFAULT_CACHE_BATCH_SIZE = 64


@dataclass
class TrainResult:
    """Outcome of :func:`train_cached`.

    Attributes:
        history: one dict per epoch run: ``epoch`` (1-based), ``loss`` (mean training loss),
            ``validation_metric`` (the selection score on the validation split, or ``None`` without one),
            ``eval_metric`` (the task metric on the eval split, or ``None``; recorded, never used to select),
            ``seconds`` (training pass wall time), ``eval_seconds`` (validation + eval scoring time).
        metric_name: the task metric (``"spearman"``, ``"accuracy"``, ...) of ``eval_metric``, or ``None``
            without eval and validation split.
        selection_metric: what ``validation_metric`` measures: the task metric, or ``"loss"`` when the
            validation split has no labels (the negative validation loss); ``None`` without validation split.
        best_epoch: 1-based epoch whose weights were restored (best validation score; without a validation
            split, the lowest training loss).
        validation_metric: the validation score of ``best_epoch`` (or ``None``).
        eval_metric: the eval-split metric of ``best_epoch`` (or ``None``): the figure to report.
        validation_rows: rows of the validation split (given or carved from the training split; 0 if none).
        stopped_early: whether patience ended the run before ``epochs``.
        cache_seconds: wall time spent building/opening the caches (not part of any epoch).
        trainable_parameters: trainable parameters of pooler + head.
        head: the trained head (best epoch).
        output_dir: where the model and head were saved, or ``None``.
        task: the task trained: one line naming its kind, classes or score range and metric.
        search: with ``train_cached(search=...)``: ``{"trials": [{"setting", "validation_metric", "best_epoch",
            "eval_metric"}, ...], "chosen": setting}`` (chosen on the validation score only); else ``None``.
    """

    history: list[dict[str, Any]]
    metric_name: str | None
    selection_metric: str | None
    best_epoch: int
    validation_metric: float | None
    eval_metric: float | None
    validation_rows: int
    stopped_early: bool
    cache_seconds: float
    trainable_parameters: int
    head: TaskHead = field(repr=False)
    output_dir: str | None = None
    task: str | None = None
    search: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (without the head module)."""
        out = {k: v for k, v in self.__dict__.items() if k != "head"}
        out["head_config"] = self.head.config
        return out


def recipe_defaults() -> dict[str, Any]:
    """``train_cached``'s keyword defaults by name (the one place they are written), for the CLI and the bench."""
    return {
        name: parameter.default
        for name, parameter in inspect.signature(train_cached).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and CUDA).

    Args:
        seed: the seed (int).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_pooler(model: torch.nn.Module) -> torch.nn.Module:
    """The model's GLOT module (the first module with a ``pool`` method).

    Args:
        model: a ``SentenceTransformer``.

    Raises:
        ValueError: the model has no module with ``pool`` (e.g. a plain mean-pooling model).
    """
    for module in model.children():
        if callable(getattr(module, "pool", None)):
            return module
    names = [type(m).__name__ for m in model.children()]
    raise ValueError(f"the model has no pooler with a pool() method (modules: {names}); pass pooler=...")


def _validate_split(split: Any, head: TaskHead, role: str) -> tuple[list[str], list[str] | None, torch.Tensor | None]:
    """Check a split fits the head; return its validated texts and the head's targets (``check_labels``, once)."""
    where = f"{role} split {split.task}/{split.split}"
    n = len(split.texts_a)
    if n == 0:
        raise ValueError(f"{where} has no rows")
    if head.needs_pair and split.texts_b is None:
        raise ValueError(f"{where}: column texts_b is None but the {head.kind!r} head needs sentence pairs")
    if not head.needs_pair and split.texts_b is not None:
        raise ValueError(
            f"{where}: column texts_b is given but the {head.kind!r} head takes single sentences; "
            "use a pair head (head_kind='pair') or drop texts_b"
        )
    for column in ("texts_b", "labels"):
        values = getattr(split, column)
        if values is not None and len(values) != n:
            raise ValueError(f"{where}: column {column} has {len(values)} rows, texts_a has {n}")
    texts_a = validate_texts(split.texts_a, name=f"{where} column texts_a")
    texts_b = None if split.texts_b is None else validate_texts(split.texts_b, name=f"{where} column texts_b")
    labels = None
    if head.needs_labels:
        try:
            labels = head.check_labels(split.labels, row_ids=range(n))
        except ValueError as exc:
            raise ValueError(f"{where} column labels: {exc}") from None
    return texts_a, texts_b, labels


@dataclass
class _CachedSplit:
    """A split mapped onto a cache of its unique texts."""

    cache: TokenCache
    ids_a: np.ndarray  # (N,) int64 cache rows
    ids_b: np.ndarray | None  # (N,) int64 or None
    labels: torch.Tensor | None  # (N,) head targets from check_labels, or None (needs_labels False)
    gold: list | None  # raw labels for the metric (None: a label-free split)

    def lengths(self) -> np.ndarray:
        la = self.cache.lengths[self.ids_a]
        return la if self.ids_b is None else np.maximum(la, self.cache.lengths[self.ids_b])


def split_texts(split: Any) -> list[str]:
    """The unique texts of a split (texts_a then texts_b, first occurrence order): the rows of its cache.

    Args:
        split: a ``TextSplit``.
    """
    return _unique_texts(split.texts_a, split.texts_b)


def _unique_texts(texts_a: Any, texts_b: Any) -> list[str]:
    return list(dict.fromkeys([*texts_a, *(texts_b or [])]))


def build_split_cache(
    model: torch.nn.Module,
    split: Any,
    cache_root: str | os.PathLike,
    *,
    dtype: str = DEFAULT_CACHE_DTYPE,
    batch_size: int = DEFAULT_CACHE_BATCH_SIZE,
    show_progress_bar: bool = True,
    backbone: dict[str, str] | None = None,
) -> TokenCache:
    """Build (or reuse) the token-state cache of a split's unique texts under ``cache_root``.

    The folder is ``cache_root/<task>-<split>-<key fingerprint>-<dtype>``, so another backbone, max length,
    prompt, text set or dtype gets its own folder and a rerun reuses (or resumes) the matching one.

    Args:
        model: ``SentenceTransformer`` with the frozen ``Transformer`` first.
        split: a ``TextSplit``; its texts must be non-empty strings (errors name the row).
        cache_root: folder holding the caches.
        dtype: ``"float16"`` or ``"float32"``.
        batch_size: texts per backbone forward.
        show_progress_bar: tqdm bar while caching.
        backbone: ``glot_st.train.cache.backbone_identity(model)`` if already computed (hashing the weights
            is the expensive part of the key); ``None`` computes it.

    Returns:
        The :class:`~glot_st.train.cache.TokenCache`; row i holds ``split_texts(split)[i]``.
    """
    where = f"split {split.task}/{split.split}"
    texts_a = validate_texts(split.texts_a, name=f"{where} column texts_a")
    texts_b = None if split.texts_b is None else validate_texts(split.texts_b, name=f"{where} column texts_b")
    return _build_unique_cache(
        model, split, _unique_texts(texts_a, texts_b), Path(cache_root), dtype, batch_size, show_progress_bar,
        backbone,
    )


def _build_unique_cache(
    model: torch.nn.Module,
    split: Any,
    unique: list[str],
    cache_root: Path,
    dtype: str,
    batch_size: int,
    show_progress_bar: bool,
    backbone: dict[str, str] | None,
) -> TokenCache:
    """Cache already-validated unique texts of ``split`` in its keyed folder under ``cache_root``."""
    key = cache_key(model, unique, backbone=backbone)
    folder = cache_root / f"{split.task}-{split.split}-{key_fingerprint(key)}-{dtype}"
    return build_cache(
        model, unique, folder, dtype=dtype, batch_size=batch_size, show_progress_bar=show_progress_bar, key=key
    )


def _cache_split(
    model: torch.nn.Module,
    split: Any,
    head: TaskHead,
    role: str,
    cache_root: Path,
    dtype: str,
    cache_batch_size: int,
    show_progress_bar: bool,
    backbone: dict[str, str],
) -> _CachedSplit:
    texts_a, texts_b, labels = _validate_split(split, head, role)
    unique = _unique_texts(texts_a, texts_b)
    cache = _build_unique_cache(model, split, unique, cache_root, dtype, cache_batch_size, show_progress_bar, backbone)
    row_of = {text: i for i, text in enumerate(unique)}
    ids_a = np.array([row_of[t] for t in texts_a], dtype=np.int64)
    ids_b = None if texts_b is None else np.array([row_of[t] for t in texts_b], dtype=np.int64)
    return _CachedSplit(cache, ids_a, ids_b, labels, None if split.labels is None else list(split.labels))


def _pool_batch(pooler: torch.nn.Module, data: _CachedSplit, rows: np.ndarray, device: torch.device):
    """Pool the a (and b) sentences of example rows in one pooler call: returns (z_a, z_b | None)."""
    ids = data.ids_a[rows] if data.ids_b is None else np.concatenate([data.ids_a[rows], data.ids_b[rows]])
    states, mask = data.cache.get_batch(ids)
    z = pooler.pool(states.to(device), mask.to(device))
    if data.ids_b is None:
        return z, None
    return z[: len(rows)], z[len(rows) :]


@torch.no_grad()
def _evaluate(
    pooler: torch.nn.Module,
    head: TaskHead,
    data: _CachedSplit,
    metric: str,
    batch_size: int,
    device: torch.device,
    show_progress_bar: bool,
) -> float:
    """Task metric of the pooler + head on a cached split (order-independent batching); on a split without
    labels (``metric == "loss"``), the negative mean loss of the head."""
    pooler.eval()
    head.eval()
    sampler = LengthBucketBatchSampler(data.lengths(), batch_size, shuffle=False, bucket_size=len(data.ids_a))
    predictions = np.zeros(len(data.ids_a), dtype=np.float64)
    total_loss = 0.0
    for batch in tqdm(list(sampler), desc="evaluating", leave=False, disable=not show_progress_bar):
        rows = np.asarray(batch, dtype=np.int64)
        z_a, z_b = _pool_batch(pooler, data, rows, device)
        if metric == "loss":
            targets = None if data.labels is None else data.labels[rows]
            total_loss += float(head.loss(z_a, z_b, targets)) * len(rows)
        else:
            predictions[rows] = head.predict(z_a, z_b).double().cpu().numpy()
    if metric == "loss":
        value = -total_loss / len(data.ids_a)
    else:
        if head.prediction == "class":
            predictions = predictions.astype(np.int64)
        value = float(compute_metric(metric, predictions, data.gold))
    if not math.isfinite(value):
        raise FloatingPointError(f"{metric} on the {data.cache.directory.name} split is {value}")
    return value


def _snapshot(*modules: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def train_cached(
    model: torch.nn.Module,
    train_split: Any,
    eval_split: Any = None,
    *,
    validation_split: Any = None,
    validation_fraction: float = VALIDATION_FRACTION,
    columns: Any = None,
    pooler: torch.nn.Module | None = None,
    task: Any = None,
    head: TaskHead | None = None,
    head_kind: str | None = None,
    head_config: dict[str, Any] | None = None,
    epochs: int = 10,
    patience: int | None = 3,
    batch_size: int = 32,
    eval_batch_size: int | None = None,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    ema_decay: float | None = None,
    lr_schedule: str = "constant",
    warmup_fraction: float = 0.0,
    search: dict[str, Any] | bool | None = None,
    seed: int = 42,
    cache_dir: str | os.PathLike | None = None,
    cache_dtype: str = DEFAULT_CACHE_DTYPE,
    cache_batch_size: int = DEFAULT_CACHE_BATCH_SIZE,
    bucket_size: int | None = None,
    output_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    device: str | torch.device | None = None,
    show_progress_bar: bool = True,
) -> TrainResult:
    """Train a pooler and a task head on cached token states of the model's frozen backbone.

    The recipe: AdamW for at most ``epochs`` epochs (optionally with a warm-up and decay of the rate,
    ``lr_schedule``, and averaged weights, ``ema_decay``); after every epoch the pooler + head are scored on a
    validation split, the best epoch's weights are kept, and the run stops once ``patience`` epochs in a row
    did not improve on it. The validation split is ``validation_split`` when given, else a stratified
    ``validation_fraction`` slice of the training rows drawn with a fixed seed (the same rows for every method
    and training seed; those rows are then not trained on). The eval split is never used to select: it is
    scored after every epoch for the history, and ``eval_metric`` is its score at the selected epoch.

    Args:
        model: ``SentenceTransformer`` whose first module is the frozen ``Transformer`` (e.g. from
            :func:`glot_st.from_backbone`).
        train_split: the training data: a ``glot_st.train.data.TextSplit`` (``task``, ``split``, ``texts_a`` N
            strings, ``texts_b`` N strings or ``None``, ``labels`` N ints / floats / strings or ``None``), a
            ``datasets.Dataset``, a pandas ``DataFrame``, a dict of columns, a tuple ``(texts, labels)`` /
            ``(texts_a, texts_b, labels)`` or a ``.csv`` / ``.tsv`` / ``.jsonl`` / ``.json`` / ``.parquet``
            path (see :mod:`glot_st.train.inputs`). Unless it is a bundled task's split or ``task`` is
            given, the task is inferred from its columns and labels (``TrainResult.task`` names it).
        eval_split: data of the same task in the same form (the dev / test split to report), scored after every
            epoch for the history and never used to select, or ``None``.
        validation_split: data of the same task in the same form selecting the epoch, or ``None`` (carve one).
        validation_fraction: share of the training rows carved out as the validation split when
            ``validation_split`` is ``None``; ``0`` means no validation (all epochs run, the epoch with the
            lowest training loss is kept).
        columns: column names of table forms: a ``glot_st.train.inputs.Columns`` or a dict with keys
            ``text``, ``text_b``, ``label`` (default ``text`` and ``label``).
        pooler: module with ``pool(token_states (B, L, d) float, attention_mask (B, L)) -> (B, D)`` and
            ``get_sentence_embedding_dimension() -> D``; default: the model's GLOT module.
        task: a ``TaskSpec`` (``kind``, ``num_labels``, ``metric``); default ``glot_st.train.data.TASKS[task name]``.
        head: a ready head; default: built from ``head_kind``.
        head_kind: ``"single"``, ``"pair"``, ``"regression"`` or ``"contrastive"``; default the task kind.
        head_config: extra head arguments (e.g. ``{"temperature": 0.05}``, ``{"features": "concat"}``).
        epochs: the most epochs to train (>= 1).
        patience: stop after this many epochs without a better validation score (``None``: never stop early).
        batch_size: examples per step.
        eval_batch_size: examples per scoring batch (default ``2 * batch_size``).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        ema_decay: ``None`` (score and keep the raw weights), or average the trainable weights of pooler and head
            after every optimizer step (:class:`glot_st.train.recipe.WeightAverage`: uniform at first, then an
            exponential moving average with this decay; ``1.0`` = uniform over all steps); validation, eval
            scoring and the kept / saved state then use the average, while the raw weights keep training.
        lr_schedule: ``"constant"``, ``"cosine"`` or ``"linear"`` decay of the rate over the planned steps
            (``epochs`` x steps per epoch; early stopping does not shorten the plan).
        warmup_fraction: share of the planned steps with a linear warm-up of the rate, in ``[0, 1)``.
        search: ``None``, or a grid ``{name: [values, ...]}`` over ``lr``, ``weight_decay``, ``ema_decay``,
            ``lr_schedule``, ``warmup_fraction``, ``batch_size``, ``epochs``, ``patience`` (``True``: the fixed
            :data:`glot_st.train.recipe.DEFAULT_SEARCH_GRID`): one full run per setting from the same starting
            weights, seed and validation split; the best validation score wins (the eval split is never
            used to choose) and ``TrainResult.search`` lists the trials. With ``output_dir`` the winning
            setting is trained once more (the same seed repeats its run) and saved.
        seed: seeds torch / numpy / random (head init, dropout) and the batch order.
        cache_dir: root of the token-state caches (one sub-folder per split and key; reused across runs);
            ``None`` = a temporary folder deleted at the end.
        cache_dtype: ``"float16"`` or ``"float32"``.
        cache_batch_size: texts per backbone forward when building a cache.
        bucket_size: examples per length-sorting bucket (default ``16 * batch_size``; ``0`` = no sorting).
        output_dir: if given, save the trained model as a sentence-transformers folder with
            :func:`glot_st.save` (reload with :func:`glot_st.load`, or without glot-st by
            ``SentenceTransformer(output_dir, trust_remote_code=True)``), the head in ``output_dir/glot_head`` (reload with
            ``load_head(output_dir)``) and the history in ``output_dir/glot_training.json``. Checked before
            anything runs: a file, a path under a file, or a non-empty folder holding no saved model is an error.
        overwrite: allow an ``output_dir`` that is a non-empty folder holding something other than a model.
        device: where pooler and head train (default ``model.device``); the caches are built on
            ``model.device``. The pooler goes back to its own device afterwards (also on errors); the head
            stays on ``device``.
        show_progress_bar: tqdm bars for caching, epochs and evaluation.

    Returns:
        :class:`TrainResult`; the pooler (inside ``model``) and the head hold the best epoch's weights.

    Raises:
        ValueError: columns that do not fit the head (naming the column), empty/None texts or labels out of
            range (naming the row), splits of different tasks, bad arguments (all checked before any cache
            is built).
        FloatingPointError: a non-finite loss (naming epoch and batch) or non-finite weights after training.
            On this or any other error the pooler and a given head get back the weights they had before the
            run.
    """
    arguments = dict(locals())
    check_training_arguments(
        model, epochs=epochs, batch_size=batch_size, eval_batch_size=eval_batch_size, lr=lr,
        weight_decay=weight_decay, cache_batch_size=cache_batch_size, bucket_size=bucket_size,
        output_dir=output_dir, overwrite=overwrite, patience=patience, validation_fraction=validation_fraction,
        ema_decay=ema_decay, lr_schedule=lr_schedule, warmup_fraction=warmup_fraction, search=search,
    )
    if search is not None:
        return _train_with_search(arguments)
    prepared = prepare_splits(
        train_split, {"eval": eval_split, "validation": validation_split}, columns=columns, task=task,
        head_kind=head_kind, head_config=head_config,
    )
    train_split, spec, head_config = prepared.train, prepared.spec, prepared.head_config
    eval_split, validation_split = prepared.others["eval"], prepared.others["validation"]
    for role, other in (("eval", eval_split), ("validation", validation_split)):
        if other is not None and other.task != train_split.task:
            raise ValueError(f"train split is task {train_split.task!r} but {role} split is task {other.task!r}")
    if validation_split is None and validation_fraction > 0:
        train_split, validation_split = validation_slice(train_split, validation_fraction)
    pooler = default_pooler(model) if pooler is None else pooler
    if output_dir is not None and not any(m is pooler for m in model.modules()):
        raise ValueError("output_dir needs the pooler to be a module of the model (it is saved as part of it)")
    run_device = torch.device(device) if device is not None else model.device

    seed_everything(seed)
    if head is None:
        kind = head_kind or spec.kind
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {kind!r}; expected one of {sorted(HEAD_KINDS)}")
        config = dict(head_config or {})
        if kind in ("single", "pair"):
            config.setdefault("num_labels", spec.num_labels)
        head = make_head(kind, pooler.get_sentence_embedding_dimension(), **config)
    if head.kind == "contrastive" and eval_split is not None and spec.metric not in ("spearman", "pearson"):
        raise ValueError(
            f"the contrastive head predicts cosine scores; task {spec.name!r} is scored by {spec.metric!r}. "
            "Use a classification head, or eval_split=None"
        )
    pooler_home = module_device(pooler)
    before = _snapshot(pooler, head)  # put back on any error: a failed run leaves the model as it was
    head.to(run_device)

    tmp = tempfile.TemporaryDirectory(prefix="glot_cache_") if cache_dir is None else None
    cache_root = Path(tmp.name if tmp is not None else cache_dir)
    try:
        pooler.to(run_device)
        started = time.perf_counter()
        # the weights digest is the expensive part of a cache key: once for every split
        caching = (cache_root, cache_dtype, cache_batch_size, show_progress_bar, backbone_identity(model))
        train_data = _cache_split(model, train_split, head, "train", *caching)
        validation_data = None
        if validation_split is not None:
            validation_data = _cache_split(model, validation_split, head, "validation", *caching)
        eval_data = None
        if eval_split is not None:
            eval_data = _cache_split(model, eval_split, head, "eval", *caching)
        cache_seconds = time.perf_counter() - started
        selection_metric = None  # what the validation split is scored by: the task metric where it applies
        if validation_data is not None:
            scorable = validation_data.gold is not None and (
                head.kind != "contrastive" or spec.metric in ("spearman", "pearson")
            )
            selection_metric = spec.metric if scorable else "loss"

        params = [p for m in (pooler, head) for p in m.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay) if params else None
        bucket = 16 * batch_size if bucket_size is None else (bucket_size or None)
        sampler = LengthBucketBatchSampler(
            train_data.lengths(), batch_size, shuffle=True, seed=seed, bucket_size=bucket
        )
        score_batch = eval_batch_size or 2 * batch_size
        schedule = make_lr_schedule(optimizer, epochs * len(sampler), lr_schedule, warmup_fraction) if params else None
        average = WeightAverage((pooler, head), ema_decay) if ema_decay is not None and params else None

        history: list[dict[str, Any]] = []
        best_score, best_epoch, best_state = -math.inf, 0, None
        stopped_early = False
        for epoch in range(1, epochs + 1):
            sampler.set_epoch(epoch)
            pooler.train()
            head.train()
            total, count = 0.0, 0
            t0 = time.perf_counter()
            bar = tqdm(list(sampler), desc=f"epoch {epoch}/{epochs}", disable=not show_progress_bar)
            for step, batch in enumerate(bar):
                rows = np.asarray(batch, dtype=np.int64)
                z_a, z_b = _pool_batch(pooler, train_data, rows, run_device)
                targets = None if train_data.labels is None else train_data.labels[rows]
                loss = head.loss(z_a, z_b, targets)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"training loss is {loss.item()} at epoch {epoch}, batch {step} (rows {rows[:8].tolist()}...)"
                    )
                if optimizer is not None:
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    if average is not None:
                        average.update()
                total += loss.item() * len(rows)
                count += len(rows)
                bar.set_postfix(loss=f"{total / count:.4f}")
            seconds = time.perf_counter() - t0

            t1 = time.perf_counter()
            validation_value = eval_value = None
            with averaged_weights(average):  # scoring and the kept state use the averaged weights (if any)
                if validation_data is not None:
                    validation_value = _evaluate(
                        pooler, head, validation_data, selection_metric, score_batch, run_device, show_progress_bar
                    )
                if eval_data is not None:
                    eval_value = _evaluate(
                        pooler, head, eval_data, spec.metric, score_batch, run_device, show_progress_bar
                    )
                state = _snapshot(pooler, head)
            record = {
                "epoch": epoch,
                "loss": total / count,
                "validation_metric": validation_value,
                "eval_metric": eval_value,
                "seconds": seconds,
                "eval_seconds": time.perf_counter() - t1,
            }
            history.append(record)
            score = validation_value if validation_value is not None else -record["loss"]
            if score > best_score:
                best_score, best_epoch, best_state = score, epoch, state
            if show_progress_bar:
                tqdm.write(
                    f"epoch {epoch}: loss {record['loss']:.4f}"
                    + (f", validation {selection_metric} {validation_value:.4f}" if validation_value is not None else "")
                    + (f", eval {spec.metric} {eval_value:.4f}" if eval_value is not None else "")
                    + f", {seconds:.1f}s"
                )
            if validation_data is not None and patience is not None and epoch - best_epoch >= patience:
                stopped_early = epoch < epochs
                break
        pooler.load_state_dict(best_state[0])
        head.load_state_dict(best_state[1])
        ensure_finite(pooler, head)
    except BaseException:
        for module, state in zip((pooler, head), before):
            module.load_state_dict(state)
        raise
    finally:
        if pooler_home is not None:
            pooler.to(pooler_home)
        if tmp is not None:
            tmp.cleanup()

    pooler.eval()
    head.eval()
    best = history[best_epoch - 1]
    result = TrainResult(
        history=history,
        metric_name=spec.metric if eval_split is not None or validation_split is not None else None,
        selection_metric=selection_metric,
        best_epoch=best_epoch,
        validation_metric=best["validation_metric"],
        eval_metric=best["eval_metric"],
        validation_rows=0 if validation_split is None else len(validation_split),
        stopped_early=stopped_early,
        cache_seconds=cache_seconds,
        trainable_parameters=sum(p.numel() for p in params),
        head=head,
        output_dir=None if output_dir is None else str(output_dir),
        task=prepared.describe(),
    )
    if output_dir is not None:
        output_dir = Path(output_dir)
        _record_training_on_card(
            model, spec, validation_split, eval_split, result, head,
            epochs_run=len(history), max_epochs=epochs, patience=patience, lr=lr, weight_decay=weight_decay,
            ema_decay=ema_decay, lr_schedule=lr_schedule, warmup_fraction=warmup_fraction,
        )
        save_model(model, output_dir)
        head.save(output_dir / HEAD_SUBFOLDER)
        (output_dir / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return result


def _train_with_search(arguments: dict[str, Any]) -> TrainResult:
    """``train_cached(**arguments)`` with ``search``: one run per grid setting (one shared cache), the best
    validation score wins; with ``output_dir`` the winning setting is trained again from the same start and saved."""
    search, output_dir = arguments.pop("search"), arguments["output_dir"]
    pooler = arguments["pooler"] if arguments["pooler"] is not None else default_pooler(arguments["model"])
    modules = [pooler] + ([arguments["head"]] if arguments["head"] is not None else [])
    start = _snapshot(*modules)
    tmp = tempfile.TemporaryDirectory(prefix="glot_cache_") if arguments["cache_dir"] is None else None
    shared = {**arguments, "pooler": pooler, "output_dir": None, "cache_dir": tmp.name if tmp else arguments["cache_dir"]}
    try:
        result, trials, chosen = run_search(lambda **setting: train_cached(**{**shared, **setting}), grid_settings(search), modules)
        if output_dir is not None:
            for module, state in zip(modules, start):
                module.load_state_dict(state)
            result = train_cached(**{**shared, **trials[chosen]["setting"], "output_dir": output_dir})
    finally:
        if tmp is not None:
            tmp.cleanup()
    result.search = {"trials": trials, "chosen": trials[chosen]["setting"]}
    if output_dir is not None:
        (Path(output_dir) / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return result


def _record_training_on_card(
    model: Any, spec: Any, validation_split: Any, eval_split: Any, result: TrainResult, head: Any, **settings: Any
) -> None:
    """State the task, the validation metric the epoch was chosen by and the training settings in the card."""
    details = {"task kind": spec.kind, "head": head.kind, "best_epoch": result.best_epoch, **settings}
    if result.eval_metric is not None:
        details[f"{spec.metric} on {eval_split.split}"] = round(result.eval_metric, 4)
    set_training_info(
        model,
        task=spec.name,
        metric_name=result.selection_metric,
        metric_value=result.validation_metric,
        eval_split=None if validation_split is None else validation_split.split,
        details=details,
    )
