"""``representation_extraction.ipynb``'s parameters as the settings objects its cells build.

:data:`NOTEBOOK_CHECKS` lets the study check every ``-p`` value of that notebook up front
(``personas._core.parameters.check_parameters``), with the very objects that receive them.
"""

from __future__ import annotations

from typing import Any, Mapping

from personas._core.checks import check_bool, check_choice, check_float, check_int, check_seed, check_str
from personas._core.parameters import ParameterCheck, check_n_jobs, optional, value_checks
from personas.layers.classifiers import CLASSIFIER_METRICS
from personas.layers.clusters import CLUSTER_METRICS
from personas.layers.settings import LayerProtocol, ProbeSettings
from personas.model.extraction import READ_POSITIONS, ExtractionSettings
from personas.model.loading import DTYPES
from personas.model.untrained import UntrainedControl

__all__ = ["NOTEBOOK", "NOTEBOOK_CHECKS"]

NOTEBOOK = "representation_extraction.ipynb"


def _extraction(p: Mapping[str, Any]) -> ExtractionSettings:
    position = check_choice(p["position"], "position", ("auto", *READ_POSITIONS))  # "auto": resolved per model
    return ExtractionSettings(position="last" if position == "auto" else position, template=p["template"],
                              batch_size=p["batch_size"])


def _model(p: Mapping[str, Any]) -> None:
    check_choice(p["dtype"], "dtype", tuple(DTYPES))
    check_str(p["device"], "device")


NOTEBOOK_CHECKS: tuple[ParameterCheck, ...] = (
    ParameterCheck(("position", "template", "batch_size"), _extraction),
    ParameterCheck(("n_components", "n_reps", "n_per_cluster"),
                   lambda p: LayerProtocol(n_components=p["n_components"], n_reps=p["n_reps"],
                                           n_per_cluster=p["n_per_cluster"])),
    ParameterCheck(("n_folds", "n_trees", "control_folds"),
                   lambda p: ProbeSettings(n_folds=p["n_folds"], n_trees=p["n_trees"], control_folds=p["control_folds"])),
    ParameterCheck(("untrained_per_direction",), lambda p: UntrainedControl(n_per_direction=p["untrained_per_direction"])),
    ParameterCheck(("dtype", "device"), _model),
    *value_checks({
        "n_per_direction": optional(lambda v, n: check_int(v, n, min_val=1)),
        "min_confidence": lambda v, n: check_float(v, n, min_val=0, max_val=1),
        "selection_metric": lambda v, n: check_choice(v, n, (*CLUSTER_METRICS, *CLASSIFIER_METRICS)),
        "pca_grid_personas": lambda v, n: check_int(v, n, min_val=0),
        "wording_control": check_bool, "umap": check_bool, "untrained_control": check_bool,
        "n_jobs": check_n_jobs, "scheduler": optional(check_str), "seed": check_seed,
    }, examples={"scheduler": "tcp://host:8786"}),
)
