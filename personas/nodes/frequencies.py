"""Nodes per persona: how often each node was chosen, the salient sets, the statements most often flagged."""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from personas._core.checks import check_int
from personas.nodes.overlaps import check_sets
from personas.nodes.runs import run_config, flat_nodes, layer_unit, run_name, normalise_layout, read_runs, node_space

__all__ = [
    "SalientSets",
    "node_frequency",
    "node_frequencies",
    "salient_nodes",
    "salient_sets",
    "layer_counts",
    "flagged_statements",
]


def node_frequency(
    run_file: Any,
    n_nodes: int | None = None,
    node_layout: Sequence[Mapping] | None = None,
) -> pd.DataFrame:
    """In how many runs each node was chosen.

    Parameters
    ----------
    run_file : deepscan.RunFile or pandas.DataFrame
        A run file or its runs table (column ``nodes``: list of int per run).
    n_nodes : int, optional
        Number of nodes; defaults to the header's. When known, every node
        ``0..n_nodes-1`` gets a row (frequency 0 included); when unknown
        (published file, no argument) only nodes chosen at least once appear.
    node_layout : list of dict, optional
        Layout to map nodes to ``(layer, unit)``; defaults to the header's.

    Returns
    -------
    pandas.DataFrame
        Columns ``node, layer, unit, n_runs, frequency``; one row per node, sorted
        by node. ``frequency = n_runs / number of runs``; ``layer`` is -1 when the
        layout is unknown (then ``unit == node``).
    """
    runs = read_runs(run_file)
    where = run_name(run_file)
    space = node_space({"": run_file}, n_nodes=n_nodes, node_layout=node_layout)
    _, nodes = flat_nodes(runs, where)
    if space.n_nodes is not None:
        counts = np.bincount(nodes, minlength=space.n_nodes)
        node_ids = np.arange(space.n_nodes, dtype=np.int64)
    else:
        node_ids, counts = np.unique(nodes, return_counts=True)
    layers, units = layer_unit(node_ids, space.node_layout)
    return pd.DataFrame(
        {
            "node": node_ids,
            "layer": layers,
            "unit": units,
            "n_runs": counts.astype(np.int64),
            "frequency": counts / len(runs),
        }
    )


def node_frequencies(
    run_files: Mapping[str, Any],
    n_nodes: int | None = None,
    node_layout: Sequence[Mapping] | None = None,
) -> pd.DataFrame:
    """:func:`node_frequency` of several personas in one long table.

    Returns
    -------
    pandas.DataFrame
        Columns ``persona, node, layer, unit, n_runs, frequency``, personas in the
        order given.
    """
    space = node_space(run_files, n_nodes=n_nodes, node_layout=node_layout)
    tables = []
    for persona, run_file in run_files.items():
        table = node_frequency(run_file, n_nodes=space.n_nodes, node_layout=space.node_layout)
        table.insert(0, "persona", persona)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def check_fraction(min_fraction: float | None) -> None:
    if min_fraction is not None and not (0 < min_fraction <= 1):
        raise ValueError(
            f"min_fraction must be in (0, 1] (share of runs a node must be chosen in), got {min_fraction!r}; "
            "None takes the union over runs"
        )


def salient_nodes(run_file: Any, min_fraction: float | None = None) -> np.ndarray:
    """Salient nodes of one persona.

    Parameters
    ----------
    run_file : deepscan.RunFile or pandas.DataFrame
    min_fraction : float in (0, 1], optional
        None (default): the union of the node subsets over all runs, as the paper.
        Otherwise: the nodes chosen in at least this fraction of the runs.

    Returns
    -------
    ndarray of int64, shape (n_salient,)
        Sorted global node indices.
    """
    check_fraction(min_fraction)
    runs = read_runs(run_file)
    run_index, nodes = flat_nodes(runs, run_name(run_file))
    uniq, counts = np.unique(nodes, return_counts=True)
    if min_fraction is None:
        return uniq
    # tolerance so that e.g. 0.3 * 10 runs keeps nodes found in exactly 3 runs
    return uniq[counts >= min_fraction * len(runs) - 1e-9]


class SalientSets(dict):
    """``{persona: set of salient nodes}`` that remembers how it was made.

    Attributes
    ----------
    method : {"union", "min_fraction", "calibrated"}
    min_fraction : float or None
        The threshold of method "min_fraction".
    q : float or None
        The false discovery rate of method "calibrated".
    """

    def __init__(self, sets: Mapping[str, set[int]], method: str, min_fraction: float | None = None,
                 q: float | None = None):
        super().__init__(sets)
        self.method, self.min_fraction, self.q = method, min_fraction, q

    @property
    def rule(self) -> str:
        """The method in words, for tables, titles and report metadata."""
        if self.method == "union":
            return "union over runs"
        if self.method == "min_fraction":
            return f"chosen in >= {self.min_fraction} of runs"
        return f"chosen more often than in null runs (one-sided Fisher exact, BH q <= {self.q})"


def resolve_method(method: str | None, min_fraction: float | None) -> str:
    from personas.nodes.calibration import SALIENT_METHODS

    if method is None:  # the historical call salient_sets(run_files, min_fraction)
        return "union" if min_fraction is None else "min_fraction"
    if method not in SALIENT_METHODS:
        raise ValueError(f"method must be one of {SALIENT_METHODS}, got {method!r}")
    if method == "min_fraction" and min_fraction is None:
        raise ValueError("method 'min_fraction' needs min_fraction (e.g. 0.5: nodes chosen in half the runs)")
    if method != "min_fraction" and min_fraction is not None:
        raise ValueError(f"min_fraction={min_fraction} only applies to method 'min_fraction', not {method!r}")
    return method


def salient_sets(
    run_files: Mapping[str, Any],
    min_fraction: float | None = None,
    *,
    method: str | None = None,
    nulls: Mapping[str, Any] | None = None,
    q: float = 0.05,
    n_nodes: int | None = None,
) -> SalientSets:
    """``{persona: set of salient nodes}``, in the order given, made by an explicit method.

        runs = read_level(out / "runs", 2)
        sets = salient_sets(runs.run_files, method="calibrated", nulls=runs.nulls, q=0.05)
        sets["agreeableness"], sets.rule         # a set of node indices; the method in words

    Parameters
    ----------
    run_files : dict
        ``{persona: RunFile}``.
    min_fraction : float in (0, 1], optional
        Threshold of method "min_fraction".
    method : {"union", "min_fraction", "calibrated"}, optional
        "union": the union over runs (the paper); "min_fraction": nodes chosen in at least
        ``min_fraction`` of runs; "calibrated": nodes chosen significantly more often than in the
        null runs (``personas.nodes.calibration``). Default: "union", or "min_fraction" when
        ``min_fraction`` is given.
    nulls : dict, optional
        ``{persona: NullRuns}`` for method "calibrated" (``load_null_runs``).
    q : float
        False discovery rate of method "calibrated".
    n_nodes : int, optional
        Number of scanned nodes (method "calibrated"; default: the headers').

    Returns
    -------
    SalientSets
        A dict whose ``method``, ``min_fraction``, ``q`` and ``rule`` say how it was made.
    """
    check_fraction(min_fraction)
    method = resolve_method(method, min_fraction)
    if method == "calibrated":
        from personas.nodes.calibration import calibrated_sets

        return SalientSets(calibrated_sets(run_files, nulls, n_nodes=n_nodes, q=q), "calibrated", q=q)
    sets = {persona: set(salient_nodes(rf, min_fraction).tolist()) for persona, rf in run_files.items()}
    return SalientSets(sets, method, min_fraction=min_fraction)


def layer_counts(sets: Mapping[str, Iterable[int]], node_layout: Sequence[Mapping]) -> pd.DataFrame:
    """How many salient nodes of each persona lie in each layer (runs over several layers).

    Returns
    -------
    pandas.DataFrame
        Columns ``persona, layer, n_units, n_salient, fraction`` (fraction of the
        layer's units), one row per persona and layer of ``node_layout``.
    """
    layout = normalise_layout(node_layout, "node_layout argument")
    if not layout:
        raise ValueError("node_layout is required and must not be empty")
    sets = check_sets(sets, min_sets=1)
    n_total = sum(block["n_units"] for block in layout)
    rows = []
    for persona, nodes in sets.items():
        arr = np.fromiter(nodes, dtype=np.int64, count=len(nodes))
        if arr.size and arr.max() >= n_total:
            raise ValueError(f"persona {persona!r} has node {int(arr.max())} outside node_layout ({n_total} nodes)")
        layers, _ = layer_unit(arr, layout)
        for block in layout:
            n = int(np.count_nonzero(layers == block["layer"]))
            rows.append((persona, block["layer"], block["n_units"], n, n / block["n_units"]))
    return pd.DataFrame(rows, columns=["persona", "layer", "n_units", "n_salient", "fraction"])


def flagged_statements(
    run_file: Any,
    statements: pd.DataFrame | None = None,
    top: int | None = 20,
) -> pd.DataFrame:
    """The statements most often chosen by the scan (the records of the subsets).

    Parameters
    ----------
    run_file : deepscan.RunFile
        A JSON Lines run file: its runs store each chosen record's pool index and
        pool (``records_pool_index``, ``records_anomalous``), and its header's
        ``config.metadata`` may hold the statement ids of the pools
        (``anomalous_pool_ids``, ``clean_pool_ids``).
    statements : pandas.DataFrame, optional
        Statements table with columns ``id, statement`` (e.g.
        ``personas.statements.load_statements``) to attach the text; needs the
        pool ids in the header.
    top : int or None
        Keep the ``top`` most flagged statements (ties broken by pool then index);
        None keeps all.

    Returns
    -------
    pandas.DataFrame
        Columns ``pool`` ("anomalous" | "clean"), ``pool_index``, ``statement_id``
        (when the header has pool ids), ``n_flagged`` (runs that chose it),
        ``flag_frequency`` (n_flagged / number of runs), then ``n_sampled`` and
        ``flag_rate`` (n_flagged / n_sampled) when the runs table records the
        samples, and ``statement`` when ``statements`` is given.
    """
    runs = read_runs(run_file)
    where = run_name(run_file)
    if top is not None:
        top = check_int(top, "top", min_val=1)
    table = _flag_counts(runs, where)
    table["pool"] = np.where(table["anomalous"], "anomalous", "clean")
    table["flag_frequency"] = table["n_flagged"] / len(runs)
    sampled = _sample_counts(runs)
    if sampled is not None:
        table = table.merge(sampled, on=["anomalous", "pool_index"], how="left")
        table["n_sampled"] = table["n_sampled"].fillna(0).astype(np.int64)
        table["flag_rate"] = table["n_flagged"] / table["n_sampled"].where(table["n_sampled"] > 0)
    statement_id = _statement_ids(table, run_file, where)
    if statement_id is not None:
        table["statement_id"] = statement_id
    elif statements is not None:
        raise ValueError(
            f"{where}: the header's config.metadata has no anomalous_pool_ids / clean_pool_ids, so statement "
            "text cannot be attached; store the pool statement ids in the metadata when running the scan"
        )
    table = table.sort_values(["n_flagged", "anomalous", "pool_index"], ascending=[False, False, True])
    if top is not None:
        table = table.head(int(top))
    if statements is not None:
        if not {"id", "statement"} <= set(statements.columns):
            raise ValueError(f"statements must have columns 'id' and 'statement', got {list(statements.columns)}")
        text = statements.drop_duplicates("id").set_index("id")["statement"]
        table["statement"] = table["statement_id"].map(text)
    columns = ["pool", "pool_index", "statement_id", "n_flagged", "flag_frequency", "n_sampled", "flag_rate",
               "statement"]
    return table[[c for c in columns if c in table.columns]].reset_index(drop=True)


def _flag_counts(runs: pd.DataFrame, where: str) -> pd.DataFrame:
    """How many runs chose each (pool, pool index): columns ``anomalous, pool_index, n_flagged``."""
    missing = [c for c in ("records_pool_index", "records_anomalous") if c not in runs.columns]
    if missing or runs["records_pool_index"].isna().any() or runs["records_anomalous"].isna().any():
        raise ValueError(
            f"{where} does not record which pool statement each chosen record is "
            "(records_pool_index / records_anomalous); published text files only store sample positions, "
            "so flagged statements need a run file written by deepscan"
        )
    lengths = runs["records_pool_index"].map(len).to_numpy()
    if not np.array_equal(lengths, runs["records_anomalous"].map(len).to_numpy()):
        raise ValueError(f"{where}: records_pool_index and records_anomalous differ in length in some run")
    index = np.fromiter(itertools.chain.from_iterable(runs["records_pool_index"]), np.int64, int(lengths.sum()))
    anomalous = np.fromiter(itertools.chain.from_iterable(runs["records_anomalous"]), bool, int(lengths.sum()))
    keys = pd.DataFrame({"anomalous": anomalous, "pool_index": index})
    return keys.value_counts().rename("n_flagged").reset_index()


def _sample_counts(runs: pd.DataFrame) -> pd.DataFrame | None:
    """How many runs sampled each (pool, pool index), or None when the runs do not record their samples."""
    if not {"sample_clean", "sample_anomalous"} <= set(runs.columns) or (
        runs["sample_clean"].isna().any() or runs["sample_anomalous"].isna().any()
    ):
        return None
    clean_s = np.fromiter(itertools.chain.from_iterable(runs["sample_clean"]), np.int64)
    anom_s = np.fromiter(itertools.chain.from_iterable(runs["sample_anomalous"]), np.int64)
    return pd.concat(
        [
            pd.DataFrame({"anomalous": True, "pool_index": anom_s}),
            pd.DataFrame({"anomalous": False, "pool_index": clean_s}),
        ]
    ).value_counts().rename("n_sampled").reset_index()


def _statement_ids(table: pd.DataFrame, run_file: Any, where: str) -> list | None:
    """The statement id of each row from the header's pool ids, or None when the header has none."""
    metadata = run_config(run_file).get("metadata") or {}
    ids = {True: metadata.get("anomalous_pool_ids"), False: metadata.get("clean_pool_ids")}
    if ids[True] is None and ids[False] is None:
        return None
    statement_id = []
    for is_anom, idx in zip(table["anomalous"], table["pool_index"]):
        pool_ids = ids[bool(is_anom)]
        if pool_ids is None:
            statement_id.append(None)
            continue
        if not 0 <= idx < len(pool_ids):
            pool = "anomalous" if is_anom else "clean"
            raise ValueError(
                f"{where}: a run chose {pool} pool index {idx} but the header lists {len(pool_ids)} "
                f"{pool}_pool_ids; the file is inconsistent"
            )
        statement_id.append(str(pool_ids[idx]))
    return statement_id
