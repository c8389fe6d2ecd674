"""Evaluation metrics in pure numpy: accuracy, binary F1, Matthews correlation, Pearson, Spearman.

All functions take two 1-D array-likes of equal, non-zero length and return a Python ``float``.
Fractions are in ``[0, 1]`` (not percent); correlations are in ``[-1, 1]``. When a correlation is
undefined (a constant input) the function returns ``0.0`` ("no skill") instead of NaN.

``compute_metric(name, predictions, gold)`` dispatches on the metric names used by
``glot_st.data.TaskSpec.metric``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["METRICS", "accuracy", "compute_metric", "f1_binary", "matthews_corrcoef", "pearson", "spearman"]


def _pair(a, b, name_a: str, name_b: str, numeric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Turn two array-likes into 1-D arrays of equal, non-zero length.

    Args:
        a, b: array-likes of shape ``(N,)``.
        name_a, name_b: argument names for error messages.
        numeric: if ``True``, cast to float64 and reject NaN / infinity (naming the first bad index).

    Raises:
        ValueError: wrong dimension, empty, unequal lengths, or (numeric) non-finite values.
    """
    arrays = []
    for value, name in ((a, name_a), (b, name_b)):
        arr = np.asarray(value, dtype=np.float64) if numeric else np.asarray(value)
        if arr.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
        if arr.size == 0:
            raise ValueError(f"{name} is empty")
        if numeric:
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                raise ValueError(f"{name}[{bad[0]}] is {float(arr[bad[0]])}; values must be finite")
        arrays.append(arr)
    if arrays[0].shape[0] != arrays[1].shape[0]:
        raise ValueError(f"{name_a} has {arrays[0].shape[0]} items but {name_b} has {arrays[1].shape[0]}")
    return arrays[0], arrays[1]


def accuracy(pred, gold) -> float:
    """Fraction of positions where ``pred == gold``.

    Args:
        pred: predicted class ids, shape ``(N,)``.
        gold: true class ids, shape ``(N,)``.

    Returns:
        float in ``[0, 1]``.
    """
    p, g = _pair(pred, gold, "pred", "gold", numeric=False)
    return float(np.mean(p == g))


def f1_binary(pred, gold, positive=1) -> float:
    """F1 score of the ``positive`` class: ``2 TP / (2 TP + FP + FN)``.

    Args:
        pred: predicted class ids, shape ``(N,)``.
        gold: true class ids, shape ``(N,)``.
        positive: the class id counted as positive (default 1, as for MRPC).

    Returns:
        float in ``[0, 1]``; ``0.0`` when there are no true positives (including when neither ``pred``
        nor ``gold`` contains ``positive``).
    """
    p, g = _pair(pred, gold, "pred", "gold", numeric=False)
    p_pos, g_pos = p == positive, g == positive
    tp = int(np.sum(p_pos & g_pos))
    fp = int(np.sum(p_pos & ~g_pos))
    fn = int(np.sum(~p_pos & g_pos))
    if tp == 0:
        return 0.0
    return float(2 * tp / (2 * tp + fp + fn))


def matthews_corrcoef(pred, gold) -> float:
    """Matthews correlation coefficient (multi-class form; equals the phi coefficient for 2 classes).

    Computed from the confusion matrix ``C`` as
    ``(c * s - sum_k p_k t_k) / sqrt((s^2 - sum_k p_k^2) (s^2 - sum_k t_k^2))`` with ``s`` the number of
    samples, ``c`` the number correct, ``p_k`` / ``t_k`` how often class ``k`` is predicted / true.

    Args:
        pred: predicted class ids, shape ``(N,)``.
        gold: true class ids, shape ``(N,)``.

    Returns:
        float in ``[-1, 1]``; ``0.0`` when undefined (``pred`` or ``gold`` holds a single class).
    """
    p, g = _pair(pred, gold, "pred", "gold", numeric=False)
    classes, inverse = np.unique(np.concatenate([p, g]), return_inverse=True)
    k = classes.shape[0]
    p_idx, g_idx = inverse[: p.shape[0]], inverse[p.shape[0]:]
    p_counts = np.bincount(p_idx, minlength=k).astype(np.float64)
    t_counts = np.bincount(g_idx, minlength=k).astype(np.float64)
    s = float(p.shape[0])
    c = float(np.sum(p_idx == g_idx))
    denom_p = s * s - float(np.dot(p_counts, p_counts))
    denom_t = s * s - float(np.dot(t_counts, t_counts))
    if denom_p == 0.0 or denom_t == 0.0:
        return 0.0
    value = (c * s - float(np.dot(p_counts, t_counts))) / np.sqrt(denom_p * denom_t)
    return float(np.clip(value, -1.0, 1.0))


def _pearson_arrays(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two validated float64 arrays; ``0.0`` if either is constant."""
    if np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt(np.dot(xc, xc) * np.dot(yc, yc))
    if denom == 0.0:  # values so close that centring underflows
        return 0.0
    return float(np.clip(np.dot(xc, yc) / denom, -1.0, 1.0))


def pearson(x, y) -> float:
    """Pearson correlation coefficient.

    Args:
        x: finite numbers, shape ``(N,)``.
        y: finite numbers, shape ``(N,)``.

    Returns:
        float in ``[-1, 1]``; ``0.0`` when undefined (``x`` or ``y`` is constant).

    Raises:
        ValueError: unequal lengths, empty input, not 1-D, or NaN / infinity (naming the index).
    """
    a, b = _pair(x, y, "x", "y", numeric=True)
    return _pearson_arrays(a, b)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values`` (shape ``(N,)``), ties sharing the mean of their ranks (float64)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts).astype(np.float64)  # last 1-based rank of each tie group
    mean_rank = ends - (counts - 1) / 2.0
    return mean_rank[inverse]


def spearman(x, y) -> float:
    """Spearman rank correlation: Pearson correlation of the average ranks (ties get the mean rank).

    Args:
        x: finite numbers, shape ``(N,)`` (e.g. predicted similarities).
        y: finite numbers, shape ``(N,)`` (e.g. gold scores).

    Returns:
        float in ``[-1, 1]``; ``0.0`` when undefined (``x`` or ``y`` is constant).

    Raises:
        ValueError: unequal lengths, empty input, not 1-D, or NaN / infinity (naming the index).
    """
    a, b = _pair(x, y, "x", "y", numeric=True)
    return _pearson_arrays(_average_ranks(a), _average_ranks(b))


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "mcc": matthews_corrcoef,
    "spearman": spearman,
    "pearson": pearson,
}


def compute_metric(name: str, predictions, gold) -> float:
    """Score ``predictions`` against ``gold`` with the metric called ``name``.

    Args:
        name: ``"accuracy"``, ``"f1"`` (positive class 1), ``"mcc"``, ``"spearman"`` or ``"pearson"``
            (the names used by ``TaskSpec.metric``).
        predictions: shape ``(N,)``: class ids, or scores for the correlations.
        gold: shape ``(N,)``: true class ids or scores.

    Returns:
        The metric as a Python float.

    Raises:
        ValueError: unknown metric name (listing the valid ones), or invalid inputs.
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name](predictions, gold)
