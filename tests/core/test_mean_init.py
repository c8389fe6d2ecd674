"""init_as_mean_pooling: an untrained GLOT pools like the backbone's mean pooling, and still trains."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from glot_st.baselines import SimplePooler

from conftest import random_batch, randomized_glot


@pytest.mark.parametrize("conv", ["gat", "gcn", "gin", "gine", "sage"])
def test_untrained_glot_reproduces_mean_pooling(conv):
    glot = randomized_glot(seed=1, conv=conv, in_dim=8, hidden_dim=6, num_layers=2).init_as_mean_pooling()
    states, mask = random_batch(5, 9, 8, seed=2)
    pooled = glot.pool(states, mask)
    mean = SimplePooler("mean", 8).pool(states, mask)
    torch.testing.assert_close(pooled[:, :8], mean, rtol=1e-5, atol=1e-6)  # the input part is exactly the mean
    assert pooled[:, 8:].abs().max() < 1e-2 * mean.abs().max()  # the refined part starts near zero
    cos = lambda z: F.normalize(z, dim=-1) @ F.normalize(z, dim=-1).T  # noqa: E731
    torch.testing.assert_close(cos(pooled), cos(mean), rtol=0, atol=1e-3)


def test_a_random_glot_does_not_pool_like_the_mean():  # the check above can fail
    glot = randomized_glot(seed=1, in_dim=8, hidden_dim=6)
    states, mask = random_batch(5, 9, 8, seed=2)
    assert not torch.allclose(glot.pool(states, mask)[:, :8], SimplePooler("mean", 8).pool(states, mask), atol=1e-3)


def test_mean_initialised_glot_still_learns():
    glot = randomized_glot(seed=0, in_dim=8, hidden_dim=6).init_as_mean_pooling().train()
    states, mask = random_batch(6, 7, 8, seed=3)
    glot.pool(states, mask).square().sum().backward()
    layer_grads = [p.grad for p in glot.layers.parameters() if p.grad is not None]
    assert layer_grads and any(g.abs().sum() > 0 for g in layer_grads)
    assert glot.readout.scorer[-1].weight.grad.abs().sum() > 0


def test_init_as_mean_pooling_refuses_projecting_jk_modes():
    with pytest.raises(ValueError, match="jk='cat'"):
        randomized_glot(jk="max").init_as_mean_pooling()
    with pytest.raises(ValueError, match="layer_scale"):
        randomized_glot().init_as_mean_pooling(layer_scale=0.0)
