"""Predict and score with a trained model and its head on new texts (the model encodes them end to end).

``predict`` returns labels as the user gave them (strings for a label map), or scores; ``evaluate`` scores a
labelled split with the task metric of the head's kind (accuracy for classification, Spearman otherwise).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glot_st.train.cache import validate_texts
from glot_st.train.inputs import Columns, as_text_split, task_from_head
from glot_st.train.metrics import compute_metric

__all__ = [
    "PREDICTION_EXTENSIONS",
    "EvalResult",
    "check_predictions_path",
    "classify",
    "evaluate",
    "predict",
    "predict_proba",
    "write_predictions",
]

PREDICTION_EXTENSIONS = (".jsonl", ".csv", ".tsv")


def _embed(model: Any, texts: list[str], batch_size: int | None, show_progress_bar: bool) -> torch.Tensor:
    options = {} if batch_size is None else {"batch_size": batch_size}
    with torch.no_grad():
        z = model.encode(texts, convert_to_tensor=True, show_progress_bar=show_progress_bar, **options)
    return z.float().cpu()


def _head_inputs(model, head, texts_a, texts_b, batch_size, show_progress_bar) -> tuple:
    """``(z_a, z_b)``: float (N, D) embeddings of the texts on the head's device (``z_b`` None for single heads)."""
    texts_a = validate_texts(texts_a, name="texts_a")
    if head.needs_pair and texts_b is None:
        raise ValueError(f"the {head.kind!r} head scores sentence pairs: give the second texts (texts_b)")
    if not head.needs_pair and texts_b is not None:
        raise ValueError(f"the {head.kind!r} head takes single sentences: drop the second texts (texts_b)")
    if texts_b is not None:
        texts_b = validate_texts(texts_b, name="texts_b")
        if len(texts_b) != len(texts_a):
            raise ValueError(f"texts_b has {len(texts_b)} rows, texts_a has {len(texts_a)}")
    z_a = _embed(model, texts_a, batch_size, show_progress_bar)
    if z_a.shape[1] != head.dim:
        raise ValueError(f"the model's embeddings have {z_a.shape[1]} dimensions but the head takes {head.dim}")
    z_b = None if texts_b is None else _embed(model, texts_b, batch_size, show_progress_bar)
    head.eval()
    device = next(head.parameters(), torch.empty(0)).device
    return z_a.to(device), None if z_b is None else z_b.to(device)


def _decoded(head: Any, raw: torch.Tensor) -> list:
    """Class ids (B,) as the head's labels, label indicators (B, K) as lists of labels, or float scores (B,)."""
    if head.prediction in ("class", "labels"):
        return task_from_head(head).decode(raw.cpu().tolist())
    return [float(v) for v in raw.cpu().tolist()]


def _check_gives_probabilities(head: Any) -> None:
    if not callable(getattr(head, "probabilities", None)):
        raise ValueError(
            f"the {head.kind!r} head predicts scores, not classes, so it has no class probabilities; use predict"
        )


def predict(
    model: Any,
    head: Any,
    texts_a: list[str],
    texts_b: list[str] | None = None,
    *,
    batch_size: int | None = None,
    show_progress_bar: bool = False,
) -> list:
    """Predictions of ``head`` on the model's embeddings of the texts.

    Args:
        model: the ``SentenceTransformer`` (``glot_st.load(output_dir)``).
        head: its head (``glot_st.train.load_head(output_dir)``).
        texts_a: N texts. texts_b: N second texts for pair heads, else ``None``.
        batch_size: texts per ``encode`` batch (default: ``encode``'s).
        show_progress_bar: ``encode``'s progress bar.

    Returns:
        N labels (the original labels for a label map, else class ids) for classification heads, N lists of
        labels for the multi-label head, N float scores for the regression and contrastive heads.
    """
    z_a, z_b = _head_inputs(model, head, texts_a, texts_b, batch_size, show_progress_bar)
    return _decoded(head, head.predict(z_a, z_b))


def predict_proba(
    model: Any,
    head: Any,
    texts_a: list[str],
    texts_b: list[str] | None = None,
    *,
    batch_size: int | None = None,
    show_progress_bar: bool = False,
) -> np.ndarray:
    """Class probabilities of a classification head on the model's embeddings of the texts.

    Args:
        model, head, texts_a, texts_b, batch_size, show_progress_bar: as for :func:`predict`.

    Returns:
        float32 (N, C) probabilities, column ``c`` for the head's class ``c`` (its ``label_names[c]``); for the
        multi-label head each label's own probability (rows need not sum to 1).

    Raises:
        ValueError: a head that predicts scores (regression, contrastive), checked before any text is embedded.
    """
    return classify(model, head, texts_a, texts_b, batch_size=batch_size, show_progress_bar=show_progress_bar)[1]


def classify(
    model: Any,
    head: Any,
    texts_a: list[str],
    texts_b: list[str] | None = None,
    *,
    batch_size: int | None = None,
    show_progress_bar: bool = False,
) -> tuple[list, np.ndarray]:
    """:func:`predict` and :func:`predict_proba` from one embedding pass: ``(N labels, float32 (N, C))``.

    Args:
        model, head, texts_a, texts_b, batch_size, show_progress_bar: as for :func:`predict`.

    Raises:
        ValueError: as for :func:`predict_proba`.
    """
    _check_gives_probabilities(head)
    z_a, z_b = _head_inputs(model, head, texts_a, texts_b, batch_size, show_progress_bar)
    probabilities = head.probabilities(z_a, z_b).float().cpu().numpy()
    return _decoded(head, head.predict(z_a, z_b)), probabilities


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate`: ``metric_name``, ``metric``, ``rows``, the ``predictions`` and
    ``other_metrics`` (``{"macro_f1": ...}`` for a multi-label head, else empty)."""

    metric_name: str
    metric: float
    rows: int
    predictions: list
    other_metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON summary without the predictions."""
        return {"metric": self.metric, "metric_name": self.metric_name, "rows": self.rows, **self.other_metrics}


def evaluate(
    model: Any,
    head: Any,
    data: Any,
    columns: Columns | dict[str, Any] | None = None,
    *,
    batch_size: int | None = None,
    show_progress_bar: bool = False,
) -> EvalResult:
    """Score a labelled split with the task metric of the head (accuracy, or Spearman for scores).

    Args:
        model, head: as for :func:`predict`.
        data: labelled data in any form of ``glot_st.train.inputs.as_text_split`` (a file path included).
        columns: its column names.

    Raises:
        ValueError: no label column, a label the head never saw in training (naming it), a missing column.
    """
    split = as_text_split(data, columns, split="eval")
    if split.labels is None:
        raise ValueError("evaluation needs labels: name the label column")
    task = task_from_head(head)
    gold = task.encode_labels(split).labels
    raw = head.predict(*_head_inputs(model, head, split.texts_a, split.texts_b, batch_size, show_progress_bar)).cpu()
    extra = {}
    if head.prediction == "labels":  # multi-label: (N, K) indicators; macro F1 reported beside micro F1
        value = compute_metric(task.metric, raw.numpy(), gold)
        extra = {"macro_f1": float(compute_metric("macro_f1", raw.numpy(), gold))}
        predictions = task.decode(raw.tolist())
    elif head.prediction == "class":
        ids = raw.tolist()
        value = compute_metric(task.metric, ids, [int(g) for g in gold])
        predictions = task.decode(ids)
    else:
        predictions = [float(v) for v in raw.tolist()]
        value = compute_metric(task.metric, predictions, gold)
    return EvalResult(task.metric, float(value), len(predictions), predictions, extra)


def check_predictions_path(path: str | os.PathLike) -> Path:
    """Check the extension of a predictions file (``.jsonl``, ``.csv``, ``.tsv``) before any work is done."""
    path = Path(path)
    if path.suffix.lower() not in PREDICTION_EXTENSIONS:
        raise ValueError(f"predictions file {str(path)!r} must end in one of {', '.join(PREDICTION_EXTENSIONS)}")
    if path.parent.exists() and not path.parent.is_dir():
        raise ValueError(f"predictions file {str(path)!r}: {str(path.parent)!r} is not a folder")
    return path


def write_predictions(path: str | os.PathLike, predictions: list) -> None:
    """Write predictions in input order: ``.jsonl`` (``{"prediction": p}`` a line) or ``.csv`` / ``.tsv``
    (one column ``prediction``); the folder is created if missing."""
    path = check_predictions_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".jsonl":
        lines = (json.dumps({"prediction": p}) for p in predictions)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return
    import pandas as pd

    pd.DataFrame({"prediction": predictions}).to_csv(
        path, sep="\t" if path.suffix.lower() == ".tsv" else ",", index=False
    )
