"""``run_deepscan.ipynb``'s parameters as the settings objects its cells build.

:data:`NOTEBOOK_CHECKS` lets the study check every ``-p`` value of that notebook up front
(``personas._core.parameters.check_parameters``), with the very objects that receive them.
"""

from __future__ import annotations

from personas._core.checks import check_seed, check_str
from personas._core.parameters import ParameterCheck, check_n_jobs, optional, value_checks
from personas.scans.settings import PoolSizes, SampleSizes, ScanPlan, ScanSettings, scan_config

__all__ = ["NOTEBOOK", "NOTEBOOK_CHECKS"]

NOTEBOOK = "run_deepscan.ipynb"

NOTEBOOK_CHECKS: tuple[ParameterCheck, ...] = (
    ParameterCheck(("layer", "levels"),
                   lambda p: ScanPlan((), layer=0 if p["layer"] is None else p["layer"], levels=p["levels"]),
                   examples={"layer": 12}),
    ParameterCheck(("background_size", "clean_size", "anomalous_size"),
                   lambda p: PoolSizes(background=p["background_size"], clean=p["clean_size"],
                                       anomalous=p["anomalous_size"])),
    ParameterCheck(("clean_ssize", "anom_ssize", "n_runs"),
                   lambda p: SampleSizes(clean=p["clean_ssize"], anomalous=p["anom_ssize"], n_runs=p["n_runs"])),
    ParameterCheck(("preset", "score", "tail", "thresholds", "a_max", "restarts"),
                   lambda p: scan_config(optional(check_str)(p["preset"], "preset"), score=p["score"], tail=p["tail"],
                                         thresholds=p["thresholds"], a_max=p["a_max"], restarts=p["restarts"]),
                   examples={"preset": "ibm-2025"}),
    ParameterCheck(("detection", "baselines", "baseline_levels"),
                   lambda p: ScanSettings(detection=p["detection"], baselines=p["baselines"],
                                          baseline_levels=p["baseline_levels"])),
    *value_checks({"n_jobs": check_n_jobs, "scheduler": optional(check_str), "seed": check_seed},
                  examples={"scheduler": "tcp://host:8786"}),
)
