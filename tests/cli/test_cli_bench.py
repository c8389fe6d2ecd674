"""The ``stress`` command: a run reusing the stress fixture's token-state cache, and an unknown method refused."""

from __future__ import annotations

import json


def test_cli_stress_subcommand(stress_run, tmp_path, capsys):
    from glot_st.cli import main

    _, _, cache = stress_run  # same texts: the cached token states are reused
    status = main([
        "stress", "--methods", "cls", "--seeds", "0", "--rhos", "0.5", "--n-train", "64", "--n-eval", "32",
        "--epochs", "1", "--batch-size", "16", "--output-dir", str(tmp_path), "--cache-dir", str(cache), "--no-plot",
    ])
    assert status == 0
    stored = json.loads((tmp_path / "stress.json").read_text())
    assert stored["protocol"]["methods"] == ["cls"] and stored["protocol"]["budget"]["epochs"] == 1
    assert not (tmp_path / "stress_accuracy_vs_rho.png").exists()
    assert "| CLS |" in capsys.readouterr().out


def test_cli_rejects_unknown_method(tmp_path, capsys):
    from glot_st.cli import main

    status = main(["stress", "--methods", "median", "--output-dir", str(tmp_path)])
    assert status == 2
    assert "median" in capsys.readouterr().err
