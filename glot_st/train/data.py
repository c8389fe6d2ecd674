"""Text splits and loaders of the GLUE-lite / STS-B copy in the repository's top-level ``data/`` folder.

The five tasks and their files are described in ``data/README.md``. The copy is not part of the wheel: a
clone finds it by itself, pip users pass ``data_dir`` (``--data-dir``) or set ``GLOT_ST_DATA_DIR``. Every file is
tab-separated and read with quoting off (MRPC and SST-2 text contains quote characters); a file is
decoded as UTF-8 and a leading byte-order mark (MRPC) is dropped. Rows are split on ``"\\n"`` only, so
text holding other Unicode line separators stays in its row.

Public API::

    TextSplit, TaskSpec, TASKS, resolve_data_dir(override=None), load_split(task, split, data_dir=None, limit=None)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DATA_DIR_ENV",
    "TASKS",
    "VALIDATION_FRACTION",
    "VALIDATION_SEED",
    "TaskSpec",
    "TextSplit",
    "is_bool",
    "load_split",
    "resolve_data_dir",
    "validation_slice",
]

# The validation slice carved from a training split when none is given: 10% of the rows, drawn with a seed of
# its own so that every method and every training seed selects on the same rows.
VALIDATION_FRACTION = 0.1
VALIDATION_SEED = 0

DATA_DIR_ENV = "GLOT_ST_DATA_DIR"
# a clone (or editable install) keeps the copy at the repository root, two folders above this package
_CLONE_DATA = Path(__file__).resolve().parents[2] / "data"


def is_bool(value: Any) -> bool:
    """True for a Python or NumPy bool (a label that must not pass for the class ids 0 / 1)."""
    return isinstance(value, (bool, np.bool_))


def resolve_data_dir(override: str | os.PathLike | None = None) -> Path:
    """The folder holding ``stsb/``, ``sst2/``, ``cola/``, ``mrpc/`` and ``rte/``.

    Args:
        override: a folder laid out like the repository's ``data/`` (the ``--data-dir`` option); ``None``
            means ``$GLOT_ST_DATA_DIR`` if set, else the ``data/`` folder of a clone.

    Raises:
        FileNotFoundError: the folder does not exist, naming it and how to pass another one.
    """
    if override is None:
        override = os.environ.get(DATA_DIR_ENV) or None
    if override is not None:
        folder = Path(override)
        if not folder.is_dir():
            raise FileNotFoundError(f"data directory {str(folder)!r} does not exist")
        return folder
    if not (_CLONE_DATA / "stsb").is_dir():
        raise FileNotFoundError(
            "the GLUE-lite / STS-B copy is not installed with the wheel; pass --data-dir (data_dir=...) or set "
            f"{DATA_DIR_ENV} to a folder laid out like the repository's data/ folder"
        )
    return _CLONE_DATA


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


TASKS: dict[str, TaskSpec] = {
    "stsb": TaskSpec("stsb", "regression", 1, "spearman", "test", ("train", "dev", "test")),
    "sst2": TaskSpec("sst2", "single", 2, "accuracy", "dev", ("train", "dev")),
    "cola": TaskSpec("cola", "single", 2, "mcc", "dev", ("train", "dev")),
    "mrpc": TaskSpec("mrpc", "pair", 2, "f1", "dev", ("train", "dev")),
    "rte": TaskSpec("rte", "pair", 2, "accuracy", "dev", ("train", "dev")),
}


@dataclass(frozen=True)
class _FileFormat:
    """How to read one task's files (private).

    Attributes:
        folder: sub-folder of the data directory.
        files: split name -> file name.
        header: the exact first line (tab-joined, after any BOM), or ``None`` when there is none.
        min_columns: a row must have at least this many tab-separated fields.
        exact_columns: when ``True`` a row must have exactly ``min_columns`` fields (STS-B: ``False``,
            some rows carry trailing source notes).
        col_a: 0-based column of the first sentence.
        col_b: 0-based column of the second sentence, or ``None``.
        col_label: 0-based column of the label.
    """

    folder: str
    files: dict[str, str]
    header: str | None
    min_columns: int
    exact_columns: bool
    col_a: int
    col_b: int | None
    col_label: int


_FORMATS: dict[str, _FileFormat] = {
    "stsb": _FileFormat(
        "stsb",
        {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"},
        header=None, min_columns=7, exact_columns=False, col_a=5, col_b=6, col_label=4,
    ),
    "sst2": _FileFormat(
        "sst2", {"train": "train.tsv", "dev": "dev.tsv"},
        header="sentence\tlabel", min_columns=2, exact_columns=True, col_a=0, col_b=None, col_label=1,
    ),
    "cola": _FileFormat(
        "cola", {"train": "train.tsv", "dev": "dev.tsv"},
        header=None, min_columns=2, exact_columns=True, col_a=0, col_b=None, col_label=1,
    ),
    "mrpc": _FileFormat(
        "mrpc", {"train": "train.tsv", "dev": "dev.tsv"},
        header="Quality\t#1 ID\t#2 ID\t#1 String\t#2 String",
        min_columns=5, exact_columns=True, col_a=3, col_b=4, col_label=0,
    ),
    "rte": _FileFormat(
        "rte", {"train": "train.tsv", "dev": "dev.tsv"},
        header="sentence1\tsentence2\tlabel\tidx", min_columns=4, exact_columns=True, col_a=0, col_b=1,
        col_label=2,
    ),
}

_STSB_MIN, _STSB_MAX = 0.0, 5.0


def _parse_class_id(raw: str, num_labels: int, where: str) -> int:
    """Parse a class id such as ``"1"``.

    Args:
        raw: the label field.
        num_labels: valid ids are ``0 .. num_labels - 1``.
        where: ``"file:line"`` for the error message.

    Raises:
        ValueError: if ``raw`` is not an integer in range.
    """
    try:
        value = int(raw.strip())
    except ValueError:
        raise ValueError(f"{where}: label {raw!r} is not an integer class id") from None
    if not 0 <= value < num_labels:
        raise ValueError(f"{where}: label {value} is outside 0..{num_labels - 1}")
    return value


def _parse_score(raw: str, where: str) -> float:
    """Parse an STS-B similarity score (a float in ``[0, 5]``).

    Args:
        raw: the score field, e.g. ``"3.800"``.
        where: ``"file:line"`` for the error message.

    Raises:
        ValueError: if ``raw`` is not a finite number in ``[0, 5]``.
    """
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"{where}: score {raw!r} is not a number") from None
    if not math.isfinite(value) or not _STSB_MIN <= value <= _STSB_MAX:
        raise ValueError(f"{where}: score {value!r} is outside [{_STSB_MIN:g}, {_STSB_MAX:g}]")
    return value


def _read_rows(path: Path, fmt: _FileFormat, limit: int | None) -> list[tuple[int, list[str]]]:
    """Read the data rows of one file as ``(1-based line number, fields)``.

    Args:
        path: the file.
        fmt: its format (header and column counts are checked here).
        limit: stop after this many data rows (``None``: all).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: on a wrong header, an empty line or a wrong number of fields (naming file and line),
            or when the file holds no data rows.
    """
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8-sig")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last row
    first = 0
    if fmt.header is not None:
        got = lines[0].rstrip("\r") if lines else "<empty file>"
        if got != fmt.header:
            raise ValueError(f"{path}:1: expected header {fmt.header!r}, got {got!r}")
        first = 1
    rows: list[tuple[int, list[str]]] = []
    for index in range(first, len(lines)):
        if limit is not None and len(rows) >= limit:
            break
        line_no = index + 1
        line = lines[index].rstrip("\r")
        if line.strip() == "":
            raise ValueError(f"{path}:{line_no}: empty line")
        fields = line.split("\t")
        if len(fields) < fmt.min_columns or (fmt.exact_columns and len(fields) != fmt.min_columns):
            wanted = f"{'' if fmt.exact_columns else 'at least '}{fmt.min_columns}"
            raise ValueError(f"{path}:{line_no}: expected {wanted} tab-separated fields, got {len(fields)}")
        rows.append((line_no, fields))
    if not rows:
        raise ValueError(f"{path}: the file holds no data rows")
    return rows


def load_split(
    task: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
) -> TextSplit:
    """Load one split of one bundled task.

    Args:
        task: one of ``TASKS`` (``"stsb"``, ``"sst2"``, ``"cola"``, ``"mrpc"``, ``"rte"``).
        split: one of ``TASKS[task].splits`` (``"train"``, ``"dev"``, and ``"test"`` for STS-B).
        data_dir: a folder laid out like the repository's ``data/`` (``None``: see :func:`resolve_data_dir`).
        limit: keep only the first ``limit`` rows in file order (``None``: all rows). Must be ``>= 1``.

    Returns:
        A ``TextSplit``: ``texts_b`` is ``None`` for SST-2 and CoLA; labels are ``int`` class ids, or
        ``float`` scores in ``[0, 5]`` for STS-B. Sentences are returned verbatim.

    Raises:
        ValueError: unknown task or split (listing the valid ones), bad ``limit``, or a malformed row
            (naming the file and the 1-based line number).
        FileNotFoundError: missing data folder or file (naming the path).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(sorted(TASKS))}")
    spec = TASKS[task]
    if split not in spec.splits:
        raise ValueError(f"task {task!r} has no split {split!r}; valid splits: {', '.join(spec.splits)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")

    fmt = _FORMATS[task]
    path = resolve_data_dir(data_dir) / fmt.folder / fmt.files[split]
    texts_a: list[str] = []
    texts_b: list[str] | None = [] if fmt.col_b is not None else None
    labels: list = []
    for line_no, fields in _read_rows(path, fmt, limit):
        where = f"{path}:{line_no}"
        for col in (fmt.col_a, fmt.col_b):
            if col is not None and fields[col].strip() == "":
                raise ValueError(f"{where}: sentence in column {col + 1} is empty")
        texts_a.append(fields[fmt.col_a])
        if texts_b is not None:
            texts_b.append(fields[fmt.col_b])
        raw_label = fields[fmt.col_label]
        if spec.kind == "regression":
            labels.append(_parse_score(raw_label, where))
        else:
            labels.append(_parse_class_id(raw_label, spec.num_labels, where))
    return TextSplit(task=task, split=split, texts_a=texts_a, texts_b=texts_b, labels=labels)


def _strata(labels: list | None, n_validation: int) -> np.ndarray | None:
    """Stratification labels: classes as they are; scores binned by quantile; ``None`` when impossible."""
    if labels is None:
        return None
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
