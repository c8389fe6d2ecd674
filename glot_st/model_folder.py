"""Checks of a saved model folder's descriptions before :func:`glot_st.load` builds anything from it.

- ``modules.json`` (read with a size cap) must be a list of ``{"type": str, "path": str, ...}`` entries; every
  ``sentence_transformers.*`` class it names must be a module class (a ``torch.nn.Module`` subclass: a helper
  function such as ``sentence_transformers.util.http_get`` is refused); with a glot-st pooler required, the
  first module must be a ``Transformer`` and the first glot-st module must come after it (the order that
  encodes).
- ``config_sentence_transformers.json`` (when present) must not name another model type (``CrossEncoder``,
  ``SparseEncoder``): those folders would otherwise load as Transformer + mean pooling.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import torch

from glot_st._compat import Transformer
from glot_st.safe_read import read_json_file

__all__ = ["MODEL_TYPE", "check_model_type", "check_module_entries", "read_module_entries"]

MODEL_TYPE = "SentenceTransformer"
ST_CONFIG_FILE = "config_sentence_transformers.json"


def read_module_entries(path: str, where: str) -> list[dict[str, Any]]:
    """The entries of the ``modules.json`` at ``path`` (of the model ``where``), checked for their form.

    Raises:
        ValueError: unreadable, too large, not JSON, not a non-empty list of entries with a string ``type`` and
            ``path`` (naming the file).
    """
    entries = read_json_file(path, f"modules.json of {where!r}")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"modules.json of {where!r} ({path}) must hold a non-empty list of module entries")
    for number, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("type"), str):
            raise ValueError(f"modules.json of {where!r}: entry {number} has no class name ('type' string)")
        if not isinstance(entry.get("path", ""), str):
            raise ValueError(f"modules.json of {where!r}: entry {number} has a 'path' that is not a string")
    return [dict(entry) for entry in entries]


def check_model_type(config_path: str | None, where: str) -> None:
    """Refuse a folder whose ``config_sentence_transformers.json`` names a model type other than
    ``SentenceTransformer`` (``None``: the folder has no such file, which is fine)."""
    if config_path is None:
        return
    config = read_json_file(config_path, f"{ST_CONFIG_FILE} of {where!r}")
    model_type = config.get("model_type", MODEL_TYPE) if isinstance(config, Mapping) else MODEL_TYPE
    if model_type != MODEL_TYPE:
        raise ValueError(
            f"{where!r} is a {model_type!r} model (its {ST_CONFIG_FILE} says so), not a SentenceTransformer "
            "with a glot-st pooler; it cannot be loaded as a GLOT embedding model"
        )


def _sentence_transformers_class(ref: str, where: str) -> type | None:
    """The class a ``sentence_transformers.*`` reference names (``None`` when it cannot be imported here; then
    sentence-transformers' own resolver decides). A name that is not a module class is a ValueError."""
    module_name, _, attribute = ref.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        return None
    if not (isinstance(found, type) and issubclass(found, torch.nn.Module)):
        raise ValueError(f"modules.json of {where!r} names {ref!r}, which is not a sentence-transformers module class")
    return found


def check_module_entries(
    entries: list[dict[str, Any]], where: str, *, require_glot: bool
) -> None:
    """Check the classes and their order (see the module docstring).

    Args:
        entries: from :func:`read_module_entries`.
        where: the model's name or path, for messages.
        require_glot: the model must encode with a glot-st pooler: its first module must be a Transformer
            (the caller checks that a glot-st module is listed; being no Transformer, it then comes later).

    Raises:
        ValueError: a reference that is no module class, or an order that does not encode.
    """
    refs = [entry["type"] for entry in entries]
    classes = {ref: _sentence_transformers_class(ref, where) for ref in refs if ref.startswith("sentence_transformers.")}
    if not require_glot:
        return
    first = classes.get(refs[0])
    if first is None or not issubclass(first, Transformer):
        raise ValueError(
            f"modules.json of {where!r} lists {refs}: the first module must be a sentence-transformers Transformer "
            "(the backbone), followed by the glot-st pooler"
        )
