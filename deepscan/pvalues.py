"""Empirical p-value ranges of records against a background (spec section 1).

For node j and value x: ``L = #{b < x}``, ``R = #{b <= x}`` over the background
column. The counts come from one sort of the background (per node) and a
branchless binary search vectorised over all records and nodes at once,
processed in blocks of nodes so that the working set stays in cache.
"""

from __future__ import annotations

import numpy as np

from ._checks import as_activations, check_same_width
from ._conventions import TAILS, canonical_preset, canonical_tail

__all__ = ["TAILS", "pvalue_ranges", "rank_counts", "ranges_from_counts", "counted_pvalues_node_major", "canonical_tail"]

_BLOCK_ENTRIES = 1 << 16  # entries (records x nodes) per block: the work arrays stay in L2


def _search(flat: np.ndarray, start: np.ndarray, x: np.ndarray, pad: int, inclusive: bool) -> np.ndarray:
    """Count background values ``< x`` (``<= x`` if inclusive) with a branchless binary search.

    ``flat`` holds sorted background rows of length ``pad`` (a power of two), padded
    with +inf; ``start`` (intp, broadcastable to ``x``) gives each query's row start
    in ``flat``. Each halving step is one gather, one comparison and one add over
    all queries. Gathers use intp indices with ``mode='clip'`` (no bounds checks:
    every index is in range by construction), several times faster than int32.
    """
    pos = np.array(np.broadcast_to(start, x.shape), dtype=np.intp)
    cmp = np.less_equal if inclusive else np.less
    v = np.empty(x.shape, flat.dtype)
    hit = np.empty(x.shape, bool)
    inc = np.empty(x.shape, np.intp)
    step = pad // 2
    while step >= 1:
        flat[step - 1 :].take(pos, out=v, mode="clip")  # offset view: no index arithmetic
        cmp(v, x, out=hit)
        np.multiply(hit, step, out=inc)
        pos += inc
        step //= 2
    pos -= start
    return pos


def _prepare(background, records):
    bg = as_activations(background, "background")
    x = as_activations(records, "records")
    check_same_width(bg, x)
    dtype = np.result_type(bg.dtype, x.dtype)  # compare in a common exact type
    return bg.astype(dtype, copy=False), x.astype(dtype, copy=False)


_BUCKETS_PER_VALUE = 2  # K = 2N buckets per node: few hold more than _WINDOW background values
_WINDOW_PROBES = 3
_WINDOW = (1 << _WINDOW_PROBES) - 1  # background values a bucket may hold for the short search


def _count_blocks(bg: np.ndarray, x: np.ndarray, node_major: bool = False):
    """Yield ``(start, stop, L, R)`` per block of nodes; L, R intp.

    Blocks are ``(n_records, block)`` record-major slices of ``x`` or, with
    ``node_major``, ``(block, n_records)``.

    Each node's background is sorted once and cut into K = 2N buckets by a monotone
    map ``bucket(v) = clip(v*scale - offset, 0, K)`` (any monotone map works: a value
    in a later bucket is always larger). A table gives the first background value of
    each bucket, so a record value needs one table lookup and a 3-probe search over
    the at most 7 background values of its bucket; buckets holding more (crowded)
    fall back to the full binary search, and so do exact ties (only there R > L).
    """
    n, m = bg.shape
    g = x.shape[0]
    dt = bg.dtype
    k_n = _BUCKETS_PER_VALUE * n
    width = n + _WINDOW + 1  # sorted row, then +inf: every probe stays in its row
    pad = 1 << int(width - 1).bit_length()  # full-search rows: a power of two >= width
    table = np.full((m, pad), np.inf, dtype=dt)
    table[:, :n] = bg.T
    table[:, :n].sort(axis=1)  # the background, sorted once per node
    flat = table.ravel()
    lo = table[:, 0].astype(np.float64)
    span = table[:, n - 1] - lo
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        scale = np.where((span > 0) & np.isfinite(span) & (np.abs(lo) < 1e300), k_n / span, 0.0)
    starts = np.arange(m, dtype=np.intp) * pad
    block = max(1, _BLOCK_ENTRIES // max(g, n))
    for s in range(0, m, block):
        e = min(s + block, m)
        b = e - s
        # bucket -> flat index of its first background value (-1: crowded), for this block
        sc = scale[s:e].astype(dt)
        off = (lo[s:e] * scale[s:e] - np.arange(b) * (k_n + 1)).astype(dt)  # row offset folded in
        qlo = (np.arange(b) * (k_n + 1)).astype(dt)
        qhi = qlo + k_n

        def bucket(v, axis_nodes):
            shape = (-1, 1) if axis_nodes == 0 else (1, -1)
            t = v * sc.reshape(shape)
            t -= off.reshape(shape)
            np.clip(t, qlo.reshape(shape), qhi.reshape(shape), out=t)
            return t.astype(np.intp)

        qb = bucket(table[s:e, :n], 0)
        cnt = np.bincount(qb.ravel(), minlength=b * (k_n + 1))
        first = np.cumsum(cnt)
        first -= cnt  # background values in earlier buckets of the block
        first = first.reshape(b, k_n + 1)
        first += (starts[s:e] - np.arange(b) * n)[:, None]
        first = first.ravel()
        first[cnt > _WINDOW] = -1
        if node_major:
            xb = np.ascontiguousarray(x[:, s:e].T)  # (block, g)
            st = starts[s:e, None]
            q = bucket(xb, 0)
        else:
            xb = np.ascontiguousarray(x[:, s:e])  # (g, block): row pieces, no transposition
            st = starts[None, s:e]
            q = bucket(xb, 1)
        pos = first.take(q, mode="clip")
        v = np.empty(xb.shape, dt)
        hit = np.empty(xb.shape, bool)
        inc = np.empty(xb.shape, np.intp)
        step = 1 << (_WINDOW_PROBES - 1)
        while step >= 1:  # branchless search over the bucket's (at most _WINDOW) values
            flat[step - 1 :].take(pos, out=v, mode="clip")
            np.less(v, xb, out=hit)
            np.multiply(hit, step, out=inc)
            pos += inc
            step //= 2
        crowded = first.take(q, mode="clip") < 0
        if crowded.any():
            stc = np.broadcast_to(st, xb.shape)[crowded]
            pos[crowded] = stc + _search(flat, stc, xb[crowded], pad, inclusive=False)
        tie = flat.take(pos, mode="clip") == xb  # first background value >= x equals x: R > L
        pos -= st
        hi = pos.copy()
        if tie.any():
            hi[tie] = _search(flat, np.broadcast_to(st, xb.shape)[tie], xb[tie], pad, inclusive=True)
        yield s, e, pos, hi


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
    for s, e, lo, hi in _count_blocks(bg, x):
        L[:, s:e] = lo
        R[:, s:e] = hi
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
    lo = np.asarray(lo, np.intp)
    hi = np.asarray(hi, np.intp)
    return tmin.take(lo if imin == "L" else hi, mode="clip"), tmax.take(lo if imax == "L" else hi, mode="clip")


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
    for s, e, lo, hi in _count_blocks(bg, x, node_major=True):
        out[s:e] = _ranges_block(lo, hi, bg.shape[0], tail, preset)[column]
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
    for s, e, lo, hi in _count_blocks(bg, x):
        pmin, pmax = _ranges_block(lo, hi, n, tail, preset)
        out[:, s:e, 0] = pmin
        out[:, s:e, 1] = pmax
    return out
