"""The training recipe's pieces: weight averaging, the learning-rate schedule and the validation-selected search."""

from __future__ import annotations

import math

import pytest
import torch

import glot_st
import glot_st.train.loop as loop_mod
from glot_st.bench.experiment import Budget
from glot_st.train import load_head, load_split, train_cached
from glot_st.train.loop import recipe_defaults
from glot_st.train.recipe import (
    WeightAverage,
    grid_settings,
    lr_factor,
    make_lr_schedule,
)

# ------------------------------------------------------------------------------------------ weight averaging


def _run_average(weights: list[torch.Tensor], decay: float) -> tuple[torch.nn.Linear, WeightAverage]:
    layer = torch.nn.Linear(3, 1, bias=False).double()
    average = WeightAverage([layer], decay)
    for w in weights:
        with torch.no_grad():
            layer.weight.copy_(w)
        average.update()
    return layer, average


def test_average_is_uniform_then_exponential_in_closed_form():
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn(1, 3, dtype=torch.float64, generator=generator) for _ in range(9)]
    decay = 0.75  # uniform over the first 1 / (1 - decay) = 4 updates, then EMA
    layer, average = _run_average(weights, decay)
    expected = torch.stack(weights[:4]).mean(0) * decay ** 5
    expected += sum((1 - decay) * decay ** (8 - t) * weights[t] for t in range(4, 9))
    torch.testing.assert_close(average.average[0], expected)
    torch.testing.assert_close(layer.weight.detach(), weights[-1])  # the raw weights are untouched

    _, uniform = _run_average(weights, 1.0)  # decay 1: the mean of every step (SWA)
    torch.testing.assert_close(uniform.average[0], torch.stack(weights).mean(0))


def test_applied_swaps_in_the_average_and_always_restores_the_raw_weights():
    weights = [torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), torch.tensor([[3.0, 4.0, 5.0]], dtype=torch.float64)]
    layer, average = _run_average(weights, 0.9)
    with average.applied():
        torch.testing.assert_close(layer.weight.detach(), torch.tensor([[2.0, 3.0, 4.0]], dtype=torch.float64))
    torch.testing.assert_close(layer.weight.detach(), weights[1])
    with pytest.raises(RuntimeError), average.applied():
        raise RuntimeError("scoring failed")
    torch.testing.assert_close(layer.weight.detach(), weights[1])


@pytest.mark.parametrize("decay", [0.0, 1.5, -0.1, True, "0.9"])
def test_bad_decay_is_named(decay):
    with pytest.raises(ValueError, match="ema_decay"):
        WeightAverage([torch.nn.Linear(2, 2)], decay)


# ------------------------------------------------------------------------------------------ learning-rate schedule


def test_schedule_values_at_warmup_end_and_last_step():
    total, warm = 100, 10
    for schedule in ("constant", "cosine", "linear"):
        assert lr_factor(0, total, schedule, 0.1) == pytest.approx(1 / warm)
        assert lr_factor(warm - 1, total, schedule, 0.1) == pytest.approx(1.0)
        assert lr_factor(warm, total, schedule, 0.1) == pytest.approx(1.0)
    assert lr_factor(total - 1, total, "constant", 0.1) == 1.0
    assert lr_factor(total - 1, total, "cosine", 0.1) == pytest.approx(0.5 * (1 + math.cos(math.pi * 89 / 90)))
    assert lr_factor(total - 1, total, "linear", 0.1) == pytest.approx(1 / 90)
    assert lr_factor(total - 1, total, "cosine", 0.0) > 0  # every planned step still learns
    assert lr_factor(total + 5, total, "linear", 0.1) == lr_factor(total - 1, total, "linear", 0.1)


def test_lr_schedule_drives_the_optimizer_rate():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.5)
    schedule = make_lr_schedule(optimizer, 20, "cosine", 0.25)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[0] == pytest.approx(0.5 / 5) and rates[4] == pytest.approx(0.5)
    assert rates[-1] == pytest.approx(0.5 * lr_factor(19, 20, "cosine", 0.25))
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))
    with pytest.raises(ValueError, match="lr_schedule"):
        make_lr_schedule(optimizer, 20, "step", 0.0)
    with pytest.raises(ValueError, match="warmup_fraction"):
        make_lr_schedule(optimizer, 20, "cosine", 1.0)


# ------------------------------------------------------------------------------------------ in train_cached


@pytest.fixture(scope="module")
def model(minilm_dir):
    torch.manual_seed(0)
    return glot_st.from_backbone(minilm_dir, max_seq_length=32, device="cpu", hidden_dim=16, num_layers=1)


@pytest.fixture(scope="module")
def initial_state(model):
    return {k: v.clone() for k, v in model[1].state_dict().items()}


@pytest.fixture()
def fresh(model, initial_state):
    model[1].load_state_dict(initial_state)
    return model


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("recipe_cache")


@pytest.fixture(scope="module")
def stsb():
    return load_split("stsb", "train", limit=24), load_split("stsb", "dev", limit=16)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_the_averaged_weights_are_scored_kept_and_saved(fresh, stsb, cache_root, monkeypatch, tmp_path):
    raw_steps = []  # the raw trainable weights after every optimizer step

    class Recording(WeightAverage):
        def update(self):
            raw_steps.append([p.detach().clone() for p in self.parameters])
            super().update()

    scored = []
    scores = iter([0.9, 0.1])  # validation: epoch 1 is the best

    def scripted(pooler, head, *args, **kwargs):
        scored.append([p.detach().clone() for m in (pooler, head) for p in m.parameters() if p.requires_grad])
        return next(scores)

    monkeypatch.setattr(loop_mod, "WeightAverage", Recording)
    monkeypatch.setattr(loop_mod, "_evaluate", scripted)
    train, dev = stsb
    result = train_cached(
        fresh, train, None, validation_split=dev, cache_dir=cache_root, epochs=2, batch_size=8, patience=None,
        ema_decay=1.0, output_dir=tmp_path / "out", show_progress_bar=False,
    )
    steps_per_epoch = len(raw_steps) // 2
    assert result.best_epoch == 1 and steps_per_epoch == 3
    mean_epoch_1 = [torch.stack([step[i] for step in raw_steps[:steps_per_epoch]]).mean(0) for i in range(len(raw_steps[0]))]
    for got, expected in zip(scored[0], mean_epoch_1):  # scored: the uniform average of epoch 1's steps
        torch.testing.assert_close(got, expected)
    kept = [p.detach() for m in (fresh[1], result.head) for p in m.parameters() if p.requires_grad]
    for got, expected in zip(kept, mean_epoch_1):  # kept: the same average
        torch.testing.assert_close(got, expected)
    assert any(not torch.allclose(a, b) for a, b in zip(kept, raw_steps[steps_per_epoch - 1]))  # not the raw ones
    saved_head = load_head(tmp_path / "out")
    for name, value in result.head.state_dict().items():
        assert torch.equal(saved_head.state_dict()[name], value.cpu())


def test_recipe_options_are_deterministic_for_a_fixed_seed(fresh, initial_state, stsb, cache_root):
    options = dict(ema_decay=0.9, lr_schedule="cosine", warmup_fraction=0.2, validation_fraction=0.25, epochs=2,
                   batch_size=8, seed=5, cache_dir=cache_root, show_progress_bar=False)
    first = train_cached(fresh, *stsb, **options)
    weights = _state(fresh[1])
    fresh[1].load_state_dict(initial_state)
    second = train_cached(fresh, *stsb, **options)
    assert all(torch.equal(weights[k], v) for k, v in fresh[1].state_dict().items())
    assert [h["loss"] for h in first.history] == [h["loss"] for h in second.history]
    assert first.validation_metric == second.validation_metric


def test_search_picks_the_best_validation_score_never_the_eval_split(fresh, stsb, cache_root, monkeypatch):
    # one epoch per trial, scored on validation then eval; the eval split peaks on trials 1 and 3, validation on 2
    scores = iter([0.2, 0.9, 0.8, 0.1, 0.5, 0.95])
    kept = []

    def scripted(pooler, head, *args, **kwargs):
        kept.append(_state(pooler))
        return next(scores)

    monkeypatch.setattr(loop_mod, "_evaluate", scripted)
    train, dev = stsb
    result = train_cached(
        fresh, train, dev, validation_split=dev, cache_dir=cache_root, epochs=1, batch_size=8,
        search={"lr": [1e-4, 1e-3, 1e-2]}, show_progress_bar=False,
    )
    assert result.search["chosen"] == {"lr": 1e-3}
    assert [t["validation_metric"] for t in result.search["trials"]] == [0.2, 0.8, 0.5]
    assert [t["eval_metric"] for t in result.search["trials"]] == [0.9, 0.1, 0.95]
    assert result.validation_metric == 0.8 and result.eval_metric == 0.1
    winner = kept[2]  # trial 2's validation scoring saw the weights it kept
    assert all(torch.equal(winner[k], v) for k, v in fresh[1].state_dict().items())


def test_search_trials_start_alike_and_the_saved_rerun_repeats_the_winner(fresh, initial_state, stsb, cache_root,
                                                                          tmp_path):
    options = dict(validation_fraction=0.25, epochs=1, batch_size=8, seed=2, cache_dir=cache_root,
                   show_progress_bar=False, search={"weight_decay": [0.0, 0.1]})
    searched = train_cached(fresh, *stsb, **options)
    chosen = searched.search["chosen"]
    weights = _state(fresh[1])
    fresh[1].load_state_dict(initial_state)
    alone = train_cached(fresh, *stsb, **{**options, "search": None, **chosen})
    assert all(torch.equal(weights[k], v) for k, v in fresh[1].state_dict().items())  # a trial == a plain run
    assert alone.validation_metric == searched.validation_metric
    fresh[1].load_state_dict(initial_state)
    saved = train_cached(fresh, *stsb, **options, output_dir=tmp_path / "searched")
    assert saved.search["chosen"] == chosen
    assert all(torch.equal(weights[k], v) for k, v in fresh[1].state_dict().items())
    assert (tmp_path / "searched" / "glot_training.json").read_text().count('"chosen"') == 1


@pytest.mark.parametrize(
    "search, message",
    [({"dropout": [0.1]}, "cannot vary 'dropout'"), ({"lr": []}, "non-empty list"), ({"lr": [-1.0]}, "lr must"),
     ({"lr_schedule": ["step"]}, "lr_schedule"), ("lr", "search must be")],
)
def test_bad_search_is_refused_before_any_work(fresh, stsb, tmp_path, search, message):
    with pytest.raises(ValueError, match=message):
        train_cached(fresh, *stsb, cache_dir=tmp_path / "never", search=search, show_progress_bar=False)
    assert not (tmp_path / "never").exists()


def test_grid_order_budget_defaults_and_budget_checks():
    assert grid_settings({"lr": [1, 2], "weight_decay": [0, 3]}) == [
        {"lr": 1, "weight_decay": 0}, {"lr": 1, "weight_decay": 3}, {"lr": 2, "weight_decay": 0},
        {"lr": 2, "weight_decay": 3},
    ]
    defaults = recipe_defaults()
    budget = Budget()
    for name in ("ema_decay", "lr_schedule", "warmup_fraction", "search"):
        assert getattr(budget, name) == defaults[name]
    with pytest.raises(ValueError, match="ema_decay"):
        Budget(ema_decay=2.0)
    with pytest.raises(ValueError, match="lr_schedule"):
        Budget(lr_schedule="steps")


# ------------------------------------------------------------------------------------------ command line


def test_cli_train_search_runs_the_default_grid(tmp_path, capsys):
    import json

    from glot_st.cli import main
    from glot_st.train.recipe import DEFAULT_SEARCH_GRID, grid_settings

    assert main(["train", "--task", "stsb", "--limit", "12", "--eval-limit", "8", "--max-seq-length", "32",
                 "--cache-dir", str(tmp_path), "--quiet", "--epochs", "1", "--batch-size", "4", "--hidden-dim", "8",
                 "--num-layers", "1", "--validation-fraction", "0.25", "--ema-decay", "0.9", "--lr-schedule",
                 "linear", "--search"]) == 0
    result = json.loads(capsys.readouterr().out)
    trials = result["search"]["trials"]
    assert [t["setting"] for t in trials] == grid_settings(DEFAULT_SEARCH_GRID)
    best = max(trials, key=lambda t: t["validation_metric"])
    assert result["search"]["chosen"] == best["setting"] and result["validation_metric"] == best["validation_metric"]


def test_cli_bench_flags_reach_the_budget(monkeypatch, capsys):
    import functools

    import glot_st.bench.glue_runner as runners
    from glot_st.cli import main

    seen = {}

    @functools.wraps(runners.run_glue)  # the help reads the runner's defaults from its signature
    def fake_glue(**kwargs):
        seen.update(kwargs)
        return {}

    monkeypatch.setattr(runners, "run_glue", fake_glue)
    monkeypatch.setattr(runners, "glue_markdown", lambda results: "")
    assert main(["glue", "--ema-decay", "0.99", "--lr-schedule", "cosine", "--warmup-fraction", "0.1",
                 "--search"]) == 0
    budget = seen["budget"]
    assert (budget.ema_decay, budget.lr_schedule, budget.warmup_fraction, budget.search) == (0.99, "cosine", 0.1, True)
    assert main(["glue", "--ema-decay", "1.5"]) == 2
    assert "ema_decay" in capsys.readouterr().err
