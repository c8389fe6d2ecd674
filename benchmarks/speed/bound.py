"""The ``bound`` section: GLOT's forward (and forward + backward) against the dense products it cannot avoid."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch
from torch import Tensor

from glot_st import GLOT

from speed.common import TARGETS, doc_batch, log, pad, ratio, stats


def dense_products(glot: GLOT, nodes: Tensor, train: bool) -> Callable[[], object]:
    """The products no implementation of GLOT can skip, on the ``N`` real tokens: every GAT projection and the
    readout scorer (Linear, Tanh, Linear) on the ``(N, D)`` features; with ``train`` also their backward."""
    features = torch.randn(nodes.shape[0], glot.get_sentence_embedding_dimension(), device=nodes.device)
    features.requires_grad_(train)

    def run():
        hidden = nodes
        with torch.set_grad_enabled(train):
            for layer in glot.layers:
                hidden = layer.lin(hidden)
            scores = glot.readout.scorer(features)
            if train:
                glot.zero_grad(set_to_none=True)
                features.grad = None
                (hidden.sum() + scores.sum()).backward()

    return run


def section_bound(ctx) -> dict:
    """GLOT (default config) against its unavoidable dense products, forward and forward + backward (issue 12).

    All functions of a case are timed in one interleaved loop. Forward: eval mode, no_grad. Forward + backward:
    the training step of the cached loop (train mode, default dropout 0.1), against the products' own forward and
    backward. ``compiled``: ``torch.compile(dynamic=True, fullgraph=True)`` of the dense layout with
    ``validate_inputs=False`` (no host sync, one graph), compiled in the warm-up.
    """
    timer, device = ctx["timer"], ctx["device"]
    repeats = max(ctx["repeats"], 5 if ctx["quick"] else 21)
    cases = {
        "MiniLM document, B=64 x L=128": doc_batch(ctx["doc"], 64, 128, device),
        "MiniLM STS-B test, B=64": pad(ctx["sentences"][:64], device),
    }
    rows = []
    for name, (states, mask) in cases.items():
        torch.manual_seed(0)
        glot = GLOT(in_dim=384).to(device).eval()
        trained = copy.deepcopy(glot).train()
        fast = copy.deepcopy(glot)
        fast.layout, fast.validate_inputs = "dense", False
        compiled = torch.compile(fast.pool, dynamic=True, fullgraph=True)
        nodes = states[mask.bool()]

        def forward(fn):
            def run():
                with torch.no_grad():
                    fn(states, mask)

            return run

        def train_step():
            trained.zero_grad(set_to_none=True)
            trained.pool(states, mask).square().sum().backward()

        start = time.perf_counter()
        forward(compiled)()
        compile_s = time.perf_counter() - start
        with torch.no_grad():
            diff = float((compiled(states, mask) - glot.pool(states, mask)).abs().max())
        fns = {
            "glot": forward(glot.pool),
            "bound": dense_products(glot, nodes, train=False),
            "compiled": forward(compiled),
            "glot_train": train_step,
            "bound_train": dense_products(trained, nodes, train=True),
        }
        times = timer.side_by_side(fns, repeats)
        rows.append(
            {
                "case": name,
                "shape": list(states.shape[:2]),
                "tokens": int(mask.sum()),
                "layout": glot._choose_layout(*states.shape[:2], device, int(mask.sum())),
                **{key: stats(value) for key, value in times.items()},
                "forward_over_bound": ratio(times["glot"], times["bound"]),
                "forward_backward_over_bound": ratio(times["glot_train"], times["bound_train"]),
                "compiled_over_bound": ratio(times["compiled"], times["bound"]),
                "compile_speedup": ratio(times["glot"], times["compiled"]),
                "compile_seconds": compile_s,
                "compiled_max_abs_diff": diff,
            }
        )
        log(
            f"bound {name}: forward/bound {rows[-1]['forward_over_bound']}, fwd+bwd/bound "
            f"{rows[-1]['forward_backward_over_bound']}, compile speedup {rows[-1]['compile_speedup']}"
        )
    return {"rows": rows, "target": TARGETS["bound"], "repeats": repeats}
