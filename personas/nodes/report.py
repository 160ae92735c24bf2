"""The node report: every node table of a set of personas, written atomically with its provenance."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from personas._core.io import write_json, write_table
from personas.nodes.frequencies import SalientSets, check_fraction, flagged_statements, layer_counts, node_frequencies, salient_sets
from personas.nodes.overlaps import topics_dict, exclusive_intersections, overlap_table, pairwise_overlaps, set_sizes
from personas.nodes.runs import run_name, node_space
from personas.nodes.calibration import node_calibrations
from personas.nodes.claims import topic_claims
from personas.nodes.stability import bootstrap_sets, overlap_stability, pairwise_stability, stability_table
from personas.nodes.summary import precision_recall_summary
from personas._core.provenance import now_iso, package_versions

__all__ = ["save_node_report", "save_calibration_report"]


def _checked_space(run_files, min_fraction, *, n_nodes=None, node_layout=None):
    """The node space of ``run_files`` after the checks both report writers need."""
    if not isinstance(run_files, Mapping) or not run_files:
        raise ValueError("run_files must be a non-empty dict {persona: RunFile}")
    check_fraction(min_fraction)
    space = node_space(run_files, n_nodes=n_nodes, node_layout=node_layout)
    if space.n_nodes is None:
        raise ValueError(
            "the number of scanned nodes is unknown (published text files have no header); pass n_nodes "
            "(e.g. the hidden size of the scanned layer)"
        )
    return space


def save_node_report(
    run_files: Mapping[str, Any],
    out_dir: str | os.PathLike,
    sets: SalientSets | None = None,
    *,
    topics: Mapping[str, Sequence[str]] | None = None,
    correction: str = "fdr_bh",
    statements: pd.DataFrame | None = None,
    top: int | None = 20,
    n_nodes: int | None = None,
    node_layout: Sequence[Mapping] | None = None,
) -> dict[str, Path]:
    """Compute every node table for a set of personas and write them atomically.

        sets = salient_sets(run_files, method="calibrated", nulls=nulls)
        written = save_node_report(run_files, out / "tables" / "nodes", sets, topics=topics)
        written["overlap_table"]        # the path of overlap_table.csv

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
    sets : SalientSets, optional
        The salient sets of ``run_files`` (:func:`salient_sets`; their method is recorded in every
        overlap table's ``method`` column and in ``node_report.json``); default: the union over runs.
    topics : dict, optional
        ``{topic: [persona, ...]}`` for per-topic rows of the overlap table.
    correction : {"fdr_bh", "bonferroni", "none"}
    statements : pandas.DataFrame, optional
        Statements table to attach text to flagged statements.
    top : int or None
        Flagged statements kept per persona.
    n_nodes, node_layout : optional
        See :func:`node_space`; needed for published text files.

    Returns
    -------
    dict
        ``{table name: path written}``.
    """
    space = _checked_space(run_files, None, n_nodes=n_nodes, node_layout=node_layout)
    sets = salient_sets(run_files, n_nodes=space.n_nodes) if sets is None else _checked_sets(sets, run_files)
    out = Path(out_dir)
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
    flagged, flagged_note = _flagged_table(run_files, statements, top)
    if flagged is not None:
        tables["flagged_statements"] = flagged
    written: dict[str, Path] = {}
    for name, table in tables.items():
        written[name] = write_table(table, out / f"{name}.csv")
    written["salient_sets"] = write_json(out / "salient_sets.json", {p: sorted(s) for p, s in sets.items()})
    metadata = _node_metadata(run_files, space, sets, topics, correction, written, flagged_note)
    written["metadata"] = write_json(out / "node_report.json", json.loads(json.dumps(metadata, default=str)))
    return written


def _node_metadata(run_files, space, sets: SalientSets, topics, correction: str, written: dict, note) -> dict:
    return {
        "kind": "node-report",
        "personas": list(run_files),
        "run_files": {p: run_name(rf) for p, rf in run_files.items()},
        "formats": {p: getattr(rf, "format", None) for p, rf in run_files.items()},
        "n_nodes": space.n_nodes,
        "node_layout": space.node_layout,
        "salient_method": sets.method,
        "salient_rule": sets.rule,
        "min_fraction": sets.min_fraction,
        "q": sets.q,
        "topics": None if topics is None else topics_dict(topics),
        "correction": correction,
        "overlap_test": "hypergeometric P(overlap >= observed) under independent uniform random sets",
        "tables": {name: path.name for name, path in written.items()},
        "notes": [note] if note else [],
        **_provenance(),
    }


def _checked_sets(sets: Any, run_files: Mapping[str, Any]) -> SalientSets:
    if not isinstance(sets, SalientSets):
        raise TypeError(f"sets must be the SalientSets of salient_sets(run_files, ...), got {type(sets).__name__}")
    if list(sets) != list(run_files):
        raise ValueError(f"sets cover {list(sets)} but the run files {list(run_files)}: make them from these run files")
    return sets


def _flagged_table(run_files: Mapping[str, Any], statements, top) -> tuple[pd.DataFrame | None, str | None]:
    """The most-flagged statements of every persona, or (None, why not) when a file has no pool indices."""
    try:
        flagged = []
        for persona, run_file in run_files.items():
            table = flagged_statements(run_file, statements=statements, top=top)
            table.insert(0, "persona", persona)
            flagged.append(table)
        return pd.concat(flagged, ignore_index=True), None
    except ValueError as exc:
        note = f"flagged_statements not written: {exc}"
        if statements is not None:
            warnings.warn(note, stacklevel=3)
        return None, note


def _provenance() -> dict:
    return {"created": now_iso(), "versions": package_versions(("personas", "numpy", "pandas", "scipy"))}


def save_calibration_report(
    run_files: Mapping[str, Any],
    nulls: Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    topics: Mapping[str, Sequence[str]] | None = None,
    q: float = 0.05,
    min_fraction: float | None = None,
    n_boot: int = 200,
    seed: int = 0,
    claims: Sequence[tuple[str, str]] | None = None,
    ci: float = 0.95,
) -> dict[str, Path]:
    """The calibrated salient sets beside the paper's union, their stability and the overlap claims.

        nulls = load_null_runs({p: runs_dir / name for p, name in index["null"]["2"].items()})
        written = save_calibration_report(run_files, nulls, out / "tables" / "nodes", topics=topics, seed=seed)
        written["stability"]            # the path of stability.csv

    Writes into ``out_dir`` (e.g. ``tables/nodes/``):

    - ``calibrated_sizes.csv``: per persona ``persona, n_nodes, n_runs, n_null, union_size,
      union_fraction, [min_fraction_size, min_fraction_fraction,] calibrated_size,
      calibrated_fraction, q``;
    - ``node_calibration.csv``: per persona and node (``node_calibrations``): ``persona, node,
      layer, unit, k, n_runs, freq, k_null, n_null, null_freq, ratio, p, q, salient``;
    - ``stability.csv``: per persona and method (``stability_table``): set size with its bootstrap
      interval, the halves' sizes and the split-half Jaccard index;
    - ``overlap_stability.csv``: per topic (and ALL) and method (``overlap_stability``): shared by
      all, expected, excess with its interval, ``stable`` and ``verdict``;
    - ``pairwise_stability.csv``: per pair and method, the Jaccard index with its interval;
    - ``claims.csv``: per pair of topics and method (``topic_claims``, ``N_PERMUTATIONS`` label
      splits): the difference of the shared-by-all excess, its bootstrap interval, bootstrap and
      permutation p-values (only when two topics have at least two personas each);
    - ``calibration_report.json``: parameters, sources, versions.

    Parameters
    ----------
    run_files, nulls : dict
        ``{persona: RunFile}`` and ``{persona: NullRuns}`` (``load_null_runs``).
    out_dir : path
    topics : dict, optional
        ``{topic: [persona, ...]}`` for the per-topic overlaps and the claims.
    q : float
        False discovery rate of the calibrated method.
    min_fraction : float, optional
        Also report method "min_fraction" at this threshold.
    n_boot, seed, ci :
        Bootstrap replicates over runs, its seed (also of the permutation splits) and the
        confidence level of the intervals.
    claims : list of (topic_a, topic_b), optional
        Claims "topic_a shares more than topic_b" tested one-sided; default every pair two-sided.

    Returns
    -------
    dict
        ``{table name: path written}``.
    """
    space = _checked_space(run_files, min_fraction)
    methods = [("union", None), *([("min_fraction", min_fraction)] if min_fraction is not None else []),
               ("calibrated", None)]
    boots = {m: bootstrap_sets(run_files, nulls, method=m, min_fraction=f, q=q, n_boot=n_boot, seed=seed,
                               n_nodes=space.n_nodes) for m, f in methods}
    per_node = node_calibrations(run_files, nulls, n_nodes=space.n_nodes, node_layout=space.node_layout, q=q)
    tables = {"calibrated_sizes": _calibrated_sizes(run_files, boots, per_node, space.n_nodes, q),
              "node_calibration": per_node, **_stability_tables(boots, topics, ci)}
    if topics is not None and len(claimed := _claims_table(boots, topics, claims, seed, ci)):
        tables["claims"] = claimed  # none when no two topics have two personas each
    out = Path(out_dir)
    written = {name: write_table(table, out / f"{name}.csv") for name, table in tables.items()}
    params = {"q": q, "min_fraction": min_fraction, "n_boot": n_boot, "seed": seed, "ci": ci, "n_perm": N_PERMUTATIONS}
    metadata = _calibration_metadata(run_files, nulls, space.n_nodes, boots, params, topics, written)
    written["metadata"] = write_json(out / "calibration_report.json", json.loads(json.dumps(metadata, default=str)))
    return written


#: Permutation splits of persona labels per claim (all of them when there are fewer).
N_PERMUTATIONS = 10000


def _calibration_metadata(run_files, nulls, n_nodes: int, boots: dict, params: dict, topics, written: dict) -> dict:
    return {
        "kind": "node-calibration-report",
        "personas": list(run_files),
        "run_files": {p: run_name(rf) for p, rf in run_files.items()},
        "null_files": {p: str(getattr(nulls.get(p), "path", None)) for p in run_files},
        "n_nodes": n_nodes,
        "methods": {m: b.method for m, b in boots.items()},
        **params,
        "topics": None if topics is None else topics_dict(topics),
        "test": "per node one-sided Fisher exact (persona runs vs null runs), Benjamini-Hochberg over nodes",
        "excess": "(shared by all - n_nodes * prod(size_i / n_nodes)) / n_nodes",
        "tables": {name: path.name for name, path in written.items()},
        **_provenance(),
    }


def _claims_table(boots: dict, topics, claims, seed: int, ci: float) -> pd.DataFrame:
    kwargs = {"n_perm": N_PERMUTATIONS, "seed": seed, "ci": ci}
    if claims is not None:
        kwargs["alternative"] = "greater"
    parts = [t for t in (topic_claims(b, topics, claims, **kwargs) for b in boots.values()) if len(t)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _calibrated_sizes(run_files, boots: dict, per_node: pd.DataFrame, n_nodes: int, q: float) -> pd.DataFrame:
    sizes = pd.DataFrame({"persona": list(run_files), "n_nodes": n_nodes,
                          "n_runs": boots["union"].n_runs,
                          "n_null": [per_node.loc[per_node["persona"] == p, "n_null"].iloc[0] for p in run_files]})
    for m, boot in boots.items():
        size = boot.observed.sum(-1)
        sizes[f"{m}_size"] = size
        sizes[f"{m}_fraction"] = size / n_nodes
    sizes["q"] = q
    return sizes


def _stability_tables(boots: dict, topics, ci: float) -> dict[str, pd.DataFrame]:
    return {
        "stability": pd.concat([stability_table(b, ci=ci) for b in boots.values()], ignore_index=True),
        "overlap_stability": pd.concat([overlap_stability(b, topics, ci=ci) for b in boots.values()],
                                       ignore_index=True),
        "pairwise_stability": pd.concat([pairwise_stability(b, ci=ci) for b in boots.values()], ignore_index=True),
    }
