"""Cached training of a pooler (GLOT by default) and a task head over a frozen backbone.

The backbone runs once per split (see :mod:`glot_st.train.cache`); every epoch then only runs the pooler and
the head on cached token states.
"""

from __future__ import annotations

import inspect
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from glot_st.freeze import module_device
from glot_st.model_card import set_training_info
from glot_st.seeding import reinitialize
from glot_st.train.cache import (
    LengthBucketBatchSampler,
    TokenCache,
    backbone_identity,
    build_cache,
    cache_key,
    key_fingerprint,
    validate_texts,
)
from glot_st.train.guards import check_training_arguments, ensure_finite, validation_split_checked
from glot_st.train.heads import HEAD_KINDS, HEAD_SUBFOLDER, TaskHead, make_head
from glot_st.train.inputs import PreparedSplits, prepare_splits
from glot_st.train.metrics import compute_metric
from glot_st.train.output import holding_output_dir, save_training_output
from glot_st.train.recipe import WeightAverage, averaged_weights, grid_settings, make_lr_schedule, run_search
from glot_st.train.splits import VALIDATION_FRACTION

__all__ = [
    "HEAD_SUBFOLDER",
    "TrainResult",
    "TrainingPlan",
    "TrainingRecipe",
    "build_split_cache",
    "recipe_defaults",
    "default_pooler",
    "plan_training",
    "run_plan",
    "run_training",
    "seed_everything",
    "split_texts",
    "train_cached",
]

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


def _pooled_batches(pooler, data: _CachedSplit, batch_size: int, device: torch.device, show_progress_bar: bool):
    """Yield ``(rows, z_a, z_b)`` over a cached split in length-bucketed batches (order-independent)."""
    sampler = LengthBucketBatchSampler(data.lengths(), batch_size, shuffle=False, bucket_size=len(data.ids_a))
    for batch in tqdm(list(sampler), desc="evaluating", leave=False, disable=not show_progress_bar):
        rows = np.asarray(batch, dtype=np.int64)
        yield (rows, *_pool_batch(pooler, data, rows, device))


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
    predictions = None  # (N,) class ids / scores, or (N, K) label indicators
    total_loss = 0.0
    for rows, z_a, z_b in _pooled_batches(pooler, data, batch_size, device, show_progress_bar):
        if metric == "loss":
            targets = None if data.labels is None else data.labels[rows]
            total_loss += float(head.loss(z_a, z_b, targets)) * len(rows)
        else:
            batch = head.predict(z_a, z_b).double().cpu().numpy()
            if predictions is None:
                predictions = np.zeros((len(data.ids_a), *batch.shape[1:]), dtype=np.float64)
            predictions[rows] = batch
    if metric == "loss":
        value = -total_loss / len(data.ids_a)
    else:
        if head.prediction != "score":
            predictions = predictions.astype(np.int64)
        value = float(compute_metric(metric, predictions, data.gold))
    if not math.isfinite(value):
        raise FloatingPointError(f"{metric} on the {data.cache.directory.name} split is {value}")
    return value


@torch.no_grad()
def _calibrate(plan: TrainingPlan, validation: _CachedSplit | None) -> None:
    """Let a head with a ``calibrate(probabilities, targets)`` step (the multi-label head's per-label
    thresholds) choose it on the validation split; other heads, or no labelled validation split: nothing."""
    head = plan.head
    if not hasattr(head, "calibrate") or validation is None or validation.labels is None:
        return
    plan.pooler.eval()
    head.eval()
    probabilities = np.zeros(tuple(validation.labels.shape), dtype=np.float64)
    recipe = plan.recipe
    for rows, z_a, z_b in _pooled_batches(plan.pooler, validation, recipe.score_batch_size, plan.device, False):
        probabilities[rows] = head.probabilities(z_a, z_b).double().cpu().numpy()
    head.calibrate(probabilities, validation.labels.numpy())


def _snapshot(*modules: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


# ------------------------------------------------------------------------------------------ the run's plan


@dataclass(frozen=True)
class TrainingRecipe:
    """How a run trains: every setting of :func:`train_cached` besides the data, the task, the pooler and the
    head (the defaults are ``train_cached``'s, see :meth:`of`).

    Attributes:
        epochs, patience, batch_size, eval_batch_size, lr, weight_decay, ema_decay, lr_schedule,
        warmup_fraction, search, seed, validation_fraction, cache_dir, cache_dtype, cache_batch_size,
        bucket_size, output_dir, overwrite, device, show_progress_bar: as the arguments of
        :func:`train_cached` of the same name (``search`` is run by :func:`run_training`).
    """

    epochs: int
    patience: int | None
    batch_size: int
    eval_batch_size: int | None
    lr: float
    weight_decay: float
    ema_decay: float | None
    lr_schedule: str
    warmup_fraction: float
    search: dict[str, Any] | bool | None
    seed: int
    validation_fraction: float
    cache_dir: str | os.PathLike | None
    cache_dtype: str
    cache_batch_size: int
    bucket_size: int | None
    output_dir: str | os.PathLike | None
    overwrite: bool
    device: str | torch.device | None
    show_progress_bar: bool

    @classmethod
    def of(cls, **settings: Any) -> TrainingRecipe:
        """A checked recipe: ``train_cached``'s defaults with ``settings`` (any of the attributes) over them.

        Raises:
            TypeError: a setting that is not an attribute.
            ValueError: a bad value, naming it (:func:`~glot_st.train.guards.check_training_arguments`; the
                output folder included), before any work.
        """
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(settings) - set(names))
        if unknown:
            raise TypeError(f"unknown training settings {unknown}; expected some of {names}")
        defaults = recipe_defaults()
        recipe = cls(**{name: settings.get(name, defaults[name]) for name in names})
        checked = inspect.signature(check_training_arguments).parameters
        check_training_arguments(**{name: getattr(recipe, name) for name in names if name in checked})
        return recipe

    @property
    def score_batch_size(self) -> int:
        """Examples per scoring batch: ``eval_batch_size``, else ``2 * batch_size``."""
        return self.eval_batch_size or 2 * self.batch_size

    @property
    def bucket(self) -> int | None:
        """Examples per length-sorting bucket of the training batches (``None``: no sorting)."""
        return 16 * self.batch_size if self.bucket_size is None else (self.bucket_size or None)


@dataclass(frozen=True)
class TrainingPlan:
    """What the phases of a run share, settled before any cache is built (see :func:`plan_training`).

    Attributes:
        splits: the run's splits and task; ``splits.validation`` is the given or the carved validation split
            and ``splits.train`` holds the rows left to train on.
        recipe: the settings.
        pooler: the pooler that trains (``pool(token_states (B, L, d), attention_mask (B, L)) -> (B, D)``).
        head: the task head (built with the recipe's seed unless given).
        device: where pooler and head train.
    """

    splits: PreparedSplits
    recipe: TrainingRecipe
    pooler: torch.nn.Module
    head: TaskHead
    device: torch.device


def plan_training(
    model: torch.nn.Module,
    prepared: PreparedSplits,
    recipe: TrainingRecipe,
    *,
    pooler: torch.nn.Module | None = None,
    head: TaskHead | None = None,
    head_kind: str | None = None,
) -> TrainingPlan:
    """Plan a run: check the model, carve the validation slice, pick the pooler and build the head.

    Seeds torch / numpy / random with ``recipe.seed`` before the head is built (so a plan followed by
    :func:`run_plan` trains exactly as :func:`train_cached` does).

    Args:
        model: ``SentenceTransformer`` whose first module is the frozen ``Transformer``.
        prepared: the splits and task from :func:`glot_st.train.inputs.prepare_splits`.
        recipe: the checked settings (:meth:`TrainingRecipe.of`).
        pooler: the pooler to train; default: the model's GLOT module.
        head: a ready head; default: built from ``head_kind`` and ``prepared.head_config``.
        head_kind: ``"single"``, ``"pair"``, ``"regression"`` or ``"contrastive"``; default the task kind.

    Raises:
        ValueError: a model whose ``max_seq_length`` the backbone cannot take, splits of different tasks, an
            unknown head kind, a contrastive head on a task not scored by correlation, an ``output_dir`` with a
            pooler outside the model.
    """
    check_training_arguments(model, head_kind=head_kind)
    prepared.check_same_task()
    train, validation = validation_split_checked(
        prepared.train, prepared.validation, recipe.validation_fraction, prepared.spec
    )
    prepared = replace(prepared, train=train, validation=validation)
    pooler = default_pooler(model) if pooler is None else pooler
    if recipe.output_dir is not None and not any(m is pooler for m in model.modules()):
        raise ValueError("output_dir needs the pooler to be a module of the model (it is saved as part of it)")
    device = torch.device(recipe.device) if recipe.device is not None else model.device
    seed_everything(recipe.seed)
    spec = prepared.spec
    if head is None:
        kind = head_kind or spec.kind
        if kind not in HEAD_KINDS:
            raise ValueError(f"unknown head kind {kind!r}; expected one of {sorted(HEAD_KINDS)}")
        config = dict(prepared.head_config)
        if kind in ("single", "pair", "multilabel"):
            config.setdefault("num_labels", spec.num_labels)
        head = make_head(kind, pooler.get_sentence_embedding_dimension(), **config)
    if head.kind == "contrastive" and prepared.evaluation is not None and spec.metric not in ("spearman", "pearson"):
        raise ValueError(
            f"the contrastive head predicts cosine scores; task {spec.name!r} is scored by {spec.metric!r}. "
            "Use a classification head, or eval_split=None"
        )
    return TrainingPlan(prepared, recipe, pooler, head, device)


# ------------------------------------------------------------------------------------------ the run's phases


@dataclass
class _CachedSplits:
    """The run's splits mapped onto their caches (``None`` where the plan has no such split)."""

    train: _CachedSplit
    validation: _CachedSplit | None
    evaluation: _CachedSplit | None
    seconds: float  # wall time of building / opening the caches


def _cache_splits(model: torch.nn.Module, plan: TrainingPlan, cache_root: Path) -> _CachedSplits:
    """Phase 2: cache every split of the plan (the backbone's weights digest computed once for all)."""
    started = time.perf_counter()
    recipe, splits = plan.recipe, plan.splits
    caching = (cache_root, recipe.cache_dtype, recipe.cache_batch_size, recipe.show_progress_bar, backbone_identity(model))
    cache = lambda split, role: None if split is None else _cache_split(model, split, plan.head, role, *caching)  # noqa: E731
    train = cache(splits.train, "train")
    validation = cache(splits.validation, "validation")
    evaluation = cache(splits.evaluation, "eval")
    return _CachedSplits(train, validation, evaluation, time.perf_counter() - started)


def _selection_metric(plan: TrainingPlan, validation: _CachedSplit | None) -> str | None:
    """What the validation split is scored by: the task metric where it applies, else ``"loss"``."""
    if validation is None:
        return None
    spec = plan.splits.spec
    scorable = validation.gold is not None and (plan.head.kind != "contrastive" or spec.metric in ("spearman", "pearson"))
    return spec.metric if scorable else "loss"


def _trainable_parameters(plan: TrainingPlan) -> list[torch.nn.Parameter]:
    return [p for m in (plan.pooler, plan.head) for p in m.parameters() if p.requires_grad]


def _optimizer_step(
    optimizer: torch.optim.Optimizer | None,
    loss: torch.Tensor,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    average: WeightAverage | None = None,
) -> None:
    """One optimisation step on ``loss`` (a 0-dim float tensor), then the rate schedule's step and the fold of
    the new weights into the average (each skipped when ``None``; nothing at all without trainable parameters)."""
    if optimizer is None:
        return
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if schedule is not None:
        schedule.step()
    if average is not None:
        average.update()


def _train_epoch(
    plan: TrainingPlan,
    data: _CachedSplit,
    sampler: LengthBucketBatchSampler,
    optimize: Callable[[torch.Tensor], None],
    epoch: int,
) -> tuple[float, float]:
    """One pass over the training rows, ``optimize(loss)`` after every batch: ``(mean loss, seconds)``."""
    pooler, head, recipe = plan.pooler, plan.head, plan.recipe
    sampler.set_epoch(epoch)
    pooler.train()
    head.train()
    total, count = 0.0, 0
    t0 = time.perf_counter()
    bar = tqdm(list(sampler), desc=f"epoch {epoch}/{recipe.epochs}", disable=not recipe.show_progress_bar)
    for step, batch in enumerate(bar):
        rows = np.asarray(batch, dtype=np.int64)
        z_a, z_b = _pool_batch(pooler, data, rows, plan.device)
        targets = None if data.labels is None else data.labels[rows]
        loss = head.loss(z_a, z_b, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"training loss is {loss.item()} at epoch {epoch}, batch {step} (rows {rows[:8].tolist()}...)"
            )
        optimize(loss)
        total += loss.item() * len(rows)
        count += len(rows)
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / count, time.perf_counter() - t0


def _score_epoch(plan: TrainingPlan, data: _CachedSplits, selection_metric: str | None) -> tuple[Any, Any, float]:
    """Score the validation split (by ``selection_metric``) and the eval split (by the task metric):
    ``(validation value or None, eval value or None, seconds)``."""
    t1 = time.perf_counter()
    _calibrate(plan, data.validation)  # before scoring, so both splits are scored as the saved head predicts
    score = lambda split, metric: None if split is None else _evaluate(  # noqa: E731
        plan.pooler, plan.head, split, metric, plan.recipe.score_batch_size, plan.device, plan.recipe.show_progress_bar
    )
    validation_value = score(data.validation, selection_metric)
    eval_value = score(data.evaluation, plan.splits.spec.metric)
    return validation_value, eval_value, time.perf_counter() - t1


def _report_epoch(plan: TrainingPlan, record: dict[str, Any], selection_metric: str | None) -> None:
    if not plan.recipe.show_progress_bar:
        return
    validation_value, eval_value = record["validation_metric"], record["eval_metric"]
    tqdm.write(
        f"epoch {record['epoch']}: loss {record['loss']:.4f}"
        + (f", validation {selection_metric} {validation_value:.4f}" if validation_value is not None else "")
        + (f", eval {plan.splits.spec.metric} {eval_value:.4f}" if eval_value is not None else "")
        + f", {record['seconds']:.1f}s"
    )


@dataclass
class _EpochsOutcome:
    """What the epoch phase hands on: the history and the selected epoch."""

    history: list[dict[str, Any]]
    best_epoch: int
    stopped_early: bool
    selection_metric: str | None
    trainable_parameters: int


def _run_epochs(plan: TrainingPlan, data: _CachedSplits) -> _EpochsOutcome:
    """Phase 3: train epoch by epoch, score after each, keep the best epoch's weights (restored at the end)
    and stop once ``patience`` epochs in a row did not improve. The optimiser's step is
    :func:`_optimizer_step` (with the recipe's rate schedule and weight average, made here next to the
    optimiser); scoring and the state kept per epoch (:func:`_snapshot` of pooler and head) use the averaged
    weights when there is an average."""
    recipe = plan.recipe
    selection_metric = _selection_metric(plan, data.validation)
    params = _trainable_parameters(plan)
    optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay) if params else None
    sampler = LengthBucketBatchSampler(
        data.train.lengths(), recipe.batch_size, shuffle=True, seed=recipe.seed, bucket_size=recipe.bucket
    )
    planned_steps = recipe.epochs * len(sampler)
    schedule = make_lr_schedule(optimizer, planned_steps, recipe.lr_schedule, recipe.warmup_fraction) if params else None
    average = WeightAverage((plan.pooler, plan.head), recipe.ema_decay) if recipe.ema_decay is not None and params else None
    optimize = lambda loss: _optimizer_step(optimizer, loss, schedule, average)  # noqa: E731
    history: list[dict[str, Any]] = []
    best_score, best_epoch, best_state = -math.inf, 0, None
    stopped_early = False
    for epoch in range(1, recipe.epochs + 1):
        loss, seconds = _train_epoch(plan, data.train, sampler, optimize, epoch)
        with averaged_weights(average):  # scoring and the kept state use the averaged weights (if any)
            validation_value, eval_value, eval_seconds = _score_epoch(plan, data, selection_metric)
            score = validation_value if validation_value is not None else -loss
            if score > best_score:
                best_score, best_epoch, best_state = score, epoch, _snapshot(plan.pooler, plan.head)
        record = {"epoch": epoch, "loss": loss, "validation_metric": validation_value, "eval_metric": eval_value,
                  "seconds": seconds, "eval_seconds": eval_seconds}
        history.append(record)
        _report_epoch(plan, record, selection_metric)
        if data.validation is not None and recipe.patience is not None and epoch - best_epoch >= recipe.patience:
            stopped_early = epoch < recipe.epochs
            break
    plan.pooler.load_state_dict(best_state[0])
    plan.head.load_state_dict(best_state[1])
    return _EpochsOutcome(history, best_epoch, stopped_early, selection_metric, sum(p.numel() for p in params))


def _result(plan: TrainingPlan, outcome: _EpochsOutcome, cache_seconds: float) -> TrainResult:
    splits, output_dir = plan.splits, plan.recipe.output_dir
    best = outcome.history[outcome.best_epoch - 1]
    return TrainResult(
        history=outcome.history,
        metric_name=splits.spec.metric if splits.evaluation is not None or splits.validation is not None else None,
        selection_metric=outcome.selection_metric,
        best_epoch=outcome.best_epoch,
        validation_metric=best["validation_metric"],
        eval_metric=best["eval_metric"],
        validation_rows=0 if splits.validation is None else len(splits.validation),
        stopped_early=outcome.stopped_early,
        cache_seconds=cache_seconds,
        trainable_parameters=outcome.trainable_parameters,
        head=plan.head,
        output_dir=None if output_dir is None else str(output_dir),
        task=splits.describe(),
    )


def _save(model: torch.nn.Module, plan: TrainingPlan, result: TrainResult) -> None:
    """Phase 4: the model (training recorded on its card), the head and ``glot_training.json``."""
    recipe = plan.recipe
    output_dir = Path(recipe.output_dir)
    _record_training_on_card(
        model, plan.splits, result, plan.head, epochs_run=len(result.history), max_epochs=recipe.epochs,
        patience=recipe.patience, lr=recipe.lr, weight_decay=recipe.weight_decay, ema_decay=recipe.ema_decay,
        lr_schedule=recipe.lr_schedule, warmup_fraction=recipe.warmup_fraction,
    )
    save_training_output(model, plan.head, result.to_dict(), output_dir)


def run_plan(model: torch.nn.Module, plan: TrainingPlan) -> TrainResult:
    """Run a planned training: cache the splits, run the epochs, save (when the recipe names an output folder).

    Args:
        model: the ``SentenceTransformer`` the plan was made for.
        plan: from :func:`plan_training`.

    Returns:
        :class:`TrainResult`; the pooler and the head hold the best epoch's weights.

    Raises:
        FloatingPointError: a non-finite loss or non-finite weights after training. On this or any other
            error the pooler and the head get back the weights they had before the run.
    """
    with holding_output_dir(plan.recipe.output_dir, plan.recipe.overwrite):  # one run per output folder
        return _train_and_save(model, plan)


def _train_and_save(model: torch.nn.Module, plan: TrainingPlan, search: dict[str, Any] | None = None) -> TrainResult:
    """Phases 2 to 4 of a plan (the caller holds its output folder); ``search``: the record of the search that
    chose this run's settings (``TrainResult.search``, saved with it), or ``None``."""
    pooler, head, recipe = plan.pooler, plan.head, plan.recipe
    pooler_home = module_device(pooler)
    before = _snapshot(pooler, head)  # put back on any error: a failed run leaves the model as it was
    head.to(plan.device)
    tmp = tempfile.TemporaryDirectory(prefix="glot_cache_") if recipe.cache_dir is None else None
    try:
        pooler.to(plan.device)
        data = _cache_splits(model, plan, Path(tmp.name if tmp is not None else recipe.cache_dir))
        outcome = _run_epochs(plan, data)
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
    result = _result(plan, outcome, data.seconds)
    result.search = search
    if recipe.output_dir is not None:
        _save(model, plan, result)
    return result


def run_training(
    model: torch.nn.Module,
    prepared: PreparedSplits,
    recipe: TrainingRecipe,
    *,
    pooler: torch.nn.Module | None = None,
    head: TaskHead | None = None,
    head_kind: str | None = None,
) -> TrainResult:
    """Plan and run a training (:func:`plan_training` then :func:`run_plan`), or, with ``recipe.search``, one
    plan and run per grid setting (:func:`glot_st.train.recipe.run_search`).

    Every trial starts from the pooler's (and a given head's) present weights, with the same prepared splits,
    the same validation slice (carved once) and the recipe's seed; it saves nothing. The best validation score
    wins (the eval split is never used to choose). With ``recipe.output_dir`` (held for the whole search) the
    winning setting is planned and run once more from the same start (the same seed repeats its run) and saved;
    ``TrainResult.search`` lists the trials either way.

    Args:
        model: ``SentenceTransformer`` whose first module is the frozen ``Transformer``.
        prepared: the splits and task from :func:`glot_st.train.inputs.prepare_splits`.
        recipe: the checked settings (:meth:`TrainingRecipe.of`; a search grid's settings are checked there too).
        pooler, head, head_kind: as in :func:`plan_training`.

    Returns:
        :class:`TrainResult` of the plain run or of the search's winner; the pooler (and a given head) hold its
        weights.
    """
    if recipe.search is None:
        return run_plan(model, plan_training(model, prepared, recipe, pooler=pooler, head=head, head_kind=head_kind))
    # every check of plan_training before the first trial; its splits carry the validation slice all trials share
    checked = plan_training(model, prepared, replace(recipe, search=None), pooler=pooler, head=head, head_kind=head_kind)
    modules = [checked.pooler] + ([head] if head is not None else [])
    start = _snapshot(*modules)

    def planned(**setting: Any) -> TrainingPlan:
        trial = replace(recipe, **setting, search=None)
        if "seed" in setting and any(p.requires_grad for p in checked.pooler.parameters()):
            reinitialize(checked.pooler, setting["seed"])  # a seed's trial is that seed's whole run, GLOT's init too
        return plan_training(model, checked.splits, trial, pooler=checked.pooler, head=head, head_kind=head_kind)

    with holding_output_dir(recipe.output_dir, recipe.overwrite):  # one run per output folder
        trial_run = lambda **setting: _train_and_save(model, planned(**setting, output_dir=None))  # noqa: E731
        result, trials, chosen = run_search(trial_run, grid_settings(recipe.search), modules)
        record = {"trials": trials, "chosen": trials[chosen]["setting"]}
        if recipe.output_dir is None:
            result.search = record
            return result
        for module, state in zip(modules, start):
            module.load_state_dict(state)
        return _train_and_save(model, planned(**record["chosen"]), search=record)


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
            ``lr_schedule``, ``warmup_fraction``, ``batch_size``, ``epochs``, ``patience``, ``seed`` (``True``:
            the fixed :data:`glot_st.train.recipe.DEFAULT_SEARCH_GRID`): one full run per setting from the same
            starting weights, seed and validation split (:func:`run_training`); the best validation score wins
            (the eval split is never used to choose) and ``TrainResult.search`` lists the trials. With
            ``output_dir`` the winning setting is trained once more (the same seed repeats its run) and saved.
            A searched ``seed`` re-initialises the pooler under that seed in its trial
            (:func:`glot_st.reinitialize`): ``{"seed": restart_seeds(42, 3)}`` keeps the best of three whole runs.
        seed: seeds torch / numpy / random (head init, dropout) and the batch order. The pooler's own initial
            weights are the caller's: build it under the seed (``glot_st.from_backbone(..., seed=...)``, as
            ``glot-st train`` does) or call ``glot_st.reinitialize(pooler, seed)`` first for a run that is a
            function of the seed alone; a pooler trained earlier is never re-initialised here.
        cache_dir: root of the token-state caches (one sub-folder per split and key; reused across runs);
            ``None`` = a temporary folder deleted at the end.
        cache_dtype: ``"float16"`` or ``"float32"``.
        cache_batch_size: texts per backbone forward when building a cache.
        bucket_size: examples per length-sorting bucket (default ``16 * batch_size``; ``0`` = no sorting).
        output_dir: if given, save the trained model as a sentence-transformers folder with
            :func:`glot_st.save` (reload with :func:`glot_st.load`, or without glot-st by
            ``SentenceTransformer(output_dir, trust_remote_code=True)``), the head in ``output_dir/glot_head`` (reload with
            ``load_head(output_dir)``) and the history in ``output_dir/glot_training.json``, all staged beside it
            and swapped in as one unit at the end (:mod:`glot_st.train.output`: a run failing or killed while
            saving leaves the previous folder intact). Checked and locked before anything runs (a second run into
            it fails at once): a file, a path under a file, or a non-empty folder that is not an earlier glot-st
            training output (another model included) is an error.
        overwrite: replace an ``output_dir`` holding something other than an earlier training output.
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
    recipe = TrainingRecipe.of(
        epochs=epochs, patience=patience, batch_size=batch_size, eval_batch_size=eval_batch_size, lr=lr,
        weight_decay=weight_decay, ema_decay=ema_decay, lr_schedule=lr_schedule, warmup_fraction=warmup_fraction,
        search=search, seed=seed, validation_fraction=validation_fraction, cache_dir=cache_dir,
        cache_dtype=cache_dtype, cache_batch_size=cache_batch_size, bucket_size=bucket_size, output_dir=output_dir,
        overwrite=overwrite, device=device, show_progress_bar=show_progress_bar,
    )
    check_training_arguments(head_kind=head_kind)  # before the data is read
    prepared = prepare_splits(
        train_split, eval_split, validation_split, columns=columns, task=task, head_kind=head_kind,
        head_config=head_config,
    )
    return run_training(model, prepared, recipe, pooler=pooler, head=head, head_kind=head_kind)


def _record_training_on_card(model: Any, splits: PreparedSplits, result: TrainResult, head: Any, **settings: Any) -> None:
    """State the task, the validation metric the epoch was chosen by and the training settings in the card."""
    spec = splits.spec
    details = {"task kind": spec.kind, "head": head.kind, "best_epoch": result.best_epoch, **settings}
    if result.eval_metric is not None:
        details[f"{spec.metric} on {splits.evaluation.split}"] = round(result.eval_metric, 4)
    set_training_info(
        model,
        task=spec.name,
        metric_name=result.selection_metric,
        metric_value=result.validation_metric,
        eval_split=None if splits.validation is None else splits.validation.split,
        details=details,
    )
