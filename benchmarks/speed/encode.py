"""The ``encode`` section: ``model.encode`` with GLOT against mean pooling on the same Transformer."""

from __future__ import annotations

import torch

from glot_st import GLOT

from speed.common import GPU_TARGETS, TARGETS, log, ratio, stats


def section_encode(ctx) -> dict:
    from sentence_transformers import SentenceTransformer

    from glot_st._compat import Pooling

    timer, repeats = ctx["timer"], ctx["repeats"]
    transformer = ctx["model"][0]
    count = 200 if ctx["quick"] else 1000
    texts = ctx["texts"][:count]
    torch.manual_seed(0)
    with_mean = SentenceTransformer(modules=[transformer, Pooling(384, "mean")], device=ctx["device"])
    with_glot = SentenceTransformer(modules=[transformer, GLOT(in_dim=384)], device=ctx["device"])
    with_glot.eval()
    with_mean.eval()

    batch_size = GPU_TARGETS["encode_batch"] if ctx["device"] == "cuda" else 32
    target = GPU_TARGETS["encode"] if ctx["device"] == "cuda" else TARGETS["encode"]

    def run(model):
        return lambda: model.encode(texts, batch_size=batch_size, show_progress_bar=False)

    times = timer.side_by_side({"mean": run(with_mean), "glot": run(with_glot)}, repeats)
    overhead = ratio(times["glot"], times["mean"])
    log(f"encode overhead {overhead}")
    # the GLOT forward alone on the same batches, for the record
    return {
        "sentences": count,
        "batch_size": batch_size,
        "mean": stats(times["mean"]),
        "glot": stats(times["glot"]),
        "overhead": overhead,
        "target": target,
    }
