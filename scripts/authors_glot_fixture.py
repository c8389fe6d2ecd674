"""Run the authors' own GLOT and AdaPool classes on fixed token states and write a parity fixture.

The authors' code (https://github.com/ipsitmantri/GLOT, ``main.py``) is a training script that imports wandb,
peft and mteb at the top. This script does not import it: it parses the file, keeps only the class and function
definitions the two poolers need (``GLOT``, ``AdaPool``, ``build_pyg_graphs`` and its helpers), and executes
those definitions in a namespace holding the names they use (torch, PyTorch Geometric, and a stand-in for
``torch_scatter.scatter_add`` built on PyG's own ``scatter``). Nothing of the file is copied into glot-st; the
fixture holds only numbers.

Usage (needs ``torch_geometric``; the ``test`` extra installs it)::

    git -C <GLOT clone> show 59f897e:main.py > /tmp/glot_main.py
    python scripts/authors_glot_fixture.py /tmp/glot_main.py --commit 59f897e1c8be735fd99c931d76886ac23dd0ec34

Writes ``tests/fixtures/authors_glot.safetensors`` (inputs, the authors' weights under their own parameter names,
their outputs) and ``tests/fixtures/authors_glot.json`` (commit, sha256 of the file, versions, settings, the
graphs' edge counts). ``tests/core/test_authors_parity.py`` loads the weights into glot-st's modules and compares.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import typing
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
# the definitions the two poolers need, by name; everything else in the file (training, data, wandb) is skipped
NEEDED_DEFINITIONS = ("pairwise_cosine_single", "_threshold_edges", "build_pyg_graphs", "GLOT", "AdaPool")
# the settings of the fixture: small enough to keep the file well under 1 MB, the authors' defaults otherwise
TOKEN_WIDTH = 64
ROW_LENGTHS = (12, 9, 12, 5, 1, 7)
TAUS = (0.3, 0.6)
ADAPOOL_SCORER_WIDTH = 256
SEED = 1234


def authors_namespace(main_py: Path) -> dict[str, Any]:
    """Execute the needed definitions of the authors' ``main.py`` and return the namespace holding them.

    Args:
        main_py: path to the authors' ``main.py``.

    Returns:
        A dict with (among others) ``GLOT`` and ``AdaPool``, the authors' classes.

    Raises:
        ValueError: the file lacks one of ``NEEDED_DEFINITIONS``.
    """
    import torch.nn.functional as F  # noqa: N812 - the names the authors' code uses
    from torch import nn
    from torch_geometric.data import Batch, Data
    from torch_geometric.nn import MLP, GATConv, GCNConv, GINConv, GINEConv
    from torch_geometric.utils import dense_to_sparse, scatter, softmax, to_dense_batch

    def scatter_add(src: torch.Tensor, index: torch.Tensor, dim: int = 0) -> torch.Tensor:
        """Stand-in for ``torch_scatter.scatter_add`` (output size ``index.max() + 1``, as torch_scatter's)."""
        return scatter(src, index, dim=dim, reduce="sum")

    tree = ast.parse(main_py.read_text(encoding="utf-8"), filename=str(main_py))
    kept = [node for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef))
            and node.name in NEEDED_DEFINITIONS]
    missing = sorted(set(NEEDED_DEFINITIONS) - {node.name for node in kept})
    if missing:
        raise ValueError(f"{main_py} lacks the definitions {missing}; is it the GLOT repository's main.py?")
    namespace: dict[str, Any] = dict(
        torch=torch, nn=nn, F=F, Data=Data, Batch=Batch,
        GATConv=GATConv, MLP=MLP, GINConv=GINConv, GINEConv=GINEConv, GCNConv=GCNConv, to_dense_batch=to_dense_batch,
        dense_to_sparse=dense_to_sparse, softmax=softmax, scatter_add=scatter_add, __name__="authors_glot",
        # the typing names of the file's annotations
        **{name: getattr(typing, name) for name in ("List", "Tuple", "Optional", "Dict")},
    )
    exec(compile(ast.Module(body=kept, type_ignores=[]), str(main_py), "exec"), namespace)  # noqa: S102
    return namespace


def token_states(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """MiniLM-like token states: a shared direction (contextual states are anisotropic), a few topic directions
    and noise, so cosine graphs at tau 0.3 and 0.6 are neither empty nor complete. Padding holds finite noise.

    Returns:
        ``(states (B, L, TOKEN_WIDTH) float32, mask (B, L) int64)``, right-padded rows of ``ROW_LENGTHS``.
    """
    batch, length = len(ROW_LENGTHS), max(ROW_LENGTHS)
    shared = torch.randn(TOKEN_WIDTH, generator=generator)
    topics = torch.randn(4, TOKEN_WIDTH, generator=generator) * 1.5
    pick = torch.randint(0, 4, (batch, length), generator=generator)
    noise = torch.randn(batch, length, TOKEN_WIDTH, generator=generator) * 1.2
    states = shared + topics[pick] + noise
    mask = (torch.arange(length).unsqueeze(0) < torch.tensor(ROW_LENGTHS).unsqueeze(1)).long()
    return states, mask


def randomise_biases(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every bias a random value (PyG initialises them to zero, which would leave them untested)."""
    with torch.no_grad():
        for name, parameter in module.named_parameters():
            if name.endswith("bias"):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)


def run_authors(namespace: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Build the authors' modules with their defaults, run them, and collect tensors and a record."""
    from torch_geometric.nn import GATConv

    generator = torch.Generator().manual_seed(SEED)
    states, mask = token_states(generator)
    torch.manual_seed(SEED)
    glot = namespace["GLOT"](in_dim=TOKEN_WIDTH)  # the authors' defaults: GAT, K=2, hidden 128, JK cat, tau 0.3
    adapool = namespace["AdaPool"](in_dim=TOKEN_WIDTH, hidden_dim=ADAPOOL_SCORER_WIDTH)
    randomise_biases(glot, generator)
    randomise_biases(adapool, generator)
    glot.eval()
    adapool.eval()
    tensors = {"inputs.token_states": states, "inputs.attention_mask": mask}
    record: dict[str, Any] = {"edges": {}, "glot_defaults": {"hidden_dim": glot.hidden_dim, "num_layers": glot.num_layers,
                              "jk_mode": glot.jk_mode, "tau": glot.tau, "adjacency": glot.adjacency,
                              "conv": type(glot.convs[0]).__name__}}
    assert isinstance(glot.convs[0], GATConv)
    with torch.no_grad():
        for tau in TAUS:
            glot.tau = tau
            tensors[f"outputs.glot.tau_{tau:g}"] = glot(states, mask)
            graphs = namespace["build_pyg_graphs"](states, mask, adjacency="threshold", tau=tau)
            record["edges"][f"tau_{tau:g}"] = int(graphs.edge_index.shape[1])
        tensors["outputs.adapool"] = adapool(states, mask)
    tensors.update({f"glot.{name}": value.detach().clone() for name, value in glot.state_dict().items()})
    tensors.update({f"adapool.{name}": value.detach().clone() for name, value in adapool.state_dict().items()})
    return {name: value.contiguous() for name, value in tensors.items()}, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("main_py", type=Path, help="the authors' main.py")
    parser.add_argument("--commit", required=True, help="the GLOT repository commit the file was taken from")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "authors_glot",
                        help="output path without suffix (.safetensors and .json are written)")
    args = parser.parse_args()
    if not args.main_py.is_file():
        parser.error(f"{args.main_py} is not a file")
    import torch_geometric
    from safetensors.torch import save_file

    namespace = authors_namespace(args.main_py)
    tensors, record = run_authors(namespace)
    record = {
        "source": "https://github.com/ipsitmantri/GLOT main.py, classes GLOT and AdaPool",
        "commit": args.commit,
        "main_py_sha256": hashlib.sha256(args.main_py.read_bytes()).hexdigest(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "seed": SEED,
        "token_width": TOKEN_WIDTH,
        "row_lengths": list(ROW_LENGTHS),
        "taus": list(TAUS),
        "adapool_scorer_width": ADAPOOL_SCORER_WIDTH,
        "weights": "glot.* and adapool.*: the authors' state_dict under their own names; biases randomised",
        **record,
    }
    save_file(tensors, str(args.out.with_suffix(".safetensors")), metadata={"commit": args.commit})
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record["edges"]), "->", args.out.with_suffix(".safetensors"))


if __name__ == "__main__":
    main()
