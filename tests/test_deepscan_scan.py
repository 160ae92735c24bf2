"""Individual and group scans against exhaustive search and a naive reference; planted signals."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import deepscan.scan as scan_mod
from deepscan import ScanConfig, group_scan, individual_scan, pvalue_ranges
from deepscan.scores import apply_score, berk_jones, higher_criticism, kolmogorov_smirnov
from deepscan.thresholds import threshold_levels, threshold_values

FNS = [higher_criticism, berk_jones, kolmogorov_smirnov]


def _random_ranges(rng, g, m, n=9):
    """p-value ranges of integer data against a small background: many ties."""
    bg = rng.integers(0, 5, (n, m)).astype(float)
    x = rng.integers(0, 7, (g, m)).astype(float)
    return pvalue_ranges(bg, x)


# --------------------------------------------------------------------------- individual scan


def test_individual_scan_equals_exhaustive_search_over_thresholds():
    rng = np.random.default_rng(0)
    for trial in range(60):
        pv = _random_ranges(rng, 1, int(rng.integers(1, 30)))
        cfg = ScanConfig(score=["hc", "bj", "ks"][trial % 3], thresholds=["exact", "grid"][trial % 2],
                         a_max=float(rng.choice([0.2, 0.5, 1.0])))
        pmax = pv[0, :, 1]
        if cfg.thresholds == "exact":
            thr = np.unique(np.append(pmax[pmax <= cfg.a_max], cfg.a_max))
        else:
            thr = np.linspace(cfg.a_max / 50, cfg.a_max, 50)
        best, best_t = 0.0, None
        for t, a in enumerate(thr):
            k = int((pmax <= a).sum())
            s = float(apply_score(cfg.score_function, k, k, a))
            if s > best:
                best, best_t = s, t
        res = individual_scan(pv[0], cfg)
        assert res.score == pytest.approx(best, rel=1e-12)
        if best_t is None:
            assert res.nodes.size == 0 and res.records.size == 0 and math.isnan(res.alpha)
        else:
            assert res.alpha == thr[best_t]
            np.testing.assert_array_equal(res.nodes, np.flatnonzero(pmax <= thr[best_t]))
            assert res.records.tolist() == [0]


def test_individual_scan_with_nothing_below_a_max_is_empty_and_preset_returns_pmin_nodes():
    pv = np.zeros((1, 4, 2))
    pv[..., 0], pv[..., 1] = [0.3, 0.6, 0.7, 0.9], [0.6, 0.7, 0.8, 1.0]
    res = individual_scan(pv, ScanConfig(a_max=0.5))
    assert res.score == 0.0 and res.nodes.size == 0 and math.isnan(res.alpha)  # not node 0
    pv[..., 0], pv[..., 1] = [0.005, 0.011, 0.3, 0.9], [0.015, 0.02, 0.4, 1.0]
    res = individual_scan(pv, ScanConfig(preset="ibm-2025"))
    assert res.alpha == pytest.approx(0.02)  # picked from pmax (2 nodes at 0.02) ...
    assert res.nodes.tolist() == [0, 1]  # ... nodes returned by pmin <= alpha*
    with pytest.raises(ValueError, match="one record"):
        individual_scan(np.zeros((2, 4, 2)))


# --------------------------------------------------------------------------- LTSS steps


def _best_over_subsets(lev, thr, fn, fixed_axis, fixed):
    best = 0.0
    sub = lev[fixed] if fixed_axis == "records" else lev[:, fixed].T
    free, per = sub.shape[1], len(fixed)
    for t in range(len(thr)):
        c = (sub <= t).sum(0)
        for k in range(1, free + 1):
            for s in itertools.combinations(range(free), k):
                best = max(best, float(apply_score(fn, c[list(s)].sum(), k * per, thr[t])))
    return best


def test_one_ltss_step_equals_exhaustive_search_on_both_axes():
    rng = np.random.default_rng(1)
    for trial in range(120):
        g, m, t_n = int(rng.integers(1, 6)), int(rng.integers(1, 7)), int(rng.integers(1, 5))
        lev = rng.integers(0, t_n + 1, (g, m)).astype(np.int16)
        thr = np.sort(rng.choice(np.linspace(0.01, 0.6, 60), t_n, replace=False))
        fn = FNS[trial % 3]
        rec = np.sort(rng.choice(g, int(rng.integers(1, g + 1)), replace=False))
        s, t, nodes = scan_mod.ltss_nodes(np.ascontiguousarray(lev.T), rec, thr, fn)
        assert s == pytest.approx(_best_over_subsets(lev, thr, fn, "records", rec), rel=1e-12, abs=1e-12)
        if t is not None:  # the returned set achieves it
            sub = lev[np.ix_(rec, nodes)]
            assert float(apply_score(fn, (sub <= t).sum(), sub.size, thr[t])) == pytest.approx(s, rel=1e-12)
        nod = np.sort(rng.choice(m, int(rng.integers(1, m + 1)), replace=False))
        s, t, recs = scan_mod.ltss_records(np.ascontiguousarray(lev.T), nod, thr, fn)
        assert s == pytest.approx(_best_over_subsets(lev, thr, fn, "nodes", nod), rel=1e-12, abs=1e-12)
        if t is not None:
            sub = lev[np.ix_(recs, nod)]
            assert float(apply_score(fn, (sub <= t).sum(), sub.size, thr[t])) == pytest.approx(s, rel=1e-12)


# --------------------------------------------------------------------------- group scan vs naive reference


def _naive_ltss(p, thr, fn, fixed_axis, fixed, compat):
    """Score every prefix of the stable priority order, first maximum in (t, k) order."""
    best, choice = (-10000.0 if compat else -math.inf), None
    for t, a in enumerate(thr):
        if fixed_axis == "records":
            pri = (p[fixed] <= a).sum(0)
        else:
            pri = (p[:, fixed] <= a).sum(1)
        order = np.argsort(-pri, kind="stable")
        na = np.cumsum(pri[order])
        for k in range(1, len(order) + 1):
            s = float(apply_score(fn, na[k - 1], k * len(fixed), a))
            if s > best:
                best, choice = s, (t, np.sort(order[:k]))
    return best, choice


def _naive_fgss(p, thr, fn, compat):
    g, m = p.shape
    rec, nod, side = np.arange(g), None, "nodes"
    best, state = -math.inf, None
    while True:
        if side == "nodes":
            s, (t, new) = _naive_ltss(p, thr, fn, "records", rec, compat)
            cand = (s, t, rec, new)
        else:
            s, (t, new) = _naive_ltss(p, thr, fn, "nodes", nod, compat)
            cand = (s, t, new, nod)
        if not s > best:
            break
        best, state = s, cand
        rec, nod = cand[2], cand[3]
        side = "records" if side == "nodes" else "nodes"
    s, t, rec, nod = state
    if s <= 0 and not compat:
        return 0.0, math.nan, [], []
    return s, thr[t], list(rec), list(nod)


@pytest.mark.parametrize("preset", [None, "ibm-2025"])
def test_group_scan_equals_naive_reference(preset):
    rng = np.random.default_rng(2)
    for trial in range(40):
        g, m = int(rng.integers(1, 7)), int(rng.integers(1, 9))
        bg = rng.standard_normal((19, m))
        x = rng.standard_normal((g, m)) + (rng.random((g, m)) < 0.3) * 2.0
        if preset:
            pv = pvalue_ranges(bg, x, preset=preset)
            cfg = ScanConfig(preset=preset)
        else:
            pv = pvalue_ranges(bg, x)
            cfg = ScanConfig(score=["hc", "bj", "ks"][trial % 3], a_max=[0.5, 0.3][trial % 2])
        p = pv[..., 0] if preset else pv[..., 1]
        thr = threshold_values(p, cfg.thresholds, cfg.a_max)
        s, a, rec, nod = _naive_fgss(p, thr, cfg.score_function, compat=bool(preset))
        res = group_scan(pv, cfg)
        assert res.score == pytest.approx(s, rel=1e-12, abs=0)
        assert res.alpha == a or (math.isnan(a) and math.isnan(res.alpha))
        assert res.records.tolist() == rec and res.nodes.tolist() == nod


def test_preset_all_zero_scores_returns_one_element_default_returns_empty():
    pv = np.ones((3, 5, 2))  # nothing at or below any threshold
    pv[..., 0] = 0.9
    res = group_scan(pv, "ibm-2025")
    # the first step (nodes given all records) keeps one node; nothing improves on it afterwards
    assert res.score == 0.0 and res.alpha == 0.01 and res.nodes.tolist() == [0] and res.records.tolist() == [0, 1, 2]
    res = group_scan(pv)
    assert res.score == 0.0 and res.nodes.size == 0 and res.records.size == 0 and math.isnan(res.alpha)


# --------------------------------------------------------------------------- properties


def test_ascent_never_decreases_the_score(monkeypatch):
    steps = []
    orig_step = scan_mod._step  # every LTSS step of an ascent, remembered ones included

    def wrapped(*a, **k):
        out = orig_step(*a, **k)
        steps.append(out[0])
        return out

    monkeypatch.setattr(scan_mod, "_step", wrapped)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 80))
    x[:10, :15] += 1.5
    pv = pvalue_ranges(rng.standard_normal((60, 80)), x)
    orig_ascent, runs = scan_mod._ascent, []

    def ascent(*a, **k):
        n0 = len(steps)
        out = orig_ascent(*a, **k)
        runs.append(steps[n0:])
        return out

    monkeypatch.setattr(scan_mod, "_ascent", ascent)
    for restarts, score in [(1, "hc"), (6, "bj"), (6, "ks")]:
        runs.clear()
        res = group_scan(pv, ScanConfig(score=score, restarts=restarts), seed=5)
        assert len(runs) == restarts
        for seq in runs:
            assert len(seq) >= 2
            assert all(b >= a - 1e-12 for a, b in zip(seq, seq[1:])), seq
        assert res.score == pytest.approx(max(max(seq) for seq in runs))


def test_remembered_steps_change_nothing(monkeypatch):
    """Restarts reuse LTSS steps already computed; scanning every step afresh gives the same result."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((40, 120))
    x[:12, :20] += 1.2
    pv = pvalue_ranges(rng.standard_normal((70, 120)), x)
    calls = []
    for name in ("ltss_nodes", "ltss_records"):
        orig = getattr(scan_mod, name)

        def counted(*a, _orig=orig, **k):
            calls.append(name)
            return _orig(*a, **k)

        monkeypatch.setattr(scan_mod, name, counted)
    remembering = scan_mod._step

    def afresh(memo, *a):
        return remembering({}, *a)  # an empty memo every time: nothing is reused

    for preset in (None, "ibm-2025"):
        cfg = ScanConfig(preset=preset, restarts=8)
        calls.clear()
        monkeypatch.setattr(scan_mod, "_step", remembering)
        remembered = group_scan(pv, cfg, seed=2)
        n_remembered = len(calls)
        calls.clear()
        monkeypatch.setattr(scan_mod, "_step", afresh)
        fresh = group_scan(pv, cfg, seed=2)
        assert remembered.same_as(fresh)
        assert n_remembered < len(calls)  # the restarts did meet sets scanned before



def test_membership_does_not_depend_on_order_of_records_or_nodes():
    rng = np.random.default_rng(4)
    bg = rng.integers(0, 4, (15, 40)).astype(float)  # heavy ties in priorities
    x = rng.integers(0, 6, (12, 40)).astype(float)
    pv = pvalue_ranges(bg, x)
    res = group_scan(pv)
    pr, pn = rng.permutation(12), rng.permutation(40)
    res2 = group_scan(pv[pr][:, pn])
    assert res2.score == pytest.approx(res.score, rel=1e-12) and res2.alpha == res.alpha
    assert sorted(pr[res2.records].tolist()) == res.records.tolist()
    assert sorted(pn[res2.nodes].tolist()) == res.nodes.tolist()


def test_planted_anomaly_is_found_and_null_scores_stay_small():
    rng = np.random.default_rng(5)
    m, n_anom_rec, anom_nodes = 300, 15, np.arange(20, 50)
    bg = rng.standard_normal((120, m))
    x = rng.standard_normal((40, m))
    x[:n_anom_rec, anom_nodes] += 3.5
    res = group_scan(pvalue_ranges(bg, x), ScanConfig(restarts=3), seed=0)
    rec_hit = np.isin(res.records, np.arange(n_anom_rec)).sum()
    node_hit = np.isin(res.nodes, anom_nodes).sum()
    assert rec_hit / res.records.size >= 0.9 and rec_hit / n_anom_rec >= 0.9
    assert node_hit / res.nodes.size >= 0.9 and node_hit / anom_nodes.size >= 0.9
    null = group_scan(pvalue_ranges(bg, rng.standard_normal((40, m))), ScanConfig(restarts=3), seed=0)
    assert null.score < 0.25 * res.score
    ind = individual_scan(pvalue_ranges(bg, x[:1]))
    assert np.isin(ind.nodes, anom_nodes).mean() >= 0.6


def test_restarts_are_seeded_and_never_worse():
    rng = np.random.default_rng(6)
    pv = pvalue_ranges(rng.standard_normal((50, 60)), rng.standard_normal((20, 60)) + (rng.random((20, 60)) < 0.1))
    one = group_scan(pv, ScanConfig(restarts=1))
    a = group_scan(pv, ScanConfig(restarts=8), seed=11)
    b = group_scan(pv, ScanConfig(restarts=8), seed=np.random.default_rng(11))
    assert a.same_as(b) and a.score >= one.score


def test_bad_scan_input():
    with pytest.raises(ValueError, match=r"shape \(n_records, n_nodes, 2\)"):
        group_scan(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        group_scan(np.full((2, 3, 2), 1.5))
    with pytest.raises(ValueError, match="pmin"):
        group_scan(np.stack([np.ones((2, 3)), np.zeros((2, 3))], -1))
    with pytest.raises(ValueError, match=r"a_max must be in \(0, 1\]"):
        ScanConfig(a_max=0.0)
    with pytest.raises(ValueError, match="fixes thresholds='grid'"):
        ScanConfig(preset="ibm-2025", thresholds="exact")
    with pytest.raises(ValueError, match="config must be"):
        group_scan(np.zeros((1, 2, 2)), config=3)


def test_threshold_levels_match_searchsorted():
    rng = np.random.default_rng(7)
    p = rng.integers(0, 40, (20, 30)) / 39
    p[::3] = 1 - (1 - p[::3])  # values differing from the grid in the last bit
    for mode, a_max in [("exact", 0.5), ("grid", 0.5), ("exact", 1.0)]:
        thr = threshold_values(p, mode, a_max)
        if mode == "exact":
            np.testing.assert_array_equal(thr, np.unique(np.append(p[p <= a_max], a_max)))
        np.testing.assert_array_equal(threshold_levels(p, thr), np.searchsorted(thr, p))


def test_too_many_exact_thresholds_suggests_grid(monkeypatch):
    monkeypatch.setattr(scan_mod, "_MAX_BINS", 1000)
    pv = np.sort(np.random.default_rng(8).random((10, 200, 2)), axis=-1)  # continuous, not from pvalue_ranges
    with pytest.raises(ValueError, match="thresholds='grid'"):
        group_scan(pv)
    assert group_scan(pv, ScanConfig(thresholds="grid")).score >= 0.0
