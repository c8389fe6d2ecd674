"""The batched ``GLOT.pool`` equals a plain per-sentence reference written from the paper's formulas.

The reference loops over sentences, builds each sentence's cosine matrix entry by entry, thresholds it
(``cos > tau`` plus self-loops), runs every conv from its textbook formula on a dense ``n x n`` adjacency
using the module's weights, applies ReLU, jumping knowledge, the tanh scorer MLP, the softmax over the
sentence's tokens and the weighted sum. Nothing of glot_st except the weights is used.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from glot_st import GLOT

from conftest import random_batch

IN_DIM = 8
HIDDEN = 6
TAU = 0.2
LENGTHS = [7, 3, 1, 0, 5]  # includes a one-token sentence and a row without any valid token
ATOL = 1e-5


# ---- the reference ---------------------------------------------------------------------------------------
def _cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    rows = x.tolist()
    norms = [math.sqrt(sum(v * v for v in row)) for row in rows]
    sim = [
        [sum(a * b for a, b in zip(row_i, row_j)) / (norms[i] * norms[j]) for j, row_j in enumerate(rows)]
        for i, row_i in enumerate(rows)
    ]
    return torch.tensor(sim, dtype=torch.float64).float()


def _graph(x: torch.Tensor, tau: float, edge_weight: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``adj[i, j]`` = edge j -> i (bool), ``w[i, j]`` its weight (0 off the graph)."""
    sim = _cosine_matrix(x)
    n = x.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    off_diag = sim[~eye]
    # the reference and the module must take the same edge decisions: no similarity on the threshold
    assert off_diag.numel() == 0 or float((off_diag - tau).abs().min()) > 1e-4
    adj = (sim > tau) | eye
    if edge_weight == "binary":
        return adj, adj.float()
    return adj, torch.where(eye, torch.ones_like(sim), sim.clamp_min(0.0) * adj)


def _linear(x, weight, bias=None):
    out = x @ weight.T
    return out + bias if bias is not None else out


def _mlp2(x, seq):
    """Linear -> ReLU -> Linear from a Sequential's weights."""
    return _linear(torch.relu(_linear(x, seq[0].weight, seq[0].bias)), seq[2].weight, seq[2].bias)


def _gat(layer, x, adj, w):
    heads, channels = layer.heads, layer.channels
    hw = _linear(x, layer.lin.weight).view(-1, heads, channels)  # (n, H, C)
    n = x.shape[0]
    out = torch.zeros(n, heads, channels)
    for h in range(heads):
        a_src = layer.att_src[0, h]
        a_dst = layer.att_dst[0, h]
        for i in range(n):
            nb = adj[i].nonzero().flatten()  # the sources j of edges j -> i
            e = hw[nb, h] @ a_src + hw[i, h] @ a_dst
            if layer.lin_edge is not None:
                w_edge = w[i, nb].unsqueeze(1) * layer.lin_edge.weight[h * channels : (h + 1) * channels, 0]
                e = e + w_edge @ layer.att_edge[0, h]
            alpha = torch.softmax(F.leaky_relu(e, layer.negative_slope), dim=0)
            out[i, h] = alpha @ hw[nb, h]
    out = out.reshape(n, heads * channels) if layer.concat else out.mean(1)
    return out + layer.bias


def _gcn(layer, x, adj, w):
    degree = w.sum(1)
    norm = degree.pow(-0.5).unsqueeze(1) * w * degree.pow(-0.5).unsqueeze(0)
    return norm @ _linear(x, layer.lin.weight) + layer.bias


def _gin(layer, x, adj, w):
    return _mlp2((1 + layer.eps) * x + w @ x, layer.nn)


def _gine(layer, x, adj, w):
    n = x.shape[0]
    summed = torch.zeros_like(x)
    for i in range(n):
        for j in range(n):
            if adj[i, j]:
                edge = layer.lin.weight[:, 0] * w[i, j] + layer.lin.bias
                summed[i] = summed[i] + torch.relu(x[j] + edge)
    return _mlp2((1 + layer.eps) * x + summed, layer.nn)


def _sage(layer, x, adj, w):
    mean = (w @ x) / w.sum(1, keepdim=True)
    return _linear(mean, layer.lin_l.weight, layer.lin_l.bias) + _linear(x, layer.lin_r.weight)


CONV_REFERENCE = {"gat": _gat, "gcn": _gcn, "gin": _gin, "gine": _gine, "sage": _sage}


def reference_pool(glot: GLOT, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    out = []
    for b in range(states.shape[0]):
        idx = [i for i in range(states.shape[1]) if mask[b, i]]
        if not idx:
            out.append(torch.zeros(glot.get_sentence_embedding_dimension()))
            continue
        x = states[b, idx].float()
        adj, w = _graph(x, glot.tau, glot.edge_weight)
        hidden, layer_outputs = x, []
        for layer in glot.layers:
            hidden = torch.relu(CONV_REFERENCE[glot.conv](layer, hidden, adj, w))
            layer_outputs.append(hidden)
        if glot.jk == "cat":
            feats = torch.cat([x, *layer_outputs], dim=1)
        else:
            proj = glot.jumping_knowledge.input_proj
            stacked = torch.stack([_linear(x, proj.weight, proj.bias), *layer_outputs])
            feats = stacked.max(0).values if glot.jk == "max" else stacked.mean(0)
        scorer = glot.readout.scorer
        scores = _linear(torch.tanh(_linear(feats, scorer[0].weight, scorer[0].bias)), scorer[2].weight, scorer[2].bias)
        pi = torch.softmax(scores.squeeze(1), dim=0)
        out.append((pi.unsqueeze(1) * feats).sum(0))
    return torch.stack(out)


# ---- the tests -----------------------------------------------------------------------------------------------
def _module(seed: int, **config) -> GLOT:
    torch.manual_seed(seed)
    glot = GLOT(in_dim=IN_DIM, hidden_dim=HIDDEN, tau=TAU, scorer_hidden=5, dropout=0.0, **config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random biases and attention vectors, not the zero / xavier initialisation
        for parameter in glot.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=gen) * 0.5)
    return glot.eval()


def _check(glot: GLOT, seed: int) -> None:
    states, mask = random_batch(len(LENGTHS), 7, IN_DIM, seed=seed, lengths=LENGTHS)
    with torch.no_grad():
        got = glot.pool(states, mask)
        want = reference_pool(glot, states, mask)
    assert got.shape == want.shape == (len(LENGTHS), glot.get_sentence_embedding_dimension())
    torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-4)
    assert float(got[3].abs().max()) == 0.0  # the empty row
    # the graphs are neither empty nor complete: thresholding matters
    adjacency = [_graph(states[b, : LENGTHS[b]], glot.tau, "binary")[0] for b in range(len(LENGTHS)) if LENGTHS[b]]
    assert sum(int(a.sum()) - a.shape[0] for a in adjacency) > 0
    assert sum(int((~a).sum()) for a in adjacency) > 0


CASES = [
    (conv, jk, edge_weight, layout)
    for conv in ("gat", "gcn", "gin", "gine", "sage")
    for jk in ("cat", "max", "mean")
    for edge_weight in ("binary", "cosine")
    for layout in ("sparse", "dense")
    if not (conv == "gine" and layout == "dense")
]


@pytest.mark.parametrize("conv,jk,edge_weight,layout", CASES)
def test_pool_equals_reference(conv, jk, edge_weight, layout):
    seed = CASES.index((conv, jk, edge_weight, layout))
    glot = _module(seed, conv=conv, jk=jk, edge_weight=edge_weight, layout=layout, num_layers=2)
    _check(glot, seed)


@pytest.mark.parametrize("heads,concat", [(2, True), (3, False)])
@pytest.mark.parametrize("edge_weight", ["binary", "cosine"])
@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_multi_head_gat_equals_reference(heads, concat, edge_weight, layout):
    glot = _module(
        heads, conv="gat", heads=heads, concat_heads=concat, edge_weight=edge_weight, layout=layout, num_layers=2
    )
    _check(glot, 100 + heads)


@pytest.mark.parametrize("jk", ["cat", "max", "mean"])
def test_zero_layers_equals_reference(jk):
    glot = _module(7, conv="gcn", jk=jk, num_layers=0, layout="sparse")
    _check(glot, 200)


@pytest.mark.parametrize("layout", ["sparse", "dense"])
def test_three_layers_auto_layout_equals_reference(layout):
    glot = _module(9, conv="sage", jk="max", edge_weight="cosine", num_layers=3, layout=layout)
    _check(glot, 300)
