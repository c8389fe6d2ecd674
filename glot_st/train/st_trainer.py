"""Helpers that let sentence-transformers' own trainer (``SentenceTransformerTrainer``, ``model.fit``) train a
frozen-backbone GLOT model: every module in front of the pooler frozen, only the pooler trained."""

from __future__ import annotations

import torch

from glot_st.freeze import freeze_modules, modules_before
from glot_st.train.loop import default_pooler

__all__ = ["prepare_for_st_trainer"]


def prepare_for_st_trainer(model: torch.nn.Module) -> list[str]:
    """Make a frozen-backbone model ready for ``SentenceTransformerTrainer`` / ``model.fit``.

    Freezes (no gradients, pinned eval mode) every module in front of the pooler, and checks something is
    left to train.

    Args:
        model: ``SentenceTransformer`` (e.g. Transformer + GLOT).

    Returns:
        Names of the trainable parameters.

    Raises:
        ValueError: no trainable parameter is left.
    """
    freeze_modules(modules_before(model, default_pooler(model)))
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters after freezing the backbone")
    return trainable
