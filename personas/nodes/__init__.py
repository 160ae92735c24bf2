"""Salient nodes: from DeepScan run files to node sets per persona and their overlaps.

A *run file* (read by :func:`deepscan.read_run_file`) holds the runs of one
experiment; each run chose a subset of nodes (activation units). This module turns
them into

- node frequencies per persona (in how many runs each node was chosen), mapped to
  ``(layer, unit)`` when the scan covered several layers;
- salient node sets by an explicit method: the union over runs, as the paper, the nodes
  chosen in at least a given fraction of runs, or the nodes chosen significantly more often
  than in the experiment's null (clean-only) runs;
- the statements most often flagged as anomalous;
- overlaps between any number of personas: set sizes, exclusive intersections
  (what an UpSet plot shows), pairwise intersections with Jaccard index and a
  hypergeometric test against chance, nodes shared by all, grouped by topic;
- precision / recall summaries over runs.

Persona names are never hard-coded: every function is driven by the dictionaries
it is given (``{persona: run_file}``, ``{persona: set_of_nodes}``,
``{topic: [persona, ...]}``).

Modules, one job each: ``runs`` (reading run files and the node space), ``frequencies``
(nodes per persona and salient sets), ``overlaps`` (overlaps and their statistics),
``summary`` (precision and recall over runs), ``calibration`` (null-calibrated salient
nodes), ``stability`` (split halves and bootstrap over runs), ``claims`` (overlap claims as
tests), ``report`` (the node report), ``inputs`` (a runs directory's levels, topics and statements).
"""

from personas.nodes.calibration import (
    SALIENT_METHODS,
    NullRuns,
    calibrated_sets,
    load_null_runs,
    node_calibration,
    node_calibrations,
    read_null_runs,
    selection_matrix,
)
from personas.nodes.claims import (
    compare_shared,
    topic_claims,
)
from personas.nodes.frequencies import (
    SalientSets,
    flagged_statements,
    layer_counts,
    node_frequencies,
    node_frequency,
    salient_nodes,
    salient_sets,
)
from personas.nodes.inputs import LevelRuns, level0_sets, read_level, statement_table
from personas.nodes.overlaps import (
    adjust_p_values,
    exclusive_intersections,
    intersection_p_value,
    overlap_table,
    pairwise_overlaps,
    set_sizes,
    shared_by_all,
    topic_sets,
)
from personas.nodes.report import (
    save_calibration_report,
    save_node_report,
)
from personas.nodes.runs import (
    NodeSpace,
    load_runs,
    node_space,
)
from personas.nodes.stability import (
    SetBootstrap,
    bootstrap_sets,
    overlap_stability,
    pairwise_stability,
    shared_excess,
    stability_table,
)
from personas.nodes.summary import precision_recall_summary

__all__ = [
    "LevelRuns",
    "read_level",
    "statement_table",
    "level0_sets",
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
    "SALIENT_METHODS",
    "SalientSets",
    "NullRuns",
    "read_null_runs",
    "load_null_runs",
    "selection_matrix",
    "node_calibration",
    "node_calibrations",
    "calibrated_sets",
    "SetBootstrap",
    "bootstrap_sets",
    "stability_table",
    "overlap_stability",
    "pairwise_stability",
    "shared_excess",
    "compare_shared",
    "topic_claims",
    "save_calibration_report",
]
