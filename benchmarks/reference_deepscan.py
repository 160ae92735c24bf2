"""A plain reference implementation of the DeepScan procedure, for side-by-side checks and timings.

Written from the project's scan specification (``docs/deepscan.md``), step by step
and without any of the optimisations of the ``deepscan`` package: p-values with a
loop over nodes (one sort of the background column, two ``searchsorted`` per node),
LTSS steps with a loop over the free elements (one sort per element), an argsort of
the whole (elements x thresholds) priority matrix and, per threshold, the gather
of that whole matrix before its column is taken (the published code's shape of
computation). Its purpose is to be obviously right, not fast.

Two modes:

- ``preset="ibm-2025"``: the conventions of the code published with Cintas et al.
  2025 (docs/deepscan.md, section 6): lower tail computed as ``1 - upper``, the group scan counts
  pmin on the 50-point grid to a_max = 0.5, best scores start from -10000, the
  individual scan takes every distinct stored pmax <= a_max as its thresholds.
- ``preset=None``: the consistent method of docs/deepscan.md sections 1-5 (counting pmax,
  'exact' or 'grid' thresholds, empty result when nothing scores above 0).

Restarts from 2 on draw their starting node sets from the caller's numpy Generator
exactly as ``deepscan`` does (size uniform in 1..M, then a sorted sample without
replacement); the published code drew them from numpy's unseeded global generator.

Functions: :func:`pvalue_ranges`, :func:`individual_scan`, :func:`group_scan` and
the three scores. Results are plain tuples ``(score, alpha, records, nodes)`` with
sorted int64 index arrays.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["pvalue_ranges", "individual_scan", "group_scan", "higher_criticism", "berk_jones", "kolmogorov_smirnov", "SCORES"]

PRESET = "ibm-2025"
GRID = 50


# --------------------------------------------------------------------------- scores (docs/deepscan.md, section 2)


def higher_criticism(n_alpha, n, alpha):
    """``(N_a - N*alpha) / sqrt(N*alpha*(1 - alpha))`` where ``N_a > N*alpha``, else 0."""
    n_alpha, n, alpha = (np.asarray(v, np.float64) for v in (n_alpha, n, alpha))
    n_alpha, n, alpha = np.broadcast_arrays(n_alpha, n, alpha)
    out = np.zeros(n_alpha.shape)
    pos = n_alpha > n * alpha
    out[pos] = (n_alpha[pos] - n[pos] * alpha[pos]) / np.sqrt(n[pos] * alpha[pos] * (1 - alpha[pos]))
    return out


def kolmogorov_smirnov(n_alpha, n, alpha):
    """``(N_a - N*alpha) / sqrt(N)`` where ``N_a > N*alpha``, else 0."""
    n_alpha, n, alpha = (np.asarray(v, np.float64) for v in (n_alpha, n, alpha))
    n_alpha, n, alpha = np.broadcast_arrays(n_alpha, n, alpha)
    out = np.zeros(n_alpha.shape)
    pos = n_alpha > n * alpha
    out[pos] = (n_alpha[pos] - n[pos] * alpha[pos]) / np.sqrt(n[pos])
    return out


def berk_jones(n_alpha, n, alpha):
    """``N * KL(N_a/N || alpha)`` where ``N_a > N*alpha``; ``N*ln(1/alpha)`` when ``N_a == N``."""
    n_alpha, n, alpha = (np.asarray(v, np.float64) for v in (n_alpha, n, alpha))
    n_alpha, n, alpha = np.broadcast_arrays(n_alpha, n, alpha)
    out = np.zeros(n_alpha.shape)
    full = (n_alpha == n) & (n > 0)
    pos = (n_alpha > n * alpha) & ~full
    out[full] = n[full] * np.log(1 / alpha[full])
    a, na, nn = alpha[pos], n_alpha[pos], n[pos]
    out[pos] = na * np.log(na / (nn * a)) + (nn - na) * np.log((nn - na) / (nn * (1 - a)))
    return out


SCORES = {"hc": higher_criticism, "bj": berk_jones, "ks": kolmogorov_smirnov}


def _score(score):
    return score if callable(score) else SCORES[score]


# --------------------------------------------------------------------------- p-values (docs/deepscan.md, sections 1 and 6)


def pvalue_ranges(background, records, tail="upper", preset=None):
    """(G, M, 2) float64 ``[pmin, pmax]`` with a loop over nodes.

    ``preset='ibm-2025'`` forces the lower tail computed as ``1 - upper`` (docs/deepscan.md, section 6).
    """
    bg = np.asarray(background)
    x = np.asarray(records)
    dtype = np.result_type(bg.dtype, x.dtype)
    n, m = bg.shape
    out = np.empty((x.shape[0], m, 2))
    for j in range(m):
        col = np.sort(bg[:, j].astype(dtype))
        v = x[:, j].astype(dtype)
        lo = np.searchsorted(col, v, side="left")  # L = #{b < x}
        hi = np.searchsorted(col, v, side="right")  # R = #{b <= x}
        up_max = (n - lo + 1) / (n + 1)
        up_min = (n - hi) / (n + 1)
        if preset == PRESET:
            pmin, pmax = 1 - up_max, 1 - up_min
        elif tail == "upper":
            pmin, pmax = up_min, up_max
        elif tail == "lower":
            pmin, pmax = lo / (n + 1), (hi + 1) / (n + 1)
        else:  # two-tailed, from the upper-tail range
            pmin = np.empty(v.shape)
            pmax = np.empty(v.shape)
            for i in range(v.size):
                a, b = up_min[i], up_max[i]
                if b < 0.5:
                    pmin[i], pmax[i] = 2 * a, 2 * b
                elif a > 0.5:
                    pmin[i], pmax[i] = 2 * (1 - b), 2 * (1 - a)
                else:
                    pmin[i], pmax[i] = 2 * min(a, 1 - b), 1.0
        out[:, j, 0] = pmin
        out[:, j, 1] = pmax
    return out


# --------------------------------------------------------------------------- thresholds (docs/deepscan.md, section 3)


def thresholds(p, mode, a_max):
    """'grid': ``linspace(a_max/50, a_max, 50)``; 'exact': distinct values <= a_max, plus a_max."""
    if mode == "grid":
        return np.linspace(a_max / GRID, a_max, GRID)
    d = np.unique(p[p <= a_max])
    return d if d.size and d[-1] == a_max else np.append(d, a_max)


# --------------------------------------------------------------------------- individual scan (docs/deepscan.md, sections 4 and 6)


def individual_scan(pvalues, score="hc", preset=None, thresholds_mode="exact", a_max=0.5):
    """One record, ``pvalues`` of shape (M, 2). Returns ``(score, alpha, records, nodes)``."""
    p = np.asarray(pvalues, np.float64).reshape(-1, 2)
    fn = _score(score)
    pmax = p[:, 1]
    if preset == PRESET:
        below = pmax[pmax <= a_max]
        if below.size == 0:
            return 0.0, 0.0, np.array([0]), np.array([0])
        thr, counts = np.unique(below, return_counts=True)  # the stored values themselves
        k = np.cumsum(counts)
        sc = fn(k, k, thr)
        i = int(np.argmax(sc))  # first maximum
        return float(sc[i]), float(thr[i]), np.array([0]), np.flatnonzero(p[:, 0] <= thr[i])
    thr = thresholds(pmax, thresholds_mode, a_max)
    best, best_t = 0.0, None
    for t, a in enumerate(thr):
        k = int((pmax <= a).sum())
        s = float(fn(np.array([k]), np.array([k]), np.array([a]))[0])
        if s > best:
            best, best_t = s, t
    if best_t is None:
        z = np.zeros(0, np.int64)
        return 0.0, math.nan, z, z
    return best, float(thr[best_t]), np.array([0]), np.flatnonzero(pmax <= thr[best_t])


# --------------------------------------------------------------------------- group scan (docs/deepscan.md, sections 5 and 6)


def _ltss(p, thr, fn, over_nodes, compat):
    """Best subset of the free axis of ``p`` (the counted p-values of the fixed subset).

    ``over_nodes``: free elements are the columns (records fixed), else the rows.
    Returns ``(score, t, chosen)`` with ``chosen`` positions along the free axis.
    """
    elems = p.T if over_nodes else p
    e_n, given = elems.shape
    prio = np.zeros((e_n, thr.size))
    for e in range(e_n):  # one sort per element, counts at every threshold
        srt = np.sort(elems[e])
        prio[e] = np.searchsorted(srt, thr, side="right")
    order = np.argsort(-prio, axis=0, kind="stable")  # (E, T): priority order per threshold
    best, best_t, best_k = (-10000.0 if compat else 0.0), None, None
    n_v = np.cumsum(np.full(e_n, given, np.float64))
    for t, a in enumerate(thr):
        n_alpha = np.cumsum(prio[:, t][order][:, t])  # the E x T gather, then its column
        sc = fn(n_alpha, n_v, np.full(e_n, a))
        i = int(np.argmax(sc))
        if sc[i] > best:
            best, best_t, best_k = float(sc[i]), t, i + 1
    if best_t is None:
        return 0.0, None, np.zeros(0, np.int64)
    return best, best_t, np.sort(order[:best_k, best_t])


def _ascent(p, thr, fn, compat, records, nodes, over_nodes):
    best = (-math.inf, None, records, nodes)
    while True:
        if over_nodes:
            s, t, new = _ltss(p[records], thr, fn, True, compat)
            cand = (s, t, records, new)  # positions among all nodes
        else:
            s, t, new = _ltss(p[:, nodes], thr, fn, False, compat)
            cand = (s, t, new, nodes)  # positions among all records
        if not s > best[0]:
            return best
        best = cand
        if t is None:  # nothing scores: empty set
            return (s, None, None, None)
        records, nodes = cand[2], cand[3]
        over_nodes = not over_nodes


def group_scan(pvalues, score="hc", preset=None, thresholds_mode="exact", a_max=0.5, restarts=1, seed=0):
    """FGSS on ``pvalues`` (G, M, 2). Returns ``(score, alpha, records, nodes)``.

    Counts pmin on the grid to a_max 0.5 under the preset, pmax otherwise.
    """
    pv = np.asarray(pvalues, np.float64)
    fn = _score(score)
    compat = preset == PRESET
    if compat:
        p, mode, a_max = pv[..., 0], "grid", 0.5
    else:
        p, mode = pv[..., 1], thresholds_mode
    thr = thresholds(p, mode, a_max)
    g, m = p.shape
    all_r, all_n = np.arange(g), np.arange(m)
    rng = None
    winner = None
    for r in range(restarts):
        if r == 0:
            res = _ascent(p, thr, fn, compat, all_r, all_n, over_nodes=True)
        elif r == 1:
            res = _ascent(p, thr, fn, compat, all_r, all_n, over_nodes=False)
        else:
            if rng is None:
                rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            k = int(rng.integers(1, m + 1))
            start = np.sort(rng.choice(m, size=k, replace=False))
            res = _ascent(p, thr, fn, compat, all_r, start, over_nodes=False)
        if winner is None or res[0] > winner[0]:
            winner = res
    s, t, rec, nod = winner
    if t is None or (s <= 0 and not compat):
        z = np.zeros(0, np.int64)
        return 0.0, math.nan, z, z
    return s, float(thr[t]), np.sort(rec).astype(np.int64), np.sort(nod).astype(np.int64)
