"""The training kit: token-state cache, task heads, the cached training loop, sentence-transformers trainer
helpers, data splits and metrics. Needs the ``train`` extra (``pip install glot-st[train]``)."""

from glot_st.train.cache import build_cache, open_cache
from glot_st.train.classifier import GLOTClassifier
from glot_st.train.data import TASKS, load_split
from glot_st.train.heads import load_head
from glot_st.train.inputs import Columns, as_text_split, infer_task, read_table
from glot_st.train.loop import TrainResult, train_cached
from glot_st.train.scoring import evaluate, predict, predict_proba
from glot_st.train.splits import TaskSpec, TextSplit
from glot_st.train.st_trainer import prepare_for_st_trainer

__all__ = [
    "TASKS",
    "Columns",
    "GLOTClassifier",
    "TaskSpec",
    "TextSplit",
    "TrainResult",
    "as_text_split",
    "build_cache",
    "evaluate",
    "infer_task",
    "load_head",
    "load_split",
    "open_cache",
    "predict",
    "predict_proba",
    "prepare_for_st_trainer",
    "read_table",
    "train_cached",
]
