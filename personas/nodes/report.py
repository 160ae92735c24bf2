"""The node report: every node table of a set of personas, written atomically with its provenance."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from personas.io import write_json, write_table
from personas.nodes.frequencies import _check_fraction, flagged_statements, layer_counts, node_frequencies, salient_sets
from personas.nodes.overlaps import _topics_dict, exclusive_intersections, overlap_table, pairwise_overlaps, set_sizes
from personas.nodes.runs import _name, node_space
from personas.nodes.summary import precision_recall_summary
from personas.provenance import now_iso, package_versions

__all__ = ["save_node_report"]


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
        "created": now_iso(),
        "versions": package_versions(("personas", "numpy", "pandas", "scipy")),
    }
    written["metadata"] = write_json(out / "node_report.json", json.loads(json.dumps(metadata, default=str)))
    return written
