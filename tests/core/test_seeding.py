"""Seeded initialisation: a pooler's initial weights are a function of the seed, whatever ran before."""

from __future__ import annotations

import pytest
import torch

import glot_st
from glot_st import GLOT, AdaPool, reinitialize, seeded

CONFIG = {"in_dim": 12, "hidden_dim": 8, "num_layers": 2, "dropout": 0.0}


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def _differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(a[name], b[name]) for name in a if a[name].is_floating_point())


def _build_after(prior_seed: int, draws: int, seed: int) -> dict[str, torch.Tensor]:
    """Build GLOT under ``seeded(seed)`` after the process drew ``draws`` numbers from another state."""
    torch.manual_seed(prior_seed)
    torch.rand(draws)
    with seeded(seed):
        return _weights(GLOT(**CONFIG))


def test_seeded_build_ignores_the_prior_generator_state():
    _assert_same(_build_after(1, 0, 42), _build_after(123, 977, 42))
    assert _differs(_build_after(1, 0, 42), _build_after(1, 0, 43))


def test_seeded_restores_the_global_generator():
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    with seeded(99):
        torch.rand(1000)
    assert torch.equal(torch.rand(4), expected)


@pytest.mark.parametrize("make", [lambda: GLOT(**CONFIG), lambda: AdaPool(in_dim=12, scorer_hidden=6)])
def test_reinitialize_equals_building_under_the_seed(make):
    with seeded(7):
        reference = _weights(make())
    torch.manual_seed(1234)
    pooler = make()
    assert _differs(_weights(pooler), reference)
    assert reinitialize(pooler, 7) is pooler
    _assert_same(_weights(pooler), reference)


def test_reinitialize_keeps_dtype_and_module_identity():
    pooler = GLOT(**CONFIG).double()
    parameter = next(pooler.parameters())
    reinitialize(pooler, 3)
    assert next(pooler.parameters()) is parameter
    assert all(p.dtype == torch.float64 for p in pooler.parameters())


@pytest.mark.parametrize("seed", [-1, 1.5, True, "3", None])
def test_bad_seeds_are_refused(seed):
    with pytest.raises(ValueError, match="seed must be an int"):
        with seeded(seed):
            pass
    with pytest.raises(ValueError, match="seed must be an int"):
        reinitialize(GLOT(**CONFIG), seed)


def test_reinitialize_needs_a_config():
    with pytest.raises(TypeError, match="get_config_dict"):
        reinitialize(torch.nn.Linear(3, 3), 0)


def test_from_backbone_seed_fixes_glot(minilm_dir):
    def build(prior_seed: int, seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(prior_seed)
        model = glot_st.from_backbone(minilm_dir, device="cpu", hidden_dim=8, seed=seed)
        return _weights(model[1])

    first = build(0, 11)
    _assert_same(first, build(999, 11))
    assert _differs(first, build(0, 12))
