"""Individual scan (one record) and group scan (FGSS with LTSS), docs/deepscan.md, sections 4-6.

The group scan works on integer threshold *levels* (see :mod:`deepscan.thresholds`):
an entry is counted at threshold t when ``level <= t``.

LTSS over nodes, given a record set R of size r. For node e the priority at
threshold t is its count ``c_e(t)`` in 0..r. The optimal subset at t is a prefix of
the nodes sorted by decreasing count, and the score is quasi-convex along a run of
equal counts, so only the ends of those runs are candidates: the sets
``{e : c_e(t) >= c}`` for c = r..0. Their sizes ``n_ge[t, c] = #{e : c_e(t) >= c}``
come from order statistics: ``c_e(t) >= c`` exactly when the c-th smallest level
of column e (over R) is <= t. One sort of the (M, r) level block, one bincount
and one cumsum give ``n_ge`` for all (t, c); ``N_alpha = c*n_ge[c] + sum_{c'>c} n_ge[c']``.
Membership never depends on the order among tied nodes.

LTSS over records, given a node set O: counts ``c_r(t)`` from one bincount,
records sorted by decreasing count per threshold (few records), candidates at
the ends of tie runs.

Among candidates the first maximum in (threshold-major, size-minor) order wins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._checks import as_pvalue_ranges
from .config import ScanConfig, as_scan_config
from .scores import apply_score
from .thresholds import distinct_at_most, levels_and_thresholds, threshold_levels, threshold_values

__all__ = ["ScanResult", "individual_scan", "group_scan", "scan_pvalues", "scan_node_major", "ltss_nodes", "ltss_records"]

_MAX_STEPS = 10_000
_MAX_BINS = 20_000_000  # histogram bins of one LTSS step (memory guard)


@dataclass(frozen=True, eq=False)
class ScanResult:
    """The most anomalous subset found.

    Attributes
    ----------
    score : float
        Its score (0.0 when nothing scores above 0).
    alpha : float
        The threshold alpha* where it was found (NaN for an empty result).
    records : ndarray of int64, sorted
        Chosen records (row positions in the scanned matrix).
    nodes : ndarray of int64, sorted
        Chosen nodes (column positions).
    """

    score: float
    alpha: float
    records: np.ndarray
    nodes: np.ndarray

    def __repr__(self) -> str:
        return (f"ScanResult(score={self.score:.6g}, alpha={self.alpha:.6g}, "
                f"records=<{self.records.size}>, nodes=<{self.nodes.size}>)")

    def same_as(self, other: "ScanResult") -> bool:
        """Equal score, alpha (NaN equal to NaN) and sets."""
        return (self.score == other.score and (self.alpha == other.alpha or (math.isnan(self.alpha) and math.isnan(other.alpha)))
                and np.array_equal(self.records, other.records) and np.array_equal(self.nodes, other.nodes))


def _empty() -> ScanResult:
    z = np.zeros(0, np.int64)
    return ScanResult(0.0, math.nan, z, z)


def _first_max(scores: np.ndarray) -> tuple[int, float]:
    flat = scores.ravel()
    i = int(np.argmax(flat))  # first maximum in row-major order
    return i, float(flat[i])


def _offset(levels: np.ndarray, width: int) -> np.ndarray:
    """Flat histogram index ``column * width + level`` of an (n, k) level block, raveled."""
    k = levels.shape[1]
    if k * width < np.iinfo(np.int16).max and levels.dtype == np.int16:
        out = levels + np.arange(0, k * width, width, dtype=np.int16)  # stay in int16: half the traffic
    else:
        out = levels.astype(np.intp)
        out += np.arange(0, k * width, width, dtype=np.intp)
    return out.ravel()


def ltss_nodes(levT: np.ndarray, rec: np.ndarray | None, thr: np.ndarray, fn, compat: bool = False):
    """Best node subset given records ``rec`` (None = all), over all thresholds.

    Parameters
    ----------
    levT : int array (n_nodes, n_records)
        Threshold levels, node-major.
    rec : int array or None
    thr : float array (T,)
    fn : score function
    compat : bool
        ibm-2025 rule: when every score is 0, return one node at the first threshold.

    Returns
    -------
    (score, t, nodes) with ``t`` the threshold index (None and empty nodes if nothing scores).
    """
    sub = levT if rec is None else levT.take(rec, axis=1)  # C order: rows sort fast
    m, r = sub.shape
    t_n = thr.size
    if r == 0 or m == 0:
        return 0.0, None, np.zeros(0, np.int64)
    # s[e, c-1] = c-th smallest level of node e over the records. Levels are integers, so any sort
    # gives the same values: int16 takes numpy's radix sort ("stable"), O(r) per row, where its
    # quicksort has a SIMD path only with AVX-512 (without it, 6x slower on 4096 x 300 levels)
    s = np.sort(sub, axis=1, kind="stable" if sub.dtype.itemsize <= 2 else None)
    hist = np.bincount(_offset(s, t_n + 1), minlength=r * (t_n + 1)).reshape(r, t_n + 1)
    n_ge = np.empty((t_n, r + 2), np.int64)  # n_ge[t, c] = #{e : c_e(t) >= c}, c = 0..r+1
    n_ge[:, 0] = m
    n_ge[:, r + 1] = 0
    n_ge[:, 1 : r + 1] = np.cumsum(hist[:, :t_n], axis=1).T
    cs = np.arange(r + 1)
    # N_alpha[t, c] = c*n_ge[t, c] + sum_{c' > c} n_ge[t, c']
    above = np.cumsum(n_ge[:, :0:-1], axis=1)[:, ::-1]  # above[:, c] = sum_{c' > c}
    n_alpha = cs * n_ge[:, : r + 1] + above
    size = n_ge[:, : r + 1]
    valid = size > n_ge[:, 1:]  # end of a tie run (some node has count exactly c)
    # order candidates by increasing size (c descending) so that argmax = first in (t, k) order
    sc = apply_score(fn, n_alpha[:, ::-1], size[:, ::-1] * r, thr[:, None])
    sc = np.where(valid[:, ::-1], sc, -np.inf)
    i, best = _first_max(sc)
    if best <= 0.0:
        if not compat:
            return 0.0, None, np.zeros(0, np.int64)
        counts0 = (sub <= 0).sum(axis=1)  # priorities at the first threshold
        return 0.0, 0, np.array([int(np.argmax(counts0))], np.int64)
    t, j = divmod(i, r + 1)
    c = r - j
    if c == 0:
        return best, t, np.arange(m, dtype=np.int64)
    return best, t, np.flatnonzero(s[:, c - 1] <= t).astype(np.int64)


def ltss_records(levT: np.ndarray, nodes: np.ndarray | None, thr: np.ndarray, fn, compat: bool = False):
    """Best record subset given nodes (None = all); same conventions as :func:`ltss_nodes`.

    ``levT`` is node-major (n_nodes, n_records), as in :func:`ltss_nodes`.
    """
    sub = levT if nodes is None else levT[nodes]
    o, g = sub.shape
    t_n = thr.size
    if o == 0 or g == 0:
        return 0.0, None, np.zeros(0, np.int64)
    hist = np.bincount(_offset(sub, t_n + 1), minlength=g * (t_n + 1)).reshape(g, t_n + 1)
    counts = np.cumsum(hist[:, :t_n], axis=1)  # counts[r, t] = c_r(t)
    desc = -np.sort(-counts.T, axis=1)  # (T, g): priorities sorted decreasingly per threshold
    n_alpha = np.cumsum(desc, axis=1)
    k = np.arange(1, g + 1)
    valid = np.ones_like(desc, dtype=bool)
    valid[:, :-1] = desc[:, :-1] > desc[:, 1:]  # end of a tie run
    sc = apply_score(fn, n_alpha, k * o, thr[:, None])
    sc = np.where(valid, sc, -np.inf)
    i, best = _first_max(sc)
    if best <= 0.0:
        if not compat:
            return 0.0, None, np.zeros(0, np.int64)
        return 0.0, 0, np.array([int(np.argmax(counts[:, 0]))], np.int64)
    t, j = divmod(i, g)
    return best, t, np.flatnonzero(counts[:, t] >= desc[t, j]).astype(np.int64)


def _step(memo: dict, side: str, fixed, levT, thr, fn, compat):
    """One LTSS step, remembered: restarts often reach a set an earlier restart already scanned.

    A step is a deterministic function of the fixed set, so reusing its result changes nothing.
    """
    key = (side, None if fixed is None else fixed.tobytes())
    if key not in memo:
        ltss = ltss_nodes if side == "nodes" else ltss_records
        memo[key] = ltss(levT, fixed, thr, fn, compat)
    return memo[key]


def _ascent(levT, thr, fn, compat, records=None, nodes=None, start="nodes", memo=None):
    """Alternate LTSS steps from a start set until the score stops strictly increasing."""
    memo = {} if memo is None else memo
    best = (-math.inf, None, records, nodes)
    side = start
    for _ in range(_MAX_STEPS):
        if side == "nodes":
            s, t, new = _step(memo, "nodes", records, levT, thr, fn, compat)
            cand = (s, t, records, new)
        else:
            s, t, new = _step(memo, "records", nodes, levT, thr, fn, compat)
            cand = (s, t, new, nodes)
        if not s > best[0]:
            break
        best = cand
        _, _, records, nodes = cand
        if t is None:  # nothing scores: an empty set, the other side has nothing to add
            break
        side = "records" if side == "nodes" else "nodes"
    return best


def _scan_levels(levT: np.ndarray, thr: np.ndarray, config: ScanConfig, seed) -> ScanResult:
    """FGSS with restarts on a node-major level matrix (n_nodes, n_records)."""
    m, g = levT.shape
    if thr.size * (g + 1) > _MAX_BINS:
        raise ValueError(
            f"{thr.size} distinct thresholds x {g} records is too many for exact thresholds "
            "(are these p-values from deepscan.pvalue_ranges?); use ScanConfig(thresholds='grid')"
        )
    fn = config.score_function
    compat = config.preset is not None
    rng = None
    winner = None
    memo: dict = {}  # LTSS steps shared by the restarts
    for restart in range(config.restarts):
        if restart == 0:
            res = _ascent(levT, thr, fn, compat, records=None, start="nodes", memo=memo)
        elif restart == 1:
            res = _ascent(levT, thr, fn, compat, nodes=None, start="records", memo=memo)
        else:
            if rng is None:
                rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            k = int(rng.integers(1, m + 1))
            start = np.sort(rng.choice(m, size=k, replace=False)).astype(np.intp)
            res = _ascent(levT, thr, fn, compat, nodes=start, start="records", memo=memo)
        if winner is None or res[0] > winner[0]:
            winner = res
    score, t, records, nodes = winner
    if t is None or (score <= 0.0 and not compat):
        return _empty()
    records = np.arange(g, dtype=np.int64) if records is None else np.asarray(records, np.int64)
    nodes = np.arange(m, dtype=np.int64) if nodes is None else np.asarray(nodes, np.int64)
    return ScanResult(float(score), float(thr[t]), records, nodes)


def scan_pvalues(p: np.ndarray, config: ScanConfig | None = None, *, seed=0) -> ScanResult:
    """Group scan of the counted p-values (n_records, n_nodes), e.g. ``pvalues[..., 1]``; not validated.

    :func:`group_scan` validates the ranges and picks the column (pmax, or pmin under ibm-2025).
    """
    config = as_scan_config(config)
    lev, thr = levels_and_thresholds(p, config.thresholds, config.a_max)
    return _scan_levels(np.ascontiguousarray(lev.T), thr, config, seed)


def scan_node_major(p_t: np.ndarray, config: ScanConfig | None = None, *, seed=0) -> ScanResult:
    """Group scan of counted p-values given node-major, ``(n_nodes, n_records)`` C-contiguous.

    The experiment's path: no transposition at all.
    """
    config = as_scan_config(config)
    lev_t, thr = levels_and_thresholds(p_t, config.thresholds, config.a_max)
    return _scan_levels(lev_t, thr, config, seed)


def group_scan(pvalues, config: ScanConfig | str | dict | None = None, *, seed: int | np.random.Generator | None = 0) -> ScanResult:
    """Most anomalous subset of records x nodes: FGSS ascent with exact LTSS steps.

    Parameters
    ----------
    pvalues : float array (n_records, n_nodes, 2)
        p-value ranges from :func:`deepscan.pvalue_ranges`.
    config : ScanConfig, preset name or dict, optional
        Default ``ScanConfig()``: HC, pmax counting, exact thresholds, a_max 0.5, one restart.
    seed : int or numpy Generator
        Used only by restarts >= 2 (random starting node sets).

    Returns
    -------
    ScanResult
        Score 0 and empty sets when nothing scores above 0 (the ibm-2025 preset
        returns a one-element set at the first threshold instead, as the published code did).
    """
    config = as_scan_config(config)
    p = as_pvalue_ranges(pvalues)
    return scan_pvalues(p[..., 0 if config.count_with == "pmin" else 1], config, seed=seed)


def individual_scan(pvalues, config: ScanConfig | str | dict | None = None) -> ScanResult:
    """Most anomalous node subset of one record (docs/deepscan.md, sections 4 and 6).

    For each threshold the optimum is "all nodes with pmax <= alpha"; the first
    threshold with the maximal score wins. O(M) after the thresholds.

    Parameters
    ----------
    pvalues : float array (n_nodes, 2) or (1, n_nodes, 2)
    config : as in :func:`group_scan` (``restarts`` is not used)

    Returns
    -------
    ScanResult
        ``records`` is ``[0]`` (or empty when nothing scores above 0). Under the
        ibm-2025 preset, as published: the thresholds are every distinct stored pmax
        <= a_max (not the grid), alpha* is that stored value, the nodes returned are
        those with pmin <= alpha*, and when no pmax is <= a_max the result is score 0,
        alpha 0, node [0].
    """
    config = as_scan_config(config)
    p = as_pvalue_ranges(pvalues)
    if p.shape[0] != 1:
        raise ValueError(f"individual_scan scans one record, got {p.shape[0]}; use group_scan for several")
    pmax = p[0, :, 1]
    compat = config.preset is not None
    if compat:
        thr = distinct_at_most(pmax, config.a_max)  # the stored values themselves, no a_max appended
        if thr.size == 0:
            zero = np.zeros(1, np.int64)
            return ScanResult(0.0, 0.0, zero, zero.copy())
    else:
        thr = threshold_values(pmax, config.thresholds, config.a_max)
    lev = threshold_levels(pmax, thr)
    k = np.cumsum(np.bincount(lev, minlength=thr.size + 1)[: thr.size])  # nodes with pmax <= alpha_t
    sc = apply_score(config.score_function, k, k, thr)
    t, best = _first_max(sc)
    if not compat and best <= 0.0:
        return _empty()
    chosen = p[0, :, 0] if compat else pmax
    nodes = np.flatnonzero(chosen <= thr[t]).astype(np.int64)
    return ScanResult(float(best), float(thr[t]), np.zeros(1, np.int64), nodes)
