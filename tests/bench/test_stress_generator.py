"""The signal-dilution stress-test generator: shape, balance, determinism, signal structure, noise rate."""

from __future__ import annotations

import math

import pytest

from glot_st.bench.stress import (
    CONTEXTS,
    FILLER_WORDS,
    GAP,
    NEGATORS,
    NOISE_WORDS,
    PAPER_RHOS,
    STRESS_TASK,
    TARGET_NOUNS,
    make_stress_split,
    make_stress_task,
)

NOISE, FILLER, NOUNS = set(NOISE_WORDS), set(FILLER_WORDS), set(TARGET_NOUNS)
CONTEXT_WORDS = [c.split() for c in CONTEXTS]


def _parse(text: str, label: int) -> dict:
    """Locate the signal phrase; fail the test if it is not where the label says it is."""
    words = text.split(" ")
    noun_positions = [i for i, w in enumerate(words) if w in NOUNS]
    assert len(noun_positions) == 1, f"expected exactly one target noun in {text!r}"
    i = noun_positions[0]
    if label == 1:
        ctx = [c for c in CONTEXT_WORDS if words[i - len(c):i] == c]
        assert len(ctx) == 1, f"positive without context directly before the noun: {words[max(0, i - 5):i + 1]}"
        start, fixed = i - len(ctx[0]), ctx[0] + [words[i]]
    else:
        negator = i - GAP - 1
        assert negator >= 0 and words[negator] in NEGATORS, f"no negator {GAP + 1} words before the noun"
        assert all(w in NOISE for w in words[negator + 1:i]), "gap words must be noise words"
        ctx = [c for c in CONTEXT_WORDS if words[negator - len(c):negator] == c]
        assert len(ctx) == 1, "negative without context directly before the negator"
        assert not any(words[i - len(c):i] == c for c in CONTEXT_WORDS)
        start, fixed = negator - len(ctx[0]), ctx[0] + [words[negator], words[i]]
    return {"words": words, "start": start, "fixed": fixed}


def _noise_count(parsed: dict) -> int:
    """Noise-list words in the text, not counting the context / negator words of the signal."""
    return sum(w in NOISE for w in parsed["words"]) - sum(w in NOISE for w in parsed["fixed"])


def test_word_lists():
    assert len(NOISE_WORDS) >= 150 and len(set(NOISE_WORDS)) == len(NOISE_WORDS)
    assert "not" in NOISE
    assert len(TARGET_NOUNS) >= 20 and len(set(TARGET_NOUNS)) == len(TARGET_NOUNS)
    assert set(CONTEXTS) == {"the delivery contains", "the folder includes", "in the box are"}
    assert set(NEGATORS) == {"not", "never", "without", "excluding"}
    assert not FILLER & NOISE and not FILLER & NOUNS and not FILLER & set(NEGATORS)
    assert not NOISE & NOUNS
    assert STRESS_TASK.metric == "accuracy" and STRESS_TASK.kind == "single"


@pytest.mark.parametrize("rho", PAPER_RHOS)
def test_texts_have_exact_length_balanced_labels_and_exact_noise(rho):
    split = make_stress_split(rho, 60, seed=3)
    assert (split.task, split.texts_b, len(split)) == ("stress", None, 60)
    assert sorted(set(split.labels)) == [0, 1] and sum(split.labels) == 30
    assert all(type(y) is int for y in split.labels)
    expected_noise = math.floor(rho * 128 + 0.5)
    for text, label in zip(split.texts_a, split.labels):
        assert len(text.split(" ")) == 128 and text == text.strip()
        parsed = _parse(text, label)
        assert _noise_count(parsed) == expected_noise
        others = [w for w in parsed["words"] if w not in NOISE and w not in NOUNS and w not in parsed["fixed"]]
        assert all(w in FILLER for w in others), "every non-signal, non-noise word must be filler"
    assert abs(expected_noise / 128 - rho) <= 0.5 / 128


def test_labels_are_shuffled_and_signal_position_varies():
    split = make_stress_split(0.5, 200, seed=0)
    assert split.labels != sorted(split.labels) and split.labels != sorted(split.labels, reverse=True)
    starts = [_parse(t, y)["start"] for t, y in zip(split.texts_a, split.labels)]
    assert min(starts) < 15 and max(starts) > 100
    assert len(set(starts)) > 50


def test_other_length():
    split = make_stress_split(0.5, 10, seed=1, length=40)
    assert all(len(t.split()) == 40 for t in split.texts_a)


def test_deterministic_per_seed_and_seeds_differ():
    a = make_stress_split(0.8, 20, seed=7)
    b = make_stress_split(0.8, 20, seed=7)
    c = make_stress_split(0.8, 20, seed=8)
    assert a == b
    assert a.texts_a != c.texts_a
    assert not set(a.texts_a) & set(c.texts_a)


def test_task_train_and_eval_use_disjoint_streams():
    train, evaluation = make_stress_task(0.9, n_train=40, n_eval=20, seed=0)
    assert (train.split, evaluation.split, len(train), len(evaluation)) == ("train", "eval", 40, 20)
    assert sum(train.labels) == 20 and sum(evaluation.labels) == 10
    assert not set(train.texts_a) & set(evaluation.texts_a)
    assert evaluation.texts_a != train.texts_a[:20]
    # independent streams: the eval split does not depend on how much the train split drew
    _, evaluation_again = make_stress_task(0.9, n_train=60, n_eval=20, seed=0)
    assert evaluation_again == evaluation
    assert make_stress_task(0.9, n_train=40, n_eval=20, seed=0) == (train, evaluation)
    assert make_stress_task(0.9, n_train=40, n_eval=20, seed=1)[1] != evaluation


def test_task_default_sizes():
    train, evaluation = make_stress_task(0.2)
    assert (len(train), len(evaluation)) == (2000, 500)
    assert sum(train.labels) == 1000 and sum(evaluation.labels) == 250


@pytest.mark.parametrize("rho", [-0.1, 1.0, 1.5, float("nan"), float("inf"), True, "0.5", None])
def test_rho_out_of_range(rho):
    with pytest.raises(ValueError, match="rho"):
        make_stress_split(rho, 10, seed=0)
    with pytest.raises(ValueError, match="rho"):
        make_stress_task(rho, n_train=10, n_eval=10)


def test_signal_must_fit():
    with pytest.raises(ValueError, match="negative needs 10 noise words"):
        make_stress_split(0.0, 10, seed=0)  # no room for the 10 gap noise words
    with pytest.raises(ValueError, match="signal does not fit"):
        make_stress_split(0.99, 10, seed=0)  # 127 noise words + context + negator + noun > 128
    with pytest.raises(ValueError, match="negative needs"):
        make_stress_split(0.5, 10, seed=0, length=12)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n": 11}, "even"),
        ({"n": 0}, "n must be"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"length": 0}, "length"),
    ],
)
def test_other_bad_arguments(kwargs, needle):
    args = {"rho": 0.5, "n": 10, "seed": 0} | kwargs
    with pytest.raises(ValueError, match=needle):
        make_stress_split(**args)
