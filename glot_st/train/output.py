"""The output folder of a training run: held by one run at a time, written as one unit.

:func:`holding_output_dir` (around the whole of :func:`glot_st.train.loop.run_plan`) checks the folder
(:func:`glot_st.train.guards.check_output_dir`) and takes its lock (:func:`glot_st.safe_io.output_lock`) before
the run starts, holding it until the run returns, so a second run into the same folder fails at once with an error
naming the first. :func:`save_training_output` stages the model, the head and the history in one folder and
swaps it in (:func:`glot_st.safe_io.replace_folder`): a run killed or failing while saving (a full disk included)
leaves the previous output intact.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import torch

from glot_st.builder import write_model_folder
from glot_st.safe_io import output_lock, replace_folder
from glot_st.train.guards import RESULT_FILE, check_output_dir
from glot_st.train.heads import HEAD_SUBFOLDER

__all__ = ["RESULT_FILE", "holding_output_dir", "save_training_output"]


@contextlib.contextmanager
def holding_output_dir(output_dir: str | os.PathLike | None, overwrite: bool = False) -> Iterator[None]:
    """Check ``output_dir`` (:func:`glot_st.train.guards.check_output_dir`) and hold its lock for the body, so a
    second run into the same folder fails at once with an error naming the first; ``None``: nothing to hold.

    Args:
        output_dir: the run's output folder, or ``None``.
        overwrite: allow a non-empty folder that no glot-st training run wrote.
    """
    if output_dir is None:
        yield
        return
    check_output_dir(output_dir, overwrite=overwrite)
    with output_lock(output_dir):
        yield


def save_training_output(
    model: torch.nn.Module, head: torch.nn.Module, history: dict[str, Any], output_dir: str | os.PathLike
) -> None:
    """Write ``output_dir`` as one unit: the model (:func:`glot_st.builder.write_model_folder`), the head in
    ``glot_head/`` and ``history`` as ``glot_training.json`` (the marker of a training output).

    Args:
        model: the trained ``SentenceTransformer``.
        head: the trained task head (with a ``save(folder)`` method).
        history: the JSON-serialisable training summary.
        output_dir: the folder, replaced as a whole at the end.

    Raises:
        OSError: a full disk (named as such) or another write error; ``output_dir`` then holds what it held.
    """
    with replace_folder(output_dir) as staging:
        write_model_folder(model, staging)
        head.save(staging / HEAD_SUBFOLDER)
        (staging / RESULT_FILE).write_text(json.dumps(history, indent=2), encoding="utf-8")
