"""The main job (``make demo``): MiniLM + GLOT trained on the stress test at rho = 0.9, against the baselines.

1. Compose the offline all-MiniLM-L6-v2 (frozen) with GLOT (library defaults), max_seq_length 256.
2. Generate the signal-dilution stress test at rho = 0.9 (``glot_st.bench.stress``).
3. Train GLOT + a linear head from the token-state cache (the backbone runs once over the texts), then
   CLS, mean, max and AdaPool with the same budget from the same cache; print their eval accuracies.
4. Save the trained model, reload it with ``glot_st.load``, encode two sentences (print their cosine
   similarity) and check that the reloaded model's embeddings equal the trained model's.

The default budget (1000 train / 250 eval texts, 4 epochs, batch 16, AdamW lr 1e-3) keeps the whole job
within a minute on two CPU cores; ``--n-train``, ``--n-eval``, ``--epochs`` change it.
Exit status 1 if the reloaded embeddings differ.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

import glot_st
from glot_st.bench.experiment import METHOD_LABELS, Budget, train_method
from glot_st.bench.stress import STRESS_TASK, make_stress_task
from glot_st.resources import minilm_path
from glot_st.train.loop import train_cached

RHO = 0.9
SEED = 0
SENTENCES = ("A man is playing a guitar.", "Someone plays an instrument.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m glot_st.bench.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=1000, help="training texts (default 1000)")
    parser.add_argument("--n-eval", type=int, default=250, help="eval texts (default 250)")
    parser.add_argument("--epochs", type=int, default=4, help="epochs for every method (default 4)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size for every method (default 16)")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate for every method (default 1e-3)")
    parser.add_argument(
        "--baselines", default="cls,mean,max,adapool", help="comma-separated baselines to train after GLOT ('' = none)"
    )
    parser.add_argument("--output-dir", default=None, help="keep the trained model here (default: a temporary folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    started = time.perf_counter()
    budget = Budget(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size)
    baselines = [m for m in args.baselines.split(",") if m.strip()]

    torch.manual_seed(SEED)
    model = glot_st.from_backbone(minilm_path(), max_seq_length=256, device="cpu")
    print(f"model: frozen all-MiniLM-L6-v2 + {model[1]!r}")
    train, evaluation = make_stress_task(RHO, n_train=args.n_train, n_eval=args.n_eval, seed=SEED)
    print(
        f"stress test rho={RHO}: {len(train)} train / {len(evaluation)} eval texts of 128 words; budget: "
        f"{budget.epochs} epochs, batch {budget.batch_size}, AdamW lr {budget.lr:g} (the same for every method)"
    )

    with tempfile.TemporaryDirectory(prefix="glot_demo_") as tmp:
        cache_dir = Path(tmp) / "cache"
        save_dir = Path(args.output_dir) if args.output_dir else Path(tmp) / "glot-minilm-stress"
        result = train_cached(
            model, train, evaluation, task=STRESS_TASK, epochs=budget.epochs, patience=budget.patience,
            validation_fraction=budget.validation_fraction, batch_size=budget.batch_size, lr=budget.lr,
            weight_decay=budget.weight_decay, seed=SEED, cache_dir=cache_dir, output_dir=save_dir,
            show_progress_bar=False,
        )
        glot_train = sum(h["seconds"] for h in result.history)
        accuracies = {"glot": result.eval_metric}
        print(
            f"backbone ran once over {len(train) + len(evaluation)} texts: {result.cache_seconds:.0f}s; "
            f"GLOT trained in {glot_train:.0f}s ({result.trainable_parameters} trainable parameters with the head)"
        )
        for method in baselines:
            outcome = train_method(
                model, method, train, evaluation, task=STRESS_TASK, budget=budget, seed=SEED, cache_dir=cache_dir
            )
            accuracies[method] = outcome["metric"]

        _print_accuracies(accuracies, budget)
        print(
            f"\nsaved the trained model (epoch {result.best_epoch}, validation accuracy "
            f"{result.validation_metric * 100:.1f}%, eval accuracy {result.eval_metric * 100:.1f}%) to {save_dir}"
        )
        same = _reload_and_compare(model, save_dir, list(SENTENCES) + evaluation.texts_a[:4])
    print(f"\ntotal time: {time.perf_counter() - started:.0f}s")
    return 0 if same else 1


def _print_accuracies(accuracies: dict[str, float], budget: Budget) -> None:
    """The eval accuracy of every method, best first, and GLOT's gap to mean pooling."""
    print(
        f"\neval accuracy at rho={RHO}, epoch chosen on a {budget.validation_fraction:.0%} validation slice of "
        f"the training texts (at most {budget.epochs} epochs; same cache, same budget):"
    )
    for method, value in sorted(accuracies.items(), key=lambda item: -item[1]):
        print(f"  {METHOD_LABELS[method]:>8}: {value * 100:5.1f}%")
    if "mean" in accuracies:
        gap = (accuracies["glot"] - accuracies["mean"]) * 100
        print(f"  GLOT - mean pooling: {gap:+.1f} points")


def _reload_and_compare(model: torch.nn.Module, save_dir: Path, texts: list[str]) -> bool:
    """Reload the saved model with ``glot_st.load``; print a similarity and whether its embeddings of ``texts``
    equal the trained model's (returned)."""
    reloaded = glot_st.load(str(save_dir), device="cpu")
    trained_emb = model.encode(texts, convert_to_tensor=True)
    reloaded_emb = reloaded.encode(texts, convert_to_tensor=True)
    similarity = reloaded.similarity(reloaded_emb[:1], reloaded_emb[1:2]).item()
    print(f"reloaded with glot_st.load; cosine similarity of {SENTENCES[0]!r} and {SENTENCES[1]!r}: {similarity:.4f}")
    same = torch.equal(trained_emb, reloaded_emb)
    print(f"reloaded model's embeddings equal the trained model's ({len(texts)} texts, {tuple(reloaded_emb.shape)}): {same}")
    return same


if __name__ == "__main__":
    sys.exit(main())
