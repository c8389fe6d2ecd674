"""The command line's registry, help, errors and flag choices, and ``cache`` then ``train`` on a bundled task."""

from __future__ import annotations

import pytest


def test_cli_registry_help_and_errors(capsys):
    from glot_st.cli import SUBCOMMANDS, build_parser, main

    assert {"cache", "train"} <= set(SUBCOMMANDS) and all(c.help for c in SUBCOMMANDS.values())
    assert "train" in build_parser().format_help()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--num-layers" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["train", "--task", "stsb", "--limit", "0"]) == 2
    assert "limit must be a positive int" in capsys.readouterr().err


def test_cli_rejects_temperature_without_contrastive_head(capsys, monkeypatch):
    from glot_st.cli import main

    def never(*args, **kwargs):
        raise AssertionError("the data should not be loaded")

    monkeypatch.setattr("glot_st.train.data.load_split", never)
    assert main(["train", "--task", "stsb", "--temperature", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "--temperature applies only to the contrastive head" in err and "'regression'" in err
    assert main(["train", "--task", "mrpc", "--head", "pair", "--temperature", "0.1"]) == 2
    assert "'pair'" in capsys.readouterr().err


@pytest.mark.parametrize("error", [TypeError("bad type"), FloatingPointError("nan loss"), ImportError("no pkg")])
def test_cli_turns_library_errors_into_exit_2(error, capsys, monkeypatch):
    from glot_st.cli import SUBCOMMANDS, Subcommand, main

    def failing(args):
        raise error

    monkeypatch.setitem(SUBCOMMANDS, "boom", Subcommand("boom", "always fails", (), failing))
    assert main(["boom"]) == 2
    assert f"glot-st boom: error: {error}" in capsys.readouterr().err


def test_cli_choices_are_derived():
    from glot_st.cli import _GLOT_KEYS, GLOT_ARGUMENTS, build_parser
    from glot_st.train.cache import CACHE_DTYPES
    from glot_st.train.data import TASKS
    from glot_st.train.heads import HEAD_KINDS

    parser = build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions if a.dest == "head")
    assert list(train.choices) == list(HEAD_KINDS)
    args = parser.parse_args(["train", "--task", "rte", "--cache-dtype", CACHE_DTYPES[-1], "--num-layers", "2"])
    assert set(TASKS) >= {"rte"} and args.cache_dtype == CACHE_DTYPES[-1]
    assert len(_GLOT_KEYS) == len(GLOT_ARGUMENTS) and all(hasattr(args, key) for key in _GLOT_KEYS)
    assert args.num_layers == 2


def test_cli_cache_then_train_reuses_the_cache(tmp_path, capsys):
    import json

    from glot_st.cli import main

    common = ["--task", "stsb", "--limit", "8", "--max-seq-length", "32", "--cache-dir", str(tmp_path), "--quiet"]
    assert main(["cache", *common]) == 0
    built = json.loads(capsys.readouterr().out)
    assert built["texts"] == 16 and built["dtype"] == "float16"
    assert main(["train", *common, "--eval-limit", "8", "--epochs", "1", "--batch-size", "4", "--hidden-dim", "8",
                 "--validation-fraction", "0",
                 "--num-layers", "1", "--output-dir", str(tmp_path / "out")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["metric_name"] == "spearman" and result["eval_metric"] is not None and len(result["history"]) == 1
    assert len(list(tmp_path.glob("stsb-train-*"))) == 1  # train reused the cache built by `cache`
    assert (tmp_path / "out" / "glot_head" / "glot_head.json").is_file()
