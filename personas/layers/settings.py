"""Settings of the layer analyses: small frozen objects with the paper's defaults.

- ``LayerProtocol``: the cluster protocol (PCA components, repetitions, statements per cluster).
- ``ProbeSettings``: the classifiers, their folds, the forest and the linear probe.

- ``LayerControls``: the controls every analysis is read against (layer 0 and shuffled labels,
  the wording and the length control).
- ``CLASSIFIERS`` and ``check_classifiers``: the classifier names the probes know.

The notebook's parameters cell maps onto them one to one; ``analyse_layers`` takes them
(``protocol=``, ``probes=``, ``controls=``) and passes them down to every analysis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from personas._core.checks import check_bool, check_float, check_int

__all__ = ["CLASSIFIERS", "check_classifiers", "LayerProtocol", "ProbeSettings", "LayerControls"]


CLASSIFIERS: tuple[str, ...] = ("extra_trees", "logistic")


def check_classifiers(classifiers: Any, name: str = "classifiers") -> tuple[str, ...]:
    """``classifiers`` (a name or names of ``CLASSIFIERS``) as a tuple; unknown names are an error."""
    if isinstance(classifiers, str):
        classifiers = (classifiers,)
    classifiers = tuple(classifiers)
    bad = [c for c in classifiers if c not in CLASSIFIERS]
    if bad:
        raise ValueError(f"{name}: unknown classifier(s) {bad}; choose from {list(CLASSIFIERS)}")
    return classifiers


@dataclass(frozen=True)
class LayerProtocol:
    """The paper's cluster protocol, per persona and layer.

    Each of ``n_reps`` repetitions samples ``n_per_cluster`` ``+`` and ``n_per_cluster`` ``-``
    statements, fits a PCA with ``n_components`` components on them and scores the two
    directions as clusters (see ``direction_clusters``).

    Attributes
    ----------
    n_components : int
        PCA components (the paper's plots: 4).
    n_reps : int
        Repetitions with fresh samples (the paper: 5).
    n_per_cluster : int or None
        Statements per direction in each repetition (the paper: 100); None uses all of the
        smaller direction.
    """

    n_components: int = 4
    n_reps: int = 5
    n_per_cluster: int | None = 100

    def __post_init__(self) -> None:
        check_int(self.n_components, "n_components", min_val=1)
        check_int(self.n_reps, "n_reps", min_val=1)
        if self.n_per_cluster is not None:
            check_int(self.n_per_cluster, "n_per_cluster", min_val=1)


@dataclass(frozen=True)
class ProbeSettings:
    """The classifiers of the layer analyses and their settings (see ``cross_validate_classifier``).

    Attributes
    ----------
    classifiers : tuple of {"extra_trees", "logistic"}
        Persona classifiers (ExtraTrees as published, and the linear probe); empty to skip.
    direction_classifiers : tuple of {"extra_trees", "logistic"}
        ``+`` vs ``-`` classifiers within each persona; empty to skip.
    n_folds : int
        Stratified cross-validation folds (the paper: 10).
    n_trees : int
        ExtraTrees size (the paper: 20).
    probe_components : int or None
        Principal components of the training fold the linear probe sees; None: all (exact).
    probe_C, probe_max_iter : float, int
        Inverse L2 penalty and L-BFGS iteration cap of the logistic regression.
    probe_tol : float
        L-BFGS tolerance of the logistic regression.
    probe_svd_iter : int
        Power iterations of the fold's randomized SVD (``probe_components`` below the fold's rank).
    control_folds : int or None
        Folds the shuffled-label control is fitted on (the first ones); None: all ``n_folds``
        (the full protocol). Fewer halve the classifiers' cost and leave the chance level as it is.
    """

    classifiers: tuple[str, ...] = CLASSIFIERS
    direction_classifiers: tuple[str, ...] = ("logistic",)
    n_folds: int = 10
    n_trees: int = 20
    probe_components: int | None = 128
    probe_C: float = 1.0
    probe_max_iter: int = 100
    control_folds: int | None = None
    probe_tol: float = 1e-4
    probe_svd_iter: int = 2

    def __post_init__(self) -> None:
        # tuples, so that settings are hashable and compare equal however they were given
        object.__setattr__(self, "classifiers", check_classifiers(self.classifiers))
        object.__setattr__(
            self, "direction_classifiers", check_classifiers(self.direction_classifiers, "direction_classifiers")
        )
        check_int(self.n_folds, "n_folds", min_val=2)
        check_int(self.n_trees, "n_trees", min_val=1)
        if self.probe_components is not None:
            check_int(self.probe_components, "probe_components", min_val=1)
        check_float(self.probe_C, "probe_C", min_val=0, include_min=False)
        check_int(self.probe_max_iter, "probe_max_iter", min_val=1)
        if self.control_folds is not None:
            check_int(self.control_folds, "control_folds", min_val=1, max_val=self.n_folds)
        check_float(self.probe_tol, "probe_tol", min_val=0, include_min=False)
        check_int(self.probe_svd_iter, "probe_svd_iter", min_val=0)

    @property
    def probe(self) -> dict[str, Any]:
        """The forest and probe settings recorded in a table's metadata."""
        return {
            "n_trees": self.n_trees, "probe_components": self.probe_components, "probe_C": self.probe_C,
            "probe_max_iter": self.probe_max_iter, "control_folds": self.control_folds,
        }


@dataclass(frozen=True, eq=False)
class LayerControls:
    """The controls every layer analysis is read against.

    Attributes
    ----------
    baseline : bool
        Layer 0 (the embeddings) beside the layers, when available, and the shuffled-label
        control of every analysis.
    wording : array (n_statements, hidden_size), optional
        The wording control: layer 0 averaged over each statement's own tokens (a bag of input
        embeddings), whatever position the layers were taken at (``load_wording_controls``). At
        position ``last`` layer 0 is the embedding of the template's final token, the same for
        every statement, so the plain layer-0 control cannot fail; this one carries the words.
    lengths : array (n_statements,), optional
        The length control: each statement's token count, as a one-column feature.
    """

    baseline: bool = True
    wording: Any = None
    lengths: Any = None

    def __post_init__(self) -> None:
        check_bool(self.baseline, "controls.baseline")
