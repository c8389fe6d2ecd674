"""Task heads trained on pooled sentence embeddings ``z`` (B, D) during cached training.

Four heads, each a ``torch.nn.Module`` with ``loss(z_a, z_b, labels)``, ``predict(z_a, z_b)``, a JSON
``config`` and ``save(dir)`` / ``load_head(dir)`` (``glot_head.json`` + ``glot_head.safetensors``):

- ``"single"``       ClassificationHead: linear on z.
- ``"pair"``         PairClassificationHead: linear on [z1; z2] (as in the GLOT paper).
- ``"regression"``   RegressionHead: project z, cosine of the projected pair, MSE against the score scaled
                     to [0, 1].
- ``"contrastive"``  ContrastiveHead: InfoNCE over in-batch negatives with a temperature.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

__all__ = [
    "HEAD_KINDS",
    "ClassificationHead",
    "ContrastiveHead",
    "PairClassificationHead",
    "RegressionHead",
    "TaskHead",
    "load_head_dir",
    "make_head",
]

CONFIG_NAME = "glot_head.json"
WEIGHTS_NAME = "glot_head.safetensors"


def _row_name(position: int, rows: list[int] | None) -> str:
    return f"row {rows[position] if rows is not None else position}"


def _as_rows(row_ids: Any, n: int) -> list[int] | None:
    if row_ids is None:
        return None
    rows = [int(r) for r in (row_ids.tolist() if isinstance(row_ids, torch.Tensor) else row_ids)]
    if len(rows) != n:
        raise ValueError(f"row_ids has {len(rows)} entries for {n} labels")
    return rows


def _check_pair(z_a: torch.Tensor, z_b: torch.Tensor | None, dim: int, need_b: bool) -> None:
    if z_a.ndim != 2 or z_a.shape[1] != dim:
        raise ValueError(f"z_a must have shape (B, {dim}), got {tuple(z_a.shape)}")
    if need_b:
        if z_b is None:
            raise ValueError("this head needs a second sentence: z_b (texts_b) is None")
        if z_b.shape != z_a.shape:
            raise ValueError(f"z_b must have the shape of z_a {tuple(z_a.shape)}, got {tuple(z_b.shape)}")


class TaskHead(torch.nn.Module):
    """Base class: a head over pooled embeddings.

    Subclasses set ``kind``, ``needs_pair`` and ``prediction`` (``"class"`` or ``"score"``) and implement
    ``forward``/``loss``/``predict`` and ``check_labels``.

    Args:
        dim: D, the pooled embedding size.
    """

    kind: str = ""
    needs_pair: bool = False
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
        """Validate labels and convert them to the tensor the loss uses.

        Args:
            labels: B labels (list, ndarray or tensor).
            row_ids: B dataset row numbers used in error messages (default: position in ``labels``).

        Returns:
            Tensor (B,): long class ids or float targets.

        Raises:
            ValueError: a label out of range, ``None`` or non-finite, naming its row.
        """
        raise NotImplementedError

    def loss(self, z_a: torch.Tensor, z_b: torch.Tensor | None, labels: Any, row_ids: Any = None) -> torch.Tensor:
        """Scalar training loss.

        Args:
            z_a: float (B, D) embeddings of the first sentences.
            z_b: float (B, D) embeddings of the second sentences, or ``None`` for single-sentence heads.
            labels: B labels (see :meth:`check_labels`); ignored by the contrastive head.
            row_ids: B dataset rows for error messages.

        Returns:
            0-dim float tensor.
        """
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions for the metric: long (B,) class ids, or float (B,) scores (cosine).

        Args:
            z_a: float (B, D).
            z_b: float (B, D) or ``None``.
        """
        raise NotImplementedError

    def save(self, directory: str | os.PathLike) -> None:
        """Write ``glot_head.json`` and ``glot_head.safetensors`` into ``directory`` (created if missing).

        Args:
            directory: target folder.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.config, indent=2, sort_keys=True), encoding="utf-8")
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(tensors, str(directory / WEIGHTS_NAME))

    @classmethod
    def load(cls, directory: str | os.PathLike) -> TaskHead:
        """Rebuild a head saved with :meth:`save` (any kind; see :func:`load_head_dir`)."""
        head = load_head_dir(directory)
        if not isinstance(head, cls):
            raise TypeError(f"{str(directory)!r} holds a {type(head).__name__}, not a {cls.__name__}")
        return head


def _class_labels(labels: Any, num_labels: int, row_ids: Any) -> torch.Tensor:
    values = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
    rows = _as_rows(row_ids, len(values))
    out = []
    for pos, value in enumerate(values):
        if value is None or isinstance(value, bool) or (isinstance(value, float) and not float(value).is_integer()):
            raise ValueError(
                f"label at {_row_name(pos, rows)} is {value!r}; expected an integer class in [0, {num_labels})"
            )
        try:
            as_int = int(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"label at {_row_name(pos, rows)} is {value!r}; expected an integer class") from exc
        if not 0 <= as_int < num_labels:
            raise ValueError(f"label at {_row_name(pos, rows)} is {as_int}, outside [0, {num_labels})")
        out.append(as_int)
    return torch.tensor(out, dtype=torch.long)


class ClassificationHead(TaskHead):
    """Single-sentence classification: ``logits = W z + b``.

    Args:
        dim: D.
        num_labels: number of classes C (>= 2).
    """

    kind = "single"
    needs_pair = False
    prediction = "class"

    def __init__(self, dim: int, num_labels: int):
        super().__init__(dim)
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}")
        self.num_labels = int(num_labels)
        self.linear = torch.nn.Linear(self.dim, self.num_labels)

    @property
    def config(self) -> dict[str, Any]:
        return {**super().config, "num_labels": self.num_labels}

    def features(self, z_a: torch.Tensor, z_b: torch.Tensor | None) -> torch.Tensor:
        """(B, D) input of the linear layer."""
        _check_pair(z_a, z_b, self.dim, need_b=False)
        return z_a

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor | None = None) -> torch.Tensor:
        """Logits float (B, C) from z_a (B, D) (and z_b (B, D) for the pair head)."""
        return self.linear(self.features(z_a, z_b))

    def check_labels(self, labels: Any, row_ids: Any = None) -> torch.Tensor:
        return _class_labels(labels, self.num_labels, row_ids)

    def loss(self, z_a, z_b, labels, row_ids=None):
        target = self.check_labels(labels, row_ids).to(z_a.device)
        return F.cross_entropy(self(z_a, z_b), target)

    @torch.no_grad()
    def predict(self, z_a, z_b=None):
        return self(z_a, z_b).argmax(dim=-1)


class PairClassificationHead(ClassificationHead):
    """Pair classification: ``logits = W [z1; z2] + b`` (concatenation, as in the GLOT paper).

    Args:
        dim: D (the linear layer takes 2D inputs).
        num_labels: number of classes C (>= 2).
    """

    kind = "pair"
    needs_pair = True

    def __init__(self, dim: int, num_labels: int):
        TaskHead.__init__(self, dim)
        if num_labels < 2:
            raise ValueError(f"num_labels must be >= 2, got {num_labels}")
        self.num_labels = int(num_labels)
        self.linear = torch.nn.Linear(2 * self.dim, self.num_labels)

    def features(self, z_a, z_b):
        _check_pair(z_a, z_b, self.dim, need_b=True)
        return torch.cat([z_a, z_b], dim=-1)


class RegressionHead(TaskHead):
    """STS regression: project both embeddings, predict their cosine, MSE against the scaled score.

    ``target = (score - min_score) / (max_score - min_score)`` in [0, 1].

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
        values = labels.tolist() if isinstance(labels, torch.Tensor) else list(labels)
        rows = _as_rows(row_ids, len(values))
        out = []
        for pos, value in enumerate(values):
            try:
                score = float(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"score at {_row_name(pos, rows)} is {value!r}; expected a number") from exc
            if not math.isfinite(score) or not self.min_score <= score <= self.max_score:
                raise ValueError(
                    f"score at {_row_name(pos, rows)} is {value!r}, outside [{self.min_score}, {self.max_score}]"
                )
            out.append((score - self.min_score) / (self.max_score - self.min_score))
        return torch.tensor(out, dtype=torch.float32)

    def loss(self, z_a, z_b, labels, row_ids=None):
        target = self.check_labels(labels, row_ids).to(device=z_a.device, dtype=z_a.dtype)
        return F.mse_loss(self(z_a, z_b), target)

    @torch.no_grad()
    def predict(self, z_a, z_b=None):
        return self(z_a, z_b)


class ContrastiveHead(TaskHead):
    """InfoNCE with in-batch negatives: pair i's positive is z_b[i], every other z_b[j] is a negative.

    ``loss = CE(cos(p(z_a), p(z_b)^T) / temperature, arange(B))`` where ``p`` is an optional projection.

    Args:
        dim: D.
        temperature: softmax temperature (> 0).
        proj_dim: size of a ``Linear(D, P)`` projection, or ``None`` for none (identity).
    """

    kind = "contrastive"
    needs_pair = True
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
        """Labels are not used (the positives are the pairs); returns an empty tensor."""
        return torch.empty(0)

    def loss(self, z_a, z_b, labels=None, row_ids=None):
        logits = self(z_a, z_b)
        return F.cross_entropy(logits, torch.arange(logits.shape[0], device=logits.device))

    @torch.no_grad()
    def predict(self, z_a, z_b=None):
        _check_pair(z_a, z_b, self.dim, need_b=True)
        return F.cosine_similarity(self.proj(z_a), self.proj(z_b), dim=-1)


HEAD_KINDS: dict[str, type[TaskHead]] = {
    "single": ClassificationHead,
    "pair": PairClassificationHead,
    "regression": RegressionHead,
    "contrastive": ContrastiveHead,
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


def load_head_dir(directory: str | os.PathLike) -> TaskHead:
    """Load a head saved by :meth:`TaskHead.save`.

    Args:
        directory: folder with ``glot_head.json`` and ``glot_head.safetensors``.

    Raises:
        FileNotFoundError: a file is missing (names it).
        ValueError: unknown kind in the config.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"head file {str(path)!r} is missing")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    kind = config.pop("kind", None)
    dim = config.pop("dim")
    head = make_head(kind, dim, **config)
    head.load_state_dict(load_file(str(weights_path)))
    return head
