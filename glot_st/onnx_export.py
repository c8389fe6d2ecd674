"""Export a GLOT model to one ONNX graph that runs with onnxruntime and the ``tokenizers`` package alone.

:func:`export_onnx` writes a folder holding

- ``model.onnx``: the whole pipeline, token ids -> ``Transformer`` -> ``GLOT`` (dense layout) -> ``Normalize``
  when the model has one -> an optional head, with dynamic batch and sequence length. Inputs: the int64
  ``(batch, sequence)`` arrays the tokenizer gives (``input_ids``, ``attention_mask`` and ``token_type_ids`` when
  the backbone takes them); outputs: ``sentence_embedding`` float32 ``(batch, D)`` and, with a head,
  ``probabilities`` float32 ``(batch, C)``;
- ``model_int8.onnx`` with ``quantize=True``: the same graph with int8 dynamic quantization of its weights;
- ``tokenizer.json``: the backbone's tokenizer with the padding and truncation of ``model.encode``;
- ``glot_onnx.json``: the manifest naming inputs, outputs, files, the embedding width and the labels (written
  last).

The folder is built in a hidden sibling folder and renamed into place at the end, so a half-written export is
never found at the output path. The export checks the model, the head and the output folder before any work.
The graph is the model's own forward (the sentence-transformers modules and GLOT's dense layout with
``validate_inputs`` off, which has no data-dependent branch and no host sync), traced by
``torch.onnx.export(dynamo=True)``; the export then runs it in onnxruntime at two batch shapes against the torch
pipeline and refuses a result that differs by more than ``EXPORT_TOLERANCE``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from torch import Tensor, nn

from glot_st._compat import Transformer
from glot_st.module import GLOT

__all__ = [
    "EMBEDDING_OUTPUT",
    "EXPORT_TOLERANCE",
    "INT8_FILE",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "PROBABILITY_OUTPUT",
    "TOKENIZER_FILE",
    "check_output_folder",
    "export_onnx",
    "read_manifest",
    "tokenizer_arrays",
]

MODEL_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "glot_onnx.json"
MANIFEST_FORMAT = "glot-st-onnx"
MANIFEST_VERSION = 1
EMBEDDING_OUTPUT = "sentence_embedding"
PROBABILITY_OUTPUT = "probabilities"
# The largest absolute difference between onnxruntime's and torch's outputs the export accepts (float32).
EXPORT_TOLERANCE = 1e-4
# Token inputs a backbone may take, in the order of the graph's inputs.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Pipeline modules after GLOT the graph can hold (they have no parameters and no options the export drops).
TAIL_MODULES = ("Normalize",)
# Texts of different lengths, tokenized by sentence-transformers and by the exported tokenizer to check that both
# give the same ids, then run through both graphs; the last one is longer than any max_seq_length.
CHECK_TEXTS = (
    "A man is playing a guitar on the street.",
    "Hi",
    "The quick brown fox jumps over the lazy dog while the children watch from the garden gate.",
    " ".join(["tokens"] * 1200),
)


@dataclass
class ExportPlan:
    """What the export needs, checked before any work.

    Attributes:
        modules: the pipeline modules of the graph: the ``Transformer``, a dense copy of ``GLOT``, the tail.
        input_names: the graph's token inputs, a subset of ``TOKEN_INPUTS`` in that order.
        embedding_dim: ``D``.
        head: the head module, (B, D) float32 -> (B, C) float32, or ``None``.
        labels: the ``C`` labels of the head's columns, or ``None`` without a head.
        normalized: whether the pipeline L2-normalises the embeddings.
        max_seq_length: the tokenizer's truncation length.
    """

    modules: list[nn.Module]
    input_names: tuple[str, ...]
    embedding_dim: int
    head: nn.Module | None
    labels: list[Any] | None
    normalized: bool
    max_seq_length: int


class ExportGraph(nn.Module):
    """The exported computation: the model's pipeline modules on token inputs, then the optional head.

    ``forward(input_ids, attention_mask, token_type_ids=None)`` takes int64 ``(B, L)`` tensors (those of
    ``input_names``) and returns the ``(B, D)`` float32 sentence embeddings, or ``(embeddings, head(embeddings))``
    with a head.

    Args:
        plan: the checked :class:`ExportPlan`.
    """

    def __init__(self, plan: ExportPlan):
        super().__init__()
        self.pipeline = nn.ModuleList(plan.modules)
        self.head = plan.head
        self.input_names = plan.input_names

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        features: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            features["token_type_ids"] = token_type_ids
        for module in self.pipeline:
            features = module(features)
        embeddings = features["sentence_embedding"]
        if self.head is None:
            return embeddings
        return embeddings, self.head(embeddings)


def export_onnx(
    model: SentenceTransformer,
    out_dir: str | os.PathLike,
    *,
    head: nn.Module | None = None,
    labels: Sequence[Any] | None = None,
    quantize: bool = False,
    overwrite: bool = False,
) -> Path:
    """Export ``model`` (and ``head``) as one ONNX graph with its tokenizer and a manifest (see the module doc).

    Args:
        model: a ``SentenceTransformer`` of a ``Transformer``, a ``GLOT`` module and optionally ``Normalize``, on
            the CPU in float32, in any train / eval mode (the graph is exported in eval mode; the modes are
            restored).
        out_dir: the folder to create; must not exist unless ``overwrite``; its parent must be writable.
        head: optional module mapping float32 embeddings (B, D) to float32 probabilities (B, C), exported as the
            ``probabilities`` output.
        labels: the ``C`` JSON-serialisable labels of the head's columns; required with ``head``.
        quantize: also write ``model_int8.onnx`` (onnxruntime dynamic quantization, int8 weights).
        overwrite: replace an existing ``out_dir`` (the new folder is renamed into place when complete).

    Returns:
        The output folder.

    Raises:
        ImportError: onnx, onnxscript or onnxruntime is missing (``pip install 'glot-st[onnx]'``).
        ValueError: a model, head or labels the export cannot express, or the exported graph differing from
            torch by more than ``EXPORT_TOLERANCE``.
        FileExistsError / OSError: an existing or unwritable output folder.
    """
    target = check_output_folder(out_dir, overwrite)
    _require_packages()
    plan = check_exportable(model, head, labels)
    graph = ExportGraph(plan)
    example = _token_inputs(model, CHECK_TEXTS[:2], plan.input_names)
    with _eval_mode(graph), torch.no_grad(), _staging(target, overwrite) as staging:
        tokenizer = _write_tokenizer(model, plan, staging / TOKENIZER_FILE)
        _export_graph(graph, example, plan, staging / MODEL_FILE)
        # the export's batch, and another batch size and length (the last text is truncated)
        checks = [example, _token_inputs(model, CHECK_TEXTS, plan.input_names)]
        for texts, features in zip((CHECK_TEXTS[:2], CHECK_TEXTS), checks):
            _check_tokenizer(tokenizer, texts, features, plan.input_names)
        max_error = max(_max_difference(graph, staging / MODEL_FILE, features, plan) for features in checks)
        if quantize:
            _quantize(staging / MODEL_FILE, staging / INT8_FILE)
        _write_manifest(staging / MANIFEST_FILE, plan, quantize, max_error)
    return target


def check_output_folder(out_dir: str | os.PathLike, overwrite: bool = False) -> Path:
    """The output folder as an absolute path, after checking it can be created (nothing is written).

    Args:
        out_dir: the folder an export will create.
        overwrite: whether an existing folder may be replaced.

    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is off.
        NotADirectoryError: ``out_dir`` or an ancestor is a file.
        PermissionError: the nearest existing ancestor is not writable.
    """
    target = Path(out_dir).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"output {str(target)!r} exists and is not a folder")
    if target.exists() and not overwrite:
        raise FileExistsError(f"output folder {str(target)!r} already exists; pass overwrite=True (--overwrite)")
    ancestor = target.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"cannot create {str(target)!r}: {str(ancestor)!r} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot create {str(target)!r}: folder {str(ancestor)!r} is not writable")
    return target


def check_exportable(model: Any, head: nn.Module | None = None, labels: Sequence[Any] | None = None) -> ExportPlan:
    """The :class:`ExportPlan` of ``model`` and ``head``, or a ValueError naming what the export cannot express.

    Args:
        model: as for :func:`export_onnx`.
        head: as for :func:`export_onnx`.
        labels: as for :func:`export_onnx`.
    """
    if not isinstance(model, SentenceTransformer):
        raise TypeError(f"model must be a SentenceTransformer; got {type(model).__name__}")
    modules = list(model)
    names = [type(module).__name__ for module in modules]
    glots = [i for i, module in enumerate(modules) if isinstance(module, GLOT)]
    if not glots:
        raise ValueError(f"the model has no GLOT module (modules: {names}); only GLOT models can be exported")
    if glots != [1] or not isinstance(modules[0], Transformer):
        raise ValueError(f"the export needs a Transformer followed by one GLOT module; the model has {names}")
    tail = names[2:]
    if any(name not in TAIL_MODULES for name in tail):
        raise ValueError(f"the export cannot express the modules {tail} after GLOT (it supports {TAIL_MODULES})")
    glot = modules[1]
    if glot.conv == "gine":
        raise ValueError("conv='gine' runs on the sparse layout only; the export needs the dense layout")
    if not glot.include_prompt:
        raise ValueError(
            "GLOT has include_prompt=False: it leaves out the prompt's tokens, which the exported graph cannot tell "
            "from the text's; the export needs include_prompt=True"
        )
    if getattr(model, "default_prompt_name", None):
        raise ValueError(
            f"the model adds the prompt {model.default_prompt_name!r} by default, which the exported tokenizer "
            "cannot; clear model.default_prompt_name (and add the prompt to the texts yourself)"
        )
    _check_parameters(model)
    dim = glot.get_embedding_dimension()
    input_names = _input_names(model)
    dense = copy.deepcopy(glot)
    dense.layout, dense.validate_inputs, dense.output_token_states = "dense", False, False
    checked_labels = _check_head(head, labels, dim)
    max_length = modules[0].max_seq_length or model.tokenizer.model_max_length
    return ExportPlan([modules[0], dense, *modules[2:]], input_names, dim, head, checked_labels, bool(tail), max_length)


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a complete export, with every file it names present.

    Args:
        folder: an :func:`export_onnx` output folder.

    Raises:
        FileNotFoundError: no manifest (not an export, or an incomplete one) or a file it names is missing.
        ValueError: the manifest is not a glot-st ONNX manifest of a known version.
    """
    folder = Path(folder)
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{str(folder)!r} holds no {MANIFEST_FILE}: not a complete glot-st ONNX export")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{str(path)!r} is not a glot-st ONNX manifest")
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise ValueError(f"{str(path)!r} has format_version {manifest.get('format_version')!r}; expected 1")
    for name in manifest["files"].values():
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{str(folder / name)!r}, named by the manifest, is missing")
    return manifest


# ---- checks ----------------------------------------------------------------------------------------------------
def _require_packages() -> None:
    missing = []
    for package in ("onnx", "onnxscript", "onnxruntime", "tokenizers"):
        try:
            __import__(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise ImportError(f"the ONNX export needs {', '.join(missing)}: pip install 'glot-st[onnx]'")


def _check_parameters(model: SentenceTransformer) -> None:
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.device.type != "cpu":
            raise ValueError(f"the export runs on the CPU; {name} is on {tensor.device} (call model.to('cpu'))")
        if tensor.is_floating_point() and tensor.dtype != torch.float32:
            raise ValueError(f"the export needs float32 weights; {name} is {tensor.dtype} (call model.float())")


def _input_names(model: SentenceTransformer) -> tuple[str, ...]:
    tokenizer = model.tokenizer
    if not getattr(tokenizer, "is_fast", False) or not hasattr(tokenizer, "backend_tokenizer"):
        raise ValueError(f"the export needs a fast (tokenizers) tokenizer; the model has {type(tokenizer).__name__}")
    if tokenizer.pad_token_id is None:
        raise ValueError("the model's tokenizer has no pad token, so batches cannot be padded (set tokenizer.pad_token)")
    features = _token_inputs(model, CHECK_TEXTS[:1], TOKEN_INPUTS)
    names = tuple(name for name in TOKEN_INPUTS if name in features)
    if names[:2] != ("input_ids", "attention_mask"):
        raise ValueError(f"the export needs input_ids and attention_mask from the tokenizer; it gives {names}")
    return names


def _check_head(head: nn.Module | None, labels: Sequence[Any] | None, dim: int) -> list[Any] | None:
    """The labels as a JSON-checked list after running ``head`` on (2, D) zeros; ``None`` without a head."""
    if head is None:
        if labels is not None:
            raise ValueError("labels were given without a head")
        return None
    if not isinstance(head, nn.Module):
        raise TypeError(f"head must be a torch.nn.Module; got {type(head).__name__}")
    with torch.no_grad():
        try:
            out = head(torch.zeros(2, dim))
        except Exception as error:  # any failure of a caller's module on the embedding shape
            raise ValueError(f"the head fails on (B, {dim}) embeddings: {error}") from error
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 2 or not out.is_floating_point():
        raise ValueError(f"the head must map (B, {dim}) to float (B, C); it gave {getattr(out, 'shape', type(out))}")
    if labels is None or len(labels) != out.shape[1]:
        raise ValueError(f"the head has {out.shape[1]} outputs; pass labels, one per output column")
    labels = list(labels)
    json.dumps(labels)  # a TypeError here names the value that is not JSON
    return labels


# ---- the work ----------------------------------------------------------------------------------------------------
def _token_inputs(model: SentenceTransformer, texts: Sequence[str], names: Sequence[str]) -> dict[str, Tensor]:
    """int64 (B, L) token inputs as ``model.encode`` makes them, restricted to ``names``."""
    preprocess = getattr(model, "preprocess", None) or model.tokenize
    features = preprocess(list(texts))
    return {name: features[name].long() for name in names if isinstance(features.get(name), Tensor)}


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode for the export; every submodule's mode restored after it."""
    modes = [(sub, sub.training) for sub in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for sub, training in modes:
            sub.training = training


@contextmanager
def _staging(target: Path, overwrite: bool) -> Iterator[Path]:
    """A hidden sibling folder of ``target``, renamed to ``target`` when the block succeeds, deleted otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:12]}"
    staging.mkdir()  # with the caller's umask (mkdtemp would make it private)
    try:
        yield staging
        _move_into_place(staging, target, overwrite)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _move_into_place(staging: Path, target: Path, overwrite: bool) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` (``overwrite``) is moved aside first, then deleted."""
    if not target.exists():
        os.rename(staging, target)  # fails rather than merges if the folder appeared meanwhile
        return
    if not overwrite:
        raise FileExistsError(f"output folder {str(target)!r} appeared during the export")
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    os.rename(target, old / target.name)
    try:
        os.rename(staging, target)
    except OSError:
        os.rename(old / target.name, target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)


def _export_graph(graph: ExportGraph, example: dict[str, Tensor], plan: ExportPlan, path: Path) -> None:
    args = tuple(example[name] for name in plan.input_names)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    outputs = [EMBEDDING_OUTPUT] + ([PROBABILITY_OUTPUT] if plan.head is not None else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            graph,
            args,
            dynamo=True,
            input_names=list(plan.input_names),
            output_names=outputs,
            dynamic_shapes=tuple({0: batch, 1: sequence} for _ in args),
            verbose=False,
        )
    program.save(str(path))


def _write_tokenizer(model: SentenceTransformer, plan: ExportPlan, path: Path) -> Any:
    """Write the backbone's tokenizer with ``encode``'s padding and truncation; return it (a ``tokenizers.Tokenizer``)."""
    from tokenizers import Tokenizer

    source = model.tokenizer
    tokenizer = Tokenizer.from_str(source.backend_tokenizer.to_str())
    tokenizer.enable_truncation(plan.max_seq_length, direction=source.truncation_side)
    tokenizer.enable_padding(
        direction=source.padding_side,
        pad_id=source.pad_token_id,
        pad_type_id=source.pad_token_type_id,
        pad_token=source.pad_token,
    )
    tokenizer.save(str(path))
    return Tokenizer.from_file(str(path))


def _check_tokenizer(tokenizer: Any, texts: Sequence[str], features: dict[str, Tensor], names: Sequence[str]) -> None:
    """ValueError when the exported tokenizer's arrays differ from those of ``model.encode``'s preprocessing."""
    arrays = tokenizer_arrays(tokenizer, texts, names)
    for name in names:
        if not np.array_equal(arrays[name], features[name].numpy()):
            raise ValueError(
                f"the exported tokenizer gives other {name} than the model's preprocessing (a text option such as "
                "lower-casing or a prompt that tokenizer.json cannot hold); the export cannot express it"
            )


def tokenizer_arrays(tokenizer: Any, texts: Sequence[str], names: Sequence[str]) -> dict[str, np.ndarray]:
    """int64 (B, L) arrays of a ``tokenizers.Tokenizer`` for ``texts``, for the graph inputs ``names``."""
    encodings = tokenizer.encode_batch(list(texts))
    fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
    return {name: np.array([getattr(e, fields[name]) for e in encodings], dtype=np.int64) for name in names}


def _max_difference(graph: ExportGraph, path: Path, features: dict[str, Tensor], plan: ExportPlan) -> float:
    """Largest |onnxruntime - torch| over the graph's outputs; ValueError above ``EXPORT_TOLERANCE``."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: features[name].numpy() for name in plan.input_names})
    expected = graph(*(features[name] for name in plan.input_names))
    expected = expected if isinstance(expected, tuple) else (expected,)
    error = max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected))
    if not error <= EXPORT_TOLERANCE:
        raise ValueError(f"the ONNX graph differs from torch by {error:.2e} (> {EXPORT_TOLERANCE}); export refused")
    return error


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def _write_manifest(path: Path, plan: ExportPlan, quantized: bool, max_error: float) -> None:
    import glot_st

    outputs = {EMBEDDING_OUTPUT: ["batch", plan.embedding_dim]}
    if plan.head is not None:
        outputs[PROBABILITY_OUTPUT] = ["batch", len(plan.labels)]
    files = {"model": MODEL_FILE, "tokenizer": TOKENIZER_FILE, **({"model_int8": INT8_FILE} if quantized else {})}
    manifest = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "glot_st_version": glot_st.__version__,
        "files": files,
        "inputs": {name: ["batch", "sequence"] for name in plan.input_names},
        "input_dtype": "int64",
        "outputs": outputs,
        "embedding_dim": plan.embedding_dim,
        "normalized": plan.normalized,
        "labels": plan.labels,
        "max_seq_length": plan.max_seq_length,
        "export_max_abs_difference": max_error,
    }
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
