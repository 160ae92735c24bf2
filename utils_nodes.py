"""Node-side API for the notebooks: DeepScan experiments -> run files -> salient node sets and overlaps.

The notebook API is exactly the names below (``__all__``), each defined in one module:

- ``personas.scans.driver``: the paper's three levels of experiments as pools of statements,
  scanned into run files (``run_persona_scans``)
- ``personas.scans.settings``: pool and sample sizes of those experiments (``PoolSizes``, ``SampleSizes``)
- ``personas.model.answers`` and ``personas.causal``: the model's own Yes/No answers, and whether ablating
  the salient nodes or steering along the persona direction moves its readouts (against random controls)
- ``personas.nodes``: run files -> node frequencies, salient sets (union, min_fraction, or
  calibrated against null runs), overlaps, their stability, overlap claims as tests, the node report

Run files themselves are read with ``deepscan.read_run_file`` (format: ``docs/run-files.md``).
"""

from personas.model.answers import answer_margins, answer_tokens, question_prompts
from personas.causal.results import CausalResult, load_causal_result, save_causal_result
from personas.causal.check import causal_check
from personas.causal.inputs import check_inputs
from personas.causal.settings import CausalSettings
from personas.report.causal import causal_summary_markdown
from personas.nodes import (
    SALIENT_METHODS,
    NodeSpace,
    SalientSets,
    SetBootstrap,
    bootstrap_sets,
    calibrated_sets,
    compare_shared,
    node_calibration,
    node_calibrations,
    overlap_stability,
    pairwise_stability,
    save_calibration_report,
    selection_matrix,
    shared_excess,
    stability_table,
    topic_claims,
    adjust_p_values,
    exclusive_intersections,
    flagged_statements,
    intersection_p_value,
    layer_counts,
    load_runs,
    node_frequencies,
    node_frequency,
    node_space,
    overlap_table,
    pairwise_overlaps,
    precision_recall_summary,
    salient_nodes,
    salient_sets,
    save_node_report,
    set_sizes,
    shared_by_all,
    topic_sets,
)
from personas.scans.pools import LEVEL_NAMES, ScanPools, topic_target
from personas.scans.driver import check_runs_current, run_persona_scans
from personas.scans.null_runs import NullRuns, load_null_runs, null_file_name, read_null_runs
from personas.scans.pools import experiment_seed, run_file_name, scan_pools, topic_pools
from personas.scans.summary import summarise_runs
from personas.scans.settings import PoolSizes, SampleSizes

__all__ = [
    # personas.model.answers, personas.causal
    "question_prompts", "answer_tokens", "answer_margins", "CausalResult", "CausalSettings", "causal_check",
    "check_inputs", "save_causal_result", "load_causal_result", "causal_summary_markdown",
    # personas.scans.driver
    "LEVEL_NAMES", "ScanPools", "scan_pools", "topic_pools", "topic_target", "experiment_seed", "run_file_name",
    "null_file_name", "run_persona_scans", "check_runs_current",
    # personas.scans.settings
    "PoolSizes", "SampleSizes",
    # personas.nodes
    "NodeSpace", "load_runs", "node_space", "node_frequency", "node_frequencies", "salient_nodes",
    "salient_sets", "layer_counts", "flagged_statements", "set_sizes", "exclusive_intersections",
    "shared_by_all", "adjust_p_values", "intersection_p_value", "pairwise_overlaps",
    "precision_recall_summary", "summarise_runs", "topic_sets", "overlap_table", "save_node_report",
    # personas.nodes: calibrated salient sets, stability, claims
    "SALIENT_METHODS", "SalientSets", "NullRuns", "read_null_runs", "load_null_runs", "selection_matrix",
    "node_calibration", "node_calibrations", "calibrated_sets", "SetBootstrap", "bootstrap_sets",
    "stability_table", "overlap_stability", "pairwise_stability", "shared_excess", "compare_shared",
    "topic_claims", "save_calibration_report",
]
