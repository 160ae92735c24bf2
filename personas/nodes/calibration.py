"""Null-calibrated salient nodes: the nodes a persona's scans choose more often than scans of nothing.

The paper's salient set (the union of the node subsets over runs) only grows with the number of
runs, and a scan picks nodes even when nothing is anomalous. The *null runs* of an experiment
(``personas.scans.driver`` writes them beside its run file, ``<stem>.null.json``) are clean-only
scans with the same sample size and number of runs: they give each node's selection frequency
under the null. Per node, a one-sided Fisher exact test asks whether the node was chosen in more
of the persona's runs (``k`` of ``n``) than of the null runs (``k_null`` of ``n_null``);
Benjamini-Hochberg over the nodes at level ``q`` gives the *calibrated* salient set, and the
frequency ratio (with a pseudo-count) its effect size.

- ``SALIENT_METHODS``: "union" (the paper), "min_fraction", "calibrated".
- ``NullRuns`` / ``read_null_runs`` / ``load_null_runs``: the null run files (their format lives in
  ``personas.scans.null_runs``, beside the writer; re-exported here).
- ``selection_matrix``: runs -> boolean (n_runs, n_nodes) matrix, the shape every method works on.
- ``node_calibration``: the per-node table of one persona; ``node_calibrations``: several.
- ``calibrated_sets``: ``{persona: set of nodes}`` by the calibrated method.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import special

from personas._core.checks import check_float
from personas.nodes.runs import flat_nodes, layer_unit, run_name, read_runs, node_space
from personas.scans.null_runs import NullRuns, load_null_runs, null_runs_of, read_null_runs

__all__ = [
    "SALIENT_METHODS",
    "NullRuns",
    "read_null_runs",
    "load_null_runs",
    "selection_matrix",
    "node_calibration",
    "node_calibrations",
    "calibrated_sets",
]


#: How a salient set is made from runs: the paper's union over runs, the nodes chosen in at least a
#: fraction of runs, or the nodes chosen significantly more often than in the null runs.
SALIENT_METHODS: tuple[str, ...] = ("union", "min_fraction", "calibrated")


#: Pseudo-count added to both counts of the frequency ratio (a node never chosen under the null
#: gets a finite ratio).
PSEUDO_COUNT = 0.5


# ----------------------------------------------------------------------------- matrices


def _node_lists(runs: Any) -> tuple[list, str]:
    """The per-run node lists of a RunFile, runs DataFrame, NullRuns or list of lists."""
    if isinstance(runs, NullRuns):
        return runs.nodes_clean, str(runs.path or "<null runs>")
    if isinstance(runs, (list, tuple)):
        return list(runs), "<node lists>"
    table = read_runs(runs)
    return list(table["nodes"]), run_name(runs)


def selection_matrix(runs: Any, n_nodes: int) -> np.ndarray:
    """Which nodes each run chose, as a boolean matrix.

    Parameters
    ----------
    runs : deepscan.RunFile, runs DataFrame, NullRuns or list of node lists
    n_nodes : int
        Number of scanned nodes (columns).

    Returns
    -------
    ndarray of bool, shape (n_runs, n_nodes)
    """
    lists, where = _node_lists(runs)
    if not lists:
        raise ValueError(f"{where} holds no runs")
    run_index, nodes = flat_nodes(pd.DataFrame({"nodes": lists}), where)
    if nodes.size and nodes.max() >= n_nodes:
        raise ValueError(f"{where} chose node {int(nodes.max())} but n_nodes={n_nodes}; pass the right n_nodes")
    out = np.zeros((len(lists), int(n_nodes)), dtype=bool)
    out[run_index, nodes] = True
    return out


# ----------------------------------------------------------------------------- the test


@functools.lru_cache(maxsize=64)
def fisher_table(n: int, n_null: int) -> np.ndarray:
    """One-sided Fisher exact p-values for every pair of counts, shape (n + 1, n_null + 1), read-only.

    ``p[k, k0] = P(X >= k)`` for X hypergeometric: ``k + k0`` selections among ``n + n_null`` runs,
    ``n`` of them the persona's (the conditional test of "selected more often than under the null").
    Built from log-factorials for every total at once (scipy's ``hypergeom.sf`` gives the same
    numbers, one call per total); the tail is summed from its smallest terms, so tiny p-values keep
    their precision.
    """
    total = n + n_null
    log_fact = special.gammaln(np.arange(total + 2, dtype=float) + 1.0)
    x = np.arange(n + 1)[None, :]  # persona count
    K = np.arange(total + 1)[:, None]  # total count
    valid = (K - x >= 0) & (K - x <= n_null)
    y = np.clip(K - x, 0, n_null)
    log_pmf = (log_fact[n] - log_fact[x] - log_fact[n - x] + log_fact[n_null] - log_fact[y] - log_fact[n_null - y]
               - (log_fact[total] - log_fact[K] - log_fact[total - K]))
    pmf = np.where(valid, np.exp(np.where(valid, log_pmf, 0.0)), 0.0)
    sf = np.minimum(np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1], 1.0)  # sf[K, k] = P(X >= k | K)
    k = np.arange(n + 1)[:, None]
    k0 = np.arange(n_null + 1)[None, :]
    table = sf[k + k0, np.broadcast_to(k, (n + 1, n_null + 1))]
    table.setflags(write=False)
    return table


def _bh_reject(p: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """Benjamini-Hochberg over the last axis: (q-values, rejected) of the same shape as ``p``."""
    m = p.shape[-1]
    order = np.argsort(p, axis=-1, kind="stable")
    ranked = np.take_along_axis(p, order, axis=-1) * m / np.arange(1, m + 1)
    adjusted = np.minimum(np.minimum.accumulate(ranked[..., ::-1], axis=-1)[..., ::-1], 1.0)
    qv = np.empty_like(adjusted)
    np.put_along_axis(qv, order, adjusted, axis=-1)
    return qv, qv <= q


def _calibrated_from_counts(k: np.ndarray, n: int, k_null: np.ndarray, n_null: int, q: float,
                            table: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, q-values, salient) from selection counts, vectorised over any leading axes (..., n_nodes)."""
    table = fisher_table(n, n_null) if table is None else table
    p = table[k, k_null]
    qv, salient = _bh_reject(p, q)
    return p, qv, salient


def check_q(q: Any) -> float:
    return check_float(q, "q", min_val=0.0, max_val=1.0, include_min=False, include_max=False)


def method_sets(k: np.ndarray, n: int, method: str, *, min_fraction: float | None = None,
                 k_null: np.ndarray | None = None, n_null: int | None = None, q: float = 0.05,
                 table: np.ndarray | None = None) -> np.ndarray:
    """Salient membership (bool, shape of ``k``) from selection counts ``k`` of ``n`` runs by ``method``."""
    if method == "union":
        return k > 0
    if method == "min_fraction":
        # tolerance so that e.g. 0.3 * 10 runs keeps nodes found in exactly 3 runs
        return k >= min_fraction * n - 1e-9
    return _calibrated_from_counts(k, n, k_null, n_null, q, table)[2]


def node_calibration(
    run_file: Any,
    null: NullRuns | Any,
    *,
    n_nodes: int | None = None,
    node_layout: Sequence[Mapping] | None = None,
    q: float = 0.05,
    pseudo_count: float = PSEUDO_COUNT,
) -> pd.DataFrame:
    """Per-node test of one persona: chosen more often in its runs than in the null runs?

    Parameters
    ----------
    run_file : deepscan.RunFile or runs DataFrame
        The persona's runs.
    null : NullRuns, RunFile, runs DataFrame or list of node lists
        The null runs (clean-only scans with the same sample sizes).
    n_nodes, node_layout : optional
        Default: the run file's header (or the null file's ``n_nodes``).
    q : float in (0, 1)
        Benjamini-Hochberg false discovery rate over the nodes.
    pseudo_count : float >= 0
        Added to both counts of each frequency in the ratio.

    Returns
    -------
    pandas.DataFrame
        One row per node: ``node, layer, unit, k, n_runs, freq, k_null, n_null, null_freq, ratio,
        p, q, salient``. ``p`` is the one-sided Fisher exact p-value, ``q`` the BH-adjusted one,
        ``ratio = ((k + c) / (n_runs + 2c)) / ((k_null + c) / (n_null + 2c))`` with ``c`` the
        pseudo-count; ``salient`` is ``q <= q`` (the argument).
    """
    q = check_q(q)
    pseudo_count = check_float(pseudo_count, "pseudo_count", min_val=0.0)
    if n_nodes is None and _header_n(run_file) is None and isinstance(null, NullRuns):
        n_nodes = null.n_nodes  # a runs table without a header: the null file knows the nodes
    space = node_space({"": run_file}, n_nodes=n_nodes, node_layout=node_layout)
    if space.n_nodes is None:
        raise ValueError("the number of scanned nodes is unknown; pass n_nodes")
    observed = selection_matrix(run_file, space.n_nodes)
    null_m = selection_matrix(null, space.n_nodes)
    n, n0 = observed.shape[0], null_m.shape[0]
    k, k0 = observed.sum(axis=0), null_m.sum(axis=0)
    p, qv, salient = _calibrated_from_counts(k, n, k0, n0, q)
    nodes = np.arange(space.n_nodes, dtype=np.int64)
    layers, units = layer_unit(nodes, space.node_layout)
    c = pseudo_count
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = ((k + c) / (n + 2 * c)) / ((k0 + c) / (n0 + 2 * c))
    return pd.DataFrame({
        "node": nodes, "layer": layers, "unit": units, "k": k.astype(np.int64), "n_runs": n,
        "freq": k / n, "k_null": k0.astype(np.int64), "n_null": n0, "null_freq": k0 / n0, "ratio": ratio,
        "p": p, "q": qv, "salient": salient,
    })


def _header_n(run_file: Any) -> int | None:
    header = getattr(run_file, "header", None) or {}
    return (header.get("config") or {}).get("n_nodes")


def node_calibrations(
    run_files: Mapping[str, Any],
    nulls: Mapping[str, NullRuns],
    *,
    n_nodes: int | None = None,
    node_layout: Sequence[Mapping] | None = None,
    q: float = 0.05,
    pseudo_count: float = PSEUDO_COUNT,
) -> pd.DataFrame:
    """:func:`node_calibration` of several personas in one long table (column ``persona`` first)."""
    space = node_space(run_files, n_nodes=n_nodes, node_layout=node_layout)
    tables = []
    for persona, run_file in run_files.items():
        table = node_calibration(run_file, null_runs_of(nulls, persona), n_nodes=space.n_nodes,
                                 node_layout=space.node_layout, q=q, pseudo_count=pseudo_count)
        table.insert(0, "persona", persona)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def calibrated_sets(
    run_files: Mapping[str, Any],
    nulls: Mapping[str, NullRuns],
    *,
    n_nodes: int | None = None,
    q: float = 0.05,
) -> dict[str, set[int]]:
    """``{persona: nodes chosen significantly more often than under the null}`` (BH at ``q``)."""
    q = check_q(q)
    for persona in run_files:  # a missing null is the likelier mistake: name it first
        null_runs_of(nulls, persona)
    space = node_space(run_files, n_nodes=n_nodes)
    if space.n_nodes is None:
        raise ValueError("the number of scanned nodes is unknown; pass n_nodes")
    out = {}
    for persona, run_file in run_files.items():
        observed = selection_matrix(run_file, space.n_nodes)
        null_m = selection_matrix(null_runs_of(nulls, persona), space.n_nodes)
        _, _, salient = _calibrated_from_counts(observed.sum(0), len(observed), null_m.sum(0), len(null_m), q)
        out[persona] = set(np.flatnonzero(salient).tolist())
    return out
