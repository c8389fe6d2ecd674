"""Speed and memory of GLOT (issue 3): every figure is a ratio measured side by side in one run.

Sections (``--only`` picks some):

- ``bound``: GLOT's forward, and forward + backward, against the dense products it cannot avoid (the GAT
  projections of every layer and the readout scorer on every real token), side by side with interleaved
  repeats (issue 12); also ``torch.compile(dynamic=True)`` of the dense forward.
- ``pyg``: ``GLOT.pool`` against the paper's formulation written here with PyTorch Geometric: a ``Data`` per
  sentence (dense cosine, threshold), ``Batch.from_data_list``, ``GATConv`` layers, JK cat, attention readout,
  with GLOT's weights copied in (the outputs are checked to agree). Graph building is inside both timings. Also
  the authors' formulation: a Python loop over sentences with ``GATConv(in, out, edge_dim=1)`` and unit edge
  attributes (its learned edge term set to zero so that it computes GLOT's function).
- ``encode``: ``model.encode`` of STS-B sentences, MiniLM + GLOT against MiniLM + mean ``Pooling`` on the same
  ``Transformer`` instance, measurements interleaved.
- ``backends``: native against torch-scatter kernels, forward and forward + backward (sparse layout).
- ``layout``: dense masked against sparse CSR layout at several ``(B, L)``; sets ``dense_max_elements``.
- ``long``: one 8192-token input of MiniLM width, time and peak RSS growth in a fresh subprocess per case.
- ``scaling``: time against sequence length and batch size (table and ``scaling.png``).

Each section lives in a module of ``benchmarks/speed/`` (``bound``, ``references``: pyg, ``encode``, ``layouts``:
backends, layout and scaling, ``long_inputs``: long); ``speed/common.py`` holds the timer and the inputs,
``speed/report.py`` the tables. This file is the one entry point.

Writes ``benchmarks/results/bench_glot.json``, ``bench_glot.md`` and ``scaling.png`` (each names the command).

    python benchmarks/bench_glot.py --threads 1 --write-readme   # the full run, README table regenerated
    python benchmarks/bench_glot.py --quick       # smaller sizes, a smoke run (about 1 minute)
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

import glot_st  # noqa: E402
from glot_st.kernels import torch_scatter_available  # noqa: E402

from speed.bound import section_bound  # noqa: E402
from speed.common import (  # noqa: E402
    README,
    RESULTS,
    SECTIONS,
    Timer,
    cpu_name,
    load_average,
    log,
    long_document,
    minilm_model,
    stsb_sentences,
    token_states,
)
from speed.encode import section_encode  # noqa: E402
from speed.layouts import plot_scaling, section_backends, section_layout, section_scaling  # noqa: E402
from speed.long_inputs import long_child, section_long  # noqa: E402
from speed.references import section_pyg  # noqa: E402
from speed.report import markdown, write_readme  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per measurement (default 7; 3 quick)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats (a smoke run)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=None, help="run only these sections")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument(
        "--write-readme", action="store_true", help="regenerate the README section between the bench: markers"
    )
    parser.add_argument("--child-long", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-input", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child-graph", default="threshold", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 7
    if args.child_long:
        long_child(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    command = "python benchmarks/bench_glot.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    command = command.strip()
    sections = args.only or list(SECTIONS)
    load_before = load_average()
    log(f"{command}; load average {load_before}; torch threads {torch.get_num_threads()}")

    model = minilm_model(args.device)
    texts = stsb_sentences()
    ctx = {
        "timer": Timer(args.device),
        "device": args.device,
        "repeats": args.repeats,
        "quick": args.quick,
        "threads": args.threads,
        "model": model,
        "texts": texts,
    }
    if set(sections) & {"bound", "pyg", "backends", "layout", "long"}:
        ctx["sentences"] = token_states(model, texts[:600])
    if set(sections) & {"bound", "backends", "layout", "long", "scaling"}:
        ctx["doc"] = long_document(model, texts, 8192)
    runners = {
        "bound": section_bound,
        "pyg": section_pyg,
        "encode": section_encode,
        "backends": section_backends,
        "layout": section_layout,
        "long": section_long,
        "scaling": section_scaling,
    }
    results = {}
    for name in sections:
        log(f"section {name}")
        results[name] = runners[name](ctx)
        results[name]["load_average_after"] = load_average()

    report = {
        "command": command,
        "repeats": args.repeats,
        "quick": args.quick,
        "environment": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "glot_st": glot_st.__version__,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "torch_scatter": torch_scatter_available(),
            "load_before": load_before,
            "load_after": load_average(),
        },
        "sections": results,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "bench_glot.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "bench_glot.md").write_text(markdown(report) + "\n")
    if "scaling" in results:
        plot_scaling(results["scaling"], args.out_dir / "scaling.png", command)
    log(f"wrote {args.out_dir / 'bench_glot.md'}")
    if args.write_readme:
        write_readme(report)
        log(f"wrote the results section of {README}")


if __name__ == "__main__":
    main()
