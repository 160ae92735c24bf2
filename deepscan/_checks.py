"""Input validation shared by the deepscan modules: clear ValueErrors before any work.

- :func:`as_activations`, :func:`check_same_width`, :func:`check_pools`: activation arrays;
- :func:`as_pvalue_ranges`: p-value ranges as ``pvalue_ranges`` returns them;
- :func:`check_int`, :func:`check_n_jobs`: integer parameters.
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np

__all__ = ["as_activations", "check_background", "check_same_width", "check_pools", "as_pvalue_ranges", "check_int",
           "check_n_jobs"]


def check_int(value: Any, name: str, minimum: int) -> int:
    """``value`` as an int, if it is an integer (not a bool) >= ``minimum``; else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_n_jobs(n_jobs: Any) -> int:
    """joblib's worker count: a non-zero integer (1 = serial, -1 = all cores)."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer (1 = serial, -1 = all cores), got {n_jobs!r}")
    return int(n_jobs)


def as_activations(x, name: str) -> np.ndarray:
    """Return ``x`` as a finite 2-D float array (float32 kept, other types as float64).

    Raises
    ------
    ValueError
        If ``x`` is not 2-D, is empty, is not numeric, or holds NaN/inf.
    """
    a = np.asarray(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_statements, n_nodes), got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {a.shape}); it needs at least one statement and one node")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer) or a.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {a.dtype}")
    if a.dtype == np.float32:
        pass
    elif a.dtype == np.float16:
        a = a.astype(np.float32)
    else:
        a = a.astype(np.float64, copy=False)
    if not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))[0]
        raise ValueError(
            f"{name} holds NaN or inf (first at statement {bad[0]}, node {bad[1]}: {a[bad[0], bad[1]]}); "
            "remove or impute those values before scanning"
        )
    return a


def check_background(background: np.ndarray, name: str = "background") -> np.ndarray:
    """``background`` (an activation array), with a ``UserWarning`` when it has a single row.

    Against one row every empirical p-value is 0, 0.5 or 1 (the counted end, pmax, only 0.5
    or 1): no record can look more extreme than p = 0.5, so a scan finds next to nothing.
    """
    if background.shape[0] == 1:
        warnings.warn(
            f"{name} has a single row: each p-value against it can only be 0, 0.5 or 1 (the counted pmax only "
            "0.5 or 1), so no record looks more extreme than p = 0.5; use a background of many statements "
            "(dozens at least)", UserWarning, stacklevel=4)
    return background


def check_same_width(background: np.ndarray, records: np.ndarray, names=("background", "records")) -> None:
    if background.shape[1] != records.shape[1]:
        raise ValueError(
            f"{names[1]} have {records.shape[1]} nodes but {names[0]} has {background.shape[1]}; "
            "both must come from the same layer(s) in the same node order"
        )


def check_pools(background, clean_pool, anomalous_pool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three pools of an experiment as activation arrays of the same width."""
    bg = as_activations(background, "background")
    cl = as_activations(clean_pool, "clean_pool")
    an = as_activations(anomalous_pool, "anomalous_pool")
    check_same_width(bg, cl, ("background", "clean_pool"))
    check_same_width(bg, an, ("background", "anomalous_pool"))
    return bg, cl, an


def as_pvalue_ranges(pvalues, name: str = "pvalues") -> np.ndarray:
    """Return ``pvalues`` as a float64 array (G, M, 2) of [pmin, pmax] ranges in [0, 1]."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim == 2 and p.shape[1] == 2:
        p = p[None]  # one record given as (M, 2)
    if p.ndim != 3 or p.shape[2] != 2:
        raise ValueError(f"{name} must have shape (n_records, n_nodes, 2) as returned by pvalue_ranges, got {p.shape}")
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {p.shape})")
    step = max(1, (1 << 16) // (2 * p.shape[1]))  # blocks of records: checks run in cache
    for r in range(0, p.shape[0], step):
        blk = p[r : r + step]
        if not (blk.min() >= 0.0 and blk.max() <= 1.0):  # NaN fails both comparisons
            raise ValueError(f"{name} must hold finite values in [0, 1]; compute them with deepscan.pvalue_ranges")
        if not (blk[..., 0] <= blk[..., 1]).all():
            raise ValueError(f"{name}[..., 0] (pmin) must be <= {name}[..., 1] (pmax); is the last axis in [pmin, pmax] order?")
    return p
