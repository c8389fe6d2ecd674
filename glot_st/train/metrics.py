"""Task metrics, computed by scikit-learn and scipy: accuracy, binary F1, Matthews correlation, Pearson,
Spearman, and the multi-label micro / macro F1.

Every function takes two 1-D array-likes of equal, non-zero length (the multi-label F1s: two ``(N, K)`` 0/1
label-indicator arrays) and returns a Python ``float``; fractions
are in ``[0, 1]`` (not percent), correlations in ``[-1, 1]``. A correlation of a constant input is undefined:
it raises ``ValueError`` (a collapsed model must not score a plausible-looking 0.0).
``compute_metric(name, predictions, gold)`` dispatches on the names used by ``TaskSpec.metric``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import stats
from sklearn import metrics as sk_metrics

__all__ = [
    "METRICS",
    "accuracy",
    "best_f1_thresholds",
    "compute_metric",
    "f1_binary",
    "macro_f1",
    "matthews_corrcoef",
    "micro_f1",
    "pearson",
    "spearman",
]


def _pair(a, b, name_a: str, name_b: str, numeric: bool) -> tuple[np.ndarray, np.ndarray]:
    """Two array-likes as 1-D arrays of equal, non-zero length.

    Args:
        a, b: array-likes of shape ``(N,)``.
        name_a, name_b: argument names for error messages.
        numeric: cast to float64 and reject NaN / infinity (naming the first bad index).

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
                raise ValueError(f"{name}[{int(bad[0])}] is {arr[bad[0]]} (values must be finite)")
        arrays.append(arr)
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"{name_a} has {arrays[0].size} items but {name_b} has {arrays[1].size}")
    return arrays[0], arrays[1]


def accuracy(pred, gold) -> float:
    """Fraction of positions where ``pred == gold`` (``(N,)`` class ids each)."""
    pred, gold = _pair(pred, gold, "pred", "gold", numeric=False)
    return float(sk_metrics.accuracy_score(gold, pred))


def f1_binary(pred, gold, positive=1) -> float:
    """F1 of the ``positive`` class (``(N,)`` class ids each); 0.0 when it is never predicted nor true."""
    pred, gold = _pair(pred, gold, "pred", "gold", numeric=False)
    return float(sk_metrics.f1_score(gold, pred, pos_label=positive, average="binary", zero_division=0.0))


def matthews_corrcoef(pred, gold) -> float:
    """Matthews correlation (``(N,)`` class ids each); 0.0 when either side has a single class, as
    scikit-learn defines it (the metric of CoLA)."""
    pred, gold = _pair(pred, gold, "pred", "gold", numeric=False)
    return float(sk_metrics.matthews_corrcoef(gold, pred))


def _indicator_pair(pred, gold) -> tuple[np.ndarray, np.ndarray]:
    """Two ``(N, K)`` 0/1 label-indicator arrays of the same shape (``ValueError`` otherwise)."""
    arrays = [np.asarray(value, dtype=np.float64) for value in (pred, gold)]
    for arr, name in zip(arrays, ("pred", "gold")):
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise ValueError(f"{name} must be a non-empty (N, K) 0/1 array, got shape {arr.shape}")
        if not np.isin(arr, (0.0, 1.0)).all():
            raise ValueError(f"{name} must hold only 0 and 1 (label indicators)")
    if arrays[0].shape != arrays[1].shape:
        raise ValueError(f"pred has shape {arrays[0].shape} but gold has {arrays[1].shape}")
    return arrays[0].astype(np.int64), arrays[1].astype(np.int64)


def micro_f1(pred, gold) -> float:
    """Multi-label F1 over every (row, label) decision (``(N, K)`` 0/1 indicators each); 0.0 when no label is
    ever predicted nor true."""
    pred, gold = _indicator_pair(pred, gold)
    return float(sk_metrics.f1_score(gold, pred, average="micro", zero_division=0.0))


def macro_f1(pred, gold) -> float:
    """Mean over labels of each label's F1 (``(N, K)`` 0/1 indicators each; a label never predicted nor true
    counts 0.0)."""
    pred, gold = _indicator_pair(pred, gold)
    return float(sk_metrics.f1_score(gold, pred, average="macro", zero_division=0.0))


def best_f1_thresholds(probabilities, targets, default: float) -> np.ndarray:
    """Per-label decision thresholds that maximise each label's F1 (``probability >= threshold`` is on).

    Args:
        probabilities: float (N, K) label probabilities.
        targets: (N, K) 0/1 gold indicators.
        default: the threshold of a label with no positive row (its F1 cannot choose one).

    Returns:
        float64 (K,) thresholds, each one of the label's probabilities (or ``default``).
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    targets = np.asarray(targets)
    if probabilities.ndim != 2 or probabilities.shape != targets.shape:
        raise ValueError(f"probabilities {probabilities.shape} and targets {targets.shape} must be the same (N, K)")
    chosen = np.full(probabilities.shape[1], float(default))
    for label in range(probabilities.shape[1]):
        if targets[:, label].sum() == 0:
            continue
        precision, recall, thresholds = sk_metrics.precision_recall_curve(targets[:, label], probabilities[:, label])
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        chosen[label] = thresholds[int(np.argmax(f1))]
    return chosen


def _check_varies(x: np.ndarray, y: np.ndarray, metric: str) -> None:
    for values, name in ((x, "x"), (y, "y")):
        if values.size < 2 or np.all(values == values[0]):
            raise ValueError(
                f"{metric} is undefined: {name} is constant ({values.size} value(s), all {values[0]!r}); "
                "a collapsed model (every prediction equal) has no correlation"
            )


def pearson(x, y) -> float:
    """Pearson correlation of two ``(N,)`` score arrays (``ValueError`` if either is constant)."""
    x, y = _pair(x, y, "x", "y", numeric=True)
    _check_varies(x, y, "pearson")
    return float(stats.pearsonr(x, y).statistic)


def spearman(x, y) -> float:
    """Spearman rank correlation (average ranks for ties) of two ``(N,)`` score arrays (``ValueError`` if
    either is constant)."""
    x, y = _pair(x, y, "x", "y", numeric=True)
    _check_varies(x, y, "spearman")
    return float(stats.spearmanr(x, y).statistic)


METRICS: dict[str, Callable[..., float]] = {
    "accuracy": accuracy,
    "f1": f1_binary,
    "mcc": matthews_corrcoef,
    "spearman": spearman,
    "pearson": pearson,
    "micro_f1": micro_f1,
    "macro_f1": macro_f1,
}


def compute_metric(name: str, predictions, gold) -> float:
    """Score ``predictions`` against ``gold`` with the metric called ``name``.

    Args:
        name: ``"accuracy"``, ``"f1"`` (positive class 1), ``"mcc"``, ``"spearman"``, ``"pearson"``, or the
            multi-label ``"micro_f1"`` / ``"macro_f1"``.
        predictions: ``(N,)`` class ids, scores for the correlations, or ``(N, K)`` 0/1 label indicators.
        gold: the same shape: true class ids, scores or label indicators.

    Returns:
        The metric as a Python float.

    Raises:
        ValueError: unknown metric name (listing the valid ones), invalid inputs, an undefined correlation.
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name](predictions, gold)
