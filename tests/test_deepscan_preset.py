"""The ibm-2025 preset against the plain reference implementation and brute force, compared exactly."""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from deepscan import ScanConfig, group_scan, individual_scan, pvalue_ranges
from deepscan.scores import apply_score, get_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import reference_deepscan as ref  # noqa: E402

PRESET = "ibm-2025"


def _same(r, res) -> bool:
    score, alpha, records, nodes = r
    alpha_eq = alpha == res.alpha or (math.isnan(alpha) and math.isnan(res.alpha))
    return score == res.score and alpha_eq and records.tolist() == res.records.tolist() and nodes.tolist() == res.nodes.tolist()


def _data(rng, n, g, m, ties=False):
    if ties:
        return rng.integers(0, 5, (n, m)).astype(float), rng.integers(-2, 4, (g, m)).astype(float)
    x = rng.standard_normal((g, m))
    x[: g // 2, : max(1, m // 4)] -= 1.5  # small activations: what the preset's lower tail finds
    return rng.standard_normal((n, m)), x


def test_preset_fixes_conventions_only():
    cfg = ScanConfig(preset=PRESET, score="bj", restarts=10)
    assert (cfg.score, cfg.restarts, cfg.tail, cfg.thresholds, cfg.a_max) == ("bj", 10, "lower", "grid", 0.5)
    assert ScanConfig(preset=PRESET).score == "hc" and ScanConfig(preset=PRESET).restarts == 1
    ScanConfig(preset=PRESET, score=lambda na, n, a: na - n * a)  # any callable
    for bad in ({"tail": "upper"}, {"thresholds": "exact"}, {"a_max": 0.3}):
        with pytest.raises(ValueError, match="fixes"):
            ScanConfig(preset=PRESET, **bad)


@pytest.mark.parametrize("n", [19, 99, 250])
def test_preset_pvalues_equal_the_reference_bit_for_bit(n):
    rng = np.random.default_rng(n)
    bg, x = _data(rng, n, 7, 40, ties=(n == 19))
    assert np.array_equal(pvalue_ranges(bg, x, preset=PRESET), ref.pvalue_ranges(bg, x, preset=PRESET))
    for tail in ("upper", "lower", "two"):
        assert np.array_equal(pvalue_ranges(bg, x, tail), ref.pvalue_ranges(bg, x, tail))


@pytest.mark.parametrize("score", ["hc", "bj", "ks"])
def test_preset_individual_scan_equals_brute_force_over_stored_pmax(score):
    """Thresholds: every distinct stored pmax <= a_max; alpha* that stored float; nodes by pmin."""
    rng = np.random.default_rng(1)
    fn = get_score(score)
    for trial in range(40):
        n = [19, 99, 250][trial % 3]
        bg, x = _data(rng, n, 1, int(rng.integers(1, 120)), ties=trial % 4 == 0)
        pv = pvalue_ranges(bg, x, preset=PRESET)[0]
        pmin, pmax = pv[:, 0], pv[:, 1]
        best, alpha = -math.inf, None
        for a in sorted(set(pmax[pmax <= 0.5].tolist())):  # the stored values, no grid, no a_max added
            k = int((pmax <= a).sum())
            s = float(apply_score(fn, np.array([k]), np.array([k]), np.array([a]))[0])
            if s > best:
                best, alpha = s, a
        res = individual_scan(pv, ScanConfig(preset=PRESET, score=score))
        if alpha is None:
            assert (res.score, res.alpha, res.records.tolist(), res.nodes.tolist()) == (0.0, 0.0, [0], [0])
            continue
        assert res.score == best and res.alpha == alpha  # exact, not approximate
        assert res.nodes.tolist() == np.flatnonzero(pmin <= alpha).tolist() and res.records.tolist() == [0]
        assert _same(ref.individual_scan(pv, score, preset=PRESET), res)


def test_preset_individual_scan_alpha_is_the_stored_float():
    # pmax = 1 - (N - R)/(N + 1) for N = 99, R = 6: 0.06999999999999995, not the grid's 0.06999999999999999
    pv = np.zeros((1, 3, 2))
    pv[0, :, 1] = 1 - (99 - np.array([6, 6, 79])) / 100
    pv[0, :, 0] = pv[0, :, 1] - 0.01
    res = individual_scan(pv, PRESET)
    assert res.alpha == pv[0, 0, 1] == 0.06999999999999995 and res.nodes.tolist() == [0, 1]
    pv[0, :, 1] = [0.6, 0.7, 0.9]  # no pmax <= a_max: score 0, alpha 0, node [0], as published
    res = individual_scan(pv, PRESET)
    assert (res.score, res.alpha, res.nodes.tolist(), res.records.tolist()) == (0.0, 0.0, [0], [0])


@pytest.mark.parametrize("score", ["hc", "bj", "ks"])
@pytest.mark.parametrize("restarts", [1, 2])
def test_preset_group_scan_restarts_0_and_1_equal_the_reference(score, restarts):
    rng = np.random.default_rng(2 + restarts)
    for trial in range(12):
        n, g, m = [19, 99, 250][trial % 3], int(rng.integers(2, 12)), int(rng.integers(2, 60))
        bg, x = _data(rng, n, g, m, ties=trial % 4 == 0)
        pv = pvalue_ranges(bg, x, preset=PRESET)
        res = group_scan(pv, ScanConfig(preset=PRESET, score=score, restarts=restarts))
        assert _same(ref.group_scan(pv, score, preset=PRESET, restarts=restarts), res)


def test_preset_callable_score_and_seeded_later_restarts_equal_the_reference():
    rng = np.random.default_rng(4)
    bg, x = _data(rng, 99, 10, 50)
    pv = pvalue_ranges(bg, x, preset=PRESET)

    def half_hc(na, n, a):
        return 0.5 * (na - n * a) / np.sqrt(n * a * (1 - a))

    res = group_scan(pv, ScanConfig(preset=PRESET, score=half_hc))
    assert _same(ref.group_scan(pv, half_hc, preset=PRESET), res)
    # restarts >= 2 are drawn from the seeded generator (documented: the published ones were unseeded)
    a = group_scan(pv, ScanConfig(preset=PRESET, score="bj", restarts=6), seed=7)
    assert a.same_as(group_scan(pv, ScanConfig(preset=PRESET, score="bj", restarts=6), seed=7))
    assert _same(ref.group_scan(pv, "bj", preset=PRESET, restarts=6, seed=7), a)


@pytest.mark.parametrize("score", ["hc", "bj", "ks"])
def test_default_scans_equal_the_reference(score):
    rng = np.random.default_rng(5)
    for trial in range(8):
        bg, x = _data(rng, [19, 60][trial % 2], int(rng.integers(2, 10)), int(rng.integers(2, 40)), ties=trial % 3 == 0)
        pv = pvalue_ranges(bg, -x)
        cfg = ScanConfig(score=score, thresholds=["exact", "grid"][trial % 2], restarts=3)
        res = group_scan(pv, cfg, seed=1)
        assert _same(ref.group_scan(pv, score, thresholds_mode=cfg.thresholds, restarts=3, seed=1), res)
        one = individual_scan(pv[:1], cfg)
        assert _same(ref.individual_scan(pv[0], score, thresholds_mode=cfg.thresholds), one)


def test_config_and_pvalues_do_not_import_each_other():
    def imports(name):
        tree = ast.parse((ROOT / "deepscan" / f"{name}.py").read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}

    assert "pvalues" not in imports("config") and "config" not in imports("pvalues")
