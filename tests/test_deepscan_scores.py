"""Scoring functions: golden values, the zero rule, names, user functions."""

from __future__ import annotations

import numpy as np
import pytest

from deepscan import ScanConfig, berk_jones, get_score, higher_criticism, kolmogorov_smirnov
from deepscan.scores import apply_score, score_name

NA = np.array([7, 13, 18])
N = np.array([55, 110, 165])
ALPHA = 0.00332226


def test_golden_values():
    np.testing.assert_allclose(berk_jones(NA, N, ALPHA), [19.14519838, 34.55369211, 46.35644406], rtol=1e-9)
    np.testing.assert_allclose(higher_criticism(NA, N, ALPHA), [15.97479615, 20.93482312, 23.61047593], rtol=1e-9)
    np.testing.assert_allclose(kolmogorov_smirnov(NA, N, ALPHA), [0.91924127, 1.20465721, 1.3586229], rtol=1e-8)


def test_zero_unless_more_than_expected_and_all_significant_case():
    for fn in (berk_jones, higher_criticism, kolmogorov_smirnov):
        assert fn(5, 100, 0.05) == 0.0 and fn(4, 100, 0.05) == 0.0 and fn(0, 10, 0.5) == 0.0
        assert fn(6, 100, 0.05) > 0
    assert berk_jones(10, 10, 0.1) == pytest.approx(10 * np.log(10))  # N_a == N: N ln(1/alpha)
    assert berk_jones(np.array([10, 3]), 10, np.array([[0.1], [1.0]])).shape == (2, 2)  # broadcasts


def test_names_and_user_functions():
    assert get_score("HC") is higher_criticism and get_score("berk_jones") is berk_jones
    assert get_score("Kolmogorov-Smirnov") is kolmogorov_smirnov
    assert score_name("higher_criticism") == "hc"
    with pytest.raises(ValueError, match="unknown score 'foo'"):
        get_score("foo")
    with pytest.raises(ValueError, match="unknown score"):
        ScanConfig(score="foo")

    def excess(n_alpha, n, alpha):
        return n_alpha - n * alpha

    assert ScanConfig(score=excess).score_name == "custom:test_names_and_user_functions.<locals>.excess"
    np.testing.assert_allclose(apply_score(excess, np.array([1, 9]), 10, 0.5), [0.0, 4.0])  # zero rule enforced
    with pytest.raises(ValueError, match="NaN or inf"):
        apply_score(lambda a, n, al: a / 0.0, np.array([3]), 4, 0.1)
