"""A trained GLOT classifier in one object: the ``SentenceTransformer`` and its task head.

:class:`GLOTClassifier` loads both from a training output folder or a Hugging Face Hub repository
(:meth:`GLOTClassifier.from_pretrained`), predicts with :func:`glot_st.train.scoring.predict` /
:func:`~glot_st.train.scoring.predict_proba` (one implementation: the classifier, ``glot-st predict`` and
``predict(model, head, texts)`` give the same predictions), and saves or uploads the model with its head in
``glot_head/`` (safetensors + JSON, no pickle) as one Hub-native folder, which ``load_glot_head`` of the generated
``glot_modeling.py`` reads without glot-st.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glot_st.builder import load, push_to_hub, save
from glot_st.head_math import HEAD_SUBFOLDER
from glot_st.train.heads import TaskHead, load_head
from glot_st.train.scoring import classify, predict, predict_proba

__all__ = ["GLOTClassifier"]


class GLOTClassifier:
    """A GLOT ``SentenceTransformer`` and its task head, used together.

    Args:
        model: the ``SentenceTransformer`` (e.g. ``glot_st.load(folder)``).
        head: its :class:`~glot_st.train.heads.TaskHead` (e.g. ``load_head(folder)``); its ``dim`` must be the
            model's embedding size.

    Raises:
        ValueError: the head's ``dim`` differs from the model's embedding size.
    """

    def __init__(self, model: Any, head: TaskHead):
        dim = model.get_sentence_embedding_dimension()
        if dim is not None and dim != head.dim:
            raise ValueError(f"the model's embeddings have {dim} dimensions but the head takes {head.dim}")
        self.model = model
        self.head = head.eval()

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike, device: str | None = None,
                        **hub_options: Any) -> GLOTClassifier:
        """Load a trained model folder (``train_cached(output_dir=...)``, ``glot-st train``, :meth:`save_pretrained`)
        or Hub repository holding ``glot_head/``; the head is loaded first, so a folder without one fails fast.

        Args:
            path_or_repo_id: a local folder or a Hugging Face Hub repo id.
            device: torch device of the model (default: sentence-transformers' choice).
            **hub_options: ``token``, ``cache_folder``, ``revision``, ``local_files_only``.

        Raises:
            FileNotFoundError: no saved head. ValueError: as for :func:`glot_st.load` and
                :func:`~glot_st.train.heads.load_head`.
        """
        head = load_head(str(path_or_repo_id), **hub_options)
        model = load(str(path_or_repo_id), device=device, **hub_options)
        return cls(model, head.to(model.device))

    @property
    def labels(self) -> list | None:
        """The C labels of a classification or multi-label head (``label_names``, else the ids), ``None`` for
        scores."""
        if self.head.prediction == "score":
            return None
        names = self.head.config.get("label_names")
        return list(names) if names is not None else list(range(self.head.config["num_labels"]))

    def _split(self, texts: Sequence[Any]) -> tuple[list[str], list[str] | None]:
        """Texts as ``(texts_a, texts_b)``: pair heads take ``(a, b)`` pairs, the others strings."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings (or of (a, b) pairs), not one string")
        texts = list(texts)
        if not self.head.needs_pair:
            return texts, None
        for row, item in enumerate(texts):
            if not (isinstance(item, (tuple, list)) and len(item) == 2):
                raise ValueError(f"the {self.head.kind!r} head scores sentence pairs: row {row} is {item!r}, "
                                 "not an (a, b) pair")
        return [a for a, _ in texts], [b for _, b in texts]

    def predict(self, texts: Sequence[Any], batch_size: int | None = None, show_progress_bar: bool = False) -> list:
        """N predictions: the original labels (classification), lists of labels (multi-label) or float scores
        (regression, contrastive).

        Args:
            texts: N strings, or N ``(a, b)`` pairs for a pair head.
            batch_size: texts per ``encode`` batch (default: ``encode``'s).
            show_progress_bar: ``encode``'s progress bar.
        """
        texts_a, texts_b = self._split(texts)
        return predict(self.model, self.head, texts_a, texts_b, batch_size=batch_size,
                       show_progress_bar=show_progress_bar)

    def predict_proba(self, texts: Sequence[Any], batch_size: int | None = None,
                      show_progress_bar: bool = False) -> np.ndarray:
        """float32 (N, C) class probabilities, column ``c`` for ``labels[c]``; args as for :meth:`predict`.

        Raises:
            ValueError: the head predicts scores (regression, contrastive).
        """
        texts_a, texts_b = self._split(texts)
        return predict_proba(self.model, self.head, texts_a, texts_b, batch_size=batch_size,
                             show_progress_bar=show_progress_bar)

    def predict_with_proba(self, texts: Sequence[Any], batch_size: int | None = None,
                           show_progress_bar: bool = False) -> tuple[list, np.ndarray]:
        """``(predict(texts), predict_proba(texts))`` from one embedding pass; args as for :meth:`predict`."""
        texts_a, texts_b = self._split(texts)
        return classify(self.model, self.head, texts_a, texts_b, batch_size=batch_size,
                        show_progress_bar=show_progress_bar)

    def encode(self, texts: Sequence[str], **encode_options: Any) -> np.ndarray:
        """float32 (N, D) sentence embeddings (``SentenceTransformer.encode``; ``encode_options`` passed on)."""
        return self.model.encode(list(texts), convert_to_numpy=True, **encode_options)

    def _write_head(self, folder: Path) -> None:
        self.head.save(Path(folder) / HEAD_SUBFOLDER)

    def save_pretrained(self, path: str | os.PathLike) -> None:
        """Write the model and its head (``glot_head/``) as one Hub-native folder, atomically (:func:`glot_st.save`).

        Args:
            path: the folder (new, empty, or a saved model, which is replaced as a whole).
        """
        save(self.model, path, write_extra=self._write_head)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload the model with its head as one Hub-native folder (:func:`glot_st.push_to_hub`).

        Args:
            repo_id: ``"org/name"``.
            **kwargs: as for :func:`glot_st.push_to_hub` (``token``, ``private``, ``commit_message``, ...).

        Returns:
            The commit (or pull request) URL.
        """
        return push_to_hub(self.model, repo_id, write_extra=self._write_head, **kwargs)

