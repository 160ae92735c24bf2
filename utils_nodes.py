"""Node-side API for the notebooks: DeepScan experiments -> run files -> salient node sets and overlaps.

The notebook API is exactly the names below (``__all__``), each defined in one module:

- ``personas.scan_levels``: the paper's three levels of experiments as pools of statements,
  scanned into run files (``run_persona_scans``)
- ``personas.scan_settings``: pool and sample sizes of those experiments (``PoolSizes``, ``SampleSizes``)
- ``personas.nodes``: run files -> node frequencies, salient sets, overlaps, the node report

Run files themselves are read with ``deepscan.read_run_file`` (format: ``docs/run-files.md``).
"""

from personas.nodes import (
    NodeSpace,
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
    summarise_runs,
    topic_sets,
)
from personas.scan_levels import (
    LEVEL_NAMES,
    ScanPools,
    check_runs_current,
    experiment_seed,
    run_file_name,
    run_persona_scans,
    scan_pools,
    topic_pools,
    topic_target,
)
from personas.scan_settings import PoolSizes, SampleSizes

__all__ = [
    # personas.scan_levels
    "LEVEL_NAMES", "ScanPools", "scan_pools", "topic_pools", "topic_target", "experiment_seed", "run_file_name",
    "run_persona_scans", "check_runs_current",
    # personas.scan_settings
    "PoolSizes", "SampleSizes",
    # personas.nodes
    "NodeSpace", "load_runs", "node_space", "node_frequency", "node_frequencies", "salient_nodes",
    "salient_sets", "layer_counts", "flagged_statements", "set_sizes", "exclusive_intersections",
    "shared_by_all", "adjust_p_values", "intersection_p_value", "pairwise_overlaps",
    "precision_recall_summary", "summarise_runs", "topic_sets", "overlap_table", "save_node_report",
]
