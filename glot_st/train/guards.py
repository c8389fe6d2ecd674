"""Fail-safe checks for training: arguments and the output folder are checked before any cache is built;
``ensure_finite`` catches weights a diverging run left non-finite (the loop then restores the weights from
before the run).
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any

import torch

from glot_st.train.heads import HEAD_KINDS, HEAD_SUBFOLDER
from glot_st.train.recipe import check_recipe_arguments, grid_settings
from glot_st.train.splits import validation_slice

__all__ = [
    "backbone_token_limit",
    "check_output_dir",
    "check_training_arguments",
    "ensure_finite",
    "validation_split_checked",
    "is_training_output",
]

# the history file a glot-st training run writes into its output folder: with the head folder beside it, it marks
# a folder that a training run may replace without ``overwrite`` (any other model needs it)
RESULT_FILE = "glot_training.json"
TRAINING_MARKERS = (RESULT_FILE, HEAD_SUBFOLDER)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _finite_number(name: str, value: Any, *, positive: bool) -> None:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")


def backbone_token_limit(model: Any) -> int | None:
    """The most tokens the model's backbone accepts: the smaller of its ``max_position_embeddings`` and its
    tokenizer's ``model_max_length`` (when either is known), else ``None``."""
    first = next(iter(model.children()), None) if hasattr(model, "children") else None
    limits = []
    config = getattr(getattr(first, "auto_model", None), "config", None)
    positions = getattr(config, "max_position_embeddings", None)
    if _is_int(positions) and positions > 0:
        limits.append(int(positions))
    tokenizer_limit = getattr(getattr(model, "tokenizer", None), "model_max_length", None)
    if _is_int(tokenizer_limit) and 0 < tokenizer_limit < 10**7:  # transformers' "no limit" is ~1e30
        limits.append(int(tokenizer_limit))
    return min(limits) if limits else None


def is_training_output(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder a glot-st training run wrote (``glot_training.json`` and ``glot_head/``)."""
    path = Path(path)
    return (path / RESULT_FILE).is_file() and (path / HEAD_SUBFOLDER).is_dir()


def check_output_dir(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that a model can be saved in ``path`` without creating anything.

    ``path`` may be missing (its nearest existing parent must be a writable folder), an empty folder, or the
    output of an earlier glot-st training run (:func:`is_training_output`; it is replaced as a whole); any other
    non-empty folder, another model's folder included, needs ``overwrite=True`` (it is then replaced as a whole).

    Raises:
        ValueError: ``path`` is a file, lies under a file, is a non-empty non-model folder, or is not writable.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"output dir {str(path)!r} is a file, not a folder")
        if not overwrite and any(path.iterdir()) and not is_training_output(path):
            what = "a model that no glot-st training run wrote" if (path / "modules.json").exists() else "no saved model"
            raise ValueError(
                f"output dir {str(path)!r} is not empty and holds {what}; it would be replaced as a whole: choose "
                "another folder or overwrite it (overwrite=True, --overwrite)"
            )
        writable = path
    else:
        writable = path.parent
        while not writable.exists():
            writable = writable.parent
        if not writable.is_dir():
            raise ValueError(f"output dir {str(path)!r} cannot be created: {str(writable)!r} is a file")
    if not os.access(writable, os.W_OK | os.X_OK):
        raise ValueError(f"output dir {str(path)!r} is not writable ({str(writable)!r} denies writing)")
    return path


def check_training_arguments(
    model: Any = None,
    *,
    epochs: Any = 1,
    batch_size: Any = 1,
    eval_batch_size: Any = None,
    lr: Any = 1.0,
    weight_decay: Any = 0.0,
    cache_batch_size: Any = 1,
    bucket_size: Any = None,
    output_dir: Any = None,
    overwrite: bool = False,
    patience: Any = None,
    seed: Any = 0,
    validation_fraction: Any = 0.0,
    head_kind: Any = None,
    ema_decay: Any = None,
    lr_schedule: Any = "constant",
    warmup_fraction: Any = 0.0,
    search: Any = None,
) -> None:
    """Check the arguments of a training run (call before building any cache).

    The keyword defaults are neutral values that pass, so a caller checks only what it has.

    Args:
        model: the ``SentenceTransformer`` (its ``max_seq_length`` must be > 0 and within
            :func:`backbone_token_limit`), or ``None`` to skip that check.
        epochs, batch_size, cache_batch_size: ints >= 1. eval_batch_size: ``None`` or an int >= 1.
        lr: a finite number > 0. weight_decay: a finite number >= 0.
        bucket_size: ``None`` or an int >= 0.
        output_dir: ``None`` or a usable output folder (:func:`check_output_dir`).
        overwrite: allow a non-empty non-model ``output_dir``.
        patience: ``None`` or an int >= 1.
        seed: an int >= 0.
        validation_fraction: a number in ``[0, 1)``.
        head_kind: ``None`` or a key of ``HEAD_KINDS``.
        ema_decay, lr_schedule, warmup_fraction: see :func:`glot_st.train.recipe.check_recipe_arguments`.
        search: ``None``, ``True`` or a grid (:func:`glot_st.train.recipe.grid_settings`) whose every setting
            passes these checks.

    Raises:
        ValueError: naming the first bad argument and its value.
    """
    _positive_int("epochs", epochs)
    _positive_int("batch_size", batch_size)
    if eval_batch_size is not None:
        _positive_int("eval_batch_size", eval_batch_size)
    _positive_int("cache_batch_size", cache_batch_size)
    if bucket_size is not None:
        _positive_int("bucket_size", bucket_size, minimum=0)
    _finite_number("lr", lr, positive=True)
    _finite_number("weight_decay", weight_decay, positive=False)
    if patience is not None:
        _positive_int("patience", patience)
    _positive_int("seed", seed, minimum=0)
    _finite_number("validation_fraction", validation_fraction, positive=False)
    if validation_fraction >= 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    if head_kind is not None and head_kind not in HEAD_KINDS:
        raise ValueError(f"unknown head kind {head_kind!r}; expected one of {', '.join(sorted(HEAD_KINDS))}")
    check_recipe_arguments(ema_decay=ema_decay, lr_schedule=lr_schedule, warmup_fraction=warmup_fraction, search=search)
    for setting in grid_settings(search) if search is not None else ():
        check_training_arguments(
            **{"epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
               "patience": patience, "ema_decay": ema_decay, "lr_schedule": lr_schedule,
               "warmup_fraction": warmup_fraction, "seed": seed, **setting}
        )
    if model is not None:
        length = getattr(model, "max_seq_length", None)
        if length is not None:
            if not _is_int(length) or length < 1:
                raise ValueError(f"max_seq_length must be an int > 0, got {length!r}")
            limit = backbone_token_limit(model)
            if limit is not None and length > limit:
                raise ValueError(f"max_seq_length {length} exceeds the backbone's limit of {limit} tokens")
    if output_dir is not None:
        check_output_dir(output_dir, overwrite=overwrite)


def ensure_finite(*modules: torch.nn.Module) -> None:
    """Raise ``FloatingPointError`` naming the first parameter or buffer holding NaN or infinity."""
    for index, module in enumerate(modules):
        for name, tensor in module.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise FloatingPointError(
                    f"training diverged: {type(module).__name__} (module {index}) {name} holds non-finite values; "
                    "try a lower lr"
                )


def validation_split_checked(train_split: Any, validation_split: Any, fraction: float, spec: Any) -> tuple[Any, Any]:
    """``(train, validation)`` for the run: the given validation split, or a ``fraction`` slice carved from the
    training rows (``validation_slice``), checked so that validation never selects on classes training lacks.

    Args:
        train_split: the training ``TextSplit`` (labels as class ids for classification).
        validation_split: a given validation ``TextSplit``, or ``None`` (carve one when ``fraction > 0``).
        fraction: share of the training rows to carve out.
        spec: the ``TaskSpec`` (its ``kind`` says whether labels are classes).

    Raises:
        ValueError: the slice would take every training row of a class out of training (naming the classes),
            or the validation split holds a class the training split never has (naming it).
    """
    carved = validation_split is None and fraction > 0
    if carved:
        full = train_split
        train_split, validation_split = validation_slice(train_split, fraction)
    if validation_split is None or spec.kind not in ("single", "pair") or validation_split.labels is None:
        return train_split, validation_split
    trained = set(train_split.labels)
    if carved:
        lost = sorted(set(full.labels) - trained, key=repr)
        if lost:
            raise ValueError(
                f"the validation slice (fraction {fraction:g} of {len(full)} rows) would take every row of "
                f"{len(lost)} class(es) out of training ({lost[:10]}{', ...' if len(lost) > 10 else ''}); "
                "give a validation file (validation_split=, --validation-file), add rows to those classes, or use "
                "validation_fraction=0"
            )
    unseen = sorted(set(validation_split.labels) - trained, key=repr)
    if unseen:
        raise ValueError(
            f"the validation split holds label(s) {unseen[:10]} that no training row has; a model cannot be "
            "selected on classes it never trained on"
        )
    return train_split, validation_split
