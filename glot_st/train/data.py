"""Loaders of the GLUE-lite / STS-B copy in the repository's top-level ``data/`` folder.

The five tasks and their files are described in ``data/README.md``. The copy is not part of the wheel: a
clone finds it by itself, pip users pass ``data_dir`` (``--data-dir``) or set ``GLOT_ST_DATA_DIR``. Every file is
tab-separated and read with quoting off (MRPC and SST-2 text contains quote characters); a file is
decoded as UTF-8 and a leading byte-order mark (MRPC) is dropped. Rows are split on ``"\\n"`` only, so
text holding other Unicode line separators stays in its row.

The kit's data types (``TextSplit``, ``TaskSpec``, ``validation_slice``) live in :mod:`glot_st.train.splits`;
they are re-exported here, where earlier versions defined them.

Public API::

    TASKS, resolve_data_dir(override=None), load_split(task, split, data_dir=None, limit=None)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from glot_st.train.splits import (
    VALIDATION_FRACTION,
    VALIDATION_SEED,
    TaskSpec,
    TextSplit,
    is_bool,
    validation_slice,
)

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

DATA_DIR_ENV = "GLOT_ST_DATA_DIR"
# a clone (or editable install) keeps the copy at the repository root, two folders above this package
_CLONE_DATA = Path(__file__).resolve().parents[2] / "data"


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
