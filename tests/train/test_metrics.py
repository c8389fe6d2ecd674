"""Task metrics (scikit-learn / scipy underneath): hand-checked values, agreement with numpy, undefined cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from glot_st.train.metrics import (
    accuracy,
    compute_metric,
    f1_binary,
    matthews_corrcoef,
    pearson,
    spearman,
)


def test_accuracy_hand_checked():
    assert accuracy([1, 0, 1, 1], [1, 1, 1, 0]) == 0.5
    assert accuracy(np.array([2, 2]), np.array([2, 2])) == 1.0
    assert accuracy([0, 0, 0], [1, 1, 1]) == 0.0


def test_f1_hand_checked():
    pred, gold = [1, 1, 0, 0, 1], [1, 0, 1, 0, 1]
    # positive 1: TP=2 FP=1 FN=1 -> 4/6
    assert f1_binary(pred, gold) == pytest.approx(2 / 3)
    # positive 0: TP=1 (index 3) FP=1 (index 2) FN=1 (index 1) -> 2/4
    assert f1_binary(pred, gold, positive=0) == pytest.approx(0.5)
    assert f1_binary([1, 1], [1, 1]) == 1.0
    assert f1_binary([0, 0, 0], [0, 0, 0]) == 0.0  # no positives anywhere: defined as 0
    assert f1_binary([0, 0, 1], [1, 1, 0]) == 0.0


def test_mcc_hand_checked_binary():
    # TP=2 TN=1 FP=1 FN=1 -> (2*1 - 1*1) / sqrt(3*3*2*2) = 1/6
    pred, gold = [1, 1, 0, 0, 1], [1, 0, 1, 0, 1]
    assert matthews_corrcoef(pred, gold) == pytest.approx(1 / 6)
    assert matthews_corrcoef([0, 1, 1, 0], [0, 1, 1, 0]) == pytest.approx(1.0)
    assert matthews_corrcoef([1, 0, 0, 1], [0, 1, 1, 0]) == pytest.approx(-1.0)


def test_mcc_equals_phi_from_corrcoef():
    rng = np.random.default_rng(0)
    pred, gold = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    assert matthews_corrcoef(pred, gold) == pytest.approx(np.corrcoef(pred, gold)[0, 1])


def test_mcc_multiclass_hand_checked():
    # s=6, c=3, p_k = t_k = (2, 2, 2): (3*6 - 12) / sqrt((36-12)(36-12)) = 6/24
    assert matthews_corrcoef([0, 1, 2, 0, 1, 2], [0, 1, 2, 1, 2, 0]) == pytest.approx(0.25)
    assert matthews_corrcoef([0, 1, 2, 2], [0, 1, 2, 2]) == pytest.approx(1.0)


def test_mcc_undefined_is_zero():
    assert matthews_corrcoef([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0  # constant prediction
    assert matthews_corrcoef([0, 1, 0, 1], [1, 1, 1, 1]) == 0.0  # constant gold
    assert matthews_corrcoef([1], [1]) == 0.0


def test_pearson_matches_corrcoef():
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    y = 0.5 * x + rng.normal(size=50)
    assert pearson(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], abs=1e-12)
    assert pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_correlations_of_constant_input_fail_instead_of_scoring_zero():
    with pytest.raises(ValueError, match="pearson is undefined: x is constant"):
        pearson([0.1] * 7, list(range(7)))
    with pytest.raises(ValueError, match="spearman is undefined: y is constant"):
        spearman(list(range(7)), [2.0] * 7)
    with pytest.raises(ValueError, match="undefined"):
        compute_metric("spearman", [0.5] * 4, [1, 2, 3, 4])  # a collapsed regression head


def test_spearman_hand_checked_without_ties():
    # d = (-1, 1, -1, 1, 0), sum d^2 = 4 -> 1 - 6*4 / (5*24) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    x = np.array([0.1, 0.5, 0.2, 3.0, 2.0])
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)  # monotone transform
    assert spearman(x, -x**3) == pytest.approx(-1.0)


def test_spearman_with_ties_is_pearson_of_average_ranks():
    x = [1, 2, 3, 4, 5]
    y = [5, 6, 7, 8, 7]  # ranks (1, 2, 3.5, 5, 3.5)
    expected = np.corrcoef([1, 2, 3, 4, 5], [1, 2, 3.5, 5, 3.5])[0, 1]
    assert spearman(x, y) == pytest.approx(expected)
    assert spearman(x, y) == pytest.approx(0.82078268166812329)


def test_spearman_random_against_corrcoef_of_ranks():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 6, 300).astype(float)  # many ties
    y = x + rng.normal(size=300)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    assert spearman(x, y) == pytest.approx(np.corrcoef(rx, ry)[0, 1], abs=1e-12)


@pytest.mark.parametrize("fn", [accuracy, f1_binary, matthews_corrcoef, pearson, spearman])
def test_input_validation(fn):
    with pytest.raises(ValueError, match="3 items but .* has 2"):
        fn([1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="empty"):
        fn([], [])
    with pytest.raises(ValueError, match="1-D"):
        fn([[1, 0]], [[1, 0]])


def test_non_finite_values_are_rejected_with_index():
    with pytest.raises(ValueError, match=r"x\[1\] is nan"):
        pearson([1.0, float("nan"), 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"y\[2\] is inf"):
        spearman([1.0, 2.0, 3.0], [1.0, 2.0, float("inf")])


def test_compute_metric_dispatch():
    pred, gold = [1, 1, 0, 0, 1], [1, 0, 1, 0, 1]
    assert compute_metric("accuracy", pred, gold) == pytest.approx(0.6)
    assert compute_metric("f1", pred, gold) == pytest.approx(2 / 3)
    assert compute_metric("mcc", pred, gold) == pytest.approx(1 / 6)
    assert compute_metric("spearman", [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert compute_metric("pearson", [1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert isinstance(compute_metric("mcc", pred, gold), float)
    with pytest.raises(ValueError, match="unknown metric 'auc'.*accuracy.*f1.*mcc.*pearson.*spearman"):
        compute_metric("auc", pred, gold)
