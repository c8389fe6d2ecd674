"""The user's own training data: tables, files and plain lists turned into ``TextSplit``\\ s, and the task
inferred from their columns and labels.

Accepted forms (``as_text_split``): a ``TextSplit``; a ``datasets.Dataset``; a pandas ``DataFrame``; a mapping
of column name -> list (``{"text": [...], "label": [...]}``); a tuple of plain lists ``(texts, labels)`` or
``(texts_a, texts_b, labels)`` (``labels`` may be ``None``: anchor/positive pairs); or the path of a
``.csv`` / ``.tsv`` / ``.jsonl`` / ``.json`` / ``.parquet`` file, read with ``datasets``' local loaders.
Tables name their columns with :class:`Columns` (text, optional second text, label).

The task (``infer_task``) follows from the training split:

- no labels, two texts a row           -> ``"contrastive"`` (anchor/positive pairs, InfoNCE)
- ``float`` labels, two texts a row    -> ``"regression"`` (score range read from the training labels
                                          unless ``min_score`` / ``max_score`` are given)
- ``int`` / ``bool`` / ``str`` labels  -> ``"single"`` (one text) or ``"pair"`` (two texts) classification.
  Non-negative ints are the class ids; strings (or ints with a negative value) get a label map: the sorted
  distinct training labels, saved with the head (``label_names``) so predictions come back as the original
  labels. An eval label that training never saw is an error naming it.
- a list of labels a row (or several 0/1 label columns, named ``"a,b,c"``), one text a row -> ``"multilabel"``
  (sigmoid head, per-label thresholds chosen on the validation split, micro F1; the label map is the sorted
  distinct training labels).
"""

from __future__ import annotations

import itertools
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from glot_st.train.data import TASKS
from glot_st.train.splits import TaskSpec, TextSplit, is_bool
from glot_st.train.table_checks import check_columns, check_rows, file_row_namer, load_table_file

__all__ = [
    "KIND_METRICS",
    "TABLE_EXTENSIONS",
    "Columns",
    "InferredTask",
    "PreparedSplits",
    "as_text_split",
    "infer_task",
    "prepare_splits",
    "read_table",
    "read_texts",
    "task_from_head",
]

# extension -> (datasets builder, its keyword arguments)
TABLE_EXTENSIONS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"delimiter": "\t"}),
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".parquet": ("parquet", {}),
}

# the metric of each task kind for the user's own data
KIND_METRICS = {"single": "accuracy", "pair": "accuracy", "regression": "spearman", "contrastive": "spearman",
                "multilabel": "micro_f1"}

CUSTOM_TASK = "custom"
# the largest int label read as a class id (a head of that many classes); larger ones are refused
MAX_CLASS_ID = 1 << 16


@dataclass(frozen=True)
class Columns:
    """Column names of a table: the text, an optional second text, an optional label.

    Attributes:
        text: column of the (first) sentence.
        text_b: column of the second sentence, or ``None`` for single sentences.
        label: column of the label, or ``None`` (anchor/positive pairs for the contrastive head).
    """

    text: str = "text"
    text_b: str | None = None
    label: str | None = "label"

    @classmethod
    def of(cls, value: Columns | Mapping[str, Any] | None) -> Columns:
        """``value`` as ``Columns``: a ``Columns``, a mapping of its fields, or ``None`` (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, Columns):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {"text", "text_b", "label"}
            if unknown:
                raise ValueError(f"unknown column roles {sorted(unknown)}; expected text, text_b, label")
            return cls(**value)
        raise TypeError(f"columns must be a Columns or a mapping, got {type(value).__name__}")


def read_table(path: str | os.PathLike) -> Any:
    """Read a ``.csv``, ``.tsv``, ``.jsonl`` / ``.json`` (one object a line) or ``.parquet`` file.

    Args:
        path: the file.

    Returns:
        A ``datasets.Dataset`` (read by ``datasets.load_dataset`` with its local loaders; nothing is
        downloaded).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown extension (listing the known ones), an empty file, a file without rows, or a
            file ``datasets`` cannot parse (naming the cause: encoding, a ragged or broken line and its number).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TABLE_EXTENSIONS:
        raise ValueError(
            f"{str(path)!r}: unknown file type {suffix or '(no extension)'!r}; expected one of "
            f"{', '.join(TABLE_EXTENSIONS)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    return load_table_file(path, *TABLE_EXTENSIONS[suffix])


def read_texts(path: str | os.PathLike, text_column: str | None = None) -> list[str]:
    """The texts of a ``.txt`` file (one a line) or of one column of a table (see :func:`read_table`).

    Args:
        path: the file.
        text_column: the column of a table (default ``"text"``); ignored for ``.txt``.

    Raises:
        FileNotFoundError: missing file. ValueError: empty line (naming it), missing column, unknown type.
    """
    path = Path(path)
    if path.suffix.lower() != ".txt":
        table = read_table(path)
        return list(_column(table, text_column or Columns.text, str(path)))
    if not path.is_file():
        raise FileNotFoundError(f"input file {str(path)!r} does not exist")
    lines = path.read_text(encoding="utf-8-sig").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    texts = [line.rstrip("\r") for line in lines]
    for number, text in enumerate(texts, start=1):
        if not text.strip():
            raise ValueError(f"{path}:{number}: empty line (one non-empty text a line keeps rows aligned)")
    if not texts:
        raise ValueError(f"{path}: the file holds no texts")
    return texts


def _column_names(table: Any) -> list[str]:
    names = getattr(table, "column_names", None)
    if names is None:
        names = list(table.columns) if hasattr(table, "columns") else list(table)
    return [str(n) for n in names]


def _column(table: Any, name: str, where: str) -> list:
    names = _column_names(table)
    if name not in names:
        raise ValueError(f"{where}: no column {name!r}; available columns: {', '.join(names) or '(none)'}")
    values = table[name]
    return values.tolist() if hasattr(values, "tolist") else list(values)


def as_text_split(
    data: Any, columns: Columns | Mapping[str, Any] | None = None, *, name: str = CUSTOM_TASK, split: str = "train"
) -> TextSplit:
    """Any accepted form as a ``TextSplit`` with the raw labels (strings, ints, floats) or ``None``.

    Args:
        data: a ``TextSplit`` (returned as is), ``datasets.Dataset``, pandas ``DataFrame``, mapping of columns,
            tuple ``(texts, labels)`` / ``(texts_a, texts_b, labels)``, or a file path (see :func:`read_table`).
        columns: the column names of a table form (default ``Columns()``: ``text`` and ``label``).
        name: the split's ``task`` name (names its cache folder).
        split: the split's role (``"train"``, ``"validation"``, ``"eval"``).

    Raises:
        ValueError: a missing column (naming the available ones), ragged columns.
        TypeError: an unsupported form.
    """
    if isinstance(data, TextSplit):
        return data
    columns = Columns.of(columns)
    check_columns(columns.text, columns.text_b, columns.label)
    row_name = None
    if isinstance(data, (str, os.PathLike)):
        where = str(data)
        data = read_table(data)
        row_name = file_row_namer(Path(where), *TABLE_EXTENSIONS[Path(where).suffix.lower()])
    else:
        where = f"{split} data"
    if isinstance(data, tuple):
        if len(data) == 2:
            texts_a, texts_b, labels = data[0], None, data[1]
        elif len(data) == 3:
            texts_a, texts_b, labels = data
        else:
            raise ValueError(f"{where}: a tuple must be (texts, labels) or (texts_a, texts_b, labels), got {len(data)} items")
        texts_a, texts_b, labels = list(texts_a), None if texts_b is None else list(texts_b), None if labels is None else _as_list(labels)
        check_rows(where, [("texts", texts_a, "text"), ("texts_b", texts_b, "text"), ("labels", labels, "label")])
        return TextSplit(name, split, texts_a, texts_b, labels)
    if not (hasattr(data, "column_names") or hasattr(data, "columns") or isinstance(data, Mapping)):
        raise TypeError(
            f"{where}: unsupported data of type {type(data).__name__}; pass a TextSplit, datasets.Dataset, pandas "
            "DataFrame, dict of columns, (texts, labels) / (texts_a, texts_b, labels) tuple, or a file path"
        )
    texts_a = _column(data, columns.text, where)
    texts_b = None if columns.text_b is None else _column(data, columns.text_b, where)
    labels = None if columns.label is None else _labels(data, columns.label, where)
    # every row, in the user's terms (file lines, column names), before anything slices the data
    checked = [(columns.text, texts_a, "text"), (columns.text_b, texts_b, "text"), (columns.label, labels, "label")]
    check_rows(where, checked, *([row_name] if row_name else []))
    return TextSplit(name, split, texts_a, texts_b, labels)


def _labels(data: Any, label: str, where: str) -> list:
    """The label column, or for ``"a,b,c"`` (several 0/1 columns) each row's list of the columns holding 1."""
    if "," not in label:
        return _column(data, label, where)
    names = [name.strip() for name in label.split(",")]
    if "" in names or len(set(names)) != len(names):
        raise ValueError(f"{where}: label columns {label!r} must be distinct non-empty names separated by commas")
    values = {name: _column(data, name, where) for name in names}
    for name, column in values.items():
        row = next((r for r, v in enumerate(column) if is_bool(v) or v not in (0, 1)), None)
        if row is not None:
            raise ValueError(f"{where}: label column {name!r} row {row} is {column[row]!r}; several label columns "
                             "must each hold 0 or 1")
    return [[name for name in names if values[name][row] == 1] for row in range(len(values[names[0]]))]


def _label_list(value: Any) -> list | None:
    """A multi-label row (list, tuple or 1-D array of labels) as a list; anything else ``None``."""
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) == 1:
        return value.tolist() if hasattr(value, "tolist") else list(value)
    return None


def _as_list(values: Any) -> list:
    return values.tolist() if hasattr(values, "tolist") else list(values)


@dataclass(frozen=True)
class InferredTask:
    """What the training data asks for.

    Attributes:
        kind: ``"single"``, ``"pair"``, ``"regression"`` or ``"contrastive"``.
        metric: ``"accuracy"`` (classification) or ``"spearman"`` (regression, contrastive).
        num_labels: classes (classification) or 1.
        label_names: original labels by class id (string labels, or ints with a negative value), else ``None``.
        min_score, max_score: the regression score range, else ``None``.
        name: the task name the splits carry.
    """

    kind: str
    metric: str
    num_labels: int = 1
    label_names: tuple | None = None
    min_score: float | None = None
    max_score: float | None = None
    name: str = CUSTOM_TASK

    @property
    def is_classification(self) -> bool:
        return self.kind in ("single", "pair")

    def task_spec(self) -> TaskSpec:
        """The ``TaskSpec`` the training loop uses."""
        return TaskSpec(self.name, self.kind, self.num_labels, self.metric, "validation", ())

    def head_config(self) -> dict[str, Any]:
        """Head arguments learned from the data: ``label_names``, or the score range."""
        if self.label_names is not None:
            return {"label_names": list(self.label_names)}
        if self.kind == "regression":
            return {"min_score": self.min_score, "max_score": self.max_score}
        return {}

    def describe(self) -> str:
        """One line, e.g. ``single-sentence classification, 3 classes (neg, neu, pos), metric accuracy``."""
        what = {
            "single": "single-sentence classification",
            "pair": "sentence-pair classification",
            "regression": "sentence-pair regression",
            "contrastive": "contrastive anchor/positive pairs",
        }.get(self.kind, self.kind)
        if self.is_classification:
            names = self.label_names if self.label_names is not None else range(self.num_labels)
            shown = ", ".join(map(str, itertools.islice(names, 10))) + (", ..." if self.num_labels > 10 else "")
            what += f", {self.num_labels} classes ({shown})"
        elif self.kind == "regression":
            what += f", scores in [{self.min_score:g}, {self.max_score:g}]"
        elif self.kind == "multilabel":
            shown = ", ".join(map(str, itertools.islice(self.label_names, 10))) + (", ..." if self.num_labels > 10 else "")
            what = f"multi-label classification, {self.num_labels} labels ({shown})"
        return f"{what}, metric {self.metric}"

    def encode_labels(self, split: TextSplit) -> TextSplit:
        """The split with its labels as the head's targets: class ids for a label map, bools as ints.

        Raises:
            ValueError: a label training never saw (naming it, its row and the known labels).
        """
        if split.labels is not None and self.kind == "multilabel":
            return replace(split, labels=self._indicators(split))
        if split.labels is None or not self.is_classification:
            return split
        where = f"{split.split} split {split.task}"
        if self.label_names is None:
            return replace(split, labels=[int(v) if is_bool(v) else v for v in split.labels])
        index = {name: i for i, name in enumerate(self.label_names)}
        out = []
        for row, value in enumerate(split.labels):
            if value not in index or is_bool(value):
                known = ", ".join(map(repr, self.label_names[:20]))
                raise ValueError(
                    f"{where}: label {value!r} at row {row} was not seen in the training data (known labels: {known})"
                )
            out.append(index[value])
        return replace(split, labels=out)

    def _indicators(self, split: TextSplit) -> list[list[int]]:
        """A multi-label split's rows of labels as K 0/1 indicators (ValueError naming an unseen label's row)."""
        index = {name: i for i, name in enumerate(self.label_names)}
        out = []
        for row, value in enumerate(split.labels):
            labels = _label_list(value)
            if labels is None:
                raise ValueError(f"{split.split} split {split.task}: label at row {row} is {value!r}, not a list of labels")
            unseen = [v for v in labels if is_bool(v) or v not in index]
            if unseen:
                known = ", ".join(map(repr, self.label_names[:20]))
                raise ValueError(f"{split.split} split {split.task}: row {row} has label {unseen[0]!r}, which the "
                                 f"training data never has (known labels: {known})")
            out.append([int(name in labels) for name in self.label_names])
        return out

    def decode(self, class_ids: Sequence[Any]) -> list:
        """Class ids as the original labels (the ids themselves without a label map); for a multi-label task,
        rows of K 0/1 indicators as lists of the labels that are on."""
        if self.kind == "multilabel":
            return [[name for name, on in zip(self.label_names, row) if on] for row in class_ids]
        ids = [int(i) for i in class_ids]
        return ids if self.label_names is None else [self.label_names[i] for i in ids]


def _label_type(value: Any) -> str:
    if is_bool(value):
        return "int"
    if isinstance(value, str):
        return "str"
    if isinstance(value, numbers.Integral):
        return "int"
    if isinstance(value, numbers.Real):
        return "float"
    return type(value).__name__


def infer_task(
    split: TextSplit, *, head_kind: str | None = None, head_config: Mapping[str, Any] | None = None
) -> InferredTask:
    """Infer the task from a training split's columns and labels (see the module docstring).

    Args:
        split: the training split (raw labels).
        head_kind: force a head kind (``"contrastive"`` on labelled pairs, ...); default: inferred.
        head_config: ``min_score`` / ``max_score`` given here override the range read from the labels.

    Raises:
        ValueError: mixed label types or a ``None`` label (naming the row), one class only, float labels on
            single sentences, no labels and no second text, a constant score.
    """
    where = f"{split.split} split {split.task}"
    config = dict(head_config or {})
    labels = split.labels
    if labels is None or head_kind == "contrastive":
        if split.texts_b is None:
            raise ValueError(
                f"{where} has no labels: label-free training needs anchor/positive pairs (a second text column)"
            )
        return InferredTask("contrastive", KIND_METRICS["contrastive"], name=split.task)
    if len(labels) == 0:
        raise ValueError(f"{where} has no rows")
    if head_kind == "multilabel" or any(_label_list(v) is not None for v in labels):
        return _infer_multilabel(split, where)
    types = [_label_type(v) for v in labels]
    for row, (value, kind) in enumerate(zip(labels, types)):
        if value is None or kind not in ("int", "float", "str"):
            raise ValueError(f"{where}: label at row {row} is {value!r}; labels must be ints, floats or strings")
    kinds = set(types)
    if "str" in kinds and len(kinds) > 1:
        row = next(i for i, t in enumerate(types) if t != types[0])
        raise ValueError(
            f"{where}: labels mix {types[0]} and {types[row]} values (row 0 is {labels[0]!r}, row {row} is "
            f"{labels[row]!r}); use one type: strings or ints for classes, floats for scores"
        )
    pair = split.texts_b is not None
    if "float" in kinds and head_kind not in ("single", "pair"):
        if not pair:
            raise ValueError(
                f"{where}: float labels mean regression, which scores sentence pairs; give a second text column "
                "(text_b), or int / string labels for classification"
            )
        low = config.get("min_score", min(float(v) for v in labels))
        high = config.get("max_score", max(float(v) for v in labels))
        if high < low:
            raise ValueError(f"{where}: min_score {low:g} exceeds max_score {high:g}")
        if not high > low:
            raise ValueError(f"{where}: every score is {low:g}; regression needs scores that vary")
        return InferredTask("regression", KIND_METRICS["regression"], 1, None, float(low), float(high), split.task)
    values = [int(v) if is_bool(v) else v for v in labels]
    distinct = sorted(set(values))
    if len(distinct) < 2:
        raise ValueError(f"{where}: every label is {distinct[0]!r}; classification needs at least 2 classes")
    kind = head_kind or ("pair" if pair else "single")
    if kinds == {"str"} or distinct[0] < 0 or any(not float(v).is_integer() for v in distinct):
        return InferredTask(kind, KIND_METRICS[kind], len(distinct), tuple(distinct), name=split.task)
    if distinct[-1] >= MAX_CLASS_ID:
        raise ValueError(
            f"{where}: label {distinct[-1]} read as a class id would mean {distinct[-1] + 1} classes (at most "
            f"{MAX_CLASS_ID} are allowed); use class ids 0..C-1, or string labels"
        )
    return InferredTask(kind, KIND_METRICS[kind], int(distinct[-1]) + 1, name=split.task)


def _infer_multilabel(split: TextSplit, where: str) -> InferredTask:
    """The multi-label task of a split whose labels are lists (see :func:`infer_task`)."""
    rows = [_label_list(v) for v in split.labels]
    bad = next((row for row, labels in enumerate(rows) if labels is None), None)
    if bad is not None:
        raise ValueError(f"{where}: label at row {bad} is {split.labels[bad]!r}, not a list; multi-label data has a "
                         "list of labels in every row (or several 0/1 label columns)")
    if split.texts_b is not None:
        raise ValueError(f"{where}: multi-label classification takes one text a row; drop the second text column")
    distinct = set(itertools.chain.from_iterable(rows))
    if len({type(v) is str for v in distinct}) > 1:
        raise ValueError(f"{where}: multi-label rows mix string and int labels; use one type")
    if len(distinct) < 2:
        raise ValueError(f"{where}: the label lists hold {len(distinct)} distinct label(s); multi-label "
                         "classification needs at least 2")
    names = tuple(sorted(distinct))
    return InferredTask("multilabel", KIND_METRICS["multilabel"], len(names), names, name=split.task)


def task_from_head(head: Any) -> InferredTask:
    """The task a trained head was made for (its kind, label map, score range), e.g. to score new data."""
    config = head.config
    names = config.get("label_names")
    return InferredTask(
        head.kind,
        KIND_METRICS[head.kind],
        config.get("num_labels", 1),
        None if names is None else tuple(names),
        config.get("min_score"),
        config.get("max_score"),
    )


@dataclass(frozen=True)
class PreparedSplits:
    """The splits of one run, converted and with the task settled.

    Attributes:
        train: the training split (labels as the head's targets).
        validation: the split selecting the epoch (given, or later carved from ``train``), or ``None``.
        evaluation: the split scored for the history and the report (never selecting), or ``None``.
        spec: the ``TaskSpec``.
        head_config: the head arguments, the learned label map or score range included.
        inferred: the inferred task, or ``None`` for a bundled task / an explicit ``TaskSpec``.
    """

    train: TextSplit
    validation: TextSplit | None
    evaluation: TextSplit | None
    spec: TaskSpec
    head_config: dict[str, Any] = field(default_factory=dict)
    inferred: InferredTask | None = None

    def describe(self) -> str:
        """One line naming the task kind, its classes or score range, and the metric."""
        if self.inferred is not None:
            return self.inferred.describe()
        spec = self.spec
        classes = f", {spec.num_labels} classes" if spec.kind in ("single", "pair") else ""
        return f"task {spec.name}: {spec.kind}{classes}, metric {spec.metric}"

    def check_same_task(self) -> None:
        """Raise ``ValueError`` when the validation or eval split names another task than the training split."""
        for role, other in (("eval", self.evaluation), ("validation", self.validation)):
            if other is not None and other.task != self.train.task:
                raise ValueError(f"train split is task {self.train.task!r} but {role} split is task {other.task!r}")


def prepare_splits(
    train: Any,
    eval_split: Any = None,
    validation_split: Any = None,
    *,
    columns: Columns | Mapping[str, Any] | None = None,
    task: TaskSpec | None = None,
    head_kind: str | None = None,
    head_config: Mapping[str, Any] | None = None,
) -> PreparedSplits:
    """Convert the training, eval and validation splits, and settle the task.

    A bundled task's ``TextSplit`` (its ``task`` in ``TASKS``) or an explicit ``task`` keeps that
    ``TaskSpec`` and the labels as they are; anything else has its task inferred from the training split
    (:func:`infer_task`), and every split's labels encoded with the training split's label map.

    Args:
        train: the training data in any form :func:`as_text_split` accepts.
        eval_split: the eval data in the same form, or ``None``.
        validation_split: the validation data in the same form, or ``None``.
        columns: column names of table forms.
        task: an explicit ``TaskSpec`` (no inference).
        head_kind: the head kind asked for (inference respects it).
        head_config: head arguments given by the caller; they win over the learned ones.

    Raises:
        ValueError: a split of another task than the training split, or what :func:`as_text_split` and
            :func:`infer_task` raise.
    """
    train = as_text_split(train, columns, split="train")
    convert = lambda data, role: None if data is None else as_text_split(data, columns, name=train.task, split=role)  # noqa: E731
    evaluation, validation = convert(eval_split, "eval"), convert(validation_split, "validation")
    config = dict(head_config or {})
    if task is not None or train.task in TASKS:
        prepared = PreparedSplits(train, validation, evaluation, task if task is not None else TASKS[train.task], config)
    else:
        inferred = infer_task(train, head_kind=head_kind, head_config=config)
        encode = lambda split: None if split is None else inferred.encode_labels(split)  # noqa: E731
        evaluation, validation = encode(evaluation), encode(validation)  # eval first: its errors come first
        prepared = PreparedSplits(
            encode(train), validation, evaluation, inferred.task_spec(), {**inferred.head_config(), **config}, inferred
        )
    prepared.check_same_task()
    return prepared
