"""Pieces of the training recipe of :func:`glot_st.train.train_cached` beyond plain AdamW at a constant rate.

* :class:`WeightAverage`: a running (exponential or uniform) average of the trainable weights of pooler and
  head, updated after every optimizer step; scoring and the kept state use the average.
* :func:`make_lr_schedule`: linear warm-up, then a constant, cosine or linear rate over the planned steps.
* :func:`grid_settings` / :func:`run_search`: a small validation-selected grid search (every setting a full
  training run on the same validation split; the eval split is never looked at to choose).

The defaults of these options are written once, in ``train_cached``'s signature.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "DEFAULT_SEARCH_GRID",
    "LR_SCHEDULES",
    "SEARCHABLE",
    "WeightAverage",
    "averaged_weights",
    "check_recipe_arguments",
    "grid_settings",
    "lr_factor",
    "make_lr_schedule",
    "restart_seeds",
    "run_search",
]

LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "linear")
#: the keyword arguments of ``train_cached`` a search may vary
SEARCHABLE: tuple[str, ...] = (
    "lr", "weight_decay", "ema_decay", "lr_schedule", "warmup_fraction", "batch_size", "epochs", "patience", "seed",
)
#: the grid of ``glot-st train --search`` and of a bench budget with ``search=True``: 4 trials, the same for
#: every method (each method searches its own best setting on its validation slice)
DEFAULT_SEARCH_GRID: dict[str, tuple[Any, ...]] = {"lr": (5e-4, 2e-3), "weight_decay": (0.01, 0.1)}


class WeightAverage:
    """A running average of the trainable parameters of some modules (the raw parameters keep training).

    After update ``t`` (1-based) the average is ``avg_t = avg_{t-1} + a_t * (w_t - avg_{t-1})`` with
    ``a_t = max(1 - decay, 1 / t)``: the uniform mean of ``w_1 .. w_t`` while ``t <= 1 / (1 - decay)``, an
    exponential moving average with ``decay`` after that. ``decay = 1`` keeps the uniform mean of every step
    (stochastic weight averaging from the first step). The weights before the first update are not averaged in.

    Args:
        modules: the modules whose parameters with ``requires_grad`` are averaged (buffers are not).
        decay: a number in ``(0, 1]``.
    """

    def __init__(self, modules: Sequence[torch.nn.Module], decay: float) -> None:
        check_recipe_arguments(ema_decay=decay)
        self.decay = float(decay)
        self.parameters = [p for m in modules for p in m.parameters() if p.requires_grad]
        self.average = [p.detach().clone() for p in self.parameters]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current parameters into the average (call after every optimizer step)."""
        self.updates += 1
        rate = max(1.0 - self.decay, 1.0 / self.updates)
        for average, parameter in zip(self.average, self.parameters):
            average.lerp_(parameter.detach(), rate)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the modules hold the averaged weights; the raw weights come back afterwards (also
        on errors). Before the first update the modules keep their own weights."""
        if self.updates == 0:
            yield
            return
        raw = [p.detach().clone() for p in self.parameters]
        with torch.no_grad():
            for parameter, average in zip(self.parameters, self.average):
                parameter.copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for parameter, value in zip(self.parameters, raw):
                    parameter.copy_(value)


def averaged_weights(average: WeightAverage | None) -> contextlib.AbstractContextManager:
    """``average.applied()``, or a block that changes nothing when there is no average (``None``)."""
    return contextlib.nullcontext() if average is None else average.applied()


def lr_factor(step: int, total_steps: int, schedule: str, warmup_fraction: float) -> float:
    """The multiplier of the base learning rate at optimizer step ``step`` (0-based) of ``total_steps``.

    Linear warm-up over the first ``round(warmup_fraction * total_steps)`` steps (from ``1 / warm-up`` to 1),
    then ``"constant"`` (1), ``"cosine"`` (half a cosine from 1 towards 0) or ``"linear"`` (1 towards 0), reaching
    0 one step after the last planned step, so every planned step has a positive rate. Steps past the plan
    (none in ``train_cached``) keep the last planned value.

    Args:
        step: optimizer steps taken so far (int >= 0).
        total_steps: planned optimizer steps (epochs x steps per epoch; int >= 1).
        schedule: one of ``LR_SCHEDULES``.
        warmup_fraction: share of the planned steps spent warming up, in ``[0, 1)``.
    """
    warmup = round(warmup_fraction * total_steps)
    step = min(step, total_steps - 1)
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / (total_steps - warmup)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def make_lr_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int, schedule: str, warmup_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` applying :func:`lr_factor` (call its ``step()`` after every ``optimizer.step()``).

    Args:
        optimizer: the optimizer whose rates it scales.
        total_steps: planned optimizer steps (int >= 1).
        schedule: one of ``LR_SCHEDULES``.
        warmup_fraction: share of the planned steps spent warming up, in ``[0, 1)``.
    """
    check_recipe_arguments(lr_schedule=schedule, warmup_fraction=warmup_fraction)
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, schedule, warmup_fraction)
    )


def check_recipe_arguments(
    *, ema_decay: Any = None, lr_schedule: Any = "constant", warmup_fraction: Any = 0.0, search: Any = None
) -> None:
    """Check the recipe options (neutral defaults pass); raise ``ValueError`` naming the first bad one.

    Args:
        ema_decay: ``None`` or a number in ``(0, 1]``.
        lr_schedule: one of ``LR_SCHEDULES``.
        warmup_fraction: a number in ``[0, 1)``.
        search: ``None``, ``True`` (the default grid) or a grid (see :func:`grid_settings`).
    """
    if ema_decay is not None and (
        isinstance(ema_decay, bool) or not isinstance(ema_decay, (int, float)) or not 0 < ema_decay <= 1
    ):
        raise ValueError(f"ema_decay must be None or a number in (0, 1], got {ema_decay!r}")
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
    if isinstance(warmup_fraction, bool) or not isinstance(warmup_fraction, (int, float)) or not (
        0 <= warmup_fraction < 1
    ):
        raise ValueError(f"warmup_fraction must be a number in [0, 1), got {warmup_fraction!r}")
    if search is not None:
        grid_settings(search)


def grid_settings(search: Mapping[str, Sequence[Any]] | bool) -> list[dict[str, Any]]:
    """Every setting of a grid, in a fixed order (the last name varies fastest).

    Args:
        search: ``{name: [values, ...]}`` over names of ``SEARCHABLE``, each with at least one value, or
            ``True`` for ``DEFAULT_SEARCH_GRID``.

    Returns:
        One dict per trial, ``{name: value}``.

    Raises:
        ValueError: not a mapping, an unknown name, or a name without values.
    """
    if search is True:
        search = DEFAULT_SEARCH_GRID
    if not isinstance(search, Mapping) or not search:
        raise ValueError(f"search must be True or a non-empty dict of name -> list of values, got {search!r}")
    for name, values in search.items():
        if name not in SEARCHABLE:
            raise ValueError(f"search cannot vary {name!r}; searchable: {', '.join(SEARCHABLE)}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise ValueError(f"search[{name!r}] must be a non-empty list of values, got {values!r}")
    names = list(search)
    return [dict(zip(names, combination)) for combination in itertools.product(*(search[n] for n in names))]


def restart_seeds(seed: int, restarts: int) -> list[int]:
    """The seeds of ``restarts`` runs starting at ``seed``: ``[seed, seed + 1, ...]`` (a search over ``"seed"``).

    Args:
        seed: the first seed (int >= 0).
        restarts: how many runs (int >= 1).

    Raises:
        ValueError: ``restarts`` is not an int >= 1.
    """
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be an int >= 1, got {restarts!r}")
    return [seed + offset for offset in range(restarts)]


def run_search(
    train: Callable[..., Any],
    settings: Sequence[dict[str, Any]],
    modules: Sequence[torch.nn.Module],
) -> tuple[Any, list[dict[str, Any]], int]:
    """Train once per setting from the same starting weights; keep the trial with the best validation score.

    Args:
        train: ``train(**setting) -> TrainResult`` (a full run; its ``validation_metric`` is the selection
            score, or, without a validation split, the negative training loss of its kept epoch).
        settings: the trials (from :func:`grid_settings`).
        modules: the modules a trial trains in place (the pooler, and a head given by the caller): every trial
            starts from the weights they hold now, and they end holding the winner's weights.

    Returns:
        ``(winner's result, trials, winner's index)``; each trial is ``{"setting", "validation_metric",
        "best_epoch", "eval_metric"}`` (the eval figure is recorded, never used to choose).
    """
    start = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]
    trials, kept, best_index, best_score = [], None, -1, -math.inf
    for index, setting in enumerate(settings):
        for module, state in zip(modules, start):
            module.load_state_dict(state)
        result = train(**setting)
        score = result.validation_metric
        if score is None:
            score = -result.history[result.best_epoch - 1]["loss"]
        trials.append(
            {"setting": dict(setting), "validation_metric": result.validation_metric,
             "best_epoch": result.best_epoch, "eval_metric": result.eval_metric}
        )
        if score > best_score:
            best_index, best_score = index, score
            kept = (result, [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules])
    for module, state in zip(modules, kept[1]):
        module.load_state_dict(state)
    return kept[0], trials, best_index
