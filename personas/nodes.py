"""Salient nodes: from DeepScan run files to node sets per persona and their overlaps.

A *run file* (read by :func:`deepscan.read_run_file`) holds the runs of one
experiment; each run chose a subset of nodes (activation units). This module turns
them into

- node frequencies per persona (in how many runs each node was chosen), mapped to
  ``(layer, unit)`` when the scan covered several layers;
- salient node sets: the union over runs, as the paper, or the nodes chosen in at
  least a given fraction of runs;
- the statements most often flagged as anomalous;
- overlaps between any number of personas: set sizes, exclusive intersections
  (what an UpSet plot shows), pairwise intersections with Jaccard index and a
  hypergeometric test against chance, nodes shared by all, grouped by topic;
- precision / recall summaries over runs.

Persona names are never hard-coded: every function is driven by the dictionaries
it is given (``{persona: run_file}``, ``{persona: set_of_nodes}``,
``{topic: [persona, ...]}``).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy import special, stats

from deepscan import node_to_layer_unit, read_run_file
from personas.io import write_json, write_table

__all__ = [
    "NodeSpace",
    "load_runs",
    "node_space",
    "node_frequency",
    "node_frequencies",
    "salient_nodes",
    "salient_sets",
    "layer_counts",
    "flagged_statements",
    "set_sizes",
    "exclusive_intersections",
    "shared_by_all",
    "adjust_p_values",
    "intersection_p_value",
    "pairwise_overlaps",
    "precision_recall_summary",
    "topic_sets",
    "overlap_table",
    "save_node_report",
]

# Columns of exclusive_intersections besides the persona columns.
_RESERVED_COLUMNS = ("degree", "size", "nodes")
_CORRECTIONS = ("fdr_bh", "bonferroni", "none")


class NodeSpace(NamedTuple):
    """The nodes a set of run files was scanned over.

    Attributes
    ----------
    n_nodes : int or None
        Number of nodes (columns scanned); None when unknown (published text files
        read without an explicit ``n_nodes``).
    node_layout : list of dict or None
        ``[{"layer": int, "n_units": int}, ...]`` in concatenation order; global
        node = offset of its layer + unit. None when unknown.
    """

    n_nodes: int | None
    node_layout: list[dict] | None


# ----------------------------------------------------------------------------- inputs


def _name(run_file: Any) -> str:
    """How to name a run file (or runs table) in an error message."""
    path = getattr(run_file, "path", None)
    return str(path) if path is not None else "<runs table>"


def _runs(run_file: Any) -> pd.DataFrame:
    """The runs DataFrame of a RunFile (or a runs DataFrame itself), checked non-empty."""
    runs = run_file if isinstance(run_file, pd.DataFrame) else getattr(run_file, "runs", None)
    if not isinstance(runs, pd.DataFrame):
        raise TypeError(
            f"expected a deepscan RunFile or its runs DataFrame, got {type(run_file).__name__}; "
            "read run files with deepscan.read_run_file or load_runs"
        )
    if "nodes" not in runs.columns:
        raise ValueError(f"{_name(run_file)}: runs table has no 'nodes' column (columns: {list(runs.columns)})")
    if len(runs) == 0:
        raise ValueError(f"{_name(run_file)} holds no runs; rerun the scan or check the file")
    return runs


def _config(run_file: Any) -> dict:
    header = getattr(run_file, "header", None)
    if not isinstance(header, Mapping):
        return {}
    config = header.get("config")
    return dict(config) if isinstance(config, Mapping) else {}


def _file_node_space(run_file: Any) -> NodeSpace:
    config = _config(run_file)
    n_nodes = config.get("n_nodes")
    layout = config.get("node_layout")
    if layout is None and config.get("layers") is not None and len(config["layers"]) == 1 and n_nodes is not None:
        # one layer without an explicit layout: node index = unit of that layer
        layout = [{"layer": int(config["layers"][0]), "n_units": int(n_nodes)}]
    return NodeSpace(None if n_nodes is None else int(n_nodes), _normalise_layout(layout, _name(run_file)))


def _normalise_layout(layout: Any, where: str) -> list[dict] | None:
    if layout is None:
        return None
    try:
        out = [{"layer": int(block["layer"]), "n_units": int(block["n_units"])} for block in layout]
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(
            f"{where}: node_layout must be a list of {{'layer': int, 'n_units': int}}, got {layout!r}"
        ) from exc
    if any(block["n_units"] <= 0 for block in out):
        raise ValueError(f"{where}: node_layout has a layer with n_units <= 0: {out}")
    return out


def _flat_nodes(runs: pd.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray]:
    """All chosen nodes of all runs, deduplicated within each run.

    Returns
    -------
    run_index : ndarray of int64, shape (n_choices,)
        Position of the run (0..n_runs-1) each node belongs to.
    nodes : ndarray of int64, shape (n_choices,)
    """
    lists = [() if x is None or (isinstance(x, float) and np.isnan(x)) else x for x in runs["nodes"]]
    lengths = np.fromiter((len(x) for x in lists), dtype=np.int64, count=len(lists))
    nodes = np.fromiter(itertools.chain.from_iterable(lists), dtype=np.int64, count=int(lengths.sum()))
    run_index = np.repeat(np.arange(len(lists), dtype=np.int64), lengths)
    if nodes.size and nodes.min() < 0:
        raise ValueError(f"{where}: negative node index {int(nodes.min())} in the runs")
    if nodes.size:
        # a node listed twice within one run counts once
        width = int(nodes.max()) + 1
        key = np.unique(run_index * width + nodes)
        run_index, nodes = key // width, key % width
    return run_index, nodes


def _layer_unit(nodes: np.ndarray, layout: list[dict] | None) -> tuple[np.ndarray, np.ndarray]:
    """``(layer, unit)`` of global node indices; layer is -1 when the layout is unknown."""
    if layout is None:
        return np.full(nodes.shape, -1, dtype=np.int64), nodes.astype(np.int64)
    layers, units = node_to_layer_unit(nodes, layout)
    return np.asarray(layers, dtype=np.int64), np.asarray(units, dtype=np.int64)


def node_space(
    run_files: Mapping[str, Any],
    n_nodes: int | None = None,
    node_layout: Sequence[Mapping] | None = None,
) -> NodeSpace:
    """The node space shared by several run files, checked for agreement.

    Parameters
    ----------
    run_files : dict
        ``{persona: RunFile}``.
    n_nodes : int, optional
        Number of nodes scanned. Needed for published text files (they have no
        header); when given, it must agree with every header.
    node_layout : list of dict, optional
        ``[{"layer": int, "n_units": int}, ...]`` for files without one (published
        text files); must agree with every header that has one.

    Returns
    -------
    NodeSpace

    Raises
    ------
    ValueError
        Naming the offending file, when headers disagree on ``n_nodes`` or
        ``node_layout``, or when a run chose a node ``>= n_nodes``.
    """
    layout = _normalise_layout(node_layout, "node_layout argument")
    if layout is not None:
        total = sum(block["n_units"] for block in layout)
        if n_nodes is None:
            n_nodes = total
        elif total != n_nodes:
            raise ValueError(f"node_layout covers {total} nodes but n_nodes={n_nodes}; make them agree")
    if n_nodes is not None and (int(n_nodes) != n_nodes or n_nodes <= 0):
        raise ValueError(f"n_nodes must be a positive integer, got {n_nodes!r}")
    ref_n = (int(n_nodes), "the n_nodes argument") if n_nodes is not None else None
    ref_layout = (layout, "the node_layout argument") if layout is not None else None
    for persona, run_file in run_files.items():
        space = _file_node_space(run_file)
        where = _name(run_file) + (f" (persona {persona!r})" if persona else "")
        if space.n_nodes is not None:
            if ref_n is None:
                ref_n = (space.n_nodes, where)
            elif space.n_nodes != ref_n[0]:
                raise ValueError(
                    f"{where} was scanned over {space.n_nodes} nodes but {ref_n[1]} over {ref_n[0]}; "
                    "node overlaps are only meaningful between runs over the same nodes (same model and layers)"
                )
        if space.node_layout is not None:
            if ref_layout is None:
                ref_layout = (space.node_layout, where)
            elif space.node_layout != ref_layout[0]:
                raise ValueError(
                    f"{where} has node_layout {space.node_layout} but {ref_layout[1]} has {ref_layout[0]}; "
                    "compare runs over the same layers"
                )
    final_n = None if ref_n is None else ref_n[0]
    final_layout = None if ref_layout is None else ref_layout[0]
    if final_layout is not None and final_n is not None:
        total = sum(block["n_units"] for block in final_layout)
        if total != final_n:
            raise ValueError(f"node_layout {final_layout} covers {total} nodes but {ref_n[1]} says {final_n}")
    if final_n is not None:
        for persona, run_file in run_files.items():
            _, nodes = _flat_nodes(_runs(run_file), _name(run_file))
            if nodes.size and nodes.max() >= final_n:
                raise ValueError(
                    _name(run_file) + (f" (persona {persona!r})" if persona else "")
                    + f" chose node {int(nodes.max())} but there are only "
                    f"{final_n} nodes; pass the right n_nodes or check the file"
                )
    return NodeSpace(final_n, final_layout)


def _persona_from_path(path: Path) -> str:
    stem = path.stem
    # the published outputs are named adv_output_<persona>.out
    return stem[len("adv_output_") :] if stem.startswith("adv_output_") else stem


def load_runs(
    paths: Mapping[str, str | os.PathLike] | Sequence[str | os.PathLike],
    n_nodes: int | None = None,
    node_layout: Sequence[Mapping] | None = None,
) -> dict[str, Any]:
    """Read the run files of several personas and check they cover the same nodes.

    Parameters
    ----------
    paths : dict or list
        ``{persona: path}``; or a list of paths, each named by the persona in its
        header, else by its file stem (``adv_output_<persona>.out`` -> persona).
        Both our JSON Lines run files and the published text format are read.
    n_nodes : int, optional
        Number of nodes scanned, for published text files (no header).
    node_layout : list of dict, optional
        Layout for files without one, see :func:`node_space`.

    Returns
    -------
    dict
        ``{persona: deepscan.RunFile}``, in the order given.

    Raises
    ------
    ValueError
        Naming the file: unreadable, empty, no runs, or scanned over other nodes
        than the rest.
    """
    if isinstance(paths, (str, os.PathLike)):
        raise TypeError("paths must be a dict {persona: path} or a list of paths, not a single path")
    named: list[tuple[str | None, Path]]
    if isinstance(paths, Mapping):
        named = [(str(k), Path(v)) for k, v in paths.items()]
    else:
        named = [(None, Path(p)) for p in paths]
    if not named:
        raise ValueError("no run files given")
    run_files: dict[str, Any] = {}
    for persona, path in named:
        if not path.is_file():
            raise ValueError(f"run file {path} does not exist or is not a file")
        run_file = read_run_file(path)
        _runs(run_file)  # no runs -> error naming the file
        if persona is None:
            persona = _config(run_file).get("persona") or _persona_from_path(path)
        if persona in run_files:
            raise ValueError(
                f"persona {persona!r} given twice ({_name(run_files[persona])} and {path}); pass a dict to name them"
            )
        run_files[persona] = run_file
    node_space(run_files, n_nodes=n_nodes, node_layout=node_layout)
    return run_files


# ------------------------------------------------------------------ nodes per persona


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
    runs = _runs(run_file)
    where = _name(run_file)
    space = node_space({"": run_file}, n_nodes=n_nodes, node_layout=node_layout)
    _, nodes = _flat_nodes(runs, where)
    if space.n_nodes is not None:
        counts = np.bincount(nodes, minlength=space.n_nodes)
        node_ids = np.arange(space.n_nodes, dtype=np.int64)
    else:
        node_ids, counts = np.unique(nodes, return_counts=True)
    layers, units = _layer_unit(node_ids, space.node_layout)
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


def _check_fraction(min_fraction: float | None) -> None:
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
    _check_fraction(min_fraction)
    runs = _runs(run_file)
    run_index, nodes = _flat_nodes(runs, _name(run_file))
    uniq, counts = np.unique(nodes, return_counts=True)
    if min_fraction is None:
        return uniq
    # tolerance so that e.g. 0.3 * 10 runs keeps nodes found in exactly 3 runs
    return uniq[counts >= min_fraction * len(runs) - 1e-9]


def salient_sets(run_files: Mapping[str, Any], min_fraction: float | None = None) -> dict[str, set[int]]:
    """``{persona: set of salient nodes}`` (see :func:`salient_nodes`), in the order given."""
    _check_fraction(min_fraction)
    return {persona: set(salient_nodes(rf, min_fraction).tolist()) for persona, rf in run_files.items()}


def layer_counts(sets: Mapping[str, Iterable[int]], node_layout: Sequence[Mapping]) -> pd.DataFrame:
    """How many salient nodes of each persona lie in each layer (runs over several layers).

    Returns
    -------
    pandas.DataFrame
        Columns ``persona, layer, n_units, n_salient, fraction`` (fraction of the
        layer's units), one row per persona and layer of ``node_layout``.
    """
    layout = _normalise_layout(node_layout, "node_layout argument")
    if not layout:
        raise ValueError("node_layout is required and must not be empty")
    sets = _check_sets(sets, min_sets=1)
    n_total = sum(block["n_units"] for block in layout)
    rows = []
    for persona, nodes in sets.items():
        arr = np.fromiter(nodes, dtype=np.int64, count=len(nodes))
        if arr.size and arr.max() >= n_total:
            raise ValueError(f"persona {persona!r} has node {int(arr.max())} outside node_layout ({n_total} nodes)")
        layers, _ = _layer_unit(arr, layout)
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
    runs = _runs(run_file)
    where = _name(run_file)
    if top is not None and (int(top) != top or top < 1):
        raise ValueError(f"top must be a positive integer or None, got {top!r}")
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
    table = keys.value_counts().rename("n_flagged").reset_index()

    sampled = None
    if {"sample_clean", "sample_anomalous"} <= set(runs.columns) and not (
        runs["sample_clean"].isna().any() or runs["sample_anomalous"].isna().any()
    ):
        clean_s = np.fromiter(itertools.chain.from_iterable(runs["sample_clean"]), np.int64)
        anom_s = np.fromiter(itertools.chain.from_iterable(runs["sample_anomalous"]), np.int64)
        sampled = pd.concat(
            [
                pd.DataFrame({"anomalous": True, "pool_index": anom_s}),
                pd.DataFrame({"anomalous": False, "pool_index": clean_s}),
            ]
        ).value_counts().rename("n_sampled").reset_index()

    table["pool"] = np.where(table["anomalous"], "anomalous", "clean")
    table["flag_frequency"] = table["n_flagged"] / len(runs)
    if sampled is not None:
        table = table.merge(sampled, on=["anomalous", "pool_index"], how="left")
        table["n_sampled"] = table["n_sampled"].fillna(0).astype(np.int64)
        table["flag_rate"] = table["n_flagged"] / table["n_sampled"].where(table["n_sampled"] > 0)

    metadata = _config(run_file).get("metadata") or {}
    ids = {True: metadata.get("anomalous_pool_ids"), False: metadata.get("clean_pool_ids")}
    if ids[True] is not None or ids[False] is not None:
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


# -------------------------------------------------------------- overlaps of node sets


def _check_sets(sets: Mapping[str, Iterable[int]], min_sets: int = 1) -> dict[str, set[int]]:
    """Validate ``{persona: nodes}`` and return it as ``{str: set of int}``."""
    if not isinstance(sets, Mapping):
        raise TypeError(f"sets must be a dict {{persona: nodes}}, got {type(sets).__name__}")
    if len(sets) < min_sets:
        raise ValueError(f"need at least {min_sets} node sets, got {len(sets)}")
    out: dict[str, set[int]] = {}
    for persona, nodes in sets.items():
        arr = np.asarray(list(nodes) if isinstance(nodes, (set, frozenset)) else nodes).ravel()
        if arr.size and not (
            arr.dtype.kind in "iu" or (arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr % 1 == 0))
        ):
            raise ValueError(f"nodes of persona {persona!r} must be integer node indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and arr.min() < 0:
            raise ValueError(f"persona {persona!r} has a negative node index {int(arr.min())}")
        out[str(persona)] = set(arr.tolist())
    if len(out) != len(sets):
        raise ValueError("persona names must be distinct as strings")
    return out


def set_sizes(sets: Mapping[str, Iterable[int]], n_nodes: int | None = None) -> pd.DataFrame:
    """Size of each persona's node set.

    Returns
    -------
    pandas.DataFrame
        Columns ``persona, size`` and, with ``n_nodes``, ``fraction`` (size / n_nodes).
    """
    sets = _check_sets(sets)
    table = pd.DataFrame({"persona": list(sets), "size": [len(s) for s in sets.values()]})
    if n_nodes is not None:
        table["fraction"] = table["size"] / n_nodes
    return table


def _membership(sets: dict[str, set[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Nodes of the union and their membership matrix.

    Returns
    -------
    nodes : ndarray of int64, shape (n_union,)
    member : ndarray of bool, shape (n_union, n_sets)
    """
    nodes = np.array(sorted(set().union(*sets.values())), dtype=np.int64)
    member = np.zeros((nodes.size, len(sets)), dtype=bool)
    for j, s in enumerate(sets.values()):
        member[:, j] = np.isin(nodes, np.fromiter(s, np.int64, len(s)))
    return nodes, member


def exclusive_intersections(
    sets: Mapping[str, Iterable[int]],
    sort_by: str = "size",
    with_nodes: bool = False,
) -> pd.DataFrame:
    """Exclusive intersections: how many nodes have each exact membership pattern.

    A node counts once, in the row of exactly the personas whose sets hold it:
    the bars of an UpSet plot. Rows partition the union of the sets.

    Parameters
    ----------
    sets : dict
        ``{persona: nodes}``, any number of personas.
    sort_by : {"size", "degree"}
        "size": largest first; "degree": by number of personas, then size.
    with_nodes : bool
        Add a ``nodes`` column (sorted list of node indices per row).

    Returns
    -------
    pandas.DataFrame
        One bool column per persona (in the order given), then ``degree``
        (number of personas in the pattern) and ``size``; one row per non-empty
        pattern.
    """
    sets = _check_sets(sets)
    clash = [p for p in sets if p in _RESERVED_COLUMNS]
    if clash:
        raise ValueError(f"persona names {clash} clash with the table's columns {_RESERVED_COLUMNS}; rename them")
    if sort_by not in ("size", "degree"):
        raise ValueError(f"sort_by must be 'size' or 'degree', got {sort_by!r}")
    names = list(sets)
    nodes, member = _membership(sets)
    if len(names) > 62:
        raise ValueError(f"at most 62 sets are supported, got {len(names)}")
    codes = member.astype(np.int64) @ (np.int64(1) << np.arange(len(names), dtype=np.int64))
    patterns, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    bits = ((patterns[:, None] >> np.arange(len(names), dtype=np.int64)) & 1).astype(bool)
    table = pd.DataFrame(bits, columns=names)
    table["degree"] = bits.sum(axis=1).astype(np.int64)
    table["size"] = counts.astype(np.int64)
    if with_nodes:
        # nodes grouped by pattern (nodes are sorted, the stable sort keeps them sorted within a group)
        grouped = nodes[np.argsort(inverse, kind="stable")]
        table["nodes"] = [chunk.tolist() for chunk in np.split(grouped, np.cumsum(counts)[:-1])] if len(counts) else []
    # deterministic order: the sort key, then the membership pattern
    table["_code"] = patterns
    keys = ["size", "degree", "_code"] if sort_by == "size" else ["degree", "size", "_code"]
    asc = [False, True, True] if sort_by == "size" else [True, False, True]
    return table.sort_values(keys, ascending=asc).drop(columns="_code").reset_index(drop=True)


def shared_by_all(sets: Mapping[str, Iterable[int]]) -> np.ndarray:
    """Nodes in every persona's set, sorted (shape ``(n_shared,)``, int64)."""
    sets = _check_sets(sets)
    common = set.intersection(*sets.values())
    return np.array(sorted(common), dtype=np.int64)


def adjust_p_values(p_values: Sequence[float] | np.ndarray, method: str = "fdr_bh") -> np.ndarray:
    """Correct p-values for multiple testing.

    Parameters
    ----------
    p_values : array-like of float, shape (n_tests,)
        NaN entries are left as NaN and not counted as tests.
    method : {"fdr_bh", "bonferroni", "none"}
        Benjamini-Hochberg false discovery rate (adjusted p-values, monotone in
        p), Bonferroni family-wise error, or no correction.

    Returns
    -------
    ndarray of float, shape (n_tests,)
    """
    if method not in _CORRECTIONS:
        raise ValueError(f"method must be one of {_CORRECTIONS}, got {method!r}")
    p = np.asarray(p_values, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    if q.size and (q.min() < 0 or q.max() > 1):
        raise ValueError("p-values must lie in [0, 1]")
    m = q.size
    if method == "none" or m == 0:
        out[ok] = q
    elif method == "bonferroni":
        out[ok] = np.minimum(q * m, 1.0)
    else:
        order = np.argsort(q, kind="stable")
        scaled = q[order] * m / np.arange(1, m + 1)
        adjusted = np.minimum.accumulate(scaled[::-1])[::-1]
        back = np.empty(m)
        back[order] = np.minimum(adjusted, 1.0)
        out[ok] = back
    return out


def intersection_p_value(sizes: Sequence[int], n_nodes: int, observed: int) -> tuple[float, float]:
    """Chance of a common intersection at least as large as observed.

    Null model: each set is an independent uniformly random subset of
    ``n_nodes`` nodes with its given size. For two sets the intersection size is
    hypergeometric (``scipy.stats.hypergeom.sf(observed - 1, n_nodes, a, b)``);
    for more, the exact distribution is built one set at a time
    (``|S1 ∩ ... ∩ Sj+1|`` given ``|S1 ∩ ... ∩ Sj| = x`` is hypergeometric).

    Parameters
    ----------
    sizes : sequence of int
        Set sizes, at least 2.
    n_nodes : int
        Number of nodes all sets are drawn from.
    observed : int
        Observed size of the intersection of all sets.

    Returns
    -------
    expected : float
        Expected intersection size, ``n_nodes * prod(size / n_nodes)``.
    p_value : float
        ``P(intersection >= observed)``.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2:
        raise ValueError(f"need at least 2 set sizes, got {sizes}")
    if n_nodes is None or n_nodes <= 0:
        raise ValueError(f"n_nodes must be a positive integer, got {n_nodes!r}")
    if min(sizes) < 0 or max(sizes) > n_nodes:
        raise ValueError(f"set sizes {sizes} must lie in [0, n_nodes={n_nodes}]")
    if observed < 0 or observed > min(sizes):
        raise ValueError(f"observed intersection {observed} is impossible for set sizes {sizes}")
    expected = float(n_nodes) * float(np.prod(np.asarray(sizes, float) / n_nodes))
    if len(sizes) == 2:
        return expected, float(stats.hypergeom.sf(observed - 1, n_nodes, sizes[0], sizes[1]))
    # distribution of the running intersection size over 0..current maximum;
    # hypergeometric log-pmf from a log-factorial table (vectorised, far faster than
    # scipy's per-element pmf), only over sizes whose probability has not underflowed
    log_fact = special.gammaln(np.arange(n_nodes + 2, dtype=float) + 1.0)
    pmf = np.zeros(sizes[0] + 1)
    pmf[sizes[0]] = 1.0
    for size in sizes[1:]:
        xs = np.flatnonzero(pmf > 0)
        y_lo = max(0, int(xs.min()) + size - n_nodes)
        ys = np.arange(y_lo, min(int(xs.max()), size) + 1)
        x, y = xs[:, None], ys[None, :]
        valid = (y <= x) & (size - y <= n_nodes - x)
        xc, yc = np.where(valid, x, 0), np.where(valid, y, 0)
        log_p = (
            log_fact[xc] - log_fact[yc] - log_fact[xc - yc]
            + log_fact[n_nodes - xc] - log_fact[size - yc] - log_fact[np.maximum(n_nodes - xc - size + yc, 0)]
            - (log_fact[n_nodes] - log_fact[size] - log_fact[n_nodes - size])
        )
        transition = np.where(valid, np.exp(np.where(valid, log_p, -np.inf)), 0.0)
        new = np.zeros(min(int(xs.max()), size) + 1)
        new[ys] = pmf[xs] @ transition
        pmf = new
    return expected, float(min(1.0, pmf[observed:].sum()))


def pairwise_overlaps(
    sets: Mapping[str, Iterable[int]],
    n_nodes: int,
    correction: str = "fdr_bh",
) -> pd.DataFrame:
    """Overlap of every pair of personas, with a test against chance.

    Parameters
    ----------
    sets : dict
        ``{persona: nodes}``, at least 2.
    n_nodes : int
        Number of nodes the sets are drawn from (the scanned nodes).
    correction : {"fdr_bh", "bonferroni", "none"}
        Multiple-testing correction over all pairs.

    Returns
    -------
    pandas.DataFrame
        One row per unordered pair (in the order given): ``persona_a, persona_b,
        size_a, size_b, intersection, union, jaccard`` (intersection / union, NaN
        for two empty sets), ``overlap_coefficient`` (intersection / smaller size),
        ``expected`` (size_a * size_b / n_nodes), ``ratio`` (intersection /
        expected), ``p_value`` (hypergeometric, overlap >= observed) and
        ``p_adjusted``.
    """
    sets = _check_sets(sets, min_sets=2)
    if n_nodes is None or int(n_nodes) != n_nodes or n_nodes <= 0:
        raise ValueError(f"n_nodes must be a positive integer (number of scanned nodes), got {n_nodes!r}")
    n_nodes = int(n_nodes)
    for persona, s in sets.items():
        if s and max(s) >= n_nodes:
            raise ValueError(f"persona {persona!r} has node {max(s)} but n_nodes={n_nodes}; pass the right n_nodes")
    names = list(sets)
    _, member = _membership(sets)
    m = member.astype(np.int64)
    inter = m.T @ m  # (n_sets, n_sets) pairwise intersection sizes
    sizes = np.diag(inter)
    ia, ib = np.triu_indices(len(names), k=1)
    k = inter[ia, ib]
    sa, sb = sizes[ia], sizes[ib]
    union = sa + sb - k
    with np.errstate(divide="ignore", invalid="ignore"):
        jaccard = np.where(union > 0, k / np.maximum(union, 1), np.nan)
        smaller = np.minimum(sa, sb)
        overlap = np.where(smaller > 0, k / np.maximum(smaller, 1), np.nan)
        expected = sa * sb / n_nodes
        ratio = np.where(expected > 0, k / np.where(expected > 0, expected, 1), np.nan)
    p = stats.hypergeom.sf(k - 1, n_nodes, sa, sb)
    return pd.DataFrame(
        {
            "persona_a": [names[i] for i in ia],
            "persona_b": [names[i] for i in ib],
            "size_a": sa,
            "size_b": sb,
            "intersection": k,
            "union": union,
            "jaccard": jaccard,
            "overlap_coefficient": overlap,
            "expected": expected,
            "ratio": ratio,
            "p_value": p,
            "p_adjusted": adjust_p_values(p, correction),
        }
    )


# -------------------------------------------------------------------- run summaries


def precision_recall_summary(
    run_files: Mapping[str, Any],
    none_as: float | None = None,
    ddof: int = 0,
) -> pd.DataFrame:
    """Precision and recall over runs, per persona.

    Every run of every file is counted (``n_runs``). Precision is undefined
    (None) in a run that chose no records, recall in a run without anomalous
    records; such runs are counted in ``*_n_none`` and either left out of the
    mean (``none_as=None``) or counted as ``none_as`` (e.g. 0.0).

    Parameters
    ----------
    run_files : dict
        ``{persona: RunFile}``.
    none_as : float, optional
        Value for undefined precision / recall; None leaves those runs out of
        the mean and std (they are still counted in ``n_runs`` and ``*_n_none``).
    ddof : int
        Delta degrees of freedom of the std (0: numpy's default, population std).

    Returns
    -------
    pandas.DataFrame
        Columns ``persona, n_runs, precision_mean, precision_std,
        precision_n_none, recall_mean, recall_std, recall_n_none, score_mean,
        n_records_mean, n_nodes_mean``.
    """
    if not isinstance(run_files, Mapping) or not run_files:
        raise ValueError("run_files must be a non-empty dict {persona: RunFile}")
    rows = []
    for persona, run_file in run_files.items():
        runs = _runs(run_file)
        row: dict[str, Any] = {"persona": persona, "n_runs": len(runs)}
        for metric in ("precision", "recall"):
            values = pd.to_numeric(runs[metric], errors="coerce").to_numpy(dtype=float)
            undefined = np.isnan(values)
            if none_as is not None:
                values = np.where(undefined, float(none_as), values)
            kept = values[~np.isnan(values)]
            row[f"{metric}_mean"] = float(kept.mean()) if kept.size else np.nan
            row[f"{metric}_std"] = float(kept.std(ddof=ddof)) if kept.size > ddof else np.nan
            row[f"{metric}_n_none"] = int(undefined.sum())
        for column in ("score", "n_records", "n_nodes"):
            values = pd.to_numeric(runs[column], errors="coerce") if column in runs else pd.Series(dtype=float)
            row[f"{column}_mean"] = float(values.mean()) if len(values) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------- topics


def _topics_dict(topics: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    # accept the whole data/paper_personas.json as well as its "topics" entry
    if isinstance(topics, Mapping) and isinstance(topics.get("topics"), Mapping):
        topics = topics["topics"]
    if not isinstance(topics, Mapping) or not topics:
        raise ValueError("topics must be a non-empty dict {topic: [persona, ...]}")
    out = {}
    for topic, members in topics.items():
        if isinstance(members, str) or not isinstance(members, Iterable):
            raise ValueError(f"topic {topic!r} must map to a list of personas, got {members!r}")
        out[str(topic)] = [str(m) for m in members]
    return out


def topic_sets(
    sets: Mapping[str, Iterable[int]],
    topics: Mapping[str, Sequence[str]],
    missing: str = "raise",
) -> dict[str, dict[str, set[int]]]:
    """Group persona node sets by topic.

    Parameters
    ----------
    sets : dict
        ``{persona: nodes}``.
    topics : dict
        ``{topic: [persona, ...]}``, e.g. ``read_json("data/paper_personas.json")["topics"]``
        (the whole file is accepted too).
    missing : {"raise", "ignore"}
        What to do with a topic persona that has no set: error, or leave it out
        (topics left with no persona are dropped).

    Returns
    -------
    dict
        ``{topic: {persona: set of nodes}}``, topics and personas in the order of ``topics``.
    """
    if missing not in ("raise", "ignore"):
        raise ValueError(f"missing must be 'raise' or 'ignore', got {missing!r}")
    sets = _check_sets(sets)
    grouped: dict[str, dict[str, set[int]]] = {}
    for topic, members in _topics_dict(topics).items():
        absent = [m for m in members if m not in sets]
        if absent and missing == "raise":
            raise ValueError(
                f"topic {topic!r} lists personas without node sets: {absent} (have: {list(sets)}); "
                "pass missing='ignore' to leave them out"
            )
        present = {m: sets[m] for m in members if m in sets}
        if present:
            grouped[topic] = present
    return grouped


def overlap_table(
    sets: Mapping[str, Iterable[int]],
    n_nodes: int,
    topics: Mapping[str, Sequence[str]] | None = None,
    all_label: str = "ALL",
    correction: str = "fdr_bh",
) -> pd.DataFrame:
    """One row per group of personas (each topic, and all personas together).

    For each group: how many nodes its personas share, whether that is more than
    chance (exact test, see :func:`intersection_p_value`), and the spread of
    pairwise Jaccard indices, as in the paper's "shared by all five ethics
    personas: 719 (17.55%)".

    Parameters
    ----------
    sets : dict
        ``{persona: nodes}``.
    n_nodes : int
        Number of scanned nodes.
    topics : dict, optional
        ``{topic: [persona, ...]}``; personas without a set are left out.
    all_label : str
        Group name of the row with every persona.
    correction : {"fdr_bh", "bonferroni", "none"}
        Correction over the groups' p-values.

    Returns
    -------
    pandas.DataFrame
        Columns ``group, n_personas, personas`` (";"-joined), ``union,
        union_fraction, shared_by_all, shared_fraction, shared_expected,
        shared_p_value, shared_p_adjusted, jaccard_mean, jaccard_min, jaccard_max``.
    """
    sets = _check_sets(sets)
    if n_nodes is None or int(n_nodes) != n_nodes or n_nodes <= 0:
        raise ValueError(f"n_nodes must be a positive integer, got {n_nodes!r}")
    groups: dict[str, dict[str, set[int]]] = {}
    if topics is not None:
        groups.update(topic_sets(sets, topics, missing="ignore"))
    if all_label in groups:
        raise ValueError(f"a topic is named {all_label!r} like the all-personas row; pass another all_label")
    groups[all_label] = sets
    rows = []
    for group, members in groups.items():
        union = len(set().union(*members.values()))
        row: dict[str, Any] = {
            "group": group,
            "n_personas": len(members),
            "personas": ";".join(members),
            "union": union,
            "union_fraction": union / n_nodes,
        }
        if len(members) >= 2:
            shared = len(set.intersection(*members.values()))
            expected, p = intersection_p_value([len(s) for s in members.values()], int(n_nodes), shared)
            jac = pairwise_overlaps(members, int(n_nodes), correction="none")["jaccard"]
            row.update(
                shared_by_all=shared,
                shared_fraction=shared / n_nodes,
                shared_expected=expected,
                shared_p_value=p,
                jaccard_mean=float(jac.mean()),
                jaccard_min=float(jac.min()),
                jaccard_max=float(jac.max()),
            )
        else:
            only = next(iter(members.values()))
            row.update(
                shared_by_all=len(only),
                shared_fraction=len(only) / n_nodes,
                shared_expected=np.nan,
                shared_p_value=np.nan,
                jaccard_mean=np.nan,
                jaccard_min=np.nan,
                jaccard_max=np.nan,
            )
        rows.append(row)
    table = pd.DataFrame(rows)
    table.insert(
        table.columns.get_loc("shared_p_value") + 1,
        "shared_p_adjusted",
        adjust_p_values(table["shared_p_value"].to_numpy(), correction),
    )
    return table


# ------------------------------------------------------------------------- reports


def _versions() -> dict[str, str]:
    import scipy

    from personas import __version__

    return {
        "personas": __version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    }


def save_node_report(
    run_files: Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    n_nodes: int | None = None,
    node_layout: Sequence[Mapping] | None = None,
    min_fraction: float | None = None,
    topics: Mapping[str, Sequence[str]] | None = None,
    correction: str = "fdr_bh",
    statements: pd.DataFrame | None = None,
    top: int | None = 20,
) -> dict[str, Path]:
    """Compute every node table for a set of personas and write them atomically.

    Writes into ``out_dir``: ``precision_recall.csv``, ``node_frequency.csv``
    (long, with persona), ``salient_sets.json`` (``{persona: [node, ...]}``),
    ``set_sizes.csv``, ``exclusive_intersections.csv``, ``pairwise_overlaps.csv``
    (with at least 2 personas), ``overlap_table.csv``, ``layer_counts.csv`` (runs
    over several layers), ``flagged_statements.csv`` (when every file records
    pool indices), and ``node_report.json`` with the parameters, source files and
    package versions.

    Parameters
    ----------
    run_files : dict
        ``{persona: RunFile}``, e.g. from :func:`load_runs`.
    out_dir : path
    n_nodes, node_layout : optional
        See :func:`node_space`; needed for published text files.
    min_fraction : float, optional
        See :func:`salient_nodes`.
    topics : dict, optional
        ``{topic: [persona, ...]}`` for per-topic rows of the overlap table.
    correction : {"fdr_bh", "bonferroni", "none"}
    statements : pandas.DataFrame, optional
        Statements table to attach text to flagged statements.
    top : int or None
        Flagged statements kept per persona.

    Returns
    -------
    dict
        ``{table name: path written}``.
    """
    if not isinstance(run_files, Mapping) or not run_files:
        raise ValueError("run_files must be a non-empty dict {persona: RunFile}")
    _check_fraction(min_fraction)
    space = node_space(run_files, n_nodes=n_nodes, node_layout=node_layout)
    if space.n_nodes is None:
        raise ValueError(
            "the number of scanned nodes is unknown (published text files have no header); pass n_nodes "
            "(e.g. the hidden size of the scanned layer)"
        )
    out = Path(out_dir)
    sets = salient_sets(run_files, min_fraction)
    tables: dict[str, pd.DataFrame] = {
        "precision_recall": precision_recall_summary(run_files),
        "node_frequency": node_frequencies(run_files, space.n_nodes, space.node_layout),
        "set_sizes": set_sizes(sets, space.n_nodes),
        "exclusive_intersections": exclusive_intersections(sets),
        "overlap_table": overlap_table(sets, space.n_nodes, topics=topics, correction=correction),
    }
    if len(sets) >= 2:
        tables["pairwise_overlaps"] = pairwise_overlaps(sets, space.n_nodes, correction=correction)
    if space.node_layout is not None and len(space.node_layout) > 1:
        tables["layer_counts"] = layer_counts(sets, space.node_layout)
    flagged_note = None
    try:
        flagged = []
        for persona, run_file in run_files.items():
            table = flagged_statements(run_file, statements=statements, top=top)
            table.insert(0, "persona", persona)
            flagged.append(table)
        tables["flagged_statements"] = pd.concat(flagged, ignore_index=True)
    except ValueError as exc:
        flagged_note = f"flagged_statements not written: {exc}"
        if statements is not None:
            warnings.warn(flagged_note, stacklevel=2)

    written: dict[str, Path] = {}
    for name, table in tables.items():
        written[name] = write_table(table, out / f"{name}.csv")
    written["salient_sets"] = write_json(out / "salient_sets.json", {p: sorted(s) for p, s in sets.items()})
    metadata = {
        "kind": "node-report",
        "personas": list(run_files),
        "run_files": {p: _name(rf) for p, rf in run_files.items()},
        "formats": {p: getattr(rf, "format", None) for p, rf in run_files.items()},
        "n_nodes": space.n_nodes,
        "node_layout": space.node_layout,
        "salient_rule": "union over runs" if min_fraction is None else f"chosen in >= {min_fraction} of runs",
        "min_fraction": min_fraction,
        "topics": None if topics is None else _topics_dict(topics),
        "correction": correction,
        "overlap_test": "hypergeometric P(overlap >= observed) under independent uniform random sets",
        "tables": {name: path.name for name, path in written.items()},
        "notes": [flagged_note] if flagged_note else [],
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
    }
    written["metadata"] = write_json(out / "node_report.json", json.loads(json.dumps(metadata, default=str)))
    return written
