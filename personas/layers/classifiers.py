"""Classifiers and probes: stratified k-fold cross-validation scoring three metrics in one pass.

- the classifiers (``personas.layers.settings.CLASSIFIERS``): ``extra_trees`` (as published) and
  ``logistic`` (the linear probe).
- ``CLASSIFIER_METRICS``: accuracy, weighted precision, weighted F1.
- ``cross_validate_classifier``: every classifier on the same seeded folds, with the
  shuffled-label control.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from personas._core.checks import check_classes, check_labels, check_matrix, check_seed, check_settings
from personas._core.notes import ConstantFeaturesWarning
from personas._core.parallel import one_blas_thread
from personas._core.provenance import derive_seed, seeded_rng
from personas.layers.pca import pca_scores
from personas.layers.settings import ProbeSettings, check_classifiers

__all__ = ["CLASSIFIER_METRICS", "cross_validate_classifier"]


CLASSIFIER_METRICS: tuple[str, ...] = ("accuracy", "precision_weighted", "f1_weighted")


def _fold_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    # one call gives weighted precision and F1; the same numbers as sklearn's
    # "precision_weighted" / "f1_weighted" scorers (zero_division -> 0, as their default)
    precision, _, f1, _ = precision_recall_fscore_support(y_true, y_pred, average="weighted", zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "precision_weighted": float(precision),
        "f1_weighted": float(f1),
    }


def _standardise(Xtr: np.ndarray, Xte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z-score both folds with the training fold's mean and std (ddof=0; constant nodes unscaled)."""
    dtype = Xtr.dtype if Xtr.dtype in (np.float32, np.float64) else np.float64
    Ztr = np.array(Xtr, dtype=dtype)  # own copy, modified in place below
    mean = Ztr.mean(axis=0, dtype=np.float64)
    Ztr -= mean.astype(dtype)
    scale = np.sqrt(np.einsum("ij,ij->j", Ztr, Ztr, dtype=np.float64) / len(Ztr))
    scale[scale == 0] = 1.0  # as StandardScaler does
    Ztr /= scale.astype(dtype)
    Zte = (np.asarray(Xte, dtype=dtype) - mean.astype(dtype)) / scale.astype(dtype)
    return Ztr, Zte


def _probe_features(
    X: np.ndarray, train: np.ndarray, test: np.ndarray, n_components: int | None, seed: int, svd_iter: int
) -> tuple[np.ndarray, np.ndarray]:
    """Standardise and reduce on the training fold only; return (train, test) features.

    A training fold without variance (a constant layer, e.g. layer 0 at the last token of a chat
    template) keeps no principal direction; it gets one all-zero feature, so the probe can only
    learn its intercept and predicts the training fold's majority class (chance), as it should.
    """
    Ztr, Zte = _standardise(X[train], X[test])
    n, p = Ztr.shape
    if n_components is None or n_components >= min(n, p):
        if n < p:
            # Exact reduction: an L2-penalised linear model's weights lie in the span of the
            # training rows, so fitting on their coordinates in that span (n dims instead of p)
            # gives the same predictions as fitting on all p nodes.
            Ftr, Fte = pca_scores(Ztr, n, Z_new=Zte, exact=True)
        else:
            return Ztr, Zte
    else:
        Ftr, Fte = pca_scores(Ztr, n_components, Z_new=Zte, seed=seed, n_iter=svd_iter)
    if Ftr.shape[1] == 0:
        return np.zeros((n, 1)), np.zeros((len(Zte), 1))
    return Ftr, np.asarray(Fte, dtype=np.float64)


def warn_if_constant(X: np.ndarray, key: str = "") -> bool:
    """Warn (and return True) when every row of ``X`` is the same: nothing to learn, scores are chance."""
    constant = bool(len(X) and np.all(X == X[:1]))
    if constant:
        where = f" for {key!r}" if key else ""
        warnings.warn(
            f"the features{where} are constant (every statement has the same activations, e.g. layer 0 at "
            "the last token of a chat template): classifiers can only predict the majority class, cluster "
            "metrics report no separation; use the wording control (layer 0 averaged over the statement) instead",
            ConstantFeaturesWarning, stacklevel=3,
        )
    return constant


def _label_sets(label_sets: dict, fold: int, control_folds: int | None):
    """The (control, labels) pairs fitted on ``fold``: the controls only on the first ``control_folds``."""
    return [(c, y) for c, y in label_sets.items() if c == "none" or control_folds is None or fold < control_folds]


def cross_validate_classifier(
    X: Any,
    y: Any,
    probes: ProbeSettings | None = None,
    *,
    classifiers: Sequence[str] | None = None,
    seed: int = 0,
    shuffled_control: bool = True,
    seed_key: str = "",
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """Stratified k-fold cross-validation of classifiers predicting ``y`` from ``X``, one pass each.

    Every fold is fitted once per classifier and its predictions give all three metrics
    (accuracy, weighted precision and weighted F1: the numbers of scikit-learn's
    ``cross_validate`` with those three scorers, at a third of the fits). ``extra_trees`` is
    ``ExtraTreesClassifier(n_estimators=probes.n_trees)`` as published, one seeded
    ``random_state``. ``logistic`` is the linear probe: standardise and project on the training
    fold's top ``probe_components`` principal components (scaler and PCA see only training
    rows), then L2 logistic regression; the projection is there because full-dimensional L-BFGS
    on a paper-sized fold is memory bound and slow to converge (``probe_components=None``: the
    exact full-dimensional probe). No warm starts across folds: a model trained on the previous
    fold has seen this fold's test rows. With ``shuffled_control`` the folds are refitted with
    ``y`` permuted (control "shuffled_labels", at chance), on the first ``probes.control_folds``.

    Parameters
    ----------
    X : array (n_statements, hidden_size)
    y : array (n_statements,)
        Class of each row (persona names, directions ...); at least two classes, each with at
        least ``probes.n_folds`` rows.
    probes : ProbeSettings, optional
        Folds, forest and probe settings (default: the paper's).
    classifiers : sequence of {"extra_trees", "logistic"}, optional
        Default: ``probes.classifiers``.
    seed : int
        Seeds folds (``StratifiedKFold(shuffle=True)``), permutation, trees and randomized SVD,
        together with ``seed_key``.
    shuffled_control : bool
    seed_key : str
        Extra seed key (e.g. a persona name); the same key gives the same folds on every layer.
    n_jobs : int or None
        Threads for the ExtraTrees fits (joblib convention: -1 = all cores).

    Returns
    -------
    DataFrame
        Long table, columns ``classifier, control, fold, metric, value`` (one row per fold and
        metric); ``attrs["n_not_converged"]`` counts probe fits stopped by ``probe_max_iter``.
    """
    from sklearn.model_selection import StratifiedKFold

    probes = check_settings(probes, ProbeSettings, "probes")
    X = check_matrix(X)
    y = check_labels(y, X.shape[0], "y")
    warn_if_constant(X, seed_key)
    classifiers = probes.classifiers if classifiers is None else check_classifiers(classifiers)
    seed = check_seed(seed)
    check_classes(y, "y", min_count=probes.n_folds, what=f" for {seed_key!r}" if seed_key else "")
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)
    folds = list(StratifiedKFold(probes.n_folds, shuffle=True, random_state=derive_seed(seed, "folds", seed_key))
                 .split(X, y))
    label_sets = {"none": y}
    if shuffled_control:
        label_sets["shuffled_labels"] = seeded_rng(seed, "shuffled-labels", seed_key).permutation(y)
    rows, n_not_converged, n_constant = _fold_rows(X, folds, label_sets, classifiers, probes, (seed, seed_key), n_jobs)
    if n_constant:
        warnings.warn(
            f"the features are constant on the training folds ({seed_key!r}: no variance left after "
            "standardisation), so the linear probe is scored as the majority-class predictor",
            ConstantFeaturesWarning, stacklevel=2,
        )
    out = pd.DataFrame(rows, columns=["classifier", "control", "fold", "metric", "value"])
    out.attrs["n_not_converged"] = n_not_converged
    return out


def _fold_rows(X, folds, label_sets: dict, classifiers, probes: ProbeSettings, seeds: tuple[int, str],
               n_jobs) -> tuple[list, int, int]:
    """Every fold of every classifier: rows, probe fits at ``probe_max_iter``, constant-fold fits."""
    seed, seed_key = seeds
    rows: list[tuple] = []
    n_not_converged = n_constant = 0
    # nodes x statements, C-ordered, once: each fold's Fortran-ordered training matrix is then
    # a contiguous gather, much cheaper than a fancy-indexed Fortran copy (sklearn trees use float32)
    XT = np.ascontiguousarray(X.T, dtype=np.float32) if "extra_trees" in classifiers else None
    for i, (train, test) in enumerate(folds):
        sets = _label_sets(label_sets, i, probes.control_folds)
        if XT is not None:
            rows += _forest_rows(XT, X, train, test, sets, probes, derive_seed(seed, "extra_trees", seed_key),
                                 n_jobs, i)
        if "logistic" in classifiers:
            Ftr, Fte = _probe_features(X, train, test, probes.probe_components,
                                       derive_seed(seed, "probe-svd", seed_key, i), probes.probe_svd_iter)
            fold_rows, n_nc, constant = _probe_rows(Ftr, Fte, train, test, sets, probes, i)
            rows += fold_rows
            n_not_converged += n_nc
            n_constant += constant
    return rows, n_not_converged, n_constant


def _forest_rows(XT, X, train, test, sets, probes: ProbeSettings, random_state: int, n_jobs, fold: int) -> list:
    """One fold of ExtraTrees, real labels and controls: rows ``(classifier, control, fold, metric, value)``."""
    from sklearn.ensemble import ExtraTreesClassifier

    Xtr = np.take(XT, train, axis=1).T  # (n_train, hidden_size), Fortran order
    Xte = X[test].astype(np.float32, copy=False)
    rows = []
    for control, labels in sets:
        forest = ExtraTreesClassifier(n_estimators=probes.n_trees, random_state=random_state, n_jobs=n_jobs)
        forest.fit(Xtr, labels[train])
        for metric, value in _fold_scores(labels[test], forest.predict(Xte)).items():
            rows.append(("extra_trees", control, fold, metric, value))
    return rows


def _probe_rows(Ftr, Fte, train, test, sets, probes: ProbeSettings, fold: int) -> tuple[list, int, int]:
    """One fold of the linear probe: its rows, fits stopped at ``probe_max_iter``, constant-fold fits."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    rows, n_not_converged, n_constant = [], 0, 0
    for control, labels in sets:
        if Ftr.shape[1] == 0:
            # a constant layer (e.g. layer 0 at the chat template's last token): no feature
            # carries information, so the best any classifier can do is the training
            # fold's majority class; score that instead of failing
            n_constant += 1
            values, counts = np.unique(labels[train], return_counts=True)
            pred = np.full(len(test), values[np.argmax(counts)])
        else:
            probe = LogisticRegression(C=probes.probe_C, max_iter=probes.probe_max_iter, tol=probes.probe_tol)
            # one BLAS thread: L-BFGS-B's many tiny BLAS calls gain nothing from threads
            with warnings.catch_warnings(), one_blas_thread():
                warnings.simplefilter("ignore", ConvergenceWarning)
                probe.fit(Ftr, labels[train])
            n_not_converged += int(np.max(probe.n_iter_) >= probes.probe_max_iter)
            pred = probe.predict(Fte)
        for metric, value in _fold_scores(labels[test], pred).items():
            rows.append(("logistic", control, fold, metric, value))
    return rows, n_not_converged, n_constant
