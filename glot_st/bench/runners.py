"""The bench's runners under their earlier import path: the stress test (:mod:`glot_st.bench.stress_runner`),
GLUE-lite (:mod:`glot_st.bench.glue_runner`) and what they share (:mod:`glot_st.bench.experiment`).

Public API::

    METHODS, Budget, make_method_pooler(name, in_dim, glot_config=None), train_method(...),
    run_stress(...), run_glue(...), stress_markdown(results), glue_markdown(results), plot_stress(results, path)
"""

from __future__ import annotations

from glot_st.bench.experiment import (
    EXTRA_METHODS,
    METHOD_LABELS,
    METHODS,
    Budget,
    backbone_record,
    load_backbone,
    make_method_pooler,
    summarize,
    train_method,
)
from glot_st.bench.glue_runner import DEFAULT_GLUE_DIR, GLUE_TASKS, glue_markdown, run_glue, untrained_stsb
from glot_st.bench.stress_runner import DEFAULT_STRESS_DIR, STRESS_TARGET, plot_stress, run_stress, stress_markdown

__all__ = [
    "DEFAULT_GLUE_DIR",
    "DEFAULT_STRESS_DIR",
    "EXTRA_METHODS",
    "GLUE_TASKS",
    "METHODS",
    "METHOD_LABELS",
    "STRESS_TARGET",
    "Budget",
    "backbone_record",
    "glue_markdown",
    "load_backbone",
    "make_method_pooler",
    "plot_stress",
    "run_glue",
    "run_stress",
    "stress_markdown",
    "summarize",
    "train_method",
    "untrained_stsb",
]
