"""The ``long`` section: one 8192-token input, time and peak RSS growth in a fresh subprocess per case."""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from glot_st import GLOT

from speed.common import TARGETS, edge_density, log, stats, tiled_sentence

# the benchmark's entry point: it runs a case in a fresh subprocess with --child-long
ENTRY_POINT = Path(__file__).resolve().parents[1] / "bench_glot.py"


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_now_kib() -> int:
    """Current resident set size (falls back to the peak where /proc is missing)."""
    now = _status_kib("VmRSS")
    return now if now is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to /proc/self/clear_refs); False if not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_kib() -> int:
    peak = _status_kib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def long_child(args) -> None:
    """Run in a fresh process: load the input, warm up, then time the forward and the peak RSS growth."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    states = torch.load(args.child_input).to(device).unsqueeze(0)
    mask = torch.ones(states.shape[:2], dtype=torch.long, device=device)
    torch.manual_seed(0)
    glot = GLOT(in_dim=states.shape[-1], graph=args.child_graph).to(device).eval()
    with torch.no_grad():
        glot.pool(states[:, :256], mask[:, :256])  # load kernels and libraries outside the measurement
    gc.collect()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before, peak_reset = rss_now_kib(), reset_peak_rss()
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        with torch.no_grad():
            out = glot.pool(states, mask)
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del out
    after = peak_rss_kib()
    result = {
        "times": times,
        "peak_rss_growth_mib": (after - before) / 1024,
        "peak_method": "VmHWM after clear_refs" if peak_reset else "ru_maxrss",
        "layout": glot._choose_layout(1, states.shape[1], device, states.shape[1]),
    }
    if device == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    print("RESULT " + json.dumps(result))


def section_long(ctx) -> dict:
    length = 2048 if ctx["quick"] else 8192
    inputs = {
        "document": ctx["doc"][:length],
        "tiled sentence (stress)": tiled_sentence(ctx["sentences"], length),
    }
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for input_name, states in inputs.items():
            path = Path(folder) / "states.pt"
            torch.save(states.clone(), path)
            mask = torch.ones(1, length, dtype=torch.long)
            for graph in ("threshold", "topk"):
                edges, density = edge_density(states.unsqueeze(0), mask, graph=graph)
                command = [
                    sys.executable, str(ENTRY_POINT), "--child-long", "--child-input", str(path), "--child-graph", graph,
                    "--device", ctx["device"], "--repeats", str(max(2, min(ctx["repeats"], 3))),
                ]
                if ctx["threads"]:
                    command += ["--threads", str(ctx["threads"])]
                proc = subprocess.run(command, capture_output=True, text=True, check=False)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    rows.append({"input": input_name, "graph": graph, "error": proc.stderr[-2000:]})
                    continue
                result = json.loads(lines[-1][len("RESULT ") :])
                rows.append(
                    {
                        "input": input_name,
                        "graph": graph,
                        "tokens": length,
                        "edges": edges,
                        "density": density,
                        "input_mib": states.numel() * 4 / 2**20,
                        "time": stats(result["times"]),
                        "peak_rss_growth_mib": result["peak_rss_growth_mib"],
                        "peak_method": result["peak_method"],
                        "layout": result["layout"],
                        **({"cuda_peak_mib": result["cuda_peak_mib"]} if "cuda_peak_mib" in result else {}),
                    }
                )
                log(f"long {input_name} {graph}: {rows[-1]['time']} growth {rows[-1]['peak_rss_growth_mib']:.0f} MiB")
    return {"rows": rows, "target_mib": TARGETS["long_mib"]}
