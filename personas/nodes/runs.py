"""Reading run files and the node space they were scanned over.

- ``NodeSpace``: number of nodes and their ``(layer, unit)`` layout.
- ``node_space``: the space shared by several run files, checked for agreement.
- ``load_runs``: read the run files of several personas (format: ``docs/run-files.md``).
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd

from deepscan import node_to_layer_unit, read_run_file

from personas.nodes.overlaps import check_n_nodes

__all__ = ["NodeSpace", "node_space", "load_runs"]


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


def run_name(run_file: Any) -> str:
    """How to name a run file (or runs table) in an error message."""
    path = getattr(run_file, "path", None)
    return str(path) if path is not None else "<runs table>"


def read_runs(run_file: Any) -> pd.DataFrame:
    """The runs DataFrame of a RunFile (or a runs DataFrame itself), checked non-empty."""
    runs = run_file if isinstance(run_file, pd.DataFrame) else getattr(run_file, "runs", None)
    if not isinstance(runs, pd.DataFrame):
        raise TypeError(
            f"expected a deepscan RunFile or its runs DataFrame, got {type(run_file).__name__}; "
            "read run files with deepscan.read_run_file or load_runs"
        )
    if "nodes" not in runs.columns:
        raise ValueError(f"{run_name(run_file)}: runs table has no 'nodes' column (columns: {list(runs.columns)})")
    if len(runs) == 0:
        raise ValueError(f"{run_name(run_file)} holds no runs; rerun the scan or check the file")
    return runs


def run_config(run_file: Any) -> dict:
    header = getattr(run_file, "header", None)
    if not isinstance(header, Mapping):
        return {}
    config = header.get("config")
    return dict(config) if isinstance(config, Mapping) else {}


def _file_node_space(run_file: Any) -> NodeSpace:
    config = run_config(run_file)
    n_nodes = config.get("n_nodes")
    layout = config.get("node_layout")
    if layout is None and config.get("layers") is not None and len(config["layers"]) == 1 and n_nodes is not None:
        # one layer without an explicit layout: node index = unit of that layer
        layout = [{"layer": int(config["layers"][0]), "n_units": int(n_nodes)}]
    return NodeSpace(None if n_nodes is None else int(n_nodes), normalise_layout(layout, run_name(run_file)))


def normalise_layout(layout: Any, where: str) -> list[dict] | None:
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


def flat_nodes(runs: pd.DataFrame, where: str) -> tuple[np.ndarray, np.ndarray]:
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


def layer_unit(nodes: np.ndarray, layout: list[dict] | None) -> tuple[np.ndarray, np.ndarray]:
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
    layout = normalise_layout(node_layout, "node_layout argument")
    if layout is not None:
        total = sum(block["n_units"] for block in layout)
        if n_nodes is None:
            n_nodes = total
        elif total != n_nodes:
            raise ValueError(f"node_layout covers {total} nodes but n_nodes={n_nodes}; make them agree")
    ref_n = (check_n_nodes(n_nodes), "the n_nodes argument") if n_nodes is not None else None
    ref_layout = (layout, "the node_layout argument") if layout is not None else None
    for persona, run_file in run_files.items():
        space = _file_node_space(run_file)
        where = run_name(run_file) + (f" (persona {persona!r})" if persona else "")
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
            _, nodes = flat_nodes(read_runs(run_file), run_name(run_file))
            if nodes.size and nodes.max() >= final_n:
                raise ValueError(
                    run_name(run_file) + (f" (persona {persona!r})" if persona else "")
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
        read_runs(run_file)  # no runs -> error naming the file
        if persona is None:
            persona = run_config(run_file).get("persona") or _persona_from_path(path)
        if persona in run_files:
            raise ValueError(
                f"persona {persona!r} given twice ({run_name(run_files[persona])} and {path}); pass a dict to name them"
            )
        run_files[persona] = run_file
    node_space(run_files, n_nodes=n_nodes, node_layout=node_layout)
    return run_files
