"""Compare training recipes from ``glot-st glue`` result files: the screening table of the README's recipe section.

For every variant (a ``glue.json``), method and task: the eval metric at the validation-chosen epoch (ours) as
mean ± sample std over seeds, and the selection gap: the best eval-split epoch of the same runs (the paper's
protocol) minus ours, averaged over seeds; then the gap averaged over the tasks. Only finished runs are read, so
a variant still running shows what it has (the seed count is printed).

Usage::

    python benchmarks/recipe_screen.py today=benchmarks/results/glue/glue.json ema=/work/results/ema/glue.json
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from glot_st.bench.runners import GLUE_TASKS, summarize

METHODS = ("glot", "adapool", "mean")


def variant_rows(label: str, path: Path, tasks: tuple[str, ...] = GLUE_TASKS) -> list[str]:
    """Markdown rows ``variant | method | per task ours (gap) | mean gap`` of one result file.

    Args:
        label: the variant's name in the table.
        path: a ``glue.json`` written by ``glot-st glue``.
        tasks: the task columns (the mean gap is over those with runs).
    """
    runs = json.loads(path.read_text(encoding="utf-8"))["runs"]
    ours, gaps = defaultdict(list), defaultdict(list)
    for run in runs:
        key = (run["method"], run["task"])
        ours[key].append(run["value"])
        gaps[key].append(run["paper_value"] - run["value"])
    rows = []
    for method in METHODS:
        cells, task_gaps = [], []
        for task in tasks:
            if not ours[(method, task)]:
                cells.append("–")
                continue
            s = summarize(ours[(method, task)])
            gap = sum(gaps[(method, task)]) / len(gaps[(method, task)])
            task_gaps.append(gap)
            cells.append(f"{100 * s['mean']:.1f} ± {100 * s['std']:.1f} ({100 * gap:.1f}; n={s['n']})")
        mean_gap = f"{100 * sum(task_gaps) / len(task_gaps):.2f}" if task_gaps else "–"
        rows.append(f"| {label} | {method} | " + " | ".join(cells) + f" | {mean_gap} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", nargs="+", help="label=path/to/glue.json")
    parser.add_argument("--tasks", default=",".join(GLUE_TASKS), help="comma-separated task columns")
    args = parser.parse_args()
    tasks = tuple(args.tasks.split(","))
    print("| variant | method | " + " | ".join(tasks) + " | mean gap |")
    print("| --- | --- | " + " | ".join("---:" for _ in tasks) + " | ---: |")
    for item in args.variants:
        label, _, path = item.partition("=")
        if Path(path).is_file():
            print("\n".join(variant_rows(label, Path(path), tasks)))


if __name__ == "__main__":
    main()
