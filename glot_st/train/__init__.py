"""The training kit: token-state cache, task heads, the cached training loop, sentence-transformers trainer
helpers, data splits and metrics. Needs the ``train`` extra (``pip install glot-st[train]``)."""

from glot_st.train.cache import build_cache, open_cache
from glot_st.train.data import TASKS, TaskSpec, TextSplit, load_split
from glot_st.train.heads import load_head
from glot_st.train.loop import TrainResult, train_cached
from glot_st.train.st_trainer import prepare_for_st_trainer

__all__ = [
    "TASKS",
    "TaskSpec",
    "TextSplit",
    "TrainResult",
    "build_cache",
    "load_head",
    "load_split",
    "open_cache",
    "prepare_for_st_trainer",
    "train_cached",
]
