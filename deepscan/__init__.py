"""DeepScan: exact, vectorised, reproducible subset scanning (numpy only).

Find the subset of records (statements) x nodes (activation units) whose
activations diverge most from a background, as in Speakman et al. 2018 and the
persona paper (Cintas et al. 2025); see ``docs/deepscan.md`` of the project.

Typical use::

    import deepscan as ds
    pv = ds.pvalue_ranges(background, records)            # (G, M, 2) [pmin, pmax]
    res = ds.group_scan(pv, ds.ScanConfig(score="hc"))    # ScanResult(score, alpha, records, nodes)
    exp = ds.run_experiment(background, clean_pool, anomalous_pool, clean_ssize=50, anom_ssize=50,
                            n_runs=100, seed=0, run_file="runs/agreeableness.jsonl")
    rf = ds.read_run_file("runs/agreeableness.jsonl")     # also reads the published text format

Modules: pvalues (p-value ranges), scores (BJ/HC/KS), thresholds, config
(ScanConfig, presets), scan (individual and group scans), experiment (runs,
detection power), runfile (run files).
"""

from __future__ import annotations

__version__ = "1.0.0"

from .config import PRESETS, ScanConfig  # noqa: E402
from .experiment import DetectionPower, ExperimentResult, detection_power, roc_auc, run_experiment, run_seed  # noqa: E402
from .pvalues import TAILS, pvalue_ranges, rank_counts  # noqa: E402
from .runfile import (  # noqa: E402
    FORMAT_VERSION,
    RUN_COLUMNS,
    RunFile,
    RunFileWriter,
    make_node_layout,
    node_to_layer_unit,
    open_run_file,
    package_versions,
    read_published_run_file,
    read_run_file,
    runs_frame,
)
from .scan import ScanResult, group_scan, individual_scan  # noqa: E402
from .scores import SCORES, berk_jones, get_score, higher_criticism, kolmogorov_smirnov  # noqa: E402
from .thresholds import threshold_levels, threshold_values  # noqa: E402

__all__ = [
    "__version__",
    # p-values, scores, thresholds
    "TAILS",
    "pvalue_ranges",
    "rank_counts",
    "SCORES",
    "berk_jones",
    "higher_criticism",
    "kolmogorov_smirnov",
    "get_score",
    "threshold_values",
    "threshold_levels",
    # scans
    "PRESETS",
    "ScanConfig",
    "ScanResult",
    "individual_scan",
    "group_scan",
    # experiments
    "ExperimentResult",
    "DetectionPower",
    "run_experiment",
    "detection_power",
    "run_seed",
    "roc_auc",
    # run files
    "FORMAT_VERSION",
    "RUN_COLUMNS",
    "RunFile",
    "RunFileWriter",
    "make_node_layout",
    "node_to_layer_unit",
    "open_run_file",
    "package_versions",
    "read_published_run_file",
    "read_run_file",
    "runs_frame",
]
