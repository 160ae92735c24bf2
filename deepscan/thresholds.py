"""Thresholds alpha_t and each entry's threshold level (docs/deepscan.md, section 3).

An entry with p-value ``p`` is counted at threshold ``alpha_t`` when ``p <= alpha_t``.
Its *level* is the first t where that holds (``T`` if none), so "counted at t"
is ``level <= t`` and all thresholds are handled with small-integer arithmetic.

Both helpers bucket values by ``floor(p * 2**14)``: multiplying by a power of two
and truncating is exact and monotone, so comparisons between buckets are exact and
only values sharing a bucket need a direct float comparison. This replaces sorts
and ``searchsorted`` over all entries (the slow part on large matrices).
"""

from __future__ import annotations

import numpy as np

from .config import GRID_SIZE

__all__ = ["threshold_values", "threshold_levels", "distinct_at_most", "levels_and_thresholds"]

_K = 1 << 14  # buckets over [0, 1]


def distinct_at_most(values: np.ndarray, a_max: float) -> np.ndarray:
    """Sorted distinct values ``<= a_max`` of a float array in [0, 1] (exact, no full sort)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[v <= a_max]
    if v.size == 0:
        return v
    b = (v * _K).astype(np.intp)
    rep = np.full(_K + 1, -1.0)
    rep[b] = v  # one representative per occupied bucket (whichever write wins)
    odd = v != rep[b]  # values that differ from their bucket's representative (rare)
    out = rep[rep >= 0.0]  # ascending: buckets are ordered, one value each
    if odd.any():
        out = np.unique(np.concatenate([out, v[odd]]))
    return out


def threshold_values(p: np.ndarray, mode: str, a_max: float) -> np.ndarray:
    """The thresholds for a p-value matrix.

    Parameters
    ----------
    p : ndarray, any shape
        The p-values counted (pmax by default).
    mode : {'exact', 'grid'}
        'exact': every distinct value of ``p`` that is <= a_max, plus a_max.
        'grid': ``linspace(a_max/50, a_max, 50)``.
    a_max : float

    Returns
    -------
    ndarray, float64, shape (T,), ascending
    """
    if mode == "grid":
        return np.linspace(a_max / GRID_SIZE, a_max, GRID_SIZE)
    if mode != "exact":
        raise ValueError(f"unknown thresholds {mode!r}; use 'exact' or 'grid'")
    d = distinct_at_most(p, a_max)
    if d.size and d[-1] == a_max:
        return d
    return np.append(d, a_max)


def threshold_levels(p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """First threshold index t with ``p <= thresholds[t]`` (``T`` where none), same shape as ``p``.

    ``p`` must lie in [0, 1]. Returns int16 when T < 32767, else int32.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    t = thr.size
    p = np.ascontiguousarray(p, dtype=np.float64)
    dtype = np.int16 if t < np.iinfo(np.int16).max else np.int32
    if p.size and not (p.min() >= 0.0 and p.max() <= 1.0):  # NaN fails both
        raise ValueError("p-values must lie in [0, 1]")
    tb = np.minimum((thr * _K).astype(np.intp), _K)
    per_bucket = np.bincount(tb, minlength=_K + 1)
    below = np.zeros(_K + 2, dtype)
    np.cumsum(per_bucket, out=below[1:])  # below[b] = thresholds in buckets < b
    inside = np.full(_K + 1, np.inf)
    inside[tb] = thr  # a threshold in the bucket (the only one, except in crowded buckets)
    pb = (p * _K).astype(np.intp)
    lev = below.take(pb)
    lev += inside.take(pb) < p  # the bucket's threshold lies below p: p is past it
    crowded = per_bucket > 1
    if crowded.any():  # thresholds closer than 2**-14: compare those entries directly
        hit = crowded.take(pb)
        lev[hit] = np.searchsorted(thr, p[hit], side="left")
    return lev


def levels_and_thresholds(p: np.ndarray, mode: str, a_max: float) -> tuple[np.ndarray, np.ndarray]:
    """``(threshold_levels(p, thr), thr)`` with ``thr = threshold_values(p, mode, a_max)``, in one pass.

    For 'exact' thresholds the level of a value is its rank among the distinct
    values <= a_max; when every occupied bucket holds one distinct value (always,
    unless values differ by less than 2**-14), that rank is a lookup by bucket.
    Values above a_max go to a second bank of buckets, ranked "never counted".
    """
    p = np.ascontiguousarray(p, dtype=np.float64)  # one cheap copy beats strided arithmetic
    if mode != "exact" or p.size == 0:
        thr = threshold_values(p, mode, a_max)
        return threshold_levels(p, thr), thr
    if not (p.min() >= 0.0 and p.max() <= 1.0):  # NaN fails both
        raise ValueError("p-values must lie in [0, 1]")
    pb = (p * _K).astype(np.intp)
    pb += (p > a_max) * (_K + 1)  # above a_max: second bank of buckets
    rep = np.full(2 * _K + 2, -1.0)
    rep[pb] = p  # one representative per occupied bucket (whichever write wins)
    if (rep.take(pb) != p).any():  # two distinct values share a bucket: the general path
        thr = threshold_values(p, mode, a_max)
        return threshold_levels(p, thr), thr
    present = rep[: _K + 1] >= 0.0
    thr = rep[: _K + 1][present]  # ascending, one per bucket
    if not (thr.size and thr[-1] == a_max):
        thr = np.append(thr, a_max)
    dtype = np.int16 if thr.size < np.iinfo(np.int16).max else np.int32
    rank = np.full(2 * _K + 2, thr.size, dtype)  # above a_max: never counted
    rank[: _K + 1] = np.cumsum(present) - 1
    return rank.take(pb), thr
