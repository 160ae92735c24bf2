"""Compiled counting kernels for :mod:`deepscan.pvalues` (needs numba; loaded by :mod:`deepscan._compiled`).

Three kernels over one block of nodes whose background rows are sorted and padded with
+inf to a power of two ``pad``:

- :func:`block_counts`: ``L = #{b < x}`` and ``R = #{b <= x}`` (int32);
- :func:`block_pairs`: the ``[pmin, pmax]`` pairs of ``pvalue_ranges``;
- :func:`block_column`: one end of the range, node-major (what the group scan counts).

Every comparison is made in the input's own precision, so the counts are exact
without the float32 pass and recount of the numpy path; p-values come from the same
tables and the same float64 operations, so both paths give identical bits.
"""

from __future__ import annotations

import numba

__all__ = ["block_counts", "block_pairs", "block_column", "UPPER", "LOWER", "TWO", "SUB"]

# How a pair is made from the two tables ``ta, tb = tables`` (docs/deepscan.md, section 1):
UPPER = 0  # pmin = ta[R], pmax = tb[L]
LOWER = 1  # pmin = ta[L], pmax = tb[R] (the lower tail and the ibm-2025 preset)
TWO = 2  # upper-tail pmin = ta[R], pmax = tb[L], then folded at 0.5
#: Nodes searched together for every record: their sorted rows (SUB x pad values) stay near L1.
SUB = 32

# cache=True: compiled code is kept on disk, so only the first process pays the compile time;
# no fastmath: the float64 operations must round exactly as numpy's.
_jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@_jit
def _row_counts(flat, pad, x, r, s, e, row0, lo, hi):
    """``lo[j], hi[j]`` = L, R of record ``x[r, s + j]`` in sorted row ``row0 + j`` of ``flat``.

    A branchless binary search per entry, the halving steps outermost so that the
    inner loop over nodes has independent iterations (the CPU overlaps them).
    """
    b = e - s
    for j in range(b):
        lo[j] = (row0 + j) * pad
    step = pad >> 1
    while step > 0:
        for j in range(b):
            p = lo[j]
            lo[j] = p + step * (flat[p + step - 1] < x[r, s + j])
        step >>= 1
    for j in range(b):
        p = lo[j]
        v = x[r, s + j]
        start = (row0 + j) * pad
        if flat[p] == v:  # ties (rare for continuous data): a second search with <=
            q = start
            st = pad >> 1
            while st > 0:
                q += st * (flat[q + st - 1] <= v)
                st >>= 1
            hi[j] = q - start
        else:
            hi[j] = p - start
        lo[j] = p - start


@_jit
def _pair(L, R, tables, mode):
    ta, tb = tables[0], tables[1]
    if mode == UPPER:
        return ta[R], tb[L]
    if mode == LOWER:
        return ta[L], tb[R]
    pmin, pmax = ta[R], tb[L]  # folded as in pvalues' two-tailed formula, operation for operation
    if pmax < 0.5:
        return 2 * pmin, 2 * pmax
    if pmin > 0.5:
        return 2 * (1 - pmax), 2 * (1 - pmin)
    return 2 * min(pmin, 1 - pmax), 1.0


@_jit
def block_counts(flat, pad, x, s, e, L, R, scratch):
    """Counts of nodes ``s:e`` of every record into ``L[:, s:e]``, ``R[:, s:e]`` (int32, (G, M)).

    ``scratch`` is int64 (2, >= SUB): the per-node counts of one record.
    """
    lo, hi = scratch[0], scratch[1]
    for s0 in range(s, e, SUB):
        e0 = min(s0 + SUB, e)
        for r in range(x.shape[0]):
            _row_counts(flat, pad, x, r, s0, e0, s0 - s, lo, hi)
            for j in range(e0 - s0):
                L[r, s0 + j] = lo[j]
                R[r, s0 + j] = hi[j]


@_jit
def block_pairs(flat, pad, x, s, e, tables, mode, out, scratch):
    """``out[:, s:e, 0] = pmin``, ``out[:, s:e, 1] = pmax`` (out float64 (G, M, 2)).

    ``tables`` float64 (2, n + 1): the values by count that ``mode`` combines.
    """
    lo, hi = scratch[0], scratch[1]
    for s0 in range(s, e, SUB):
        e0 = min(s0 + SUB, e)
        for r in range(x.shape[0]):
            _row_counts(flat, pad, x, r, s0, e0, s0 - s, lo, hi)
            for j in range(e0 - s0):
                a, b = _pair(lo[j], hi[j], tables, mode)
                out[r, s0 + j, 0] = a
                out[r, s0 + j, 1] = b


@_jit
def block_column(flat, pad, x, s, e, tables, mode, column, out, scratch):
    """``out[s:e, :]`` = end ``column`` (0 pmin, 1 pmax) of the ranges, node-major (out float64 (M, G))."""
    lo, hi = scratch[0], scratch[1]
    for s0 in range(s, e, SUB):
        e0 = min(s0 + SUB, e)
        for r in range(x.shape[0]):
            _row_counts(flat, pad, x, r, s0, e0, s0 - s, lo, hi)
            for j in range(e0 - s0):
                a, b = _pair(lo[j], hi[j], tables, mode)
                out[s0 + j, r] = a if column == 0 else b
