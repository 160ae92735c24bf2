"""DeepScan: exact, vectorised, reproducible subset scanning (numpy; numba, when installed, speeds up the p-values).

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

Modules: pvalues (p-value ranges; optional compiled kernels in _compiled), scores
(BJ/HC/KS), thresholds, config (ScanConfig, presets), scan (individual and group
scans), experiment (runs, detection power), fingerprint (what runs are computed from),
runfile (run files: writing, locking, resuming, reading), runs (the runs table),
published (the paper's text format), layout (node layouts), locking (the file lock).
"""

from __future__ import annotations

from ._util import package_versions
from ._version import __version__
from .config import PRESETS, ScanConfig
from .experiment import DetectionPower, ExperimentResult, detection_power, roc_auc, run_experiment, run_seed
from .layout import make_node_layout, node_to_layer_unit
from .published import read_published_run_file
from .pvalues import TAILS, pvalue_ranges, rank_counts
from .runfile import FORMAT_VERSION, RunFileWriter, open_run_file, read_run_file
from .runs import RUN_COLUMNS, RunFile, runs_frame
from .scan import ScanResult, group_scan, individual_scan
from .scores import SCORES, berk_jones, get_score, higher_criticism, kolmogorov_smirnov
from .thresholds import threshold_levels, threshold_values

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
