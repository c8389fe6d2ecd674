"""The ``pyg`` section: ``GLOT.pool`` against the paper's PyTorch Geometric formulation and the authors' per-sentence loop (GLOT's weights copied in)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glot_st import GLOT

from speed.common import GPU_TARGETS, TARGETS, edge_density, log, pad, ratio, stats


def gat_convs_of(glot: GLOT, edge_dim: int | None = None) -> nn.ModuleList:
    """PyG ``GATConv`` layers holding a default GLOT's GAT weights (``edge_dim=1``: the edge term zeroed)."""
    from torch_geometric.nn import GATConv

    assert glot.conv == "gat" and glot.jk == "cat" and glot.edge_weight == "binary"
    convs = nn.ModuleList()
    for layer in glot.layers:
        conv = GATConv(layer.lin.in_features, layer.channels, heads=layer.heads, concat=layer.concat, edge_dim=edge_dim)
        conv.lin.weight.data.copy_(layer.lin.weight)
        conv.att_src.data.copy_(layer.att_src)
        conv.att_dst.data.copy_(layer.att_dst)
        if edge_dim is not None:
            conv.att_edge.data.zero_()
        conv.bias.data.copy_(layer.bias)
        convs.append(conv)
    return convs


class PygGLOT(nn.Module):
    """Per-sentence PyG pipeline: Data per sentence, dense cosine, threshold, Batch, GATConv, JK cat, readout.

    Built from a default GLOT (``conv="gat"``, ``jk="cat"``) whose weights it copies, so both compute the same
    function.
    """

    def __init__(self, glot: GLOT):
        super().__init__()
        self.tau = glot.tau
        self.convs = gat_convs_of(glot)
        self.scorer = copy.deepcopy(glot.readout.scorer)  # Linear, Tanh, Linear

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        from torch_geometric.data import Batch, Data
        from torch_geometric.nn import global_add_pool
        from torch_geometric.utils import softmax

        data = []
        for b in range(states.shape[0]):
            x = states[b][mask[b].bool()]
            unit = F.normalize(x, dim=-1)
            edge_index = (unit @ unit.T > self.tau).nonzero().t()  # symmetric, self-loops included
            data.append(Data(x=x, edge_index=edge_index))
        batch = Batch.from_data_list(data)
        h, outs = batch.x, [batch.x]
        for conv in self.convs:
            h = F.relu(conv(h, batch.edge_index))
            outs.append(h)
        features = torch.cat(outs, dim=-1)
        weights = softmax(self.scorer(features).squeeze(-1), batch.batch, num_nodes=features.shape[0])
        return global_add_pool(weights.unsqueeze(-1) * features, batch.batch, size=states.shape[0])


class AuthorsGLOT(nn.Module):
    """The authors' formulation: a Python loop over sentences, each its own graph and ``GATConv(in, out,
    edge_dim=1)`` calls with unit edge attributes, JK cat and the attention readout per sentence.

    ``edge_dim=1`` adds a learned per-head term to every logit; it is zeroed here, so the module computes the
    same function as a default GLOT (whose weights it copies) and the outputs can be checked.
    """

    def __init__(self, glot: GLOT):
        super().__init__()
        self.tau = glot.tau
        self.convs = gat_convs_of(glot, edge_dim=1)
        self.scorer = copy.deepcopy(glot.readout.scorer)
        self.dim = glot.get_sentence_embedding_dimension()

    def forward(self, states: Tensor, mask: Tensor) -> Tensor:
        out = []
        for b in range(states.shape[0]):
            x = states[b][mask[b].bool()]
            if x.shape[0] == 0:
                out.append(x.new_zeros(self.dim))
                continue
            unit = F.normalize(x, dim=-1)
            edge_index = (unit @ unit.T > self.tau).nonzero().t()
            edge_attr = torch.ones(edge_index.shape[1], 1, device=x.device)
            h, outs = x, [x]
            for conv in self.convs:
                h = F.relu(conv(h, edge_index, edge_attr=edge_attr))
                outs.append(h)
            features = torch.cat(outs, dim=-1)
            weights = torch.softmax(self.scorer(features).squeeze(-1), dim=0)
            out.append(weights @ features)
        return torch.stack(out)


def section_pyg(ctx) -> dict:
    timer, device, repeats = ctx["timer"], ctx["device"], ctx["repeats"]
    torch.manual_seed(0)
    glot = GLOT(in_dim=384).to(device).eval()
    pyg = PygGLOT(glot).to(device).eval()
    authors = AuthorsGLOT(glot).to(device).eval()
    cases = {"MiniLM STS-B test, B=64": pad(ctx["sentences"][:64], device)}
    for batch, length in ((64, 128), (16, 512)) if not ctx["quick"] else ((64, 128),):
        cases[f"random B={batch} x L={length}"] = clustered_random(batch, length, device)
    rows = []
    for name, (states, mask) in cases.items():
        nodes = states[mask.bool()]
        features = torch.randn(nodes.shape[0], glot.get_sentence_embedding_dimension(), device=device)

        def floor(nodes=nodes, features=features):
            """The dense layers both implementations must run: every GAT projection and the readout scorer."""
            hidden = nodes
            for layer in glot.layers:
                hidden = layer.lin(hidden)
            glot.readout.scorer(features)

        with torch.no_grad():
            want = glot.pool(states, mask)
            diff = float((want - pyg(states, mask)).abs().max())
            diff_authors = float((want - authors(states, mask)).abs().max())
            fns = {"pyg": lambda: pyg(states, mask), "glot": lambda: glot.pool(states, mask), "floor": floor}
            fns["authors"] = lambda: authors(states, mask)
            times = timer.side_by_side(fns, repeats)
        edges, density = edge_density(states, mask)
        rows.append(
            {
                "case": name,
                "shape": list(states.shape[:2]),
                "tokens": int(mask.sum()),
                "layout": glot._choose_layout(*states.shape[:2], device, int(mask.sum())),
                "edges": edges,
                "density": density,
                "max_abs_diff": diff,
                "max_abs_diff_authors": diff_authors,
                "authors": stats(times["authors"]),
                "speedup_authors": ratio(times["authors"], times["glot"]),
                "pyg": stats(times["pyg"]),
                "glot": stats(times["glot"]),
                "speedup": ratio(times["pyg"], times["glot"]),
                "shared_dense_layers": stats(times["floor"]),
                "speedup_bound": ratio(times["pyg"], times["floor"]),
            }
        )
        log(f"pyg {name}: speedup {rows[-1]['speedup']}, vs the authors' loop {rows[-1]['speedup_authors']}")
    if device == "cuda":
        return {"rows": rows, "target": GPU_TARGETS["authors"], "against": "authors",
                "target_case": GPU_TARGETS["authors_case"]}
    return {"rows": rows, "target": TARGETS["pyg"], "against": "pyg", "target_case": "B=64"}


def clustered_random(batch: int, length: int, device: str, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Random token states with MiniLM-like structure: 16 random directions + noise, ~20% pairs above tau=0.6."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(16, 384, generator=gen)
    assign = torch.randint(0, 16, (batch, length), generator=gen)
    states = centers[assign] + 0.75 * torch.randn(batch, length, 384, generator=gen)
    return states.to(device), torch.ones(batch, length, dtype=torch.long, device=device)
