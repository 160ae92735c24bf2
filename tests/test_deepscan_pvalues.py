"""p-value ranges equal brute-force counts (ties included) for every tail; presets; input errors."""

from __future__ import annotations

import numpy as np
import pytest

from deepscan import pvalue_ranges, rank_counts


def _brute(bg: np.ndarray, x: np.ndarray, tail: str) -> np.ndarray:
    n = bg.shape[0]
    out = np.empty(x.shape + (2,))
    for g in range(x.shape[0]):
        for j in range(x.shape[1]):
            L = sum(b < x[g, j] for b in bg[:, j])
            R = sum(b <= x[g, j] for b in bg[:, j])
            umin, umax = (n - R) / (n + 1), (n - L + 1) / (n + 1)
            if tail == "upper":
                out[g, j] = umin, umax
            elif tail == "lower":
                out[g, j] = L / (n + 1), (R + 1) / (n + 1)
            elif umax < 0.5:
                out[g, j] = 2 * umin, 2 * umax
            elif umin > 0.5:
                out[g, j] = 2 * (1 - umax), 2 * (1 - umin)
            else:
                out[g, j] = 2 * min(umin, 1 - umax), 1.0
    return out


@pytest.mark.parametrize("tail", ["upper", "lower", "two"])
def test_ranges_equal_brute_force_with_ties(tail):
    rng = np.random.default_rng(0)
    for trial in range(6):
        n, g, m = [(1, 3, 4), (7, 5, 6), (30, 8, 5), (3, 12, 2), (64, 4, 9), (255, 3, 3)][trial]
        dtype = [np.float32, np.float64][trial % 2]
        bg = rng.integers(0, 6, (n, m)).astype(dtype)  # many ties inside the background and with records
        x = rng.integers(-1, 8, (g, m)).astype(np.float64)
        got = pvalue_ranges(bg, x, tail)
        assert got.dtype == np.float64 and got.shape == (g, m, 2)
        np.testing.assert_array_equal(got, _brute(bg, x, tail))
        assert (got[..., 0] <= got[..., 1]).all()


def test_counts_on_continuous_data_and_block_edges():
    rng = np.random.default_rng(1)
    bg = rng.standard_normal((40, 600)).astype(np.float32)  # more nodes than one block
    x = np.concatenate([rng.standard_normal((5, 600)).astype(np.float32), bg[:3]])  # exact ties with background
    L, R = rank_counts(bg, x)
    np.testing.assert_array_equal(L, (bg[None] < x[:, None]).sum(1))
    np.testing.assert_array_equal(R, (bg[None] <= x[:, None]).sum(1))
    pv = pvalue_ranges(bg, x)
    no_tie = L == R
    np.testing.assert_allclose((pv[..., 1] - pv[..., 0])[no_tie], 1 / 41)


def test_mixed_precision_compares_exactly():
    bg = np.array([[0.1]], dtype=np.float32)  # float32(0.1) > 0.1 in float64
    x = np.array([[0.1], [float(np.float32(0.1))]])
    L, R = rank_counts(bg, x)
    assert L[:, 0].tolist() == [0, 0] and R[:, 0].tolist() == [0, 1]


def test_ibm_2025_preset_reproduces_published_float_order():
    n = 99  # one of the N where L/(N+1) and 1 - (N-L+1)/(N+1) differ in the last bit
    bg = np.arange(n, dtype=np.float64)[:, None]
    x = np.arange(-1, n + 1, 0.5)[:, None]
    pv = pvalue_ranges(bg, x, preset="ibm-2025")
    L, R = rank_counts(bg, x)
    np.testing.assert_array_equal(pv[..., 0], 1 - (n - L + 1) / (n + 1))
    np.testing.assert_array_equal(pv[..., 1], 1 - (n - R) / (n + 1))
    plain = pvalue_ranges(bg, x, "lower")
    assert (pv != plain).any()  # the last-bit differences the preset must keep
    np.testing.assert_allclose(pv, plain, rtol=0, atol=1e-15)
    with pytest.raises(ValueError, match="fixes tail='lower'"):
        pvalue_ranges(bg, x, "upper", preset="ibm-2025")


def test_bad_input_raises_clear_errors():
    bg = np.zeros((5, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        pvalue_ranges(bg, np.array([[0.0, np.nan, 1.0]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        pvalue_ranges(np.full((5, 3), np.inf), np.zeros((1, 3)))
    with pytest.raises(ValueError, match="records have 4 nodes but background has 3"):
        pvalue_ranges(bg, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="empty"):
        pvalue_ranges(np.zeros((0, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2-D"):
        pvalue_ranges(bg, np.zeros(3))
    with pytest.raises(ValueError, match="unknown tail"):
        pvalue_ranges(bg, np.zeros((1, 3)), "sideways")
    with pytest.raises(ValueError, match="unknown preset"):
        pvalue_ranges(bg, np.zeros((1, 3)), preset="ibm-2024")


@pytest.mark.parametrize("threads,dtype", [(1, np.float64), (2, np.float64), (2, np.float32)])
def test_blocks_threads_and_layouts_agree_with_brute_force(threads, dtype, monkeypatch):
    """Several node blocks counted in threads; a few ties (recounted one by one) in one block, many
    (the whole block recounted) in another; every output layout."""
    import deepscan.pvalues as pv_mod
    from deepscan.pvalues import counted_pvalues_node_major

    monkeypatch.setattr(pv_mod, "MAX_THREADS", threads)
    rng = np.random.default_rng(7)
    n, g, m = 37, 9, 3 * 256 + 5  # three full blocks and a short one
    bg = rng.standard_normal((n, m))
    bg[:, 300:340] = rng.integers(-2, 3, (n, 40))  # integer columns: ties with the records
    x = rng.standard_normal((g, m))
    x[:, 300:340] = rng.integers(-3, 4, (g, 40))
    x[0, :256] = bg[5, :256]  # exact ties in the first block
    bg[1, 700], x[2, 700] = -0.0, 0.0  # -0.0 == 0.0: a tie, not "below"
    bg, x = bg.astype(dtype), x.astype(dtype)
    L, R = rank_counts(bg, x)
    np.testing.assert_array_equal(L, (bg[None] < x[:, None]).sum(1))
    np.testing.assert_array_equal(R, (bg[None] <= x[:, None]).sum(1))
    assert (R > L).sum() > 256
    for tail in ("upper", "lower", "two"):
        pv = pvalue_ranges(bg, x, tail)
        np.testing.assert_array_equal(pv, _brute(bg, x, tail))
        for column in (0, 1):
            np.testing.assert_array_equal(counted_pvalues_node_major(bg, x, tail, column=column), pv[..., column].T)
    pv = pvalue_ranges(bg, -x, preset="ibm-2025")
    np.testing.assert_array_equal(counted_pvalues_node_major(bg, -x, "lower", preset="ibm-2025", column=0), pv[..., 0].T)


def test_float64_values_closer_than_float32_resolution_count_exactly():
    """The search runs on float32-rounded values; float64 values that round together are recounted exactly."""
    rng = np.random.default_rng(8)
    n, g, m = 50, 12, 300
    base = rng.choice([1.0, -3.5, 1e-300, -1e-300, 0.0, 1e300, -1e300, 3.4e38, 7e38], size=(n, m))
    bg = base * (1 + rng.integers(-3, 4, (n, m)) * 1e-13)  # many distinct float64 values per float32
    x = rng.choice([1.0, -3.5, 1e-300, -1e-300, 0.0, -0.0, 1e300, -1e300, 3.4e38, 7e38], size=(g, m))
    x = x * (1 + rng.integers(-3, 4, (g, m)) * 1e-13)
    x[:3] = bg[:3]  # exact ties too
    bg[4, :50], x[5, :50] = -0.0, 0.0
    with np.errstate(over="ignore"):
        assert (bg.astype(np.float32)[None] == x.astype(np.float32)[:, None]).any()  # the case is exercised
    L, R = rank_counts(bg, x)
    np.testing.assert_array_equal(L, (bg[None] < x[:, None]).sum(1))
    np.testing.assert_array_equal(R, (bg[None] <= x[:, None]).sum(1))
    np.testing.assert_array_equal(pvalue_ranges(bg, x, "two"), _brute(bg, x, "two"))
