"""The kit's data types: ``TextSplit`` (one split as parallel lists), ``TaskSpec`` (what a task is and how it
is scored) and the validation slice carved from a training split.

Public API::

    TextSplit, TaskSpec, is_bool(value), VALIDATION_FRACTION, VALIDATION_SEED,
    validation_slice(split, fraction=VALIDATION_FRACTION, seed=VALIDATION_SEED)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "VALIDATION_FRACTION",
    "VALIDATION_SEED",
    "TaskSpec",
    "TextSplit",
    "is_bool",
    "validation_slice",
]

# The validation slice carved from a training split when none is given: 10% of the rows, drawn with a seed of
# its own so that every method and every training seed selects on the same rows.
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0


def is_bool(value: Any) -> bool:
    """True for a Python or NumPy bool (a label that must not pass for the class ids 0 / 1)."""
    return isinstance(value, (bool, np.bool_))



@dataclass(frozen=True)
class TextSplit:
    """One split of one task, as parallel Python lists.

    Attributes:
        task: task name, e.g. ``"stsb"`` or ``"stress"``.
        split: split name, e.g. ``"train"``, ``"dev"``, ``"test"``, ``"eval"``.
        texts_a: the (first) sentence of each row, ``len == N``.
        texts_b: the second sentence of each row for pair tasks (``len == N``); ``None`` for
            single-sentence tasks.
        labels: ``N`` labels: ``int`` class ids for classification, ``float`` scores (0..5) for STS-B (the
            user's own data may also hold strings, see ``glot_st.train.inputs``); ``None`` for label-free
            anchor/positive pairs.

    Raises:
        ValueError: if the lists do not all have the same length.
    """

    task: str
    split: str
    texts_a: list[str]
    texts_b: list[str] | None
    labels: list | None

    def __post_init__(self) -> None:
        n = len(self.texts_a)
        if self.texts_b is not None and len(self.texts_b) != n:
            raise ValueError(
                f"TextSplit {self.task}/{self.split}: texts_b has {len(self.texts_b)} rows, texts_a has {n}"
            )
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(
                f"TextSplit {self.task}/{self.split}: labels has {len(self.labels)} rows, texts_a has {n}"
            )

    def __len__(self) -> int:
        """Number of rows ``N``."""
        return len(self.texts_a)

    @property
    def is_pair(self) -> bool:
        """``True`` when every row holds two sentences (``texts_b`` is not ``None``)."""
        return self.texts_b is not None


@dataclass(frozen=True)
class TaskSpec:
    """What a task is and how it is scored.

    Attributes:
        name: task key in ``TASKS`` (``"stsb"``, ``"sst2"``, ``"cola"``, ``"mrpc"``, ``"rte"``).
        kind: ``"single"`` (one sentence, classification), ``"pair"`` (two sentences, classification)
            or ``"regression"`` (two sentences, float score).
        num_labels: number of classes; ``1`` for regression.
        metric: name understood by ``glot_st.train.metrics.compute_metric``: ``"mcc"``, ``"accuracy"``,
            ``"spearman"`` or ``"f1"``.
        eval_split: the split a result is reported on (``"dev"``; ``"test"`` for STS-B).
        splits: names of the splits that ``load_split`` accepts for this task.
    """

    name: str
    kind: str
    num_labels: int
    metric: str
    eval_split: str
    splits: tuple[str, ...]


def _strata(labels: list | None, n_validation: int) -> np.ndarray | None:
    """Stratification labels: classes as they are; scores binned by quantile; ``None`` when impossible or for
    multi-label rows."""
    if labels is None or any(isinstance(v, (list, tuple)) for v in labels[:1]):
        return None  # no labels, or multi-label rows (sets of labels): a uniform draw
    values = np.asarray(labels)
    if values.dtype.kind in "iub" or values.dtype.kind in "OUS":
        strata = values.astype(str)
    else:  # scores: up to 5 quantile bins, so each bin holds about the same number of rows
        bins = max(1, min(5, n_validation // 2))
        edges = np.unique(np.quantile(values.astype(np.float64), np.linspace(0, 1, bins + 1)[1:-1]))
        strata = np.searchsorted(edges, values.astype(np.float64), side="right").astype(str)
    _, counts = np.unique(strata, return_counts=True)
    if counts.min() < 2 or len(counts) > n_validation:
        return None  # a class with one row (or more classes than validation rows) cannot be stratified
    return strata


def validation_slice(
    split: TextSplit, fraction: float = VALIDATION_FRACTION, seed: int = VALIDATION_SEED
) -> tuple[TextSplit, TextSplit]:
    """Carve a validation split out of a training split: ``(train_rest, validation)``, disjoint by row.

    Classification labels are stratified (every class keeps its share), scores are stratified by quantile
    bins, label-free rows are drawn uniformly. The draw depends only on ``seed`` and the split, so every
    method and training seed sees the same slice.

    Args:
        split: the training ``TextSplit`` (N rows).
        fraction: share of the rows for validation, in ``(0, 1)``; at least one row each side.
        seed: seed of the draw.

    Returns:
        ``(train_rest, validation)``: TextSplits of ``N - k`` and ``k`` rows, ``k = max(1, round(fraction * N))``,
        with split names ``"<split>-train"`` and ``"<split>-validation"`` and rows in their original order.

    Raises:
        ValueError: ``fraction`` outside ``(0, 1)`` or fewer than 2 rows.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    n = len(split)
    if n < 2:
        raise ValueError(f"cannot carve a validation slice from {n} row(s) of {split.task}/{split.split}")
    n_validation = min(n - 1, max(1, round(fraction * n)))
    rows = np.arange(n)
    strata = _strata(split.labels, n_validation)
    if strata is not None and n - n_validation < len(np.unique(strata)):
        strata = None
    train_rows, validation_rows = train_test_split(
        rows, test_size=n_validation, random_state=seed, shuffle=True, stratify=strata
    )

    def take(selected: np.ndarray, name: str) -> TextSplit:
        selected = np.sort(selected)
        pick = lambda column: None if column is None else [column[i] for i in selected]  # noqa: E731
        return TextSplit(split.task, f"{split.split}-{name}", pick(split.texts_a), pick(split.texts_b), pick(split.labels))

    return take(train_rows, "train"), take(validation_rows, "validation")
