"""Invariances of GLOT pooling.

- batch invariance: a sentence's embedding does not depend on its batch-mates, on the padding length, on
  what the padding holds, or on where the padding sits (right, left, interleaved);
- token-order invariance: permuting a sentence's real token states leaves its embedding unchanged;
- the sparse and dense layouts agree;
for every conv and for the threshold, topk and mutual_knn graphs.
"""

from __future__ import annotations

import pytest
import torch

from conftest import randomized_glot

DIM = 8
ATOL = 1e-5

CONFIGS = [
    dict(conv="gat", heads=2, edge_weight="cosine"),
    dict(conv="gat", heads=3, concat_heads=False, jk="max"),
    dict(conv="gcn", edge_weight="cosine", jk="mean"),
    dict(conv="gin"),
    dict(conv="gine", edge_weight="cosine"),
    dict(conv="sage", jk="max", edge_weight="cosine"),
    dict(conv="gat", graph="topk", k=2, jk="mean", edge_weight="cosine"),
    dict(conv="gcn", graph="topk", k=3),
    dict(conv="sage", graph="mutual_knn", k=2, edge_weight="cosine"),
    dict(conv="gin", graph="mutual_knn", k=3, jk="max"),
]
LAYOUTS = ("sparse", "dense")  # "auto" picks one of these; see test_auto_layout_switch_does_not_change_a_sentence
CASES = [
    (i, layout)
    for i, config in enumerate(CONFIGS)
    for layout in LAYOUTS
    if not (config["conv"] == "gine" and layout == "dense")
]


def _ids(case):
    i, layout = case
    return "-".join(str(v) for v in CONFIGS[i].values()) + f"-{layout}"


@pytest.fixture(params=CASES, ids=[_ids(c) for c in CASES])
def glot(request):
    i, layout = request.param
    return randomized_glot(i, in_dim=DIM, layout=layout, **CONFIGS[i])


def _sentence(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))


def _place(sentences, positions, length, garbage_seed=0, garbage=None):
    """Batch the sentences; ``positions[b]`` are the slots of sentence b's tokens; padding holds garbage."""
    gen = torch.Generator().manual_seed(garbage_seed)
    states = torch.randn(len(sentences), length, DIM, generator=gen) * 50.0 if garbage is None else None
    if garbage is not None:
        states = torch.full((len(sentences), length, DIM), garbage)
    mask = torch.zeros(len(sentences), length, dtype=torch.long)
    for b, (sentence, slots) in enumerate(zip(sentences, positions)):
        states[b, slots] = sentence
        mask[b, slots] = 1
    return states, mask


def _right(n, length):
    return list(range(n))


def _left(n, length):
    return list(range(length - n, length))


def _interleaved(n, length):
    slots = torch.randperm(length, generator=torch.Generator().manual_seed(n * 31 + length))[:n]
    return sorted(slots.tolist())


PLACEMENTS = {"right": _right, "left": _left, "interleaved": _interleaved}


@torch.no_grad()
def test_batch_invariance(glot):
    target = _sentence(5, 1)
    longer = _sentence(9, 2)
    shorter = _sentence(2, 3)
    alone = glot.pool(target.unsqueeze(0), torch.ones(1, 5, dtype=torch.long))[0]
    assert torch.isfinite(alone).all() and float(alone.abs().max()) > 0

    solos = {
        b: glot.pool(sentence.unsqueeze(0), torch.ones(1, sentence.shape[0], dtype=torch.long))[0]
        for b, sentence in ((0, shorter), (2, longer))
    }
    for name, place in PLACEMENTS.items():
        for extra in (0, 5):
            # alone, at any padding length
            length = 5 + extra
            states, mask = _place([target], [place(5, length)], length, garbage_seed=extra)
            got = glot.pool(states, mask)[0]
            torch.testing.assert_close(got, alone, atol=ATOL, rtol=0, msg=f"{name} padding +{extra}")
            # beside longer and shorter sentences (each placed the same way)
            length = 9 + extra
            group = [shorter, target, longer]
            slots = [place(s.shape[0], length) for s in group]
            states, mask = _place(group, slots, length, garbage_seed=100 + extra)
            batch = glot.pool(states, mask)
            torch.testing.assert_close(batch[1], alone, atol=ATOL, rtol=0, msg=f"{name} in batch +{extra}")
            # batch-mates are themselves batch invariant
            for b, solo in solos.items():
                torch.testing.assert_close(batch[b], solo, atol=ATOL, rtol=0)


@torch.no_grad()
def test_mixed_padding_sides_in_one_batch(glot):
    """Left-padded, right-padded and interleaved rows in one batch give the same rows as alone."""
    sentences = [_sentence(n, 10 + n) for n in (3, 6, 4)]
    length = 8
    slots = [_left(3, length), _right(6, length), _interleaved(4, length)]
    states, mask = _place(sentences, slots, length, garbage_seed=7)
    batch = glot.pool(states, mask)
    for b, sentence in enumerate(sentences):
        solo = glot.pool(sentence.unsqueeze(0), torch.ones(1, sentence.shape[0]))[0]
        torch.testing.assert_close(batch[b], solo, atol=ATOL, rtol=0)


@torch.no_grad()
def test_padding_content_is_ignored(glot):
    """Whatever the padding holds (even NaN / inf, which are allowed there) does not reach the output."""
    target = _sentence(5, 4)
    alone = glot.pool(target.unsqueeze(0), torch.ones(1, 5))[0]
    for garbage in (float("nan"), float("inf"), -float("inf"), 1e30):
        states, mask = _place([_sentence(7, 5), target], [_right(7, 9), _left(5, 9)], 9, garbage=garbage)
        got = glot.pool(states, mask)
        assert torch.isfinite(got).all(), f"padding filled with {garbage}"
        torch.testing.assert_close(got[1], alone, atol=ATOL, rtol=0, msg=f"padding filled with {garbage}")


@torch.no_grad()
def test_token_order_invariance(glot):
    target = _sentence(6, 8)
    alone = glot.pool(target.unsqueeze(0), torch.ones(1, 6))[0]
    other = _sentence(4, 9)
    for seed in range(2):
        perm = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
        permuted = target[perm]
        got = glot.pool(permuted.unsqueeze(0), torch.ones(1, 6))[0]
        torch.testing.assert_close(got, alone, atol=ATOL, rtol=0)
        # permuted inside a padded batch, with interleaved padding
        states, mask = _place([other, permuted], [_right(4, 10), _interleaved(6, 10)], 10, garbage_seed=seed)
        torch.testing.assert_close(glot.pool(states, mask)[1], alone, atol=ATOL, rtol=0)


@pytest.mark.parametrize("index", [i for i, c in enumerate(CONFIGS) if c["conv"] != "gine"])
@torch.no_grad()
def test_sparse_and_dense_layouts_agree(index):
    glot = randomized_glot(index, in_dim=DIM, **CONFIGS[index])
    lengths = [6, 1, 0, 9, 3]
    sentences = [_sentence(max(n, 1), 20 + i)[:n] for i, n in enumerate(lengths)]
    states, mask = _place(sentences, [_right(n, 9) for n in lengths], 9, garbage_seed=3)
    results = {}
    for layout in ("sparse", "dense"):
        glot.layout = layout
        results[layout] = glot.pool(states, mask)
    torch.testing.assert_close(results["sparse"], results["dense"], atol=ATOL, rtol=1e-5)
    assert float(results["sparse"][2].abs().max()) == 0.0


@torch.no_grad()
def test_auto_layout_switch_does_not_change_a_sentence():
    """With a tiny ``dense_max_elements`` the auto layout goes sparse for big batches, dense for small ones."""
    glot = randomized_glot(3, in_dim=DIM, conv="gcn", edge_weight="cosine", layout="auto", dense_max_elements=60)
    target = _sentence(5, 30)
    assert glot._choose_layout(1, 5) == "dense" and glot._choose_layout(3, 9) == "sparse"
    alone = glot.pool(target.unsqueeze(0), torch.ones(1, 5))[0]
    states, mask = _place([_sentence(9, 31), target, _sentence(2, 32)], [_right(9, 9), _left(5, 9), _right(2, 9)], 9)
    torch.testing.assert_close(glot.pool(states, mask)[1], alone, atol=ATOL, rtol=0)
