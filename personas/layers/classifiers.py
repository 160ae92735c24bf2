"""Classifiers and probes: stratified k-fold cross-validation scoring three metrics in one pass.

- ``CLASSIFIERS``: ``extra_trees`` (as published) and ``logistic`` (the linear probe).
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

from personas._core.checks import check_classes, check_int, check_labels, check_matrix, check_seed
from personas.layers.pca import _one_blas_thread, _pca_scores, _rng
from personas._core.provenance import derive_seed

__all__ = ["CLASSIFIER_METRICS", "CLASSIFIERS", "cross_validate_classifier"]


CLASSIFIER_METRICS: tuple[str, ...] = ("accuracy", "precision_weighted", "f1_weighted")


CLASSIFIERS: tuple[str, ...] = ("extra_trees", "logistic")


def _check_classifiers(classifiers: Any, name: str = "classifiers") -> tuple[str, ...]:
    if isinstance(classifiers, str):
        classifiers = (classifiers,)
    classifiers = tuple(classifiers)
    bad = [c for c in classifiers if c not in CLASSIFIERS]
    if bad:
        raise ValueError(f"{name}: unknown classifier(s) {bad}; choose from {list(CLASSIFIERS)}")
    return classifiers


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
            Ftr, Fte = _pca_scores(Ztr, n, Z_new=Zte, exact=True)
        else:
            return Ztr, Zte
    else:
        Ftr, Fte = _pca_scores(Ztr, n_components, Z_new=Zte, seed=seed, n_iter=svd_iter)
    if Ftr.shape[1] == 0:
        return np.zeros((n, 1)), np.zeros((len(Zte), 1))
    return Ftr, np.asarray(Fte, dtype=np.float64)


def _warn_if_constant(X: np.ndarray, key: str = "") -> bool:
    """Warn (and return True) when every row of ``X`` is the same: nothing to learn, scores are chance."""
    constant = bool(len(X) and np.all(X == X[:1]))
    if constant:
        where = f" for {key!r}" if key else ""
        warnings.warn(
            f"the features{where} are constant (every statement has the same activations, e.g. layer 0 at "
            "the last token of a chat template): classifiers can only predict the majority class, cluster "
            "metrics report no separation; use the wording control (layer 0 averaged over the statement) instead",
            RuntimeWarning, stacklevel=3,
        )
    return constant


def _label_sets(label_sets: dict, fold: int, control_folds: int | None):
    """The (control, labels) pairs fitted on ``fold``: the controls only on the first ``control_folds``."""
    return [(c, y) for c, y in label_sets.items() if c == "none" or control_folds is None or fold < control_folds]


def cross_validate_classifier(
    X: Any,
    y: Any,
    *,
    classifiers: Sequence[str] = CLASSIFIERS,
    n_folds: int = 10,
    seed: int = 0,
    shuffled_control: bool = True,
    seed_key: str = "",
    n_trees: int = 20,
    probe_components: int | None = 128,
    probe_C: float = 1.0,
    probe_max_iter: int = 100,
    probe_tol: float = 1e-4,
    probe_svd_iter: int = 2,
    n_jobs: int | None = None,
    control_folds: int | None = None,
) -> pd.DataFrame:
    """Stratified k-fold cross-validation of classifiers predicting ``y`` from ``X``, one pass each.

    Every fold is fitted once per classifier and its predictions give all three metrics:
    accuracy, weighted precision and weighted F1 (numerically the same as scikit-learn's
    ``cross_validate`` with those three scorers, or three ``cross_val_score`` runs, at a third of
    the fits).

    Classifiers
    -----------
    ``extra_trees``
        ``ExtraTreesClassifier(n_estimators=n_trees)`` as published (20 trees) with one seeded
        ``random_state`` (as a fixed-seed estimator in ``cross_validate``), trees built in
        ``n_jobs`` threads on a Fortran-ordered float32 copy of the training fold (the same trees,
        built faster: the splitter reads columns).
    ``logistic``
        Linear probe: standardise (mean/std of the training fold), project on the training fold's
        top ``probe_components`` principal components, then L2 logistic regression
        (``sklearn.linear_model.LogisticRegression(C=probe_C, max_iter=probe_max_iter, tol=probe_tol)``).
        Scaler and PCA see only training rows, so nothing leaks from the test fold. Why PCA: on
        a paper-sized training fold (thousands of statements x thousands of nodes) each
        full-dimensional L-BFGS step is memory bound and a shuffled-label control needs hundreds
        of steps to converge; in ``probe_components`` dimensions a step is cheap and the fits
        converge within ``probe_max_iter``. The fold PCA (a seeded randomized SVD with
        ``probe_svd_iter`` power iterations; fewer iterations are cheaper but, on the
        benchmark's synthetic data, lowered the probe's accuracy on weakly separated layers) is
        computed once per fold and shared by the real and the control fit
        (``benchmarks/bench_layer_metrics.py`` measures all of this). With ``probe_components=None`` (or at least the
        training fold's rank) the probe is the exact full-dimensional one: when the fold has fewer
        rows than nodes it is fitted on the rows' coordinates in their span, which gives the same
        predictions as all nodes (the weights of an L2-penalised linear model lie in that span).
        Warm starts across folds are deliberately not used: a model trained on the previous fold
        has seen this fold's test rows. Fits stopped by ``probe_max_iter`` are counted in
        ``result.attrs["n_not_converged"]``.

    Controls
    --------
    With ``shuffled_control``, the same folds are refitted with ``y`` randomly permuted (control
    "shuffled_labels"), which should score at chance (accuracy about the largest class share);
    ``control_folds`` limits that to the first folds (the chance level needs few estimates, and
    each control fit costs as much as a real one).

    Parameters
    ----------
    X : array (n_statements, hidden_size)
    y : array (n_statements,)
        Class of each row (persona names, directions ...); at least two classes, each with at
        least ``n_folds`` rows.
    classifiers : sequence of {"extra_trees", "logistic"}
    n_folds : int
    seed : int
        Seeds folds (``StratifiedKFold(shuffle=True)``), permutation, trees and randomized SVD,
        together with ``seed_key``.
    shuffled_control : bool
    seed_key : str
        Extra seed key (e.g. a persona name); the same key gives the same folds on every layer.
    n_trees : int
    probe_components, probe_C, probe_max_iter, probe_tol, probe_svd_iter
        Linear probe settings (see above).
    n_jobs : int or None
        Threads for the ExtraTrees fits (joblib convention: -1 = all cores).
    control_folds : int or None
        Folds the shuffled-label control is fitted on (the first ones); None: every fold.

    Returns
    -------
    DataFrame
        Long table, columns ``classifier, control, fold, metric, value`` (one row per fold and metric).
    """
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    X = check_matrix(X)
    y = check_labels(y, X.shape[0], "y")
    _warn_if_constant(X, seed_key)
    classifiers = _check_classifiers(classifiers)
    n_folds = check_int(n_folds, "n_folds", min_val=2)
    seed = check_seed(seed)
    n_trees = check_int(n_trees, "n_trees", min_val=1)
    probe_max_iter = check_int(probe_max_iter, "probe_max_iter", min_val=1)
    if probe_components is not None:
        probe_components = check_int(probe_components, "probe_components", min_val=1)
    if not probe_C > 0:
        raise ValueError(f"probe_C must be > 0; got {probe_C!r}")
    where = f" for {seed_key!r}" if seed_key else ""
    check_classes(y, "y", min_count=n_folds, what=where)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)

    if control_folds is not None:
        control_folds = check_int(control_folds, "control_folds", min_val=1, max_val=n_folds)
    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=derive_seed(seed, "folds", seed_key)).split(X, y))
    label_sets = {"none": y}
    if shuffled_control:
        label_sets["shuffled_labels"] = _rng(seed, "shuffled-labels", seed_key).permutation(y)

    rows: list[tuple] = []
    n_not_converged = 0
    if "extra_trees" in classifiers:
        # nodes x statements, C-ordered, once: each fold's Fortran-ordered training matrix is then
        # a contiguous gather, much cheaper than a fancy-indexed Fortran copy
        XT = np.ascontiguousarray(X.T, dtype=np.float32)  # sklearn trees work in float32
    n_constant = 0
    for i, (train, test) in enumerate(folds):
        if "extra_trees" in classifiers:
            Xtr = np.take(XT, train, axis=1).T  # (n_train, hidden_size), Fortran order
            Xte = X[test].astype(np.float32, copy=False)
            for control, labels in _label_sets(label_sets, i, control_folds):
                forest = ExtraTreesClassifier(
                    n_estimators=n_trees, random_state=derive_seed(seed, "extra_trees", seed_key), n_jobs=n_jobs
                )
                forest.fit(Xtr, labels[train])
                for metric, value in _fold_scores(labels[test], forest.predict(Xte)).items():
                    rows.append(("extra_trees", control, i, metric, value))
            del Xtr
        if "logistic" in classifiers:
            Ftr, Fte = _probe_features(
                X, train, test, probe_components, derive_seed(seed, "probe-svd", seed_key, i), probe_svd_iter
            )
            for control, labels in _label_sets(label_sets, i, control_folds):
                if Ftr.shape[1] == 0:
                    # a constant layer (e.g. layer 0 at the chat template's last token): no feature
                    # carries information, so the best any classifier can do is the training
                    # fold's majority class; score that instead of failing
                    n_constant += 1
                    values, counts = np.unique(labels[train], return_counts=True)
                    pred = np.full(len(test), values[np.argmax(counts)])
                    for metric, value in _fold_scores(labels[test], pred).items():
                        rows.append(("logistic", control, i, metric, value))
                    continue
                probe = LogisticRegression(C=probe_C, max_iter=probe_max_iter, tol=probe_tol)
                # one BLAS thread: L-BFGS-B's many tiny BLAS calls are much slower with threads
                # waking up for each of them, and the reduced problem gains nothing from threads
                with warnings.catch_warnings(), _one_blas_thread():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    probe.fit(Ftr, labels[train])
                n_not_converged += int(np.max(probe.n_iter_) >= probe_max_iter)
                for metric, value in _fold_scores(labels[test], probe.predict(Fte)).items():
                    rows.append(("logistic", control, i, metric, value))
    if n_constant:
        warnings.warn(
            f"the features are constant on the training folds ({seed_key!r}: no variance left after "
            "standardisation), so the linear probe is scored as the majority-class predictor",
            stacklevel=2,
        )
    out = pd.DataFrame(rows, columns=["classifier", "control", "fold", "metric", "value"])
    out.attrs["n_not_converged"] = n_not_converged
    return out
