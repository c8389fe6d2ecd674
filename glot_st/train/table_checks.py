"""The user's table checked in one pass, in the user's terms: file lines and column names.

- :func:`load_table_file` reads a file with ``datasets``' local loaders and turns their failures into one line
  naming the file and the cause: an empty file, a file with a header but no rows, text that is not UTF-8 (with
  its line), a CSV / TSV line with another number of fields than the header, a JSON Lines line that is not a
  JSON object (with its line).
- :func:`check_columns` refuses one column named for two roles (a pair of a text with itself).
- :func:`check_rows` checks every row before anything else uses the data (the validation slice included):
  every text a non-empty string, every label present, a string or a finite number. A file's rows are named by
  their line (``data.csv line 5 column 'text'``), other forms by their 0-based row index.
"""

from __future__ import annotations

import csv
import json
import math
import numbers
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["check_columns", "check_rows", "file_row_namer", "load_table_file"]


def check_columns(text: str, text_b: str | None, label: str | None) -> None:
    """ValueError when one column is named for two roles (e.g. ``--text-b-column`` equal to ``--text-column``)."""
    named = [(role, name) for role, name in (("text", text), ("text_b", text_b), ("label", label)) if name is not None]
    for position, (role, name) in enumerate(named):
        for other, other_name in named[position + 1:]:
            if name == other_name:
                raise ValueError(f"column {name!r} is named as both the {role} and the {other} column; give two columns")


def load_table_file(path: Path, builder: str, options: dict[str, Any]) -> Any:
    """``datasets.load_dataset(builder, data_files=path, split="train", **options)`` with its failures explained.

    Args:
        path: an existing file.
        builder: the ``datasets`` builder (``csv``, ``json``, ``parquet``).
        options: its keyword arguments (``delimiter`` for TSV).

    Returns:
        The ``datasets.Dataset`` (at least one row).

    Raises:
        ValueError: one line naming the file and the cause.
    """
    if path.stat().st_size == 0:
        raise ValueError(f"data file {str(path)!r} is empty")
    import datasets

    try:
        table = datasets.load_dataset(builder, data_files=str(path), split="train", **options)
    except Exception as exc:  # datasets wraps parser errors in its own exception types
        cause = _diagnose(path, builder, options) or _innermost(exc)
        raise ValueError(f"cannot read data file {str(path)!r}: {cause}") from exc
    if len(table) == 0:
        raise ValueError(f"data file {str(path)!r} holds no rows (a header only?)")
    return table


def _innermost(error: BaseException) -> str:
    """The message of the innermost cause (``datasets`` wraps the parser's error)."""
    while error.__cause__ is not None or error.__context__ is not None:
        error = error.__cause__ or error.__context__
    return f"{type(error).__name__}: {error}"


def _diagnose(path: Path, builder: str, options: dict[str, Any]) -> str | None:
    """The cause of a failed read, found by a plain pass over the file, or ``None``."""
    if builder == "parquet":
        return None
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        return f"line {line} is not UTF-8 text (byte {error.start}); save the file as UTF-8"
    if builder == "json":
        return _broken_json_line(text)
    return _ragged_line(text, options.get("delimiter", ","))


def _broken_json_line(text: str) -> str | None:
    if text.lstrip().startswith("["):
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            return f"not valid JSON at line {error.lineno}: {error.msg}"
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            return f"line {number} is not valid JSON ({error.msg}); a .jsonl file holds one JSON object a line"
        if not isinstance(value, dict):
            return f"line {number} is a JSON {type(value).__name__}, not an object"
    return None


def _ragged_line(text: str, delimiter: str) -> str | None:
    reader = csv.reader(text.splitlines(), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return None
    rows = 0
    for record in reader:
        if record and len(record) != len(header):
            return (
                f"line {reader.line_num} has {len(record)} field(s) but the header has {len(header)}; "
                f"check the delimiter ({delimiter!r}) and the quoting"
            )
        rows += bool(record)
    return "the file holds no rows (a header only?)" if rows == 0 else None


def file_row_namer(path: Path, builder: str, options: dict[str, Any]) -> Callable[[int], str]:
    """``row index -> "line N"`` of a data file (the line a row starts on; computed on the first call)."""
    starts: list[int] = []

    def name(row: int) -> str:
        if builder == "parquet":
            return f"row {row + 1}"
        if not starts:
            starts.extend(_row_start_lines(path, builder, options))
        return f"line {starts[row]}" if row < len(starts) else f"row {row + 1}"

    return name


def _row_start_lines(path: Path, builder: str, options: dict[str, Any]) -> list[int]:
    text = path.read_text(encoding="utf-8", errors="replace")
    if builder == "json":
        if text.lstrip().startswith("["):
            return []  # a JSON array: rows are named by their position
        return [number for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    reader = csv.reader(text.splitlines(), delimiter=options.get("delimiter", ","))
    next(reader, None)
    starts, previous_end = [], reader.line_num
    for record in reader:
        if record:  # pandas skips blank lines
            starts.append(previous_end + 1)
        previous_end = reader.line_num
    return starts


def _text_problem(value: Any) -> str | None:
    if value is None:
        return "is missing (None)"
    if isinstance(value, float) and math.isnan(value):
        return "is missing (NaN)"
    if not isinstance(value, str):
        return f"is a {type(value).__name__} ({value!r}), not a text"
    if not value.strip():
        return "is empty"
    return None


def _label_problem(value: Any) -> str | None:
    if isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) == 1:  # a multi-label row: a list of labels
        items = value.tolist() if hasattr(value, "tolist") else list(value)
        bad = [v for v in items if isinstance(v, bool) or not isinstance(v, (str, numbers.Integral))]
        return None if not bad else f"list holds {bad[0]!r}; a multi-label row lists string or int labels"
    if value is None:
        return "is missing (None)"
    if isinstance(value, float) and math.isnan(value):
        return "is missing (NaN)"
    if isinstance(value, str) or isinstance(value, (bool, numbers.Integral)):
        return None
    if isinstance(value, numbers.Real):
        return None if math.isfinite(value) else f"is {value!r}; a score must be finite"
    return f"is a {type(value).__name__} ({value!r}); labels must be ints, floats or strings"


def check_rows(
    where: str,
    columns: Sequence[tuple[str, Sequence[Any] | None, str]],
    row_name: Callable[[int], str] = lambda row: f"row {row}",
) -> None:
    """Check every row of every column; the first problem is a ValueError in the user's terms.

    Args:
        where: the data's name (a file path, or e.g. ``"train data"``).
        columns: ``(column name, values or None, "text" | "label")``; all given columns have the same length.
        row_name: a row index as the user knows it (a file line, by default the 0-based index).

    Raises:
        ValueError: e.g. ``data.csv line 5 column 'text': text is empty``.
    """
    for name, values, role in columns:
        if values is None:
            continue
        check = _text_problem if role == "text" else _label_problem
        for row, value in enumerate(values):
            problem = check(value)
            if problem is not None:
                raise ValueError(f"{where} {row_name(row)} column {name!r}: {role} {problem}")

