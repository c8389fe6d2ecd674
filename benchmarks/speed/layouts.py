"""The ``backends``, ``layout`` and ``scaling`` sections: native against torch-scatter kernels, dense against sparse layout, time against length and batch."""

from __future__ import annotations

import statistics
from pathlib import Path

import torch

from glot_st import GLOT, build_token_graph
from glot_st.kernels import torch_scatter_available
from glot_st.module import DEFAULT_DENSE_MAX_ELEMENTS, DENSE_MIN_FILL_CPU

from speed.common import doc_batch, edge_density, log, pad, ratio, stats


def section_backends(ctx) -> dict:
    if not torch_scatter_available():
        return {"skipped": "torch-scatter / torch-sparse are not installed (make scatter)"}
    timer, device, repeats = ctx["timer"], ctx["device"], ctx["repeats"]
    cases = {
        "MiniLM STS-B test, B=64": pad(ctx["sentences"][:64], device),
        "MiniLM document, B=64 x L=128": doc_batch(ctx["doc"], 64, 128, device),
    }
    rows = []
    for conv in ("gat", "gcn"):
        for name, (states, mask) in cases.items():
            torch.manual_seed(0)
            native = GLOT(in_dim=384, conv=conv, layout="sparse", backend="native", dropout=0.0).to(device)
            scatter = GLOT(in_dim=384, conv=conv, layout="sparse", backend="torch_scatter", dropout=0.0).to(device)
            scatter.load_state_dict(native.state_dict())

            def forward(model):
                def run():
                    with torch.no_grad():
                        model.pool(states, mask)

                return run

            def train_step(model):
                def run():
                    model.zero_grad(set_to_none=True)
                    model.pool(states, mask).square().sum().backward()

                return run

            fwd = timer.side_by_side({"native": forward(native), "torch_scatter": forward(scatter)}, repeats)
            bwd = timer.side_by_side({"native": train_step(native), "torch_scatter": train_step(scatter)}, repeats)
            rows.append(
                {
                    "conv": conv,
                    "case": name,
                    "edges": edge_density(states, mask)[0],
                    "forward": {k: stats(v) for k, v in fwd.items()},
                    "forward_backward": {k: stats(v) for k, v in bwd.items()},
                    "native_speedup_forward": ratio(fwd["torch_scatter"], fwd["native"]),
                    "native_speedup_forward_backward": ratio(bwd["torch_scatter"], bwd["native"]),
                }
            )
            log(f"backends {conv} {name}: {rows[-1]['native_speedup_forward']}")
    return {"rows": rows, "kernels": kernel_micro(ctx)}


def kernel_micro(ctx) -> list[dict]:
    """The two kernels that differ: CSR spmm (128 channels) and the segment softmax, on one graph."""
    from glot_st.kernels import get_kernels

    timer, device, repeats = ctx["timer"], ctx["device"], ctx["repeats"]
    states, mask = doc_batch(ctx["doc"], 64, 128, device)
    graph = build_token_graph(states, mask)
    x = torch.randn(graph.num_nodes, 128, device=device)
    values = torch.rand(graph.num_edges, device=device)
    logits = torch.randn(graph.num_edges, 1, device=device)
    sets = {"native": get_kernels("native"), "torch_scatter": get_kernels("torch_scatter")}
    out = []
    for kernel, call in (
        ("spmm", lambda k: lambda: k.spmm(graph.rowptr, graph.src, values, x)),
        ("segment_softmax", lambda k: lambda: k.segment_softmax(logits, graph.dst, graph.rowptr, graph.num_nodes)),
    ):
        times = timer.side_by_side({name: call(k) for name, k in sets.items()}, max(repeats, 10))
        out.append(
            {
                "kernel": kernel,
                "edges": graph.num_edges,
                **{name: stats(t) for name, t in times.items()},
                "native_speedup": ratio(times["torch_scatter"], times["native"]),
            }
        )
    return out


def section_layout(ctx) -> dict:
    timer, device, repeats = ctx["timer"], ctx["device"], ctx["repeats"]
    sentences = sorted(ctx["sentences"], key=lambda s: s.shape[0])  # encode batches by length, as ST does
    cases = []
    for batch in (8, 32, 128, 512):
        middle = len(sentences) // 2
        cases.append((f"STS-B sorted, B={batch}", pad(sentences[middle : middle + batch], device)))
    for batch in (32, 128):
        cases.append((f"STS-B unsorted, B={batch}", pad(ctx["sentences"][:batch], device)))
    grid = ((1, 128), (8, 128), (32, 128), (64, 128), (256, 128), (1, 512), (8, 512), (32, 512), (1, 1024))
    if ctx["quick"]:
        grid = ((8, 128), (64, 128), (8, 512))
    for batch, length in grid:
        cases.append((f"document B={batch} x L={length}", doc_batch(ctx["doc"], batch, length, device)))
    rows = []
    torch.manual_seed(0)
    glot = GLOT(in_dim=384, dropout=0.0).to(device).eval()
    for name, (states, mask) in cases:
        batch, length = states.shape[:2]

        def forward(layout):
            def call():
                glot.layout = layout
                with torch.no_grad():
                    glot.pool(states, mask)

            return call

        def train_step(layout):
            def call():
                glot.layout = layout
                glot.zero_grad(set_to_none=True)
                glot.pool(states, mask).square().sum().backward()

            return call

        fwd = timer.side_by_side({"dense": forward("dense"), "sparse": forward("sparse")}, repeats)
        bwd = timer.side_by_side({"dense": train_step("dense"), "sparse": train_step("sparse")}, repeats)
        glot.layout = "auto"
        edges, density = edge_density(states, mask)
        rows.append(
            {
                "case": name,
                "B": batch,
                "L": length,
                "elements": batch * length * length,
                "density": density,
                "forward": {k: stats(v) for k, v in fwd.items()},
                "forward_backward": {k: stats(v) for k, v in bwd.items()},
                "dense_speedup_forward": ratio(fwd["sparse"], fwd["dense"]),
                "dense_speedup_forward_backward": ratio(bwd["sparse"], bwd["dense"]),
            }
        )
        log(f"layout {name}: dense speedup fwd {rows[-1]['dense_speedup_forward']} fwd+bwd {rows[-1]['dense_speedup_forward_backward']}")
    return {
        "rows": rows,
        "default_dense_max_elements": DEFAULT_DENSE_MAX_ELEMENTS[torch.device(device).type],
        "dense_min_fill_cpu": DENSE_MIN_FILL_CPU,
    }


def section_scaling(ctx) -> dict:
    timer, device = ctx["timer"], ctx["device"]
    lengths = (128, 512, 2048) if ctx["quick"] else (128, 512, 2048, 8192)
    batches = (1, 8) if ctx["quick"] else (1, 8, 32)
    torch.manual_seed(0)
    glot = GLOT(in_dim=384).to(device).eval()
    rows = []
    for length in lengths:
        for batch in batches:
            if batch * length > 65536:
                continue
            states, mask = doc_batch(ctx["doc"], batch, length, device)
            repeats = ctx["repeats"] if batch * length <= 16384 else max(2, ctx["repeats"] // 2)
            with torch.no_grad():
                times = timer.side_by_side({"glot": lambda: glot.pool(states, mask)}, repeats)["glot"]
            edges, density = edge_density(states, mask)
            rows.append(
                {
                    "B": batch,
                    "L": length,
                    "tokens": batch * length,
                    "layout": glot._choose_layout(batch, length, device, int(mask.sum())),
                    "edges": edges,
                    "density": density,
                    "time": stats(times),
                    "us_per_token": 1e6 * statistics.median(times) / (batch * length),
                }
            )
            log(f"scaling B={batch} L={length}: {rows[-1]['time']}")
    return {"rows": rows}


def plot_scaling(scaling: dict, path: Path, command: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = scaling["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for batch in sorted({r["B"] for r in rows}):
        mine = [r for r in rows if r["B"] == batch]
        xs = [r["L"] for r in mine]
        axes[0].plot(xs, [r["time"]["median_ms"] for r in mine], marker="o", label=f"B={batch}")
        axes[1].plot(xs, [r["us_per_token"] for r in mine], marker="o", label=f"B={batch}")
    for ax, title, ylabel in (
        (axes[0], "GLOT forward time", "median ms per forward"),
        (axes[1], "time per token", "median us per token"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens per sentence L")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"GLOT (default config, MiniLM d=384) - {command}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
