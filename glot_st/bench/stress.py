"""The signal-dilution stress test of the GLOT paper (Mantri et al., ICLR 2026, arXiv 2603.03389).

A binary single-sentence task: does the text say that a target item is present?

* Positive (label 1): the signal phrase is a context followed directly by a target noun,
  ``"the folder includes reports"``.
* Negative (label 0): context + negator + ``GAP`` (10) noise words + noun,
  ``"the folder includes never <10 noise words> reports"``.

The signal phrase sits at a uniformly random position in a background of distractors. ``rho`` is the
distractor (noise) fraction: exactly ``n_noise = round(rho * length)`` words of every text are drawn
(uniformly, with replacement) from ``NOISE_WORDS``, a fixed list of common English words that includes
``"not"`` and ``"no"``, so negation words also occur as distractors in positives.

How the rest of the text is filled (the ambiguity, resolved here):
    The paper gives the distractor ratio but not what the other ``1 - rho`` of the 128 positions hold.
    The authors' script (``diagnostic_stress_test.py`` in github.com/ipsitmantri/GLOT) builds
    ``int(rho * max_length)`` noise words plus the signal phrase and leaves the remaining positions to
    tokenizer padding, so its texts are shorter than 128 words and a negative is 11 words longer than a
    positive. This module instead gives every text exactly ``length`` words, so that neither the word
    count nor padding reveals the label: the positions that are neither signal nor noise are neutral
    filler drawn from ``FILLER_WORDS``, a second fixed list with no negators, no target nouns and no
    word in common with ``NOISE_WORDS`` (so the noise fraction is measurable exactly).
    The 10 words between a negator and its noun are noise words and count towards ``n_noise``; both
    classes therefore hold the same number of noise words, and a negative needs ``n_noise >= GAP``
    (``rho >= 9.5 / 128 ~ 0.0743`` at ``length = 128``). Noise and filler words are shuffled
    together, then the signal phrase is inserted at a random index. Texts are lower-case, space-joined
    words (all common words, so most are a single word-piece; a tokenizer may still need > 128 tokens).

Labels are balanced exactly (``n`` must be even) and shuffled. Everything is drawn from one
``numpy.random.Generator`` seeded by ``numpy.random.SeedSequence(seed)``; ``make_stress_task`` gives
train and eval two independent children of that sequence (``SeedSequence.spawn``).

Public API::

    make_stress_split(rho, n, seed, length=128, *, split="train") -> TextSplit
    make_stress_task(rho, n_train=2000, n_eval=500, seed=0, length=128) -> (train, eval)
    STRESS_TASK, NOISE_WORDS, FILLER_WORDS, TARGET_NOUNS, CONTEXTS, NEGATORS, GAP
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from glot_st.train.splits import TaskSpec, TextSplit

__all__ = [
    "CONTEXTS",
    "FILLER_WORDS",
    "GAP",
    "NEGATORS",
    "NOISE_WORDS",
    "PAPER_RHOS",
    "STRESS_TASK",
    "TARGET_NOUNS",
    "make_stress_split",
    "make_stress_task",
]

#: distractor fractions evaluated in the paper
PAPER_RHOS: tuple[float, ...] = (0.2, 0.5, 0.8, 0.9)

#: how the stress test is scored (balanced binary classification)
STRESS_TASK = TaskSpec("stress", "single", 2, "accuracy", "eval", ("train", "eval"))

#: number of noise words between a negator and its noun in a negative
GAP = 10

CONTEXTS: tuple[str, ...] = ("the delivery contains", "the folder includes", "in the box are")

NEGATORS: tuple[str, ...] = ("not", "never", "without", "excluding")

TARGET_NOUNS: tuple[str, ...] = (
    "keys", "reports", "files", "tickets", "documents", "alerts", "letters", "receipts", "invoices",
    "photos", "maps", "cables", "batteries", "tools", "samples", "badges", "coins", "labels", "manuals",
    "passports",
)

#: distractors: common English words, including the negations "not" and "no"
NOISE_WORDS: tuple[str, ...] = tuple("""
the of and to a in for is on that by this with i you it not or be are from at as your all have new
more an was we will can us about if my has but our one other do no time they he up may what which
their out use any there see only so his when here who also now get would how were me some these its
like than first been make over just into most good well very much many such even back after where
through long down should because each those people said made last same little off while still must
own between both under before again right big high different small large next early young important
few public bad able old great her she him them then could way day man thing woman life child world
school state family group country problem hand part place case week company system program question
work government number night point home water room mother area money story fact month lot study book
eye job word business issue side kind head house service friend father power hour game line end
member law car city community name president team minute idea kid body information parent face
others level office door health person art war history party result change reason research girl guy
moment air teacher force education
""".split())

#: neutral filler for the positions that are neither signal nor noise (no negators, no target nouns)
FILLER_WORDS: tuple[str, ...] = tuple("""
river garden yellow gentle quiet summer forest meadow silver purple calm breeze valley autumn ocean
harbor orange green blue bright soft warm sunny cloud hill lake pebble maple willow velvet amber coral
crimson golden misty rainy sandy snowy winter evening sunset island canyon prairie marble cotton linen
cedar tulip lemon honey olive ivory morning
""".split())


def _check_rho(rho) -> float:
    """Return ``rho`` as a float after checking it is a real number in ``[0, 1)``."""
    if isinstance(rho, bool) or not isinstance(rho, numbers.Real):
        raise ValueError(f"rho must be a real number in [0, 1), got {rho!r}")
    value = float(rho)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"rho must be in [0, 1), got {rho!r}")
    return value


def _check_int(value, name: str, minimum: int) -> int:
    """Return ``value`` after checking it is an ``int`` (not bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_even(value, name: str) -> int:
    """Return ``value`` after checking it is an even ``int >= 2`` (labels must balance exactly)."""
    value = _check_int(value, name, 2)
    if value % 2:
        raise ValueError(f"{name} must be even so the labels balance exactly, got {value}")
    return value


def _noise_count(rho: float, length: int) -> int:
    """Number of noise words in a text: ``round(rho * length)`` (halves round up).

    Raises:
        ValueError: if the negative signal phrase cannot fit: fewer than ``GAP`` noise words, or too
            many for the longest context + negator + noun to fit in ``length``.
    """
    n_noise = math.floor(rho * length + 0.5)
    longest_fixed = max(len(c.split()) for c in CONTEXTS) + 2  # context + negator + noun
    if n_noise < GAP:
        raise ValueError(
            f"rho={rho} gives {n_noise} noise words in {length}, but a negative needs {GAP} noise words "
            f"between its negator and noun; use rho >= {(GAP - 0.5) / length:.6g}"
        )
    if n_noise + longest_fixed > length:
        raise ValueError(
            f"the signal does not fit: rho={rho} gives {n_noise} noise words and the signal phrase needs "
            f"up to {longest_fixed} more, but length is {length}"
        )
    return n_noise


def _make_text(label: int, n_noise: int, length: int, rng: np.random.Generator) -> str:
    """Build one text of exactly ``length`` words.

    Args:
        label: 1 (positive: context + noun) or 0 (negative: context + negator + GAP noise + noun).
        n_noise: how many words of the text come from ``NOISE_WORDS`` (gap words included).
        length: number of words.
        rng: the random stream (advanced in place).
    """
    context = CONTEXTS[rng.integers(len(CONTEXTS))].split()
    noun = TARGET_NOUNS[rng.integers(len(TARGET_NOUNS))]
    if label == 1:
        signal = [*context, noun]
        free_noise = n_noise
    else:
        negator = NEGATORS[rng.integers(len(NEGATORS))]
        gap = [NOISE_WORDS[i] for i in rng.integers(len(NOISE_WORDS), size=GAP)]
        signal = [*context, negator, *gap, noun]
        free_noise = n_noise - GAP
    n_filler = length - len(signal) - free_noise
    background = [NOISE_WORDS[i] for i in rng.integers(len(NOISE_WORDS), size=free_noise)]
    background += [FILLER_WORDS[i] for i in rng.integers(len(FILLER_WORDS), size=n_filler)]
    background = [background[i] for i in rng.permutation(len(background))]
    at = int(rng.integers(len(background) + 1))
    return " ".join(background[:at] + signal + background[at:])


def _generate(rho: float, n: int, length: int, rng: np.random.Generator, split: str) -> TextSplit:
    """Draw ``n`` texts (``n / 2`` per class, shuffled) from ``rng``; arguments already validated."""
    n_noise = _noise_count(rho, length)
    labels = np.array([1] * (n // 2) + [0] * (n // 2))[rng.permutation(n)]
    texts = [_make_text(int(y), n_noise, length, rng) for y in labels]
    return TextSplit(task="stress", split=split, texts_a=texts, texts_b=None, labels=[int(y) for y in labels])


def make_stress_split(rho: float, n: int, seed: int, length: int = 128, *, split: str = "train") -> TextSplit:
    """Generate one split of the stress test.

    Args:
        rho: distractor fraction in ``[0, 1)``; every text holds exactly ``round(rho * length)`` noise
            words. Must leave room for the signal (see module docstring), e.g. ``0.0743 <= rho < 0.957``
            at ``length = 128``.
        n: number of texts, a positive even int (labels are balanced exactly: ``n / 2`` of each).
        seed: non-negative int; the same arguments always give the same split.
        length: words per text (default 128).
        split: the ``TextSplit.split`` name to record (default ``"train"``).

    Returns:
        A single-sentence ``TextSplit`` with task ``"stress"``: ``texts_a`` are ``n`` space-joined texts
        of exactly ``length`` words, ``labels`` are ``int`` 0/1, ``texts_b`` is ``None``.

    Raises:
        ValueError: ``rho`` outside ``[0, 1)`` or leaving no room for the signal, ``n`` odd or < 2,
            ``seed`` negative or not an int, ``length`` not a positive int.
    """
    rho = _check_rho(rho)
    n = _check_even(n, "n")
    seed = _check_int(seed, "seed", 0)
    length = _check_int(length, "length", 1)
    return _generate(rho, n, length, np.random.default_rng(np.random.SeedSequence(seed)), split)


def make_stress_task(
    rho: float, n_train: int = 2000, n_eval: int = 500, seed: int = 0, length: int = 128
) -> tuple[TextSplit, TextSplit]:
    """Generate the train and eval splits of the stress test from two independent random streams.

    Args:
        rho: distractor fraction (see ``make_stress_split``).
        n_train: number of training texts (positive, even).
        n_eval: number of evaluation texts (positive, even).
        seed: non-negative int; ``SeedSequence(seed).spawn(2)`` seeds train and eval.
        length: words per text (default 128).

    Returns:
        ``(train, eval)`` ``TextSplit``s named ``"train"`` and ``"eval"``.

    Raises:
        ValueError: as ``make_stress_split``.
    """
    rho = _check_rho(rho)
    n_train = _check_even(n_train, "n_train")
    n_eval = _check_even(n_eval, "n_eval")
    seed = _check_int(seed, "seed", 0)
    length = _check_int(length, "length", 1)
    train_seq, eval_seq = np.random.SeedSequence(seed).spawn(2)
    train = _generate(rho, n_train, length, np.random.default_rng(train_seq), "train")
    evaluation = _generate(rho, n_eval, length, np.random.default_rng(eval_seq), "eval")
    return train, evaluation
