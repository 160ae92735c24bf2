"""Empirical p-value ranges of records against a background (docs/deepscan.md, section 1).

For node j and value x: ``L = #{b < x}``, ``R = #{b <= x}`` over the background
column. Two paths count them, with identical results (``engine=``; None takes the
compiled one when numba imports, see :mod:`deepscan._kernels`):

- compiled: each block of nodes is sorted by numpy, then a numba kernel searches, tile
  by tile (32 nodes x up to 512 records), every record in each node's sorted column in
  the input's precision (a vectorised count of 15 pivots, then a branchless binary
  search) and writes the p-values;
- numpy: nodes are counted in blocks, handed to threads as they come free, each thread
  reusing its own buffers (a fresh array per block costs page faults). A block's
  background is rounded to float32 and sorted once per node, then a branchless binary
  search runs over all records x nodes of the block at once. Rounding keeps order, so
  the float32 count is exact except where a background value rounds to the same float32
  as x (the ties, for float32 input): those entries are flagged by the search and counted
  again in the input's precision.

Every p-value is a function of (L, R), looked up in a table of the formula evaluated at
0..N, so a whole output is one gather.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._compiled import available, kernels
from ._checks import as_activations, check_background, check_same_width
from ._conventions import TAILS, canonical_preset, canonical_tail

__all__ = ["TAILS", "ENGINES", "pvalue_ranges", "rank_counts", "ranges_from_counts", "counted_pvalues_node_major",
           "canonical_tail", "compiled_available"]

#: How the counts are made: 'numba' (compiled kernels, when numba imports) or 'numpy'; both give identical
#: bits. None (the default) takes 'numba' when it is available, else 'numpy'.
ENGINES = ("numpy", "numba")

_BLOCK = 256  # nodes per block: fewer numpy calls than smaller blocks, buffers still near L2
_CHUNK = 1 << 16  # entries per output gather
_CBLOCK = 256  # nodes per block of the compiled path (sorted by numpy at once; the kernel takes SUB at a time)
_FEW = 16  # unsure entries above 1/_FEW of a block: recount the whole block (discrete data)
# numpy's gathers, comparisons and sorts release the GIL, so blocks run in threads (at most
# this many; the results do not depend on it).
MAX_THREADS = min(4, os.cpu_count() or 1)


def _in_threads(fn, items) -> None:
    """``fn(item)`` for every item, in up to MAX_THREADS threads (re-raises a worker's exception)."""
    items = list(items)
    threads = min(MAX_THREADS, len(items))
    if threads <= 1:
        for it in items:
            fn(it)
        return
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(fn, items):
            pass


class _Buffers:
    """Work arrays one thread reuses for every block it counts (fresh arrays cost page faults)."""

    def __init__(self, n: int, g: int, block: int, pad: int):
        self.shape = (n, g, block, pad)
        # int32 positions: half the memory traffic of intp
        index = np.int32 if block * pad < 2**31 else np.intp
        self.pos = np.empty(g * block, index)
        self.inc = np.empty(g * block, index)
        self.hit = np.empty(g * block, bool)
        self._values: dict = {}

    def values(self, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(raw, table, x, v) of one value type, made on first use (float64 only for exact recounts)."""
        dtype = np.dtype(dtype)
        if dtype not in self._values:
            n, g, block, pad = self.shape
            self._values[dtype] = (np.empty(n * block, dtype), np.empty((block, pad), dtype),
                                   np.empty(g * block, dtype), np.empty(g * block, dtype))
        return self._values[dtype]


def _view(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    return a.ravel()[: rows * cols].reshape(rows, cols)


def _sorted_block(bg: np.ndarray, x: np.ndarray, s: int, e: int, pad: int, buf: _Buffers, dtype):
    """Background rows of nodes ``s:e`` sorted and padded with +inf to ``pad``, and the records, in ``dtype``.

    Returns ``(table (e - s, pad), x (n_records, e - s), v)``, views of the thread's buffers.
    """
    n, g, b = bg.shape[0], x.shape[0], e - s
    raw, table, xs, v = buf.values(dtype)
    raw, table, xs, v = _view(raw, n, b), table[:b], _view(xs, g, b), _view(v, g, b)
    with np.errstate(over="ignore"):  # beyond float32's range: +-inf, still in order (and flagged unsure)
        raw[...] = bg[:, s:e]  # contiguous copy, then a small transpose (a strided transposed read is slower)
        xs[...] = x[:, s:e]
    table[:, :n] = raw.T
    table[:, n:] = np.inf
    table[:, :n].sort(axis=1)
    return table, xs, v


def _block_search(table: np.ndarray, xs: np.ndarray, v: np.ndarray, buf: _Buffers, inclusive: bool, ties: bool):
    """Branchless binary search of every record in its node's sorted row: ``#{b < x}`` (``<=`` if inclusive).

    ``table`` (b, pad) holds the sorted rows, ``xs`` (n_records, b) the records. Each halving
    step is one gather, one comparison and two integer passes over all records x nodes.
    Returns the counts (a view of ``buf.pos``) and, if ``ties``, where the first value
    >= x equals x (a view of ``buf.hit``; only there may ``R > L``).
    """
    b, pad = table.shape
    g = xs.shape[0]
    flat = table.ravel()  # a view (the first rows of a C-contiguous buffer): rows start at node * pad
    pos, inc, hit = _view(buf.pos, g, b), _view(buf.inc, g, b), _view(buf.hit, g, b)
    cmp = np.less_equal if inclusive else np.less
    offsets = np.arange(b, dtype=pos.dtype) * pad
    step = pad // 2
    shift = step.bit_length() - 1
    pivot = np.ascontiguousarray(table[:, step - 1])  # first step: one pivot per node, broadcast (no gather);
    cmp(pivot, xs, out=hit)  # a strided broadcast operand would make numpy buffer every row
    np.copyto(pos, hit, casting="unsafe")
    np.left_shift(pos, shift, out=pos)
    pos += offsets
    while step > 1:
        step //= 2
        shift -= 1
        # mode="clip": every index is in range, no bounds check needed
        np.take(flat[step - 1 :], pos, out=v, mode="clip")  # offset view: no index arithmetic
        cmp(v, xs, out=hit)
        np.copyto(inc, hit, casting="unsafe")  # bool -> int, then a shift: cheaper than hit * step
        if shift:
            np.left_shift(inc, shift, out=inc)
        pos += inc
    if ties:
        np.take(flat, pos, out=v, mode="clip")
        np.equal(v, xs, out=hit)
    pos -= offsets
    return pos, hit


def _search(flat: np.ndarray, rows: np.ndarray, q: np.ndarray, pad: int, inclusive: bool) -> np.ndarray:
    """``#{b < q}`` (``<=`` if inclusive) for a few queries; rows (intp) are their row starts in the padded ``flat``."""
    cmp = np.less_equal if inclusive else np.less
    pos = rows.copy()
    step = pad // 2
    while step >= 1:
        pos += cmp(flat.take(pos + (step - 1), mode="clip"), q) * step
        step //= 2
    return pos - rows


def _counts(bg: np.ndarray, x: np.ndarray):
    """``L`` (int32, (n_records, n_nodes)) and the ties: (records, nodes, R) where ``R > L``.

    The search runs on float32 values: rounding keeps order (``b < x`` implies
    ``f(b) <= f(x)``, and ``f(b) < f(x)`` implies ``b < x``), so the float32 count is exact
    wherever no background value rounds to the same float32 as x. Those entries (the
    ties, for float32 input) are counted again in the input's precision: one by one
    when they are few, by a search of the whole block when they are many (discrete data).
    """
    n, m = bg.shape
    g = x.shape[0]
    pad = 1 << int(n).bit_length()  # power of two > n
    L = np.empty((g, m), np.int32)
    ties: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    starts = iter(range(0, m, _BLOCK))
    lock = threading.Lock()
    threads = max(1, min(MAX_THREADS, -(-m // _BLOCK)))

    def next_block():
        with lock:
            return next(starts, None)

    def recount(s: int, e: int, buf: _Buffers, unsure: np.ndarray, searched) -> None:
        exact32 = bg.dtype == np.float32  # the float32 search was then exact: only R is missing
        if np.count_nonzero(unsure) * _FEW > unsure.size:  # many: whole-block searches
            table, xs, v = searched if exact32 else _sorted_block(bg, x, s, e, pad, buf, bg.dtype)
            if not exact32:
                L[:, s:e] = _block_search(table, xs, v, buf, inclusive=False, ties=False)[0]
            hi = _block_search(table, xs, v, buf, inclusive=True, ties=False)[0]
            r, c = np.nonzero(hi > L[:, s:e])
            ties.append((r, c + s, hi[r, c]))  # list.append is atomic
            return
        r, c = np.nonzero(unsure)
        if exact32:
            exact, rows = searched[0].ravel(), c * pad
        else:  # sort the float64 columns concerned
            cols, which = np.unique(c, return_inverse=True)
            exact = np.full((cols.size, pad), np.inf)
            exact[:, :n] = bg[:, s + cols].T
            exact[:, :n].sort(axis=1)
            exact, rows = exact.ravel(), which.astype(np.intp) * pad
        q = x[r, c + s]
        lo = _search(exact, rows, q, pad, inclusive=False)
        hi = _search(exact, rows, q, pad, inclusive=True)
        L[r, c + s] = lo
        tied = hi > lo
        ties.append((r[tied], c[tied] + s, hi[tied]))

    def work(_: int) -> None:
        buf = _Buffers(n, g, min(_BLOCK, m), pad)
        # each thread takes the next block when it is free: a slowed core does fewer blocks;
        # blocks are disjoint, so their results need no lock
        while (s := next_block()) is not None:
            e = min(s + _BLOCK, m)
            searched = _sorted_block(bg, x, s, e, pad, buf, np.float32)
            lo, unsure = _block_search(*searched, buf, inclusive=False, ties=True)
            L[:, s:e] = lo
            if unsure.any():
                recount(s, e, buf, unsure.copy(), searched)

    _in_threads(work, range(threads))
    if not ties:
        empty = np.empty(0, np.intp)
        return L, (empty, empty, empty)
    return L, tuple(np.concatenate(parts) for parts in zip(*ties))


def _dense_R(L: np.ndarray, ties) -> np.ndarray:
    """``R`` as a whole array (int32, like ``L``) from the ties of :func:`_counts`."""
    r, c, hi = ties
    R = L.copy()
    R[r, c] = hi
    return R


def _many(ties, L: np.ndarray) -> bool:
    return ties[0].size * _FEW > L.size


def compiled_available() -> bool:
    """Whether the compiled (numba) counting path can run; False without numba or with ``DEEPSCAN_NUMBA=0``."""
    return available()


def _use_compiled(engine: str | None) -> bool:
    if engine is None:
        return available()
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; use 'numpy', 'numba' or None (numba when available)")
    if engine == "numba" and not available():
        raise ValueError("engine='numba' needs numba, which is not importable here (or DEEPSCAN_NUMBA=0 "
                         "switched it off); use engine='numpy' or None: the results are the same")
    return engine == "numba"


def _compiled_blocks(bg: np.ndarray, x: np.ndarray, kernel) -> None:
    """``kernel(flat, pad, x, s, e, work)`` for every block ``s:e`` of ``_CBLOCK`` nodes, in threads.

    Each thread copies its block's background columns into its own buffer, padded with +inf
    to ``pad`` (a power of two > n), and sorts them; ``work`` is the kernel's tile (records
    and counts of SUB nodes x rc records, and a pivot buffer), one per thread.
    """
    n, m = bg.shape
    pad = 1 << int(n).bit_length()
    kern = kernels()
    tile = (kern.SUB, min(kern.RECORDS, x.shape[0]))
    local = threading.local()

    def work(s: int) -> None:
        e = min(s + _CBLOCK, m)
        if not hasattr(local, "table"):
            local.table = np.empty((_CBLOCK, pad), bg.dtype)
            local.work = (np.empty(tile, x.dtype), np.empty(tile, np.int64), np.empty(tile, np.int64),
                          np.empty(kern.PIVOTS, x.dtype))
        table = local.table[: e - s]
        kern.block_table(bg, s, e, table)
        table[:, :n].sort(axis=1)
        kernel(table.ravel(), pad, x, s, e, local.work)

    _in_threads(work, range(0, m, _CBLOCK))


def _kernel_tables(n: int, tail: str, preset: str | None):
    """``(tables (2, n + 1), mode)`` for the compiled kernels: the same values as :func:`_ranges_block` uses."""
    tables, kern = _tables(n, tail, preset), kernels()
    if tables is None:
        k = np.arange(n + 1, dtype=np.float64)
        return np.stack([(n - k) / (n + 1), (n - k + 1) / (n + 1)]), kern.TWO
    tmin, imin, tmax, _ = tables
    return np.stack([tmin, tmax]), (kern.UPPER if imin == "R" else kern.LOWER)


def _compiled_counts(bg: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    L = np.empty(x.shape, np.int32)
    R = np.empty(x.shape, np.int32)
    kern = kernels()
    _compiled_blocks(bg, x, lambda f, pad, x_, s, e, w: kern.block_counts(f, pad, x_, s, e, L, R, w))
    return L, R


def _compiled_ranges(bg: np.ndarray, x: np.ndarray, tail: str, preset: str | None) -> np.ndarray:
    tables, mode = _kernel_tables(bg.shape[0], tail, preset)
    out = np.empty(x.shape + (2,), np.float64)
    kern = kernels()
    _compiled_blocks(bg, x, lambda f, pad, x_, s, e, w: kern.block_pairs(f, pad, x_, s, e, tables, mode, out, w))
    return out


def _compiled_column(bg: np.ndarray, x: np.ndarray, tail: str, preset: str | None, column: int) -> np.ndarray:
    tables, mode = _kernel_tables(bg.shape[0], tail, preset)
    out = np.empty((x.shape[1], x.shape[0]), np.float64)
    kern = kernels()
    _compiled_blocks(bg, x, lambda f, pad, x_, s, e, w: kern.block_column(f, pad, x_, s, e, tables, mode, column, out, w))
    return out


def _prepare(background, records):
    bg = check_background(as_activations(background, "background"))
    x = as_activations(records, "records")
    check_same_width(bg, x)
    dtype = np.result_type(bg.dtype, x.dtype)  # compare in a common exact type
    return bg.astype(dtype, copy=False), np.ascontiguousarray(x, dtype=dtype)


def rank_counts(background, records, *, engine: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Counts ``L = #{b < x}`` and ``R = #{b <= x}`` per record and node.

    Parameters
    ----------
    background : array (n_background, n_nodes)
    records : array (n_records, n_nodes)
    engine : {None, 'numpy', 'numba'}
        How the counts are made (identical results); None: numba when available.

    Returns
    -------
    L, R : ndarray of int32, shape (n_records, n_nodes)
    """
    bg, x = _prepare(background, records)
    if _use_compiled(engine):
        return _compiled_counts(bg, x)
    L, ties = _counts(bg, x)
    return L, _dense_R(L, ties)


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


def _untied_table(n: int, tail: str, preset: str | None) -> np.ndarray:
    """``(n + 1, 2)`` float64: [pmin, pmax] where L = R = k (the same bits as :func:`_ranges_block`)."""
    k = np.arange(n + 1)
    out = np.empty((n + 1, 2), np.float64)
    out[:, 0], out[:, 1] = _ranges_block(k, k, n, tail, preset)
    return out


def _gather_rows(table: np.ndarray, index: np.ndarray, out: np.ndarray) -> None:
    """``out[i] = table[index[i]]`` for 2-D ``index`` and ``out`` (contiguous), in row chunks and threads."""
    rows = max(1, _CHUNK // max(1, index.shape[1]))
    _in_threads(lambda r: np.take(table, index[r : r + rows], out=out[r : r + rows], mode="clip"),
                range(0, index.shape[0], rows))


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


def counted_pvalues_node_major(background, records, tail: str, *, preset: str | None = None, column: int = 1,
                               engine: str | None = None) -> np.ndarray:
    """One end of the p-value ranges (``column`` 0 = pmin, 1 = pmax), node-major ``(n_nodes, n_records)``.

    What the group scan counts, in the layout it scans. ``engine`` as in :func:`pvalue_ranges`.
    """
    if column not in (0, 1):
        raise ValueError(f"column must be 0 (pmin) or 1 (pmax), got {column!r}")
    tail = canonical_tail(tail)
    bg, x = _prepare(background, records)
    n = bg.shape[0]
    if _use_compiled(engine):
        return _compiled_column(bg, x, tail, preset, column)
    L, ties = _counts(bg, x)
    if _many(ties, L):
        return np.ascontiguousarray(_ranges_block(L, _dense_R(L, ties), n, tail, preset)[column].T)
    r, c, hi = ties
    out = np.empty((x.shape[1], x.shape[0]), np.float64)
    _gather_rows(np.ascontiguousarray(_untied_table(n, tail, preset)[:, column]), L.T, out)
    if r.size:
        out[c, r] = _ranges_block(L[r, c], hi, n, tail, preset)[column]
    return out


def pvalue_ranges(background, records, tail: str | None = None, *, preset: str | None = None,
                  engine: str | None = None) -> np.ndarray:
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
    engine : {None, 'numpy', 'numba'}
        How the counts are made: compiled kernels (numba) or numpy; the results are identical
        bit for bit. None takes numba when it imports and ``DEEPSCAN_NUMBA`` is not 0.

    Returns
    -------
    ndarray, float64, shape (n_records, n_nodes, 2)
        ``[..., 0] = pmin``, ``[..., 1] = pmax``.

    Raises
    ------
    ValueError
        On NaN/inf values, empty arrays, a node-count mismatch, an unknown tail, preset or engine.
    """
    preset = canonical_preset(preset)
    if tail is None:
        tail = "lower" if preset is not None else "upper"
    tail = canonical_tail(tail)
    if preset is not None and tail != "lower":
        raise ValueError(f"preset {preset!r} fixes tail='lower', got tail={tail!r}; leave tail unset")
    bg, x = _prepare(background, records)
    n = bg.shape[0]
    if _use_compiled(engine):
        return _compiled_ranges(bg, x, tail, preset)
    L, ties = _counts(bg, x)
    out = np.empty(x.shape + (2,), np.float64)
    if _many(ties, L):  # discrete data: the formula over whole arrays beats fixing entry by entry
        out[..., 0], out[..., 1] = _ranges_block(L, _dense_R(L, ties), n, tail, preset)
        return out
    r, c, hi = ties
    # [pmin, pmax] pairs as one 16-byte item: the whole output is one contiguous gather
    pairs = _untied_table(n, tail, preset).view(np.complex128).ravel()
    _gather_rows(pairs, L, out.view(np.complex128).reshape(x.shape))
    if r.size:
        pmin, pmax = _ranges_block(L[r, c], hi, n, tail, preset)
        out[r, c, 0] = pmin
        out[r, c, 1] = pmax
    return out
