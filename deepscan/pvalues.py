"""Empirical p-value ranges of records against a background (docs/deepscan.md, section 1).

For node j and value x: ``L = #{b < x}``, ``R = #{b <= x}`` over the background
column. The counts come from one sort of the background (per node) and a
branchless binary search vectorised over all records and nodes at once,
processed in blocks of nodes so that the working set stays in cache.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._checks import as_activations, check_same_width
from ._conventions import TAILS, canonical_preset, canonical_tail

__all__ = ["TAILS", "pvalue_ranges", "rank_counts", "ranges_from_counts", "counted_pvalues_node_major", "canonical_tail"]

_BLOCK = 256  # nodes per block: (block, n_records) work arrays stay in L2
# Blocks are independent and numpy's gathers and comparisons release the GIL, so blocks are
# counted in threads (at most this many; the results do not depend on it).
MAX_THREADS = min(4, os.cpu_count() or 1)


def _search(flat: np.ndarray, rows: np.ndarray, x: np.ndarray, width: int, inclusive: bool) -> np.ndarray:
    """Count background values ``< x`` (``<= x`` if inclusive) with a branchless binary search.

    ``flat`` holds sorted background rows of length ``width + 1`` (a power of two),
    padded with +inf; ``rows`` (intp) gives each query's row start in ``flat``.
    Each halving step is one gather, one comparison and one add over all queries.
    """
    pos = rows.copy()
    cmp = np.less_equal if inclusive else np.less
    v = np.empty(x.shape, flat.dtype)
    hit = np.empty(x.shape, bool)
    inc = np.empty(x.shape, pos.dtype)
    step = (width + 1) // 2
    while step >= 1:
        # intp indices and mode="clip" (every index is in range): no conversion pass, no bounds check
        np.take(flat[step - 1 :], pos, out=v, mode="clip")  # offset view: no index arithmetic
        cmp(v, x, out=hit)
        np.multiply(hit, step, out=inc)
        pos += inc
        step //= 2
    pos -= rows
    return pos


def _prepare(background, records):
    bg = as_activations(background, "background")
    x = as_activations(records, "records")
    check_same_width(bg, x)
    dtype = np.result_type(bg.dtype, x.dtype)  # compare in a common exact type
    return bg.astype(dtype, copy=False), x.astype(dtype, copy=False)


def _for_blocks(bg: np.ndarray, x: np.ndarray, fn) -> None:
    """Call ``fn(start, stop, L, R)`` for each block of nodes (in threads; blocks are disjoint).

    L and R are int32, node-major ``(block, n_records)``.
    """
    n, m = bg.shape
    g = x.shape[0]
    pad = 1 << int(n).bit_length()  # power of two > n
    table = np.full((m, pad), np.inf, dtype=bg.dtype)
    table[:, :n] = bg.T
    table[:, :n].sort(axis=1)  # the background, sorted once per node
    flat = table.ravel()

    def work(s: int) -> None:
        e = min(s + _BLOCK, m)
        xb = np.ascontiguousarray(x[:, s:e].T)  # (block, g)
        rows = np.repeat(np.arange(s, e, dtype=np.intp) * pad, g).reshape(e - s, g)
        lo = _search(flat, rows, xb, pad - 1, inclusive=False)
        tie = flat.take(rows + lo, mode="clip") == xb  # a background value equals x: only there R > L
        hi = lo  # no tie (the usual case for continuous activations): R == L, no copy
        if tie.any():
            hi = lo.copy()
            hi[tie] = _search(flat, rows[tie], xb[tie], pad - 1, inclusive=True)
        fn(s, e, lo, hi)

    starts = range(0, m, _BLOCK)
    threads = min(MAX_THREADS, len(starts))
    if threads <= 1:
        for s in starts:
            work(s)
        return
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(work, starts):  # re-raises a worker's exception here
            pass


def rank_counts(background, records) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``L = #{b < x}`` and ``R = #{b <= x}`` per record and node.

    Parameters
    ----------
    background : array (n_background, n_nodes)
    records : array (n_records, n_nodes)

    Returns
    -------
    L, R : ndarray of int32, shape (n_records, n_nodes)
    """
    bg, x = _prepare(background, records)
    L = np.empty(x.shape, np.int32)
    R = np.empty(x.shape, np.int32)
    def put(s, e, lo, hi):
        L[:, s:e] = lo.T
        R[:, s:e] = hi.T

    _for_blocks(bg, x, put)
    return L, R


def _tables(n: int, tail: str, preset: str | None):
    """Value tables indexed by a count: ``(pmin_table, pmin_index, pmax_table, pmax_index)``.

    Each index says which count ('L' or 'R') the table is looked up with; None for two-tailed.
    """
    k = np.arange(n + 1, dtype=np.float64)
    up_min = (n - k) / (n + 1)  # by R
    up_max = (n - k + 1) / (n + 1)  # by L
    if preset is not None:
        # published order of operations: upper tail first, then 1 - (...) (differs in the last bit)
        return 1.0 - up_max, "L", 1.0 - up_min, "R"
    if tail == "upper":
        return up_min, "R", up_max, "L"
    if tail == "lower":
        return k / (n + 1), "L", (k + 1) / (n + 1), "R"
    return None


def _two_tailed(pmin: np.ndarray, pmax: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo_side = pmax < 0.5
    hi_side = ~lo_side & (pmin > 0.5)  # the rest straddles 0.5
    new_min = np.where(lo_side, 2 * pmin, np.where(hi_side, 2 * (1 - pmax), 2 * np.minimum(pmin, 1 - pmax)))
    new_max = np.where(lo_side, 2 * pmax, np.where(hi_side, 2 * (1 - pmin), 1.0))
    return new_min, new_max


def _ranges_block(lo: np.ndarray, hi: np.ndarray, n: int, tail: str, preset: str | None):
    """(pmin, pmax) arrays for counts of any shape."""
    tables = _tables(n, tail, preset)
    if tables is None:
        k = np.arange(n + 1, dtype=np.float64)
        return _two_tailed(((n - k) / (n + 1)).take(hi), ((n - k + 1) / (n + 1)).take(lo))
    tmin, imin, tmax, imax = tables
    return tmin.take(lo if imin == "L" else hi), tmax.take(lo if imax == "L" else hi)


def ranges_from_counts(L: np.ndarray, R: np.ndarray, n_background: int, tail: str = "upper", *, preset: str | None = None) -> np.ndarray:
    """p-value ranges (..., 2) float64 from the counts of :func:`rank_counts`.

    Every value is a function of the counts, looked up in a table of the formula
    evaluated at 0..N (identical bits to the formula applied entry by entry).
    """
    tail = canonical_tail(tail)
    if preset is not None and tail != "lower":
        raise ValueError(f"preset {preset!r} uses the lower tail, got tail={tail!r}")
    out = np.empty(np.shape(L) + (2,), np.float64)
    out[..., 0], out[..., 1] = _ranges_block(np.asarray(L), np.asarray(R), int(n_background), tail, preset)
    return out


def counted_pvalues_node_major(background, records, tail: str, *, preset: str | None = None, column: int = 1) -> np.ndarray:
    """One end of the p-value ranges (``column`` 0 = pmin, 1 = pmax), node-major ``(n_nodes, n_records)``.

    What the group scan counts, in the layout it scans, without any transposition.
    """
    bg, x = _prepare(background, records)
    out = np.empty((x.shape[1], x.shape[0]), np.float64)
    def put(s, e, lo, hi):
        out[s:e] = _ranges_block(lo, hi, bg.shape[0], tail, preset)[column]

    _for_blocks(bg, x, put)
    return out


def pvalue_ranges(background, records, tail: str | None = None, *, preset: str | None = None) -> np.ndarray:
    """Empirical p-value ranges of each record's activations against the background.

    Parameters
    ----------
    background : array (n_background, n_nodes)
        Activations under H0 (e.g. the negative statements of a persona).
    records : array (n_records, n_nodes)
        Activations to evaluate.
    tail : {'upper', 'lower', 'two'}, optional
        Which activations are unusual: large (upper, the default), small (lower)
        or both (two-tailed). The ``ibm-2025`` preset implies 'lower'.
    preset : {None, 'ibm-2025'}
        'ibm-2025' computes the lower tail as ``1 - upper`` in float64, exactly as the
        published code did (it differs in the last bit from ``L/(N+1)``).

    Returns
    -------
    ndarray, float64, shape (n_records, n_nodes, 2)
        ``[..., 0] = pmin``, ``[..., 1] = pmax``.

    Raises
    ------
    ValueError
        On NaN/inf values, empty arrays, a node-count mismatch, an unknown tail or preset.
    """
    preset = canonical_preset(preset)
    if tail is None:
        tail = "lower" if preset is not None else "upper"
    tail = canonical_tail(tail)
    if preset is not None and tail != "lower":
        raise ValueError(f"preset {preset!r} fixes tail='lower', got tail={tail!r}; leave tail unset")
    bg, x = _prepare(background, records)
    n = bg.shape[0]
    out = np.empty(x.shape + (2,), np.float64)
    def put(s, e, lo, hi):
        pmin, pmax = _ranges_block(lo, hi, n, tail, preset)
        out[:, s:e, 0] = pmin.T
        out[:, s:e, 1] = pmax.T

    _for_blocks(bg, x, put)
    return out
