"""A saved task head as the ``head`` of :func:`glot_st.export_onnx`: a module mapping embeddings to probabilities.

The exported graph embeds one sentence at a time, so only single-sentence classification heads go into it; heads
over sentence pairs (``pair``, ``regression``, ``contrastive``) are refused with the way out: export the
embeddings alone and score pairs from them.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from glot_st.train.heads import ClassificationHead, TaskHead

__all__ = ["ClassProbabilities", "probability_head"]


class ClassProbabilities(nn.Module):
    """Class probabilities of a single-sentence classification head: softmax of its logits.

    Args:
        head: a :class:`~glot_st.train.heads.ClassificationHead` (``kind == "single"``).
    """

    def __init__(self, head: ClassificationHead):
        super().__init__()
        self.head = head

    def forward(self, embeddings: Tensor) -> Tensor:
        """Float (B, D) sentence embeddings -> float (B, C) probabilities (rows sum to 1)."""
        return self.head.probabilities(embeddings)


def probability_head(head: TaskHead) -> tuple[nn.Module, list[Any]]:
    """The module and labels :func:`glot_st.export_onnx` takes for ``head``.

    Args:
        head: a loaded task head (:func:`glot_st.train.load_head`).

    Returns:
        ``(module, labels)``: :class:`ClassProbabilities` (B, D) -> (B, C) and the ``C`` labels (the head's
        ``label_names``, else the class ids ``0 .. C-1``).

    Raises:
        ValueError: a head over sentence pairs, a multi-label head, or one that predicts no classes.
    """
    if head.needs_pair:
        raise ValueError(
            f"the model's {head.kind!r} head scores sentence pairs, but the exported graph embeds one sentence at a "
            "time; export without the head (--no-head) and score pairs from the embeddings"
        )
    if head.kind == "multilabel":
        raise ValueError(
            "the model's multi-label head is not exported (the ONNX manifest describes one class per text); export "
            "without the head (--no-head) and apply the head's labels and thresholds to the embeddings"
        )
    if not isinstance(head, ClassificationHead):
        raise ValueError(f"the {head.kind!r} head predicts no classes; only classification heads can be exported")
    labels = head.label_names if head.label_names is not None else list(range(head.num_labels))
    return ClassProbabilities(head).eval(), list(labels)
