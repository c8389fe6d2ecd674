"""Where the bench writes its results, independent of the current directory."""

from __future__ import annotations

from pathlib import Path

__all__ = ["REPO_ROOT", "results_dir"]

#: the repository root when glot-st runs from a clone (or an editable install of one), else ``None``
REPO_ROOT: Path | None = Path(__file__).resolve().parents[2]
if not (REPO_ROOT / "benchmarks").is_dir() or not (REPO_ROOT / "glot_st").is_dir():
    REPO_ROOT = None


def results_dir(name: str) -> Path:
    """Default results folder of a bench runner: ``<clone>/benchmarks/results/<name>`` in a clone, else
    ``~/.cache/glot-st/results/<name>``."""
    if REPO_ROOT is not None:
        return REPO_ROOT / "benchmarks" / "results" / name
    return Path.home() / ".cache" / "glot-st" / "results" / name
