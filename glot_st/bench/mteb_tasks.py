"""A local mteb STS task on the bundled STS-B test split, and ``evaluate_mteb(model)``.

mteb is an optional (test / extra) dependency: it is imported only when a task is built. The task never
downloads anything: its ``load_data`` builds a ``datasets.Dataset`` from :func:`glot_st.train.data.load_split`
(the clone's ``data/`` folder, or another ``data_dir``).

Public API::

    make_stsb_task(data_dir=None, limit=None) -> mteb AbsTaskSTS instance ("GlotLocalSTSB")
    evaluate_mteb(model, data_dir=None, limit=None, batch_size=32) -> dict of scores
"""

from __future__ import annotations

import functools
import os
from typing import Any

__all__ = ["TASK_NAME", "evaluate_mteb", "make_stsb_task"]

TASK_NAME = "GlotLocalSTSB"


# the mteb metadata of the task (read by TaskMetadata when the class is first defined)
_METADATA = {
    "name": TASK_NAME,
    "description": "STS Benchmark test split (Cer et al. 2017) loaded offline from a local copy (glot-st's data/ folder).",
    "reference": "https://aclanthology.org/S17-2001/",
    "dataset": {"path": "data/stsb", "revision": "local"},
    "type": "STS",
    "category": "t2t",
    "modalities": ["text"],
    "eval_splits": ["test"],
    "eval_langs": ["eng-Latn"],
    "main_score": "cosine_spearman",
    "date": ("2012-01-01", "2017-12-31"),
    "domains": ["News", "Written"],
    "task_subtypes": [],
    "license": "cc-by-sa-4.0",
    "annotations_creators": "human-annotated",
    "dialect": [],
    "sample_creation": "found",
    "bibtex_citation": "",
}


@functools.lru_cache(maxsize=1)
def _task_class() -> type:
    """Define the task class on first use (so importing this module does not import mteb)."""
    try:
        from datasets import Dataset, DatasetDict
        from mteb.abstasks.sts import AbsTaskSTS
        from mteb.abstasks.task_metadata import TaskMetadata
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ModuleNotFoundError(
            "evaluating through mteb needs the mteb package; run `pip install mteb` (or `pip install glot-st[eval]`)"
        ) from error

    class GlotLocalSTSB(AbsTaskSTS):
        """STS Benchmark test split read from the clone's ``data/`` copy (no download).

        Args:
            data_dir: a folder laid out like the repository's ``data/`` (``None``: the clone's copy or ``$GLOT_ST_DATA_DIR``).
            limit: keep only the first ``limit`` pairs of the test split (``None``: all 1379).
        """

        metadata = TaskMetadata(**_METADATA)
        min_score = 0
        max_score = 5

        def __init__(self, data_dir: str | os.PathLike | None = None, limit: int | None = None, **kwargs: Any):
            super().__init__(**kwargs)
            self.data_dir = data_dir
            self.limit = limit

        def load_data(self, num_proc: int | None = None, **kwargs: Any) -> None:
            if self.data_loaded:
                return
            from glot_st.train.data import load_split

            split = load_split("stsb", "test", data_dir=self.data_dir, limit=self.limit)
            self.dataset = DatasetDict(
                {
                    "test": Dataset.from_dict(
                        {"sentence1": split.texts_a, "sentence2": split.texts_b, "score": split.labels}
                    )
                }
            )
            self.data_loaded = True

    return GlotLocalSTSB


def make_stsb_task(data_dir: str | os.PathLike | None = None, limit: int | None = None) -> Any:
    """The local STS-B test task (an ``mteb.abstasks.sts.AbsTaskSTS`` instance).

    Args:
        data_dir: a folder laid out like the repository's ``data/`` (``None``: the clone's copy or ``$GLOT_ST_DATA_DIR``).
        limit: keep only the first ``limit`` pairs (``None``: all).
    """
    return _task_class()(data_dir=data_dir, limit=limit)


def evaluate_mteb(
    model: Any,
    *,
    data_dir: str | os.PathLike | None = None,
    limit: int | None = None,
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> dict[str, Any]:
    """Score a sentence-transformers model on the local STS-B test task through ``mteb.evaluate``.

    Nothing is downloaded and no result cache is written (``cache=None``).

    Args:
        model: a ``SentenceTransformer`` (e.g. from :func:`glot_st.from_backbone` or :func:`glot_st.load`).
        data_dir: another copy of the data (``--data-dir``); ``None``: the clone's ``data/``.
        limit: first ``limit`` pairs of the test split (``None``: all 1379).
        batch_size: encode batch size.
        show_progress_bar: mteb's progress bars.

    Returns:
        mteb's score dict of the test split: ``spearman`` / ``pearson`` (model similarity function, cosine for
        sentence-transformers), ``cosine_spearman``, ``cosine_pearson``, ``manhattan_*``, ``euclidean_*``,
        ``main_score`` (= ``cosine_spearman``), ``hf_subset``, ``languages``. Correlations are in ``[-1, 1]``.
    """
    import mteb

    task = make_stsb_task(data_dir=data_dir, limit=limit)
    result = mteb.evaluate(
        model,
        task,
        cache=None,
        encode_kwargs={"batch_size": batch_size},
        show_progress_bar=show_progress_bar,
        co2_tracker=False,
    )
    task_result = result.task_results[0]
    scores = task_result.scores["test"]
    if len(scores) != 1:
        raise RuntimeError(f"expected one score dict for the test split, got {len(scores)}")
    return dict(scores[0])
