"""What every section of the speed benchmark shares: targets, the interleaved timer, the inputs (MiniLM token states of STS-B sentences, a long document) and the log."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from glot_st import build_token_graph

SECTIONS = ("bound", "pyg", "encode", "backends", "layout", "long", "scaling")


RESULTS = Path(__file__).resolve().parents[1] / "results"


TARGETS = {"pyg": 10.0, "encode": 1.05, "long_mib": 1024.0, "bound": 1.6}


# On a GPU the targets compare with the authors' per-sentence formulation (GATConv(edge_dim=1)) at B=64 x L=128
# and check encode at batch 128.
GPU_TARGETS = {"authors": 10.0, "authors_case": "random B=64 x L=128", "encode": 1.03, "encode_batch": 128}


README = Path(__file__).resolve().parents[2] / "README.md"


README_MARKERS = ("<!-- bench:start -->", "<!-- bench:end -->")


class Timer:
    def __init__(self, device: str):
        self.device = device

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def once(self, fn: Callable[[], object]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def side_by_side(self, fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
        """Time every function once per repeat, rotating which goes first; returns seconds per repeat."""
        names = list(fns)
        for _ in range(warmup):
            for name in names:
                fns[name]()
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(repeats):
            order = names[r % len(names) :] + names[: r % len(names)]
            for name in order:
                times[name].append(self.once(fns[name]))
        return times


def stats(seconds: list[float]) -> dict[str, float]:
    return {"min_ms": 1e3 * min(seconds), "median_ms": 1e3 * statistics.median(seconds), "n": len(seconds)}


def ratio(slow: list[float], fast: list[float]) -> dict[str, float]:
    """``slow / fast`` of the minima and of the medians (> 1: ``fast`` is faster)."""
    return {"min": min(slow) / min(fast), "median": statistics.median(slow) / statistics.median(fast)}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def minilm_model(device: str):
    from sentence_transformers import SentenceTransformer

    from glot_st.resources import minilm_path

    return SentenceTransformer(minilm_path(), device=device)


def stsb_sentences() -> list[str]:
    from glot_st.train.data import load_split

    split = load_split("stsb", "test")
    return list(split.texts_a) + list(split.texts_b)


def pad(states: list[Tensor], device: str) -> tuple[Tensor, Tensor]:
    length = max(s.shape[0] for s in states)
    out = torch.zeros(len(states), length, states[0].shape[1])
    mask = torch.zeros(len(states), length, dtype=torch.long)
    for b, s in enumerate(states):
        out[b, : s.shape[0]] = s
        mask[b, : s.shape[0]] = 1
    return out.to(device), mask.to(device)


def token_states(model, texts: list[str]) -> list[Tensor]:
    out = model.encode(texts, batch_size=64, output_value="token_embeddings", show_progress_bar=False)
    return [o.detach().float().cpu() for o in out]


def long_document(model, texts: list[str], length: int) -> Tensor:
    """(length, d) MiniLM token states of STS-B text read as one document, encoded in max_seq_length chunks."""
    tokenizer = model.tokenizer
    ids: list[int] = []
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if len(ids) > 2 * length:
            break
    chunk = model.max_seq_length - 2
    chunks = [tokenizer.decode(ids[i : i + chunk]) for i in range(0, len(ids), chunk)]
    states, total = [], 0
    for start in range(0, len(chunks), 8):
        part = token_states(model, chunks[start : start + 8])
        states.extend(part)
        total += sum(s.shape[0] for s in part)
        if total >= length:
            break
    return torch.cat(states)[:length].contiguous()


def tiled_sentence(sentences: list[Tensor], length: int, seed: int = 0) -> Tensor:
    """Stress input: one sentence's token states repeated to ``length`` with 5% noise (dense threshold graph)."""
    base = max(sentences[:50], key=lambda s: s.shape[0])
    reps = -(-length // base.shape[0])
    out = base.repeat(reps, 1)[:length]
    gen = torch.Generator().manual_seed(seed)
    return (out + 0.05 * out.std() * torch.randn(out.shape, generator=gen)).contiguous()


def doc_batch(doc: Tensor, batch: int, length: int, device: str) -> tuple[Tensor, Tensor]:
    """``batch`` windows of ``length`` tokens from the document (different offsets), all tokens valid."""
    rows = []
    span = max(1, doc.shape[0] - length + 1)
    for b in range(batch):
        start = (b * 997) % span
        window = doc[start : start + length]
        if window.shape[0] < length:
            window = torch.roll(doc, shifts=b * 331, dims=0)[:length]
        rows.append(window)
    return torch.stack(rows).to(device), torch.ones(batch, length, dtype=torch.long, device=device)


def edge_density(states: Tensor, mask: Tensor, **graph_kwargs) -> tuple[int, float]:
    """Edges (self-loops included) and their share of all same-sentence token pairs."""
    graph = build_token_graph(states, mask, layout="sparse", **graph_kwargs)
    pairs = float((mask.sum(1).double() ** 2).sum())
    return graph.num_edges, graph.num_edges / max(pairs, 1.0)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)
