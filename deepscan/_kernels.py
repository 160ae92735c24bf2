"""Compiled counting kernels for :mod:`deepscan.pvalues` (needs numba; loaded by :mod:`deepscan._compiled`).

Three kernels over one block of nodes whose background rows are sorted and padded with
+inf to a power of two ``pad``:

- :func:`block_counts`: ``L = #{b < x}`` and ``R = #{b <= x}`` (int32);
- :func:`block_pairs`: the ``[pmin, pmax]`` pairs of ``pvalue_ranges``;
- :func:`block_column`: one end of the range, node-major (what the group scan counts).

Each node is searched for all records at once (node-major), so its sorted row stays in
L1 while every record is counted in it:

1. the first ``COUNTED`` halving steps are one count per record of the ``2**COUNTED - 1``
   pivots (every ``pad / 2**COUNTED``-th value) below it: a pivot is one value for all
   records, so this is a compare-and-add over a contiguous array, which the compiler
   turns into SIMD instructions;
2. the remaining steps are a branchless binary search in the pivot's bucket, one step
   for all records before the next, so the records' searches are independent and the
   CPU overlaps their loads.

Every comparison is made in the input's own precision, so the counts are exact
without the float32 pass and recount of the numpy path; p-values come from the same
tables and the same float64 operations, so both paths give identical bits.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["block_table", "block_counts", "block_pairs", "block_column", "UPPER", "LOWER", "TWO", "COUNTED", "PIVOTS", "SUB", "RECORDS"]

# How a pair is made from the two tables ``ta, tb = tables`` (docs/deepscan.md, section 1):
UPPER = 0  # pmin = ta[R], pmax = tb[L]
LOWER = 1  # pmin = ta[L], pmax = tb[R] (the lower tail and the ibm-2025 preset)
TWO = 2  # upper-tail pmin = ta[R], pmax = tb[L], then folded at 0.5
#: Halving steps made by counting pivots (15 compares, vectorised) instead of 4 dependent loads.
COUNTED = 4
PIVOTS = (1 << COUNTED) - 1
_ONE = np.uint64(1)
#: A tile: SUB nodes x RECORDS records are counted together (records copied node-major, counts
#: kept, then written in the output's order), so reads and writes of the big arrays are contiguous.
SUB = 32
RECORDS = 512

# cache=True: compiled code is kept on disk, so only the first process pays the compile time;
# no fastmath: the float64 operations must round exactly as numpy's.
_jit = numba.njit(cache=True, nogil=True, boundscheck=False)


@_jit
def _log2(pad):
    """k with 2**k == pad (a power of two)."""
    k = 0
    while (1 << k) < pad:
        k += 1
    return k


@_jit
def _node_counts(row, k, v, lo, hi, pivots):
    """``lo[r] = #{row < v[r]}``, ``hi[r] = #{row <= v[r]}`` for every r.

    ``row`` (2**k,) sorted, padded with +inf; ``v`` (g,) finite values in row's dtype;
    ``lo``, ``hi`` int64 (>= g,); ``pivots`` (PIVOTS,) in row's dtype, scratch.
    Positions are unsigned: numba then indexes without a negative-index check.
    """
    g = v.shape[0]
    shift = k - COUNTED
    if shift >= 0:  # the first COUNTED steps: how many pivots lie below each record
        for t in range(PIVOTS):
            pivots[t] = row[((t + 1) << shift) - 1]
        for r in range(g):
            x = v[r]
            c = np.int64(0)
            for t in range(PIVOTS):  # a constant count: unrolled, the pivots kept in registers
                c += np.int64(pivots[t] < x)
            lo[r] = c << shift
    else:  # a tiny background (fewer than 2**COUNTED slots): search all the way
        shift = k
        for r in range(g):
            lo[r] = 0
    while shift > 0:  # the rest: one branchless halving step for all records at a time
        shift -= 1
        half = _ONE << np.uint64(shift)
        for r in range(g):
            p = np.uint64(lo[r])
            lo[r] = p + (np.uint64(row[p + half - _ONE] < v[r]) << np.uint64(shift))
    for r in range(g):
        p = np.uint64(lo[r])
        if row[p] == v[r]:  # ties (rare for continuous data): a second search with <=
            q = np.uint64(0)
            half = _ONE << np.uint64(k)
            while half > _ONE:
                half >>= _ONE
                q += np.uint64(row[q + half - _ONE] <= v[r]) * half
            hi[r] = q
        else:
            hi[r] = p


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
def block_table(bg, s, e, table):
    """``table[j, :n]`` = background column ``s + j`` (j < e - s), ``table[j, n:]`` = +inf; table (>= e - s, pad).

    A transposed copy in tiles of 16 background rows, so that reads and writes both stay
    in cache lines already loaded. The rows are then sorted by numpy.
    """
    n = bg.shape[0]
    for i0 in range(0, n, 16):
        i1 = min(i0 + 16, n)
        for j in range(e - s):
            for i in range(i0, i1):
                table[j, i] = bg[i, s + j]
    for j in range(e - s):
        for i in range(n, table.shape[1]):
            table[j, i] = np.inf


@_jit
def _tile(flat, pad, x, s, s0, e, r0, work):
    """Counts of nodes ``s0:s0 + b`` for records ``r0:r0 + gc`` into ``lo[:b, :gc]``, ``hi[:b, :gc]``.

    ``work = (xb, lo, hi, pivots)``: the tile's records node-major (SUB, rc) in x's dtype,
    its counts int64 (SUB, rc) and a pivot buffer (PIVOTS,). The records are copied
    node-major first (one cache line of a record row at a time), so that each node's
    search reads them contiguously. Returns ``(b, gc)``.
    """
    xb, lo, hi, pivots = work
    k = _log2(pad)
    b = min(SUB, e - s0)
    gc = min(xb.shape[1], x.shape[0] - r0)
    for r in range(gc):
        for jj in range(b):
            xb[jj, r] = x[r0 + r, s0 + jj]
    for jj in range(b):
        row = (s0 - s + jj) * pad
        _node_counts(flat[row : row + pad], k, xb[jj, :gc], lo[jj, :gc], hi[jj, :gc], pivots)
    return b, gc


@_jit
def block_counts(flat, pad, x, s, e, L, R, work):
    """Counts of nodes ``s:e`` of every record into ``L[:, s:e]``, ``R[:, s:e]`` (int32, (G, M)).

    ``work`` as in :func:`_tile`: one tile of SUB nodes x rc records (the working set, in L2).
    """
    lo, hi = work[1], work[2]
    for s0 in range(s, e, SUB):
        for r0 in range(0, x.shape[0], work[0].shape[1]):
            b, gc = _tile(flat, pad, x, s, s0, e, r0, work)
            for r in range(gc):  # record-major: contiguous writes
                for jj in range(b):
                    L[r0 + r, s0 + jj] = lo[jj, r]
                    R[r0 + r, s0 + jj] = hi[jj, r]


@_jit
def block_pairs(flat, pad, x, s, e, tables, mode, out, work):
    """``out[:, s:e, 0] = pmin``, ``out[:, s:e, 1] = pmax`` (out float64 (G, M, 2)).

    ``tables`` float64 (2, n + 1): the values by count that ``mode`` combines;
    ``work`` as in :func:`_tile`.
    """
    lo, hi = work[1], work[2]
    for s0 in range(s, e, SUB):
        for r0 in range(0, x.shape[0], work[0].shape[1]):
            b, gc = _tile(flat, pad, x, s, s0, e, r0, work)
            for r in range(gc):
                for jj in range(b):
                    pmin, pmax = _pair(lo[jj, r], hi[jj, r], tables, mode)
                    out[r0 + r, s0 + jj, 0] = pmin
                    out[r0 + r, s0 + jj, 1] = pmax


@_jit
def block_column(flat, pad, x, s, e, tables, mode, column, out, work):
    """``out[s:e, :]`` = end ``column`` (0 pmin, 1 pmax) of the ranges, node-major (out float64 (M, G))."""
    lo, hi = work[1], work[2]
    for s0 in range(s, e, SUB):
        for r0 in range(0, x.shape[0], work[0].shape[1]):
            b, gc = _tile(flat, pad, x, s, s0, e, r0, work)
            for jj in range(b):  # node-major: contiguous writes
                for r in range(gc):
                    pmin, pmax = _pair(lo[jj, r], hi[jj, r], tables, mode)
                    out[s0 + jj, r0 + r] = pmin if column == 0 else pmax
