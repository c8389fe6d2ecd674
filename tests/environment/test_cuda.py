"""GLOT on CUDA: the same results as on the CPU, for every conv and both layouts, under autocast, with backward;
skipped where no GPU is present."""

from __future__ import annotations

import pytest
import torch

from conftest import random_batch, randomized_glot

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CONFIGS = [
    dict(conv="gat", heads=2, edge_weight="cosine"),
    dict(conv="gat", jk="max"),
    dict(conv="gcn", edge_weight="cosine", jk="mean"),
    dict(conv="gin", graph="topk", k=2),
    dict(conv="gine", edge_weight="cosine"),
    dict(conv="sage", graph="mutual_knn", k=2),
]
LAYOUTS = ("sparse", "dense")
ATOL, RTOL = 1e-4, 1e-4  # TF32 is off by default for matmuls; cuBLAS and CPU BLAS sum in different orders


def _cases():
    for config in CONFIGS:
        for layout in LAYOUTS:
            if not (config["conv"] == "gine" and layout == "dense"):
                yield config, layout


CASES = list(_cases())


def _ids(case):
    config, layout = case
    return "-".join(map(str, config.values())) + "-" + layout


def _batch(seed: int = 0):
    # left padding in one row, an empty row, a full row
    states, mask = random_batch(4, 9, 8, seed=seed, lengths=[9, 4, 0, 6])
    mask[1] = mask[1].flip(0)
    return states, mask


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_forward_and_backward_match_cpu(case):
    config, layout = case
    cpu = randomized_glot(1, layout=layout, output_token_states=True, **config)
    gpu = randomized_glot(1, layout=layout, output_token_states=True, **config).cuda()
    states, mask = _batch(1)
    results = {}
    for name, glot, device in (("cpu", cpu, "cpu"), ("cuda", gpu, "cuda")):
        x = states.to(device).requires_grad_(True)
        features = glot({"token_embeddings": x, "attention_mask": mask.to(device)})
        (features["sentence_embedding"].square().sum() + features["glot_token_embeddings"].sum()).backward()
        results[name] = (
            features["sentence_embedding"].detach().cpu(),
            features["glot_token_embeddings"].detach().cpu(),
            x.grad.cpu(),
            {n: p.grad.cpu() for n, p in glot.named_parameters() if p.grad is not None},
        )
    for got, want in zip(results["cuda"][:3], results["cpu"][:3]):
        torch.testing.assert_close(got, want, atol=ATOL, rtol=RTOL)
    assert results["cuda"][3].keys() == results["cpu"][3].keys()
    for name, grad in results["cuda"][3].items():
        torch.testing.assert_close(grad, results["cpu"][3][name], atol=ATOL, rtol=RTOL, msg=name)


@pytest.mark.parametrize(
    "config", [c for c in CONFIGS if c["conv"] != "gine"], ids=lambda c: "-".join(map(str, c.values()))
)
def test_dense_and_sparse_agree_on_cuda(config):
    glot = randomized_glot(2, **config).cuda()
    states, mask = _batch(2)
    states, mask = states.cuda(), mask.cuda()
    with torch.no_grad():
        glot.layout = "sparse"
        sparse = glot.pool(states, mask)
        glot.layout = "dense"
        dense = glot.pool(states, mask)
    torch.testing.assert_close(dense, sparse, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_autocast(dtype, case):
    """Under autocast the module runs in reduced precision where it is safe and stays finite, close to fp32."""
    config, layout = case
    glot = randomized_glot(3, layout=layout, tau=0.3, **config).cuda()
    states, mask = _batch(3)
    states, mask = states.cuda().requires_grad_(True), mask.cuda()
    with torch.no_grad():
        want = glot.pool(states, mask)
    with torch.autocast("cuda", dtype=dtype):
        got = glot.pool(states, mask)
    assert torch.isfinite(got).all()
    scale = float(want.abs().max())
    torch.testing.assert_close(got.float(), want, atol=0.05 * scale, rtol=0.05)
    got.float().square().sum().backward()
    assert torch.isfinite(states.grad).all()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in glot.parameters())


def test_non_finite_input_raises_on_cuda():
    glot = randomized_glot(4, layout="dense").cuda()
    states, mask = _batch(4)
    states[3, 2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"row\(s\) \[3\]"):
        glot.pool(states.cuda(), mask.cuda())


def test_dense_forward_captures_in_a_cuda_graph():
    """With ``validate_inputs=False`` the dense forward has no host sync, so a CUDA graph can capture it."""
    glot = randomized_glot(5, layout="dense", conv="gat", heads=2).cuda()
    glot.validate_inputs = False
    states, mask = _batch(5)
    states, mask = states.cuda(), mask.cuda()
    with torch.no_grad():
        want = glot.pool(states, mask)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm up on a side stream, as CUDA graph capture requires
            glot.pool(states, mask)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = glot.pool(states, mask)
        states.copy_(states.flip(0))
        mask.copy_(mask.flip(0))
        graph.replay()
        torch.cuda.synchronize()
    torch.testing.assert_close(out, want.flip(0), atol=ATOL, rtol=RTOL)
