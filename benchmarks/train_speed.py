"""Per-epoch training wall time on STS-B train: cached GLOT vs live-backbone GLOT vs full fine-tuning.

Three variants, same batches (same seed, same batch size, same order), measured side by side in one run:

  (a) cached GLOT: token states read from the on-disk cache (built first; its time is reported separately,
      not in the epoch), GLOT + regression head trained.
  (b) live GLOT: the frozen backbone runs on every step (tokenize + forward without gradients), then GLOT +
      regression head as in (a).
  (c) full fine-tuning: all of all-MiniLM-L6-v2 trains with mean pooling; the objective is
      CosineSimilarityLoss's (MSE between the cosine of the pair and the score / 5), AdamW.

Each step of every variant is forward + backward + optimizer step on one batch of sentence pairs. With
``--max-batches`` (or ``--epochs-fraction``) only part of an epoch is timed and the time is scaled to the
full epoch; the output says so. Results go to ``benchmarks/results/train_speed.json`` and ``.md``, each with
the exact command that produced them.

    .venv/bin/python benchmarks/train_speed.py                      # full epochs (slow for (c))
    .venv/bin/python benchmarks/train_speed.py --max-batches 20     # time 20 batches per variant, scale
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32, help="sentence pairs per step (all variants)")
    parser.add_argument("--max-batches", type=int, default=None,
                        help="time only this many batches per variant and scale to the epoch")
    parser.add_argument("--epochs-fraction", type=float, default=None,
                        help="time this fraction of an epoch per variant and scale (alternative to --max-batches)")
    parser.add_argument("--warmup-batches", type=int, default=1, help="untimed batches run first by each variant")
    parser.add_argument("--limit", type=int, default=None,
                        help="use only the first N STS-B train rows (for smoke tests)")
    parser.add_argument("--max-seq-length", type=int, default=None, help="token limit (default: the backbone's, 256)")
    parser.add_argument("--device", default="cpu", help="torch device")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--cache-dtype", choices=("float16", "float32"), default="float16", help="cache storage dtype")
    parser.add_argument("--cache-dir", default=None,
                        help="cache root (default: a temporary folder, so the build is timed)")
    parser.add_argument("--lr-glot", type=float, default=2e-4, help="AdamW lr of GLOT + head")
    parser.add_argument("--lr-finetune", type=float, default=2e-5, help="AdamW lr of full fine-tuning")
    parser.add_argument("--variants", default="a,b,c", help="comma-separated subset of a,b,c")
    parser.add_argument("--seed", type=int, default=42, help="seed of init and batch order")
    parser.add_argument("--output", default=str(RESULTS / "train_speed"), help="output path without extension")
    args = parser.parse_args(argv)
    if args.max_batches is not None and args.epochs_fraction is not None:
        parser.error("give --max-batches or --epochs-fraction, not both")
    if args.epochs_fraction is not None and not 0 < args.epochs_fraction <= 1:
        parser.error("--epochs-fraction must be in (0, 1]")
    return args


def count_trainable(*modules: torch.nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters() if p.requires_grad)


def time_steps(name: str, batches: list[np.ndarray], step, warmup: int) -> dict:
    """Run ``step(rows)`` over warm-up batches then the timed ones; return timing facts."""
    for rows in batches[:warmup]:
        step(rows)
    timed = batches[warmup:]
    start = time.perf_counter()
    for rows in tqdm(timed, desc=name, leave=False):
        step(rows)
    seconds = time.perf_counter() - start
    return {"timed_batches": len(timed), "timed_seconds": seconds, "seconds_per_batch": seconds / max(1, len(timed))}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/train_speed.py", *given])
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    if not set(variants) <= {"a", "b", "c"}:
        raise SystemExit(f"--variants must be a subset of a,b,c; got {args.variants!r}")

    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import batch_to_device

    import glot_st
    from glot_st.resources import minilm_path
    from glot_st.train.cache import LengthBucketBatchSampler
    from glot_st.train.data import load_split
    from glot_st.train.heads import RegressionHead
    from glot_st.train.loop import build_split_cache, seed_everything, split_texts

    split = load_split("stsb", "train", limit=args.limit)
    n = len(split)
    scores = torch.tensor(split.labels, dtype=torch.float32)
    # one shared batch order for every variant (seeded; no length sorting, so all variants see the same pairs)
    sampler = LengthBucketBatchSampler(np.zeros(n), args.batch_size, shuffle=True, seed=args.seed)
    all_batches = sampler.batches()
    total_batches = len(all_batches)
    if args.max_batches is not None:
        timed = min(total_batches, args.max_batches)
    elif args.epochs_fraction is not None:
        timed = max(1, math.ceil(args.epochs_fraction * total_batches))
    else:
        timed = total_batches
    batches = all_batches[: min(total_batches, timed + args.warmup_batches)]
    timed = len(batches) - min(args.warmup_batches, len(batches) - 1)
    warmup = len(batches) - timed
    partial = timed < total_batches
    scale = total_batches / timed

    results: dict = {
        "command": command,
        "dataset": f"STS-B train ({n} pairs{', --limit' if args.limit else ''})",
        "batch_size": args.batch_size,
        "batches_per_epoch": total_batches,
        "timed_batches_per_variant": timed,
        "warmup_batches": warmup,
        "partial_epoch_scaled": partial,
        "scale_factor": scale,
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "variants": {},
    }

    def epoch_seconds(facts: dict) -> float:
        return facts["timed_seconds"] * scale

    # ---------------------------------------------------------------- (a) and (b): GLOT over the frozen backbone
    if {"a", "b"} & set(variants):
        seed_everything(args.seed)
        model = glot_st.from_backbone(minilm_path(), max_seq_length=args.max_seq_length, device=str(device))
        glot = model[1]
        init_glot = {k: v.clone() for k, v in glot.state_dict().items()}
        torch.manual_seed(args.seed)
        head = RegressionHead(glot.get_sentence_embedding_dimension()).to(device)
        targets = head.check_labels(split.labels)  # scores scaled to [0, 1], once
        init_head = {k: v.clone() for k, v in head.state_dict().items()}
        results["max_seq_length"] = model.max_seq_length

        def fresh_optimizer():
            glot.load_state_dict(init_glot)
            head.load_state_dict(init_head)
            glot.train()
            head.train()
            return torch.optim.AdamW([*glot.parameters(), *head.parameters()], lr=args.lr_glot)

        if "a" in variants:
            tmp = tempfile.TemporaryDirectory(prefix="glot_bench_") if args.cache_dir is None else None
            root = tmp.name if tmp is not None else args.cache_dir
            start = time.perf_counter()
            cache = build_split_cache(model, split, root, dtype=args.cache_dtype)
            cache_seconds = time.perf_counter() - start
            row_of = {t: i for i, t in enumerate(split_texts(split))}
            ids_a = np.array([row_of[t] for t in split.texts_a])
            ids_b = np.array([row_of[t] for t in split.texts_b])
            optimizer = fresh_optimizer()

            def cached_step(rows):
                states, mask = cache.get_batch(np.concatenate([ids_a[rows], ids_b[rows]]))
                z = glot.pool(states.to(device), mask.to(device))
                loss = head.loss(z[: len(rows)], z[len(rows):], targets[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            facts = time_steps("(a) cached GLOT", batches, cached_step, warmup)
            results["variants"]["a"] = {
                "name": "GLOT, cached token states",
                "cache_build_seconds": cache_seconds,
                "cache_texts": len(cache),
                "cache_dtype": args.cache_dtype,
                "trainable_parameters": count_trainable(glot, head),
                "epoch_seconds": epoch_seconds(facts),
                **facts,
            }
            if tmp is not None:
                tmp.cleanup()

        if "b" in variants:
            optimizer = fresh_optimizer()
            backbone = model[0]

            def live_step(rows):
                texts = [split.texts_a[i] for i in rows] + [split.texts_b[i] for i in rows]
                with torch.no_grad():
                    features = batch_to_device(model.preprocess(texts), device)
                    out = backbone(features)
                z = glot.pool(out["token_embeddings"], out["attention_mask"])
                loss = head.loss(z[: len(rows)], z[len(rows):], targets[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            facts = time_steps("(b) live GLOT", batches, live_step, warmup)
            results["variants"]["b"] = {
                "name": "GLOT, frozen backbone forward every step",
                "trainable_parameters": count_trainable(glot, head),
                "epoch_seconds": epoch_seconds(facts),
                **facts,
            }
        del model

    # ---------------------------------------------------------------- (c): full fine-tuning with mean pooling
    if "c" in variants:
        seed_everything(args.seed)
        full = SentenceTransformer(minilm_path(), device=str(device))
        if args.max_seq_length is not None:
            full.max_seq_length = args.max_seq_length
        results.setdefault("max_seq_length", full.max_seq_length)
        full.train()
        for p in full.parameters():
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(full.parameters(), lr=args.lr_finetune)

        def finetune_step(rows):
            texts = [split.texts_a[i] for i in rows] + [split.texts_b[i] for i in rows]
            features = batch_to_device(full.preprocess(texts), device)
            z = full(features)["sentence_embedding"]
            cos = F.cosine_similarity(z[: len(rows)], z[len(rows):], dim=-1)
            loss = F.mse_loss(cos, scores[rows].to(device) / 5.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        facts = time_steps("(c) full fine-tuning", batches, finetune_step, warmup)
        results["variants"]["c"] = {
            "name": "full fine-tuning of all-MiniLM-L6-v2, mean pooling, cosine-MSE, AdamW",
            "trainable_parameters": count_trainable(full),
            "epoch_seconds": epoch_seconds(facts),
            **facts,
        }

    v = results["variants"]
    if "a" in v and "c" in v:
        results["speedup_c_over_a"] = v["c"]["epoch_seconds"] / v["a"]["epoch_seconds"]
        results["target_speedup"] = 15.0
        results["meets_target"] = results["speedup_c_over_a"] >= 15.0
    if "a" in v and "b" in v:
        results["speedup_b_over_a"] = v["b"]["epoch_seconds"] / v["a"]["epoch_seconds"]

    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(results), encoding="utf-8")
    print(markdown(results))
    return 0


def markdown(results: dict) -> str:
    lines = [
        "# Training speed on STS-B train (per epoch)",
        "",
        f"Command: `{results['command']}`",
        "",
        f"{results['dataset']}, batch size {results['batch_size']} pairs, {results['batches_per_epoch']} batches "
        f"per epoch, max_seq_length {results.get('max_seq_length')}, device {results['device']}, "
        f"{results['torch_threads']} torch threads on {results['cpu_count']} CPUs, torch {results['torch']}.",
        "",
    ]
    if results["partial_epoch_scaled"]:
        lines += [
            f"**Partial epoch:** each variant timed {results['timed_batches_per_variant']} of "
            f"{results['batches_per_epoch']} batches (after {results['warmup_batches']} untimed warm-up batch(es)); "
            f"epoch time = timed time x {results['scale_factor']:.2f}.",
            "",
        ]
    lines += [
        "| variant | epoch seconds | seconds / batch | trainable parameters | notes |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for key in ("a", "b", "c"):
        if key not in results["variants"]:
            continue
        row = results["variants"][key]
        note = ""
        if key == "a":
            note = (
                f"cache build {row['cache_build_seconds']:.1f} s ({row['cache_texts']} texts, {row['cache_dtype']}), "
                "not in the epoch"
            )
        lines.append(
            f"| ({key}) {row['name']} | {row['epoch_seconds']:.1f} | {row['seconds_per_batch']:.4f} | "
            f"{row['trainable_parameters']:,} | {note} |"
        )
    lines.append("")
    if "speedup_c_over_a" in results:
        verdict = "meets" if results["meets_target"] else "misses"
        lines.append(
            f"Full fine-tuning / cached GLOT: **{results['speedup_c_over_a']:.1f}x** per epoch "
            f"({verdict} the >= 15x target)."
        )
    if "speedup_b_over_a" in results:
        lines.append(f"Live-backbone GLOT / cached GLOT: {results['speedup_b_over_a']:.1f}x per epoch.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
