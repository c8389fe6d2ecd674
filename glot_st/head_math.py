"""The forward math of a saved classification head, and a loader that needs nothing but torch and safetensors.

A trained model folder keeps its task head in ``glot_head/`` as ``glot_head.json`` (the head's config: ``kind``,
``dim``, ``num_labels``, ``label_names``, ``features``) and ``glot_head.safetensors`` (``linear.weight``,
``linear.bias``, and a multi-label head's ``thresholds``). The training kit's heads (``glot_st.train.heads``) compute their classifier input and class
probabilities with :func:`classifier_input`, :func:`class_probabilities` (softmax) and, for multi-label heads,
:func:`label_probabilities` (sigmoid) and :func:`labels_on` (per-label thresholds); :func:`load_glot_head` rebuilds a
saved single-sentence, pair or multi-label classification head as :class:`HeadProbabilities` from the same functions. This
module is bundled into the Hub-native ``glot_modeling.py`` (:mod:`glot_st.hub`), so someone without glot-st gets
the head's predictions from a Hub-native folder or repository too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.util import load_file_path

from glot_st.safe_read import load_checked_module, read_json_file

__all__ = [
    "DEFAULT_THRESHOLD",
    "HEAD_CONFIG_FILE",
    "HEAD_SUBFOLDER",
    "HEAD_WEIGHTS_FILE",
    "LEGACY_PAIR_FEATURES",
    "MULTILABEL_KIND",
    "PAIR_FEATURES",
    "HeadProbabilities",
    "class_probabilities",
    "classifier_input",
    "head_folder",
    "label_probabilities",
    "labels_on",
    "load_glot_head",
]

HEAD_CONFIG_FILE = "glot_head.json"
HEAD_WEIGHTS_FILE = "glot_head.safetensors"
# sub-folder of a saved model that holds its head (see glot_st.train.train_cached(output_dir=...))
HEAD_SUBFOLDER = "glot_head"
# the pair classifier's input: [z1; z2; |z1 - z2|; z1 * z2] ("full") or the GLOT paper's [z1; z2] ("concat")
PAIR_FEATURES = ("full", "concat")
# pair heads saved before the option existed used [z1; z2]
LEGACY_PAIR_FEATURES = "concat"
# the head kind that predicts a set of labels per text (sigmoid per label, a threshold per label)
MULTILABEL_KIND = "multilabel"
# a multi-label head's threshold before it is chosen on a validation split
DEFAULT_THRESHOLD = 0.5
# the Hugging Face Hub options head_folder passes on to sentence_transformers.util.load_file_path
HEAD_HUB_OPTIONS = ("token", "cache_folder", "revision", "local_files_only")


def classifier_input(z_a: torch.Tensor, z_b: torch.Tensor | None, features: str | None) -> torch.Tensor:
    """The input of a classification head's linear layer.

    Args:
        z_a: float (B, D) embeddings of the (first) sentences.
        z_b: float (B, D) embeddings of the second sentences (pair heads), else ``None``.
        features: ``None`` for a single-sentence head; ``"full"`` or ``"concat"`` for a pair head.

    Returns:
        Float (B, D) ``z_a``; (B, 4 D) ``[z_a; z_b; |z_a - z_b|; z_a * z_b]`` (``"full"``); (B, 2 D)
        ``[z_a; z_b]`` (``"concat"``).
    """
    if features is None:
        return z_a
    if features not in PAIR_FEATURES:
        raise ValueError(f"pair features must be one of {PAIR_FEATURES}, got {features!r}")
    if z_b is None:
        raise ValueError("a pair head needs the second sentences' embeddings (z_b)")
    if features == "concat":
        return torch.cat([z_a, z_b], dim=-1)
    return torch.cat([z_a, z_b, (z_a - z_b).abs(), z_a * z_b], dim=-1)


def class_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Float (B, C) class probabilities (softmax over classes; rows sum to 1) of float (B, C) logits."""
    return torch.softmax(logits, dim=-1)


def label_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Float (B, K) independent label probabilities (sigmoid of each logit) of a multi-label head's (B, K) logits."""
    return torch.sigmoid(logits)


def labels_on(probabilities: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Long (B, K) 0/1: label k is on where its probability (B, K) reaches its threshold ``thresholds[k]`` (K,)."""
    return (probabilities >= thresholds.to(probabilities.dtype)).long()


class HeadProbabilities(torch.nn.Module):
    """A saved classification head as a module: embeddings in, class (or label) probabilities out.

    A ``"multilabel"`` head gives each label's own probability (sigmoid) and keeps its per-label
    ``thresholds`` (K,): :func:`labels_on` ``(head(z), head.thresholds)`` are its predictions.

    Args:
        kind: ``"single"``, ``"pair"`` or ``"multilabel"``.
        dim: D, the sentence embedding size.
        num_labels: C, the number of classes (>= 2).
        features: the pair head's input (:data:`PAIR_FEATURES`); ignored for ``"single"``.
        label_names: the label of each class (C strings or numbers), or ``None``: the class ids are the labels.
    """

    def __init__(self, kind: str, dim: int, num_labels: int, features: str = LEGACY_PAIR_FEATURES,
                 label_names: list | None = None):
        super().__init__()
        if kind not in ("single", "pair", MULTILABEL_KIND):
            raise ValueError(f"only classification heads ('single', 'pair', 'multilabel') give probabilities, "
                             f"not {kind!r}")
        if int(num_labels) < 2 or int(dim) < 1:
            raise ValueError(f"a head needs dim >= 1 and num_labels >= 2, got dim={dim}, num_labels={num_labels}")
        self.features = features if kind == "pair" else None
        self.multilabel = kind == MULTILABEL_KIND
        classifier_input(torch.zeros(1, 1), torch.zeros(1, 1), self.features)  # refuses unknown features
        width = {None: 1, "concat": 2, "full": 4}[self.features] * int(dim)
        self.linear = torch.nn.Linear(width, int(num_labels))
        if self.multilabel:
            self.register_buffer("thresholds", torch.full((int(num_labels),), DEFAULT_THRESHOLD))
        self.labels = list(range(int(num_labels))) if label_names is None else list(label_names)
        if len(self.labels) != int(num_labels):
            raise ValueError(f"label_names has {len(self.labels)} entries for {num_labels} classes")

    @torch.no_grad()
    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Float (B, C) probabilities of float (B, D) embeddings ``z_a`` (and ``z_b`` for a pair head); no
        gradients (it takes the inference-mode tensors of ``encode(..., convert_to_tensor=True)``)."""
        logits = self.linear(classifier_input(z_a, z_b, self.features))
        return label_probabilities(logits) if self.multilabel else class_probabilities(logits)


def head_folder(path_or_repo_id: str | os.PathLike, **hub_options: Any) -> Path:
    """The local folder holding a saved head's two files.

    Args:
        path_or_repo_id: a head folder, a model folder holding ``glot_head/``, or a Hugging Face Hub repo id
            (its ``glot_head/`` files are fetched through the Hugging Face cache).
        **hub_options: ``token``, ``cache_folder``, ``revision``, ``local_files_only`` for a repo id.

    Raises:
        FileNotFoundError: no head config in the folder, in its ``glot_head/``, or in the repository.
        ValueError: an unknown option.
    """
    unknown = sorted(set(hub_options) - set(HEAD_HUB_OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; a head is fetched with {list(HEAD_HUB_OPTIONS)}")
    path = Path(path_or_repo_id)
    for folder in (path, path / HEAD_SUBFOLDER):
        if (folder / HEAD_CONFIG_FILE).is_file():
            return folder
    if path.is_dir() or os.path.isabs(str(path_or_repo_id)):
        raise FileNotFoundError(
            f"no saved head in {str(path)!r}: neither {str(path / HEAD_CONFIG_FILE)!r} nor "
            f"{str(path / HEAD_SUBFOLDER / HEAD_CONFIG_FILE)!r} exists"
        )
    found = [load_file_path(str(path_or_repo_id), f"{HEAD_SUBFOLDER}/{name}", **hub_options)
             for name in (HEAD_CONFIG_FILE, HEAD_WEIGHTS_FILE)]
    if any(file is None for file in found):
        raise FileNotFoundError(f"{str(path_or_repo_id)!r} holds no {HEAD_SUBFOLDER}/ with a saved head")
    return Path(found[0]).parent


def load_glot_head(path_or_repo_id: str | os.PathLike, **hub_options: Any) -> HeadProbabilities:
    """Load a saved classification head as :class:`HeadProbabilities` (no pickle; weights checked against the
    config before they are used).

    Args:
        path_or_repo_id: as for :func:`head_folder`.
        **hub_options: as for :func:`head_folder`.

    Returns:
        The head in eval mode: ``head(embeddings)`` -> float (B, C) probabilities; ``head.labels`` the C labels.

    Raises:
        FileNotFoundError: no saved head. ValueError: a head that gives no class probabilities, a bad config, or
            weights that do not fit it.
    """
    folder = head_folder(path_or_repo_id, **hub_options)
    config_path = folder / HEAD_CONFIG_FILE
    config = read_json_file(config_path, "head config")
    if not isinstance(config, dict):
        raise ValueError(f"head config {str(config_path)!r} must hold a JSON object")
    options = {key: config[key] for key in ("kind", "dim", "num_labels", "features", "label_names") if key in config}

    def build() -> HeadProbabilities:
        return HeadProbabilities(**options)

    return load_checked_module(build, folder / HEAD_WEIGHTS_FILE, f"head config {str(config_path)!r}").eval()
