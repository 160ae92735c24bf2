"""The compiled (numba) and numpy counting paths give identical bits, and both equal brute force.

Small cases with ties, -0.0/+0.0, values near the float ranges' ends, float32 and float64,
every tail and the ibm-2025 preset; numba stays optional (``import deepscan`` works without it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepscan as ds
from deepscan.pvalues import compiled_available, counted_pvalues_node_major

ROOT = Path(__file__).resolve().parents[1]
needs_numba = pytest.mark.skipif(not compiled_available(), reason="numba not importable (or DEEPSCAN_NUMBA=0)")


def brute_counts(bg, x):
    return (bg[None] < x[:, None]).sum(1), (bg[None] <= x[:, None]).sum(1)


def brute_ranges(bg, x, tail, preset=None):
    """The formulas of docs/deepscan.md, section 1 (and 6 for the preset), entry by entry."""
    n = bg.shape[0]
    L, R = brute_counts(bg, x)
    out = np.empty(x.shape + (2,))
    for i, j in np.ndindex(*x.shape):
        lo, hi = int(L[i, j]), int(R[i, j])
        umin, umax = (n - hi) / (n + 1), (n - lo + 1) / (n + 1)
        if preset:
            out[i, j] = 1.0 - umax, 1.0 - umin
        elif tail == "upper":
            out[i, j] = umin, umax
        elif tail == "lower":
            out[i, j] = lo / (n + 1), (hi + 1) / (n + 1)
        elif umax < 0.5:
            out[i, j] = 2 * umin, 2 * umax
        elif umin > 0.5:
            out[i, j] = 2 * (1 - umax), 2 * (1 - umin)
        else:
            out[i, j] = 2 * min(umin, 1 - umax), 1.0
    return out


def cases():
    """(bg, x) pairs: discrete values (ties everywhere), signed zeros, extreme finite values, mixed sizes."""
    rng = np.random.default_rng(3)
    out = []
    for n, g, m in [(1, 3, 4), (7, 5, 70), (31, 6, 33), (32, 4, 65), (99, 3, 40), (250, 2, 5)]:
        bg = rng.integers(-3, 4, (n, m)).astype(np.float64)
        x = rng.integers(-4, 5, (g, m)).astype(np.float64)
        bg[rng.random((n, m)) < 0.2] = -0.0
        x[rng.random((g, m)) < 0.2] = 0.0
        big = np.finfo(np.float32).max
        bg[0, : m // 3] = rng.choice([big, -big, 1e-45, -1e-45], size=m // 3)
        x[0, : m // 4] = rng.choice([big, -big, 1e-45, 0.0], size=m // 4)
        out.append((bg, x))
        out.append((rng.standard_normal((n, m)), rng.standard_normal((g, m))))  # continuous: no ties
    return out


@needs_numba
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_engines_identical_and_equal_brute_force(dtype):
    for bg, x in cases():
        bg, x = bg.astype(dtype), x.astype(dtype)
        L, R = brute_counts(bg, x)
        for engine in ("numpy", "numba"):
            got_L, got_R = ds.rank_counts(bg, x, engine=engine)
            np.testing.assert_array_equal(got_L, L)
            np.testing.assert_array_equal(got_R, R)
        for tail, preset in [("upper", None), ("lower", None), ("two", None), ("lower", "ibm-2025")]:
            want = brute_ranges(bg, x, tail, preset)
            a = ds.pvalue_ranges(bg, x, tail, preset=preset, engine="numpy")
            b = ds.pvalue_ranges(bg, x, tail, preset=preset, engine="numba")
            assert a.tobytes() == b.tobytes() == want.tobytes()  # bit for bit, signed zeros included
            for column in (0, 1):
                na = counted_pvalues_node_major(bg, x, tail, preset=preset, column=column, engine="numpy")
                nb = counted_pvalues_node_major(bg, x, tail, preset=preset, column=column, engine="numba")
                assert na.tobytes() == nb.tobytes() == np.ascontiguousarray(want[..., column].T).tobytes()


@needs_numba
def test_engines_mixed_precision_and_large_float64():
    rng = np.random.default_rng(4)
    bg32 = rng.standard_normal((20, 9)).astype(np.float32)
    x64 = np.concatenate([bg32[:3].astype(np.float64) + 1e-12, rng.choice([1e300, -1e300, 7e38], (2, 9))])
    for engine in ("numpy", "numba"):  # compared in float64: values just above a float32 count as above
        L, R = ds.rank_counts(bg32, x64, engine=engine)
        want = brute_counts(bg32.astype(np.float64), x64)
        np.testing.assert_array_equal(L, want[0])
        np.testing.assert_array_equal(R, want[1])


@needs_numba
def test_engines_give_the_same_scans():
    rng = np.random.default_rng(5)
    bg, clean, anom = rng.standard_normal((60, 40)), rng.standard_normal((20, 40)), rng.standard_normal((30, 40)) + 0.8
    for preset in (None, "ibm-2025"):
        x = -anom if preset else anom
        p = {e: ds.pvalue_ranges(bg, x, preset=preset, engine=e) for e in ("numpy", "numba")}
        assert p["numpy"].tobytes() == p["numba"].tobytes()
        cfg = ds.ScanConfig(preset=preset, restarts=3)
        a, b = ds.group_scan(p["numpy"], cfg, seed=1), ds.group_scan(p["numba"], cfg, seed=1)
        assert a.score > 0 and a.same_as(b)


def test_engine_argument_is_checked():
    z = np.zeros((3, 2))
    with pytest.raises(ValueError, match="unknown engine"):
        ds.pvalue_ranges(z, z, engine="cuda")
    with pytest.raises(ValueError, match="NaN or inf"):
        ds.pvalue_ranges(z, np.array([[np.inf, 0.0]]), engine="numpy")
    if compiled_available():
        with pytest.raises(ValueError, match="NaN or inf"):
            ds.pvalue_ranges(z, np.array([[0.0, -np.inf]]), engine="numba")
    with pytest.raises(ValueError, match="column must be 0"):
        counted_pvalues_node_major(z, z, "upper", column=2)


def _run(code: str, env_extra: dict) -> str:
    env = {**os.environ, **env_extra}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_deepscan_imports_and_runs_without_numba():
    code = ("import sys; sys.modules['numba'] = None\n"  # import numba now raises ImportError
            "import numpy as np, deepscan as ds\n"
            "assert not ds.pvalues.compiled_available()\n"
            "bg = np.arange(12.0).reshape(4, 3); x = bg[:2] + 0.5\n"
            "print(ds.pvalue_ranges(bg, x)[0, 0].tolist())\n"
            "try:\n    ds.pvalue_ranges(bg, x, engine='numba')\nexcept ValueError as e:\n    print('needs numba' in str(e))\n")
    assert _run(code, {}).splitlines() == ["[0.6, 0.8]", "True"]


def test_environment_switch_turns_the_kernels_off():
    code = "import deepscan as ds; print(ds.pvalues.compiled_available())"
    assert _run(code, {"DEEPSCAN_NUMBA": "0"}) == "False"


def test_numba_is_imported_only_when_a_kernel_is_needed():
    code = ("import sys, numpy as np, deepscan as ds\n"
            "print('numba' in sys.modules)\n"
            "ds.pvalue_ranges(np.zeros((2, 1)), np.ones((1, 1)), engine='numpy')\n"
            "print('numba' in sys.modules)\n"
            "print(ds.pvalues.compiled_available() == ('numba' in sys.modules))\n")
    assert _run(code, {}).splitlines() == ["False", "False", "True"]
