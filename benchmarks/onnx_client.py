"""Encode texts with a glot-st ONNX export using onnxruntime, tokenizers and numpy only.

Run as a script it first makes ``torch``, ``glot_st``, ``sentence_transformers`` and ``transformers`` unimportable
(a meta-path finder that raises ImportError), checks that ``import torch`` fails, then encodes::

    python benchmarks/onnx_client.py --folder EXPORT --texts texts.json --output out.npz [--model-file model.onnx]

and writes every output of the graph (``sentence_embedding`` (N, D), ``probabilities`` (N, C) with a head) in
input order. ``benchmarks/bench_onnx.py`` runs it so that its agreement figures come from a process where neither
torch nor glot-st can be imported, and imports :func:`onnx_encode` / :func:`make_session` for the timings.
"""

from __future__ import annotations

import argparse
import importlib.abc
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

BLOCKED_PACKAGES = ("torch", "glot_st", "sentence_transformers", "transformers")
# tokenizers.Encoding attribute of every graph input
ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


class BlockImports(importlib.abc.MetaPathFinder):
    """A meta-path finder that refuses ``BLOCKED_PACKAGES`` and their submodules."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.split(".")[0] in BLOCKED_PACKAGES:
            raise ImportError(f"{fullname} is blocked in this process")
        return None


def block_imports() -> None:
    """Make ``BLOCKED_PACKAGES`` unimportable in this process (they must not be imported yet)."""
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED_PACKAGES)
    if loaded:
        raise RuntimeError(f"already imported: {loaded[:5]}")
    sys.meta_path.insert(0, BlockImports())


def make_session(path: str | Path, threads: int) -> Any:
    """An onnxruntime CPU session with ``threads`` intra-op threads (one inter-op thread)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_encode(session: Any, tokenizer: Any, texts: list[str], batch_size: int = 32) -> dict[str, np.ndarray]:
    """Every output of the graph for ``texts``, in input order.

    Texts are batched by length, longest first, as ``SentenceTransformer.encode`` batches them.

    Args:
        session: an onnxruntime session of an exported graph.
        tokenizer: the export's ``tokenizers.Tokenizer`` (``tokenizer.json``; pads and truncates).
        texts: N strings.
        batch_size: texts per run.

    Returns:
        output name -> float32 array (N, ...).
    """
    names = [node.name for node in session.get_inputs()]
    outputs = [node.name for node in session.get_outputs()]
    order = np.argsort([-len(text) for text in texts], kind="stable")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in outputs}
    for start in range(0, len(texts), batch_size):
        batch = [texts[i] for i in order[start : start + batch_size]]
        encodings = tokenizer.encode_batch(batch)
        feeds = {n: np.array([getattr(e, ENCODING_FIELDS[n]) for e in encodings], dtype=np.int64) for n in names}
        for name, value in zip(outputs, session.run(None, feeds)):
            parts[name].append(value)
    inverse = np.argsort(order)
    return {name: np.concatenate(values)[inverse] for name, values in parts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", required=True, help="the export folder")
    parser.add_argument("--model-file", default="model.onnx", help="model.onnx or model_int8.onnx")
    parser.add_argument("--texts", required=True, help="a JSON list of strings")
    parser.add_argument("--output", required=True, help="the .npz to write")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("torch is importable: the import blocker did not work")
    from tokenizers import Tokenizer

    folder = Path(args.folder)
    session = make_session(folder / args.model_file, args.threads)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    texts = json.loads(Path(args.texts).read_text(encoding="utf-8"))
    np.savez(args.output, **onnx_encode(session, tokenizer, texts))
    print(json.dumps({"rows": len(texts), "modules": sorted({m.split(".")[0] for m in sys.modules})}))
    return 0


if __name__ == "__main__":
    block_imports()
    sys.exit(main())
