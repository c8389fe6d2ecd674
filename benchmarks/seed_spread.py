"""How much one run's figure moves with the seed, and what keeping the best of several seeds buys.

Reads the per-run records of the GLUE-lite and stress results (``glot-st glue`` / ``glot-st stress``, one run per
task, method and seed) and, per task and method, reports the seed-to-seed spread of the reported score (sample
std, range) and the score of the "restarts" choice: the seed whose *validation* score is best (what
``glot-st train --restarts N`` keeps), against the mean of the single seeds. With k seeds per task the best-of-n
choice is scored over every n-subset of them, so its mean and std are those of the choice over all subsets.

    python benchmarks/seed_spread.py --restarts 3 --methods glot,adapool \\
        --output benchmarks/results/seed_spread.json

Writes the JSON and prints a markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = {"glue": RESULTS / "glue" / "glue.json", "stress": RESULTS / "stress" / "stress.json"}


def _runs_by_setting(path: Path, methods: set[str]) -> dict[tuple[str, str], list[dict]]:
    """``{(setting, method): [run, ...]}``: a setting is a GLUE task or a stress ρ."""
    results = json.loads(path.read_text(encoding="utf-8"))
    grouped: dict[tuple[str, str], list[dict]] = {}
    for run in results["runs"]:
        if run["method"] not in methods:
            continue
        setting = run["task"] if "task" in run else f"stress rho={run['rho']}"
        score = run["value"] if "value" in run else run["accuracy"]
        grouped.setdefault((setting, run["method"]), []).append(
            {"seed": run["seed"], "score": score, "validation": run["validation_metric"]}
        )
    return grouped


def spread(runs: list[dict], restarts: int) -> dict:
    """The spread of single seeds and of the best-validation choice among ``restarts`` of them.

    Args:
        runs: one dict per seed with ``score`` (the reported figure) and ``validation`` (the selection score).
        restarts: seeds per choice (<= len(runs)).
    """
    scores = [r["score"] for r in runs]
    picks = [max(group, key=lambda r: r["validation"])["score"] for group in itertools.combinations(runs, restarts)]
    return {
        "seeds": sorted(r["seed"] for r in runs),
        "single_mean": statistics.mean(scores),
        "single_std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
        "single_range": max(scores) - min(scores),
        "restarts": restarts,
        "choices": len(picks),
        "best_of_restarts_mean": statistics.mean(picks),
        "best_of_restarts_std": statistics.stdev(picks) if len(picks) > 1 else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--restarts", type=int, default=3, help="seeds per best-of choice (default 3)")
    parser.add_argument("--methods", default="glot", help="comma-separated methods (default glot)")
    parser.add_argument("--output", default=str(RESULTS / "seed_spread.json"))
    args = parser.parse_args()
    methods = set(args.methods.split(","))
    rows = []
    for source, path in SOURCES.items():
        for (setting, method), runs in sorted(_runs_by_setting(path, methods).items()):
            if len(runs) >= args.restarts:
                rows.append({"source": source, "setting": setting, "method": method, **spread(runs, args.restarts)})
    Path(args.output).write_text(json.dumps({"command": "python benchmarks/seed_spread.py " + " ".join(
        f"--{k} {v}" for k, v in (("restarts", args.restarts), ("methods", args.methods))), "rows": rows}, indent=2))
    print(f"| setting | method | seeds | single seed: mean ± std (range) | best validation of {args.restarts}: mean ± std (choices) |")
    print("| --- | --- | --- | ---: | ---: |")
    for r in rows:
        print(f"| {r['setting']} | {r['method']} | {len(r['seeds'])} | {100 * r['single_mean']:.1f} ± "
              f"{100 * r['single_std']:.1f} ({100 * r['single_range']:.1f}) | {100 * r['best_of_restarts_mean']:.1f} ± "
              f"{100 * r['best_of_restarts_std']:.1f} ({r['choices']}) |")


if __name__ == "__main__":
    main()
