"""Compose a frozen backbone with GLOT, and load saved GLOT models."""

from __future__ import annotations

import os
from typing import Any

from sentence_transformers import SentenceTransformer
from sentence_transformers.util import load_file_path

from glot_st._compat import HAS_MODEL_READY_HOOK, Transformer
from glot_st.freeze import freeze_modules
from glot_st.module import GLOT

__all__ = ["from_backbone", "load"]


def from_backbone(
    name_or_path: str,
    *,
    max_seq_length: int | None = None,
    device: str | None = None,
    freeze: bool = True,
    transformer_kwargs: dict[str, Any] | None = None,
    **glot_config: Any,
) -> SentenceTransformer:
    """Build ``SentenceTransformer([Transformer(backbone), GLOT(...)])`` with the Transformer frozen.

    Args:
        name_or_path: a Hugging Face model id or folder, or a sentence-transformers folder (its Transformer
            module is reused, with its ``max_seq_length``; its pooling is replaced by GLOT).
        max_seq_length: truncate inputs to this many tokens (default: the backbone's own).
        device: device for the model (default: sentence-transformers' choice).
        freeze: freeze the Transformer (no gradients, eval mode); GLOT is then the only trainable part.
        transformer_kwargs: extra keyword arguments for ``Transformer(...)`` (plain model ids only).
        **glot_config: :class:`~glot_st.GLOT` arguments; ``in_dim`` is taken from the backbone (passing a
            different one is an error naming both sizes).

    Returns:
        The composed model.
    """
    if _is_sentence_transformer(name_or_path):
        if transformer_kwargs:
            raise ValueError(
                f"transformer_kwargs apply to a plain Hugging Face model; {name_or_path!r} is a sentence-transformers "
                "model whose Transformer settings come from its own config"
            )
        # trust_remote_code: the folder may itself be a saved GLOT model; only its Transformer is reused
        transformer = SentenceTransformer(name_or_path, device="cpu", trust_remote_code=True)[0]
        if not isinstance(transformer, Transformer):
            raise ValueError(f"the first module of {name_or_path!r} is {type(transformer).__name__}, not a Transformer")
    else:
        transformer = Transformer(name_or_path, **(transformer_kwargs or {}))
    if max_seq_length is not None:
        transformer.max_seq_length = max_seq_length
    width = transformer.get_embedding_dimension() if hasattr(transformer, "get_embedding_dimension") else transformer.get_word_embedding_dimension()
    in_dim = glot_config.pop("in_dim", width)
    if in_dim != width:
        raise ValueError(f"in_dim={in_dim} does not match the backbone's token width {width} ({name_or_path!r})")
    glot = GLOT(in_dim=width, freeze_backbone=freeze, **glot_config)
    model = SentenceTransformer(modules=[transformer, glot], device=device)
    if freeze and not HAS_MODEL_READY_HOOK:  # sentence-transformers 5 has no on_model_ready hook
        freeze_modules([transformer])
    return model


def _is_sentence_transformer(name_or_path: str) -> bool:
    """True for a local folder or a Hub repo (online or in the local cache) holding ``modules.json``."""
    if os.path.isdir(name_or_path):
        return os.path.isfile(os.path.join(name_or_path, "modules.json"))
    try:
        return load_file_path(name_or_path, "modules.json") is not None
    except Exception:  # no network and not cached, a gated repo, ...: treat it as a plain model id
        return False


def load(model_name_or_path: str, **kwargs: Any) -> SentenceTransformer:
    """Load a saved Transformer + GLOT model (a folder or a Hub repo id).

    sentence-transformers 6 imports module classes from outside its own package only with
    ``trust_remote_code=True``; this passes it for you. It runs no code from the model folder: the GLOT class
    comes from the installed ``glot_st`` package.
    """
    kwargs.setdefault("trust_remote_code", True)
    return SentenceTransformer(model_name_or_path, **kwargs)
