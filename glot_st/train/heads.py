"""Task heads trained on pooled sentence embeddings ``z`` (B, D) during cached training.

Four heads, each a ``torch.nn.Module`` with ``check_labels(labels) -> targets`` (validate and convert a
split's labels once), ``loss(z_a, z_b, targets)``, ``predict(z_a, z_b)``, a JSON ``config`` and
``save(dir)``; :func:`load_head` rebuilds any of them (``glot_head.json`` + ``glot_head.safetensors``):

- ``"single"``       ClassificationHead: linear on z.
- ``"pair"``         PairClassificationHead: linear on [z1; z2; |z1 - z2|; z1 * z2] (default) or on the GLOT
                     paper's [z1; z2].
- ``"regression"``   RegressionHead: project z, cosine of the projected pair, MSE against the score scaled
                     to [0, 1].
- ``"contrastive"``  ContrastiveHead: InfoNCE over in-batch negatives with a temperature (no labels).
- ``"multilabel"``   MultiLabelHead: linear on z, a sigmoid and binary cross-entropy per label, per-label
                     thresholds chosen on the validation split.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from glot_st.head_math import (
    DEFAULT_THRESHOLD,
    HEAD_CONFIG_FILE,
    HEAD_SUBFOLDER,
    HEAD_WEIGHTS_FILE,
    LEGACY_PAIR_FEATURES,
    MULTILABEL_KIND,
    PAIR_FEATURES,
    class_probabilities,
    classifier_input,
    head_folder,
    label_probabilities,
    labels_on,
)
from glot_st.safe_read import load_checked_module, read_json_file
from glot_st.train.data import is_bool
from glot_st.train.metrics import best_f1_thresholds

__all__ = [
    "HEAD_KINDS",
    "HEAD_SUBFOLDER",
    "MultiLabelHead",
    "PAIR_FEATURES",
    "ClassificationHead",
    "ContrastiveHead",
    "PairClassificationHead",
    "RegressionHead",
    "TaskHead",
    "load_head",
    "make_head",
]



def _row_name(position: int, rows: list[int] | None) -> str:
    return f"row {rows[position] if rows is not None else position}"


def _as_rows(row_ids: Any, n: int) -> list[int] | None:
    if row_ids is None:
        return None
    rows = [int(r) for r in (row_ids.tolist() if isinstance(row_ids, torch.Tensor) else row_ids)]
    if len(rows) != n:
        raise ValueError(f"row_ids has {len(rows)} entries for {n} labels")
    return rows


def _label_values(labels: Any) -> list[Any]:
    """Labels as a Python list (tensors and arrays through ``tolist``, so their scalars become Python's)."""
    if isinstance(labels, (torch.Tensor, np.ndarray)):
        return labels.reshape(-1).tolist()
    return list(labels)


def _check_pair(z_a: torch.Tensor, z_b: torch.Tensor | None, dim: int, need_b: bool) -> None:
    if z_a.ndim != 2 or z_a.shape[1] != dim:
        raise ValueError(f"z_a must have shape (B, {dim}), got {tuple(z_a.shape)}")
    if need_b:
        if z_b is None:
            raise ValueError("this head needs a second sentence: z_b (texts_b) is None")
        if z_b.shape != z_a.shape:
            raise ValueError(f"z_b must have the shape of z_a {tuple(z_a.shape)}, got {tuple(z_b.shape)}")


def _check_targets(targets: Any, z_a: torch.Tensor) -> torch.Tensor:
    if not isinstance(targets, torch.Tensor):
        raise TypeError(
            f"targets must be the tensor returned by check_labels(labels), got {type(targets).__name__}"
        )
    if targets.shape != (z_a.shape[0],):
        raise ValueError(f"targets must have shape ({z_a.shape[0]},) like z_a's batch, got {tuple(targets.shape)}")
    return targets


class TaskHead(torch.nn.Module):
    """Base class: a head over pooled embeddings.

    Subclasses set ``kind``, ``needs_pair`` (takes ``z_b``), ``needs_labels`` (trains on labels) and
    ``prediction`` (``"class"`` or ``"score"``), and implement ``forward``, ``check_labels``, ``loss`` and
    ``predict``. Training calls ``check_labels`` once per split and hands batches of its output to ``loss``.

    Args:
        dim: D, the pooled embedding size.
    """

    kind: str = ""
    needs_pair: bool = False
    needs_labels: bool = True
    prediction: str = "class"

    def __init__(self, dim: int):
        super().__init__()
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.dim = int(dim)

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments plus ``kind``."""
        return {"kind": self.kind, "dim": self.dim}

    def check_labels(self, labels: Any, row_ids: Any = None) -> torch.Tensor:
        """Validate labels and convert them to the targets :meth:`loss` takes (call once per split).

        Args:
            labels: N labels (list, ndarray or tensor).
            row_ids: N dataset row numbers used in error messages (default: position in ``labels``).

        Returns:
            Tensor (N,): long class ids, or float32 targets.

        Raises:
            ValueError: a label out of range, ``None``, non-finite or of the wrong kind, naming its row.
        """
        raise NotImplementedError

    def loss(self, z_a: torch.Tensor, z_b: torch.Tensor | None, targets: torch.Tensor | None) -> torch.Tensor:
        """Scalar training loss.

        Args:
            z_a: float (B, D) embeddings of the first sentences.
            z_b: float (B, D) embeddings of the second sentences, or ``None`` for single-sentence heads.
            targets: (B,) rows of :meth:`check_labels`' output (long class ids or float targets, any device);
                ``None`` for heads with ``needs_labels = False``.

        Returns:
            0-dim float tensor.
        """
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions for the metric.

        Args:
            z_a: float (B, D).
            z_b: float (B, D), or ``None`` for single-sentence heads.

        Returns:
            long (B,) class ids (``prediction == "class"``) or float (B,) scores (``"score"``).
        """
        raise NotImplementedError

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``glot_head.json`` and ``glot_head.safetensors`` into ``directory`` (created if missing).

        Args:
            directory: target folder.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / HEAD_CONFIG_FILE).write_text(json.dumps(self.config, indent=2, sort_keys=True), encoding="utf-8")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / HEAD_WEIGHTS_FILE))


def _class_labels(labels: Any, num_labels: int, row_ids: Any) -> torch.Tensor:
    values = _label_values(labels)
    rows = _as_rows(row_ids, len(values))
    out = []
    for pos, value in enumerate(values):
        if (
            value is None
            or is_bool(value)
            or not isinstance(value, numbers.Real)
            or not float(value).is_integer()
        ):
            raise ValueError(
                f"label at {_row_name(pos, rows)} is {value!r}; expected an integer class in [0, {num_labels})"
            )
        as_int = int(value)
        if not 0 <= as_int < num_labels:
            raise ValueError(f"label at {_row_name(pos, rows)} is {as_int}, outside [0, {num_labels})")
        out.append(as_int)
    return torch.tensor(out, dtype=torch.long)


class ClassificationHead(TaskHead):
    """Classification: ``logits = W x + b`` with ``x = z`` (single) or ``[z1; z2]`` (pair, ``num_inputs = 2``).

    Args:
        dim: D (the linear layer takes ``num_inputs * D`` inputs).
        num_labels: number of classes C (>= 2).
        label_names: the original label of each class id (C JSON scalars, e.g. strings), saved in the config
            so predictions can be mapped back (``glot_st.train.inputs.task_from_head``); ``None``: the
            class ids are the labels.
    """

    kind = "single"
    needs_pair = False
    prediction = "class"
    num_inputs = 1
    features_kind: str | None = None  # the pair features of glot_st.head_math.classifier_input (None: single)

    def __init__(self, dim: int, num_labels: int, label_names: list | None = None):
        super().__init__(dim)
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}")
        self.num_labels = int(num_labels)
        if label_names is not None and len(label_names) != self.num_labels:
            raise ValueError(f"label_names has {len(label_names)} entries for {self.num_labels} classes")
        self.label_names = None if label_names is None else list(label_names)
        self.linear = torch.nn.Linear(self.num_inputs * self.dim, self.num_labels)

    @property
    def config(self) -> dict[str, Any]:
        extra = {} if self.label_names is None else {"label_names": self.label_names}
        return {**super().config, "num_labels": self.num_labels, **extra}

    def features(self, z_a: torch.Tensor, z_b: torch.Tensor | None) -> torch.Tensor:
        """Float (B, num_inputs * D) input of the linear layer: z_a, or [z_a; z_b] for the pair head."""
        _check_pair(z_a, z_b, self.dim, need_b=self.needs_pair)
        return classifier_input(z_a, z_b, self.features_kind)

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Logits float (B, C) from z_a (B, D) (and z_b (B, D) for the pair head)."""
        return self.linear(self.features(z_a, z_b))

    def check_labels(self, labels: Any, row_ids: Any = None) -> torch.Tensor:
        """Class ids: long (N,) in ``[0, C)``; rejects ``None``, bools and non-integral numbers (naming the row)."""
        return _class_labels(labels, self.num_labels, row_ids)

    def loss(self, z_a: torch.Tensor, z_b: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the logits (B, C) against long class ids ``targets`` (B,)."""
        targets = _check_targets(targets, z_a)
        return F.cross_entropy(self(z_a, z_b), targets.to(device=z_a.device, dtype=torch.long))

    @torch.no_grad()
    def predict(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Long (B,) argmax class of the logits."""
        return self(z_a, z_b).argmax(dim=-1)

    @torch.no_grad()
    def probabilities(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Float (B, C) class probabilities (softmax of the logits) of z_a (B, D) (and z_b (B, D) for pairs)."""
        return class_probabilities(self(z_a, z_b))


class PairClassificationHead(ClassificationHead):
    """Pair classification: a linear layer on features of the two sentence embeddings.

    ``features="full"`` (the default) feeds ``[z1; z2; |z1 - z2|; z1 * z2]``, the standard sentence-pair
    features (InferSent, Sentence-BERT): the difference and product let a linear layer see how the two
    sentences relate, which ``[z1; z2]`` alone leaves to the embeddings. ``"concat"`` feeds ``[z1; z2]``, as the
    GLOT paper's code does.

    Args:
        dim: D (the linear layer takes ``4 D`` inputs for ``"full"``, ``2 D`` for ``"concat"``).
        num_labels: number of classes C (>= 2).
        features: ``"full"`` or ``"concat"``.
        label_names: as for :class:`ClassificationHead`.
    """

    kind = "pair"
    needs_pair = True

    def __init__(self, dim: int, num_labels: int, features: str = "full", label_names: list | None = None):
        if features not in PAIR_FEATURES:
            raise ValueError(f"pair features must be one of {PAIR_FEATURES}, got {features!r}")
        self.features_kind = features
        self.num_inputs = 4 if features == "full" else 2
        super().__init__(dim, num_labels, label_names=label_names)

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "features": self.features_kind}



class MultiLabelHead(ClassificationHead):
    """Multi-label classification: ``logits = W z + b`` (K labels), a sigmoid and a binary cross-entropy per
    label; label k is predicted where its probability reaches ``thresholds[k]`` (a buffer saved with the weights,
    0.5 until :meth:`calibrate` chooses it on a validation split).

    Args:
        dim: D.
        num_labels: K, the number of labels (>= 2).
        label_names: the K labels (strings or numbers), or ``None``: the label ids are the labels.
    """

    kind = MULTILABEL_KIND
    prediction = "labels"

    def __init__(self, dim: int, num_labels: int, label_names: list | None = None):
        super().__init__(dim, num_labels, label_names=label_names)
        self.register_buffer("thresholds", torch.full((self.num_labels,), DEFAULT_THRESHOLD))

    def check_labels(self, labels: Any, row_ids: Any = None) -> torch.Tensor:
        """Float32 (N, K) 0/1 label indicators from N rows of K 0/1 values; names the first bad row."""
        rows = [list(row) for row in (labels.tolist() if hasattr(labels, "tolist") else labels)]
        ids = _as_rows(row_ids, len(rows))
        for position, row in enumerate(rows):
            if len(row) != self.num_labels or any(is_bool(v) or v not in (0, 1) for v in row):
                raise ValueError(f"labels at {_row_name(position, ids)} are {row!r}; expected {self.num_labels} "
                                 "0/1 label indicators")
        return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), self.num_labels)

    def loss(self, z_a: torch.Tensor, z_b: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy of the logits (B, K) against the 0/1 ``targets`` (B, K)."""
        if not isinstance(targets, torch.Tensor) or targets.shape != (z_a.shape[0], self.num_labels):
            raise ValueError(f"targets must be the ({z_a.shape[0]}, {self.num_labels}) tensor of check_labels")
        return F.binary_cross_entropy_with_logits(self(z_a, z_b), targets.to(device=z_a.device, dtype=z_a.dtype))

    @torch.no_grad()
    def probabilities(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Float (B, K): each label's probability (sigmoid of its logit) for z_a (B, D)."""
        return label_probabilities(self(z_a, z_b))

    @torch.no_grad()
    def predict(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Long (B, K) 0/1: the labels whose probability reaches their threshold."""
        return labels_on(self.probabilities(z_a, z_b), self.thresholds)

    @torch.no_grad()
    def calibrate(self, probabilities: np.ndarray, targets: np.ndarray) -> None:
        """Set ``thresholds`` to the per-label F1-best ones on a validation split
        (:func:`glot_st.train.metrics.best_f1_thresholds`).

        Args:
            probabilities: float (N, K) :meth:`probabilities` of the validation rows.
            targets: (N, K) 0/1 gold indicators of the same rows.
        """
        chosen = best_f1_thresholds(probabilities, targets, DEFAULT_THRESHOLD)
        self.thresholds.copy_(torch.as_tensor(chosen, dtype=self.thresholds.dtype))


class RegressionHead(TaskHead):
    """STS regression: project both embeddings, predict their cosine, MSE against the scaled score.

    ``target = (score - min_score) / (max_score - min_score)`` in [0, 1] (computed by :meth:`check_labels`).

    Args:
        dim: D.
        proj_dim: output size P of the projection ``Linear(D, P)`` (default D).
        min_score: lowest gold score (0 for STS-B).
        max_score: highest gold score (5 for STS-B).
    """

    kind = "regression"
    needs_pair = True
    prediction = "score"

    def __init__(self, dim: int, proj_dim: int | None = None, min_score: float = 0.0, max_score: float = 5.0):
        super().__init__(dim)
        if not max_score > min_score:
            raise ValueError(f"max_score ({max_score}) must exceed min_score ({min_score})")
        self.proj_dim = int(proj_dim) if proj_dim is not None else self.dim
        self.min_score = float(min_score)
        self.max_score = float(max_score)
        self.proj = torch.nn.Linear(self.dim, self.proj_dim)

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "proj_dim": self.proj_dim, "min_score": self.min_score, "max_score": self.max_score}

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Cosine float (B,) of the projected pair; z_a, z_b float (B, D)."""
        _check_pair(z_a, z_b, self.dim, need_b=True)
        return F.cosine_similarity(self.proj(z_a), self.proj(z_b), dim=-1)

    def check_labels(self, labels: Any, row_ids: Any = None) -> torch.Tensor:
        """Scores scaled to [0, 1]: float32 (N,); rejects non-numbers, bools, non-finite or out-of-range scores."""
        values = _label_values(labels)
        rows = _as_rows(row_ids, len(values))
        out = []
        for pos, value in enumerate(values):
            if value is None or is_bool(value) or not isinstance(value, numbers.Real):
                raise ValueError(f"score at {_row_name(pos, rows)} is {value!r}; expected a number")
            score = float(value)
            if not math.isfinite(score) or not self.min_score <= score <= self.max_score:
                raise ValueError(
                    f"score at {_row_name(pos, rows)} is {value!r}, outside [{self.min_score}, {self.max_score}]"
                )
            out.append((score - self.min_score) / (self.max_score - self.min_score))
        return torch.tensor(out, dtype=torch.float32)

    def loss(self, z_a: torch.Tensor, z_b: torch.Tensor | None, targets: torch.Tensor) -> torch.Tensor:
        """MSE of the cosine (B,) against the scaled scores ``targets`` (B,) from :meth:`check_labels`."""
        targets = _check_targets(targets, z_a)
        return F.mse_loss(self(z_a, z_b), targets.to(device=z_a.device, dtype=z_a.dtype))

    @torch.no_grad()
    def predict(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Float (B,) cosine of the projected pair."""
        return self(z_a, z_b)


class ContrastiveHead(TaskHead):
    """InfoNCE with in-batch negatives: pair i's positive is z_b[i], every other z_b[j] is a negative.

    ``loss = CE(cos(p(z_a), p(z_b)^T) / temperature, arange(B))`` where ``p`` is an optional projection.
    Takes no labels (``needs_labels = False``): the positives are the pairs.

    Args:
        dim: D.
        temperature: softmax temperature (> 0).
        proj_dim: size of a ``Linear(D, P)`` projection, or ``None`` for none (identity).
    """

    kind = "contrastive"
    needs_pair = True
    needs_labels = False
    prediction = "score"

    def __init__(self, dim: int, temperature: float = 0.05, proj_dim: int | None = None):
        super().__init__(dim)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.proj_dim = None if proj_dim is None else int(proj_dim)
        self.proj = torch.nn.Identity() if proj_dim is None else torch.nn.Linear(self.dim, self.proj_dim)

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "temperature": self.temperature, "proj_dim": self.proj_dim}

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Similarity logits float (B, B): cosine of every (a_i, b_j) over the temperature."""
        _check_pair(z_a, z_b, self.dim, need_b=True)
        a = F.normalize(self.proj(z_a), dim=-1)
        b = F.normalize(self.proj(z_b), dim=-1)
        return a @ b.T / self.temperature

    def check_labels(self, labels: Any, row_ids: Any = None) -> torch.Tensor:
        """Not applicable: the contrastive head takes no labels (``needs_labels`` is False)."""
        raise TypeError("the contrastive head takes no labels (needs_labels is False); do not call check_labels")

    def loss(self, z_a: torch.Tensor, z_b: torch.Tensor | None, targets: torch.Tensor | None = None) -> torch.Tensor:
        """InfoNCE over the (B, B) similarity logits; ``targets`` is ignored (pass ``None``)."""
        logits = self(z_a, z_b)
        return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))

    @torch.no_grad()
    def predict(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Float (B,) cosine of the (projected) pair."""
        _check_pair(z_a, z_b, self.dim, need_b=True)
        return F.cosine_similarity(self.proj(z_a), self.proj(z_b), dim=-1)


HEAD_KINDS: dict[str, type[TaskHead]] = {
    "single": ClassificationHead,
    "pair": PairClassificationHead,
    "regression": RegressionHead,
    "contrastive": ContrastiveHead,
    MULTILABEL_KIND: MultiLabelHead,
}


def make_head(kind: str, dim: int, **config: Any) -> TaskHead:
    """Build a head by kind.

    Args:
        kind: ``"single"``, ``"pair"``, ``"regression"`` or ``"contrastive"``.
        dim: D, the pooled embedding size.
        **config: the head's other constructor arguments (e.g. ``num_labels``, ``temperature``).

    Raises:
        ValueError: unknown kind.
    """
    if kind not in HEAD_KINDS:
        raise ValueError(f"unknown head kind {kind!r}; expected one of {sorted(HEAD_KINDS)}")
    return HEAD_KINDS[kind](dim, **config)


def load_head(path: str | os.PathLike, **hub_options: Any) -> TaskHead:
    """Load a head saved by :meth:`TaskHead.save` (or by ``train_cached(output_dir=...)``).

    Args:
        path: the head folder (``glot_head.json`` + ``glot_head.safetensors``), a model folder holding it
            in ``glot_head/`` (the ``output_dir`` of :func:`glot_st.train.train_cached`), or a Hugging Face Hub
            repo id holding ``glot_head/`` (:func:`glot_st.head_math.head_folder`).
        **hub_options: ``token``, ``cache_folder``, ``revision``, ``local_files_only`` for a repo id.

    Returns:
        The rebuilt :class:`TaskHead`.

    Raises:
        FileNotFoundError: no head config in ``path`` or ``path/glot_head``, or the weights file is missing
            (names the file).
        ValueError: unreadable or invalid config (bad JSON, missing ``dim``, unknown ``kind``, bad arguments)
            or weights that do not fit it, naming the file.
    """
    folder = head_folder(path, **hub_options)
    config_path, weights_path = folder / HEAD_CONFIG_FILE, folder / HEAD_WEIGHTS_FILE
    if not weights_path.is_file():
        raise FileNotFoundError(f"head file {str(weights_path)!r} is missing")
    config = read_json_file(config_path, "head config")
    if not isinstance(config, dict):
        raise ValueError(f"head config {str(config_path)!r} must hold a JSON object, got {type(config).__name__}")
    config = dict(config)
    kind = config.pop("kind", None)
    if "dim" not in config:
        raise ValueError(f"head config {str(config_path)!r} has no 'dim'")
    dim = config.pop("dim")
    if kind == "pair":
        config.setdefault("features", LEGACY_PAIR_FEATURES)  # pair heads saved before the option was added
    check_label_names(config.get("label_names"), f"head config {str(config_path)!r}")
    # sizes are checked against the weights' header before anything is allocated; weights must be finite floats
    return load_checked_module(lambda: make_head(kind, dim, **config), weights_path, f"head config {str(config_path)!r}")


def check_label_names(names: Any, where: str) -> None:
    """``None``, or a list of distinct labels, each a string or a finite number (not a bool).

    Raises:
        ValueError: naming ``where`` and the first bad or repeated label.
    """
    if names is None:
        return
    if not isinstance(names, list):
        raise ValueError(f"{where}: label_names must be a list, got {type(names).__name__}")
    seen = set()
    for position, name in enumerate(names):
        number = isinstance(name, (int, float)) and not is_bool(name) and math.isfinite(name)
        if not (isinstance(name, str) or number):
            raise ValueError(f"{where}: label_names[{position}] is {name!r}; labels must be strings or numbers")
        if name in seen:
            raise ValueError(f"{where}: label {name!r} appears twice in label_names")
        seen.add(name)
