"""How stable are salient sets and their overlaps? Split halves and a bootstrap over runs.

A salient set is a function of a persona's runs (and, for the calibrated method, of its null
runs). Rerunning the scans would give other runs, so every set size and overlap has sampling
error. Two measures:

- split-half agreement: the Jaccard index of the sets made from the first and the second half
  of the runs (runs 0-49 against 50-99 for 100 runs), per persona and method;
- a seeded bootstrap over runs (each persona's runs, and null runs, resampled with replacement,
  independently per persona): percentile intervals of set sizes, pairwise Jaccard indices and
  the *excess* of nodes shared by all personas of a group over chance, ``(shared - expected) /
  n_nodes`` with ``expected = n_nodes * prod(size_i / n_nodes)`` (independent random sets of the
  same sizes). An overlap is *stable* when the interval of its excess excludes 0.

Everything works on boolean node-by-run matrices: a bootstrap replicate is a matrix product of
resampling counts with the selection matrix, so 200 replicates of 14 personas x 100 runs x 576
nodes take well under a second.

- ``SetBootstrap`` / ``bootstrap_sets``: observed, split-half and bootstrap sets of several personas.
- ``stability_table``, ``overlap_stability``, ``pairwise_stability``: the tables of the report.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from personas._core.checks import check_float, check_int, check_seed
from personas.nodes.calibration import SALIENT_METHODS, check_q, fisher_table, method_sets, selection_matrix
from personas.scans.null_runs import null_runs_of
from personas.nodes.frequencies import check_fraction, resolve_method
from personas.nodes.overlaps import topic_sets
from personas.nodes.runs import node_space
from personas._core.parallel import one_blas_thread
from personas._core.provenance import derive_rng

__all__ = ["SetBootstrap", "bootstrap_sets", "stability_table", "overlap_stability", "pairwise_stability", "shared_excess"]


@dataclass(frozen=True, eq=False)
class SetBootstrap:
    """Salient sets of several personas: observed, from each half of the runs, and bootstrapped.

    Attributes
    ----------
    personas : list of str
    n_nodes : int
    method : {"union", "min_fraction", "calibrated"}
    min_fraction, q : float or None
        The method's parameter.
    n_boot, seed : int
    n_runs : ndarray of int (n_personas,)
    observed : ndarray of bool (n_personas, n_nodes)
    first_half, second_half : ndarray of bool (n_personas, n_nodes)
    replicates : ndarray of bool (n_boot, n_personas, n_nodes)
    """

    personas: list
    n_nodes: int
    method: str
    min_fraction: float | None
    q: float | None
    n_boot: int
    seed: int
    n_runs: np.ndarray
    observed: np.ndarray
    first_half: np.ndarray
    second_half: np.ndarray
    replicates: np.ndarray

    def sets(self) -> dict[str, set[int]]:
        """The observed sets, ``{persona: set of nodes}``."""
        return {p: set(np.flatnonzero(row).tolist()) for p, row in zip(self.personas, self.observed)}

    def index(self, personas: Sequence[str]) -> np.ndarray:
        """Rows of ``personas`` in the persona axis."""
        where = {p: i for i, p in enumerate(self.personas)}
        missing = [p for p in personas if p not in where]
        if missing:
            raise ValueError(f"personas {missing} are not in the bootstrap (have: {self.personas})")
        return np.array([where[p] for p in personas], dtype=np.int64)


def _resample_counts(matrix: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Selection counts of ``n_boot`` bootstrap resamples of the runs (rows): (n_boot, n_nodes) int."""
    n = matrix.shape[0]
    draws = rng.integers(0, n, size=(n_boot, n))
    weights = np.bincount((np.arange(n_boot)[:, None] * n + draws).ravel(), minlength=n_boot * n).reshape(n_boot, n)
    # float32 is exact for these small integer sums
    return np.rint(weights.astype(np.float32) @ matrix.astype(np.float32)).astype(np.int64)


def bootstrap_sets(
    run_files: Mapping[str, Any],
    nulls: Mapping[str, Any] | None = None,
    *,
    method: str = "union",
    min_fraction: float | None = None,
    q: float = 0.05,
    n_boot: int = 200,
    seed: int = 0,
    n_nodes: int | None = None,
) -> SetBootstrap:
    """Salient sets by ``method``: observed, per half of the runs, and ``n_boot`` bootstrap replicates.

    Parameters
    ----------
    run_files : dict
        ``{persona: RunFile}``.
    nulls : dict, optional
        ``{persona: NullRuns}``; needed by method "calibrated" (null runs are split and resampled too).
    method : {"union", "min_fraction", "calibrated"}
    min_fraction : float, optional
        For method "min_fraction" (of each half's or replicate's runs).
    q : float
        For method "calibrated".
    n_boot : int >= 1
    seed : int
        Bootstrap seed; each persona's draws derive from it and the persona's name.
    n_nodes : int, optional
        Default: the run files' headers.

    Returns
    -------
    SetBootstrap
    """
    if method not in SALIENT_METHODS:
        raise ValueError(f"method must be one of {SALIENT_METHODS}, got {method!r}")
    check_fraction(min_fraction)
    method = resolve_method(method, min_fraction)
    q = check_q(q)
    n_boot = check_int(n_boot, "n_boot", min_val=1)
    seed = check_seed(seed)
    space = node_space(run_files, n_nodes=n_nodes)
    if space.n_nodes is None:
        raise ValueError("the number of scanned nodes is unknown; pass n_nodes")
    N = space.n_nodes
    personas = list(run_files)
    # one BLAS thread: the resampling products are small, and waking threads for each costs more than it saves
    with one_blas_thread():
        parts = [_persona_sets(persona, run_files[persona], nulls, method, min_fraction, q, n_boot, seed, N)
                 for persona in personas]
    observed, first, second, reps, n_runs = zip(*parts)
    return SetBootstrap(
        personas=personas, n_nodes=N, method=method, min_fraction=min_fraction,
        q=q if method == "calibrated" else None, n_boot=n_boot, seed=seed, n_runs=np.array(n_runs),
        observed=np.stack(observed), first_half=np.stack(first), second_half=np.stack(second),
        replicates=np.stack(reps, axis=1),
    )


def _persona_sets(persona, run_file, nulls, method, min_fraction, q, n_boot, seed, n_nodes) -> tuple:
    """One persona's (observed, first half, second half, replicates, n_runs) sets by ``method``."""
    runs = selection_matrix(run_file, n_nodes)
    n, h = runs.shape[0], runs.shape[0] // 2
    if n < 2:
        raise ValueError(f"persona {persona!r} has {n} run; split halves and the bootstrap need at least 2")
    counts = _resample_counts(runs, n_boot, derive_rng(seed, "bootstrap-runs", persona))
    if method != "calibrated":
        def sets_of(k, n_obs):
            return method_sets(k, n_obs, method, min_fraction=min_fraction)
        return (sets_of(runs.sum(0), n), sets_of(runs[:h].sum(0), h), sets_of(runs[h:].sum(0), n - h),
                sets_of(counts, n), n)
    null = selection_matrix(null_runs_of(nulls, persona), n_nodes)
    n0, h0 = null.shape[0], null.shape[0] // 2
    if n0 < 2:
        raise ValueError(f"persona {persona!r} has {n0} null run; split halves and the bootstrap need at least 2")
    counts0 = _resample_counts(null, n_boot, derive_rng(seed, "bootstrap-null", persona))

    def cal(k, n_obs, k0, n_null):
        return method_sets(k, n_obs, "calibrated", k_null=k0, n_null=n_null, q=q)
    return (cal(runs.sum(0), n, null.sum(0), n0), cal(runs[:h].sum(0), h, null[:h0].sum(0), h0),
            cal(runs[h:].sum(0), n - h, null[h0:].sum(0), n0 - h0), cal(counts, n, counts0, n0), n)


def bootstrap_interval(values: np.ndarray, ci: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over replicates (NaN replicates, e.g. Jaccard of empty sets, left out)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices give NaN, as they should
        lo, hi = np.nanquantile(values, [(1 - ci) / 2, (1 + ci) / 2], axis=axis)
    return lo, hi


def _jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Jaccard index of boolean sets along the last axis (NaN when both are empty)."""
    inter = (a & b).sum(-1)
    union = (a | b).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def shared_excess(member: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodes shared by all sets, their chance expectation and the excess as a fraction of nodes.

    Parameters
    ----------
    member : ndarray of bool (..., n_sets, n_nodes)

    Returns
    -------
    shared : ndarray (...,)
        Nodes in every set.
    expected : ndarray (...,)
        ``n_nodes * prod(size_i / n_nodes)``: the expected intersection of independent uniformly
        random sets of the same sizes.
    excess : ndarray (...,)
        ``(shared - expected) / n_nodes``.
    """
    n_nodes = member.shape[-1]
    shared = member.all(axis=-2).sum(-1)
    sizes = member.sum(-1)
    expected = n_nodes * np.prod(sizes / n_nodes, axis=-1)
    return shared, expected, (shared - expected) / n_nodes


_TOL = 1e-9


def _check_ci(ci: float) -> float:
    return check_float(ci, "ci", min_val=0.0, max_val=1.0, include_min=False, include_max=False)


def stability_table(boot: SetBootstrap, *, ci: float = 0.95) -> pd.DataFrame:
    """Per persona: set size with its bootstrap interval and the split-half Jaccard index.

    Returns
    -------
    pandas.DataFrame
        Columns ``persona, method, n_runs, size, fraction, size_low, size_high, size_first_half,
        size_second_half, split_half_jaccard`` (NaN when both halves' sets are empty).
    """
    ci = _check_ci(ci)
    sizes = boot.replicates.sum(-1)  # (n_boot, n_personas)
    lo, hi = bootstrap_interval(sizes, ci)
    size = boot.observed.sum(-1)
    return pd.DataFrame({
        "persona": boot.personas, "method": boot.method, "n_runs": boot.n_runs, "size": size,
        "fraction": size / boot.n_nodes, "size_low": lo, "size_high": hi,
        "size_first_half": boot.first_half.sum(-1), "size_second_half": boot.second_half.sum(-1),
        "split_half_jaccard": _jaccard(boot.first_half, boot.second_half),
    })


def _groups(boot: SetBootstrap, topics: Mapping[str, Sequence[str]] | None, all_label: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    if topics is not None:
        grouped = topic_sets({p: set() for p in boot.personas}, topics, missing="ignore")
        groups.update({t: list(members) for t, members in grouped.items()})
    if all_label in groups:
        raise ValueError(f"a topic is named {all_label!r} like the all-personas row; pass another all_label")
    groups[all_label] = list(boot.personas)
    return groups


def overlap_stability(
    boot: SetBootstrap,
    topics: Mapping[str, Sequence[str]] | None = None,
    *,
    all_label: str = "ALL",
    ci: float = 0.95,
) -> pd.DataFrame:
    """Nodes shared by all personas of each group, their excess over chance and its bootstrap interval.

    Returns
    -------
    pandas.DataFrame
        One row per group with at least 2 personas (each topic, then ``all_label``): ``group,
        method, n_personas, personas, shared, shared_low, shared_high, expected, excess,
        excess_low, excess_high, stable, verdict``. ``excess`` is ``(shared - expected) / n_nodes``;
        ``stable`` is True when its interval excludes 0; ``verdict`` is "above chance", "below
        chance" or "not distinguishable from chance".
    """
    ci = _check_ci(ci)
    rows = []
    for group, members in _groups(boot, topics, all_label).items():
        if len(members) < 2:
            continue
        idx = boot.index(members)
        shared, expected, excess = shared_excess(boot.observed[idx])
        b_shared, _, b_excess = shared_excess(boot.replicates[:, idx])
        s_lo, s_hi = bootstrap_interval(b_shared, ci)
        e_lo, e_hi = bootstrap_interval(b_excess, ci)
        above, below = e_lo > _TOL, e_hi < -_TOL  # float noise around 0 is not an effect
        rows.append({
            "group": group, "method": boot.method, "n_personas": len(members), "personas": ";".join(members),
            "shared": int(shared), "shared_low": float(s_lo), "shared_high": float(s_hi),
            "expected": float(expected), "excess": float(excess), "excess_low": float(e_lo),
            "excess_high": float(e_hi), "stable": bool(above or below),
            "verdict": "above chance" if above else "below chance" if below else "not distinguishable from chance",
        })
    return pd.DataFrame(rows)


def pairwise_stability(boot: SetBootstrap, *, ci: float = 0.95) -> pd.DataFrame:
    """Jaccard index of every pair of personas with its bootstrap interval.

    Returns
    -------
    pandas.DataFrame
        Columns ``persona_a, persona_b, method, jaccard, jaccard_low, jaccard_high``.
    """
    ci = _check_ci(ci)
    pairs = list(itertools.combinations(range(len(boot.personas)), 2))
    if not pairs:
        return pd.DataFrame(columns=["persona_a", "persona_b", "method", "jaccard", "jaccard_low", "jaccard_high"])
    ia, ib = (np.array(x) for x in zip(*pairs))
    observed = _jaccard(boot.observed[ia], boot.observed[ib])
    reps = _jaccard(boot.replicates[:, ia], boot.replicates[:, ib])
    lo, hi = bootstrap_interval(reps, ci)
    return pd.DataFrame({
        "persona_a": [boot.personas[i] for i in ia], "persona_b": [boot.personas[i] for i in ib],
        "method": boot.method, "jaccard": observed, "jaccard_low": lo, "jaccard_high": hi,
    })
