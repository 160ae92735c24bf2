"""The paper's cluster protocol: PCA of one persona's ``+`` and ``-`` statements, then four cluster metrics.

- ``CLUSTER_METRICS``: the metric registry (silhouette, Calinski-Harabasz, Davies-Bouldin, centroid distance).
- ``cluster_scores``: the four metrics of labelled points.
- ``direction_clusters``: repeated samples of one persona at one layer, with the shuffled-label control.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from personas._core.checks import (
    check_classes,
    check_directions,
    check_int,
    check_labels,
    check_matrix,
    check_seed,
    check_settings,
)
from personas._core.notes import IdenticalPointsWarning
from personas._core.parallel import one_blas_thread
from personas._core.provenance import seeded_rng
from personas.layers.classifiers import warn_if_constant
from personas.layers.pca import pca_projections
from personas.layers.settings import LayerProtocol

__all__ = ["ClusterMetric", "CLUSTER_METRICS", "cluster_scores", "direction_clusters"]


@dataclass(frozen=True)
class ClusterMetric:
    """One cluster metric: how it scores, how it is named, which way is better.

    Attributes
    ----------
    score : callable
        ``(Z (n_points, n_dims), labels (n_points,), centroids (n_groups, n_dims)) -> float``.
    label : str
        Its name on axes and in the report (``"Calinski-Harabasz"``).
    short : str
        Its abbreviation in report tables (``"CH"``).
    lower_is_better : bool
        Whether a smaller value means more separated groups.
    identical : float
        Its value when every point is identical (a constant layer): 0 (no separation) or NaN (0/0).
    """

    score: Callable[[np.ndarray, np.ndarray, np.ndarray], float]
    label: str
    short: str
    lower_is_better: bool = False
    identical: float = 0.0


def _centroid_distance(Z: np.ndarray, y: np.ndarray, centroids: np.ndarray) -> float:
    """Distance between the two group centroids (mean pairwise distance for more groups)."""
    diffs = centroids[:, None, :] - centroids[None, :, :]
    iu = np.triu_indices(len(centroids), 1)
    return float(np.linalg.norm(diffs[iu], axis=1).mean())


def _sklearn(name: str) -> Callable[[np.ndarray, np.ndarray, np.ndarray], float]:
    def score(Z: np.ndarray, y: np.ndarray, centroids: np.ndarray) -> float:
        import sklearn.metrics

        return float(getattr(sklearn.metrics, name)(Z, y))

    return score


#: The cluster metrics, in table order: the paper's four. A new metric is one entry here
#: (``docs/extending.md``); the results table, the plots and the report read this registry.
CLUSTER_METRICS: dict[str, ClusterMetric] = {
    "silhouette": ClusterMetric(_sklearn("silhouette_score"), "silhouette", "SH"),
    "calinski_harabasz": ClusterMetric(_sklearn("calinski_harabasz_score"), "Calinski-Harabasz", "CH",
                                       identical=float("nan")),
    "davies_bouldin": ClusterMetric(_sklearn("davies_bouldin_score"), "Davies-Bouldin", "DB", lower_is_better=True,
                                    identical=float("nan")),
    "centroid_distance": ClusterMetric(_centroid_distance, "centroid distance", "ED"),
}


def cluster_scores(Z: Any, labels: Any) -> dict[str, float]:
    """Separation of labelled groups of points: every metric of ``CLUSTER_METRICS``.

    Parameters
    ----------
    Z : array (n_points, n_dims)
        Usually PCA projections of one persona's ``+`` and ``-`` statements.
    labels : array (n_points,)
        Group of each point (e.g. direction); at least two groups, fewer than ``n_points``.

    Returns
    -------
    dict
        ``silhouette`` (higher = more separated), ``calinski_harabasz`` (higher),
        ``davies_bouldin`` (lower) as in ``sklearn.metrics``, and ``centroid_distance``: the
        Euclidean distance between the two group centroids (mean pairwise distance for more groups).
        Identical points (a constant layer) score each metric's ``identical`` value: silhouette and
        centroid distance 0, Calinski-Harabasz and Davies-Bouldin NaN (both 0/0).
    """
    Z = check_matrix(Z, "Z")
    y = check_labels(labels, Z.shape[0], "labels")
    classes, _ = check_classes(y, "labels")
    if len(classes) >= Z.shape[0]:
        raise ValueError(f"labels has {len(classes)} groups for {Z.shape[0]} points; need fewer groups than points")
    if not np.ptp(Z, axis=0).any():
        # every point identical (a constant layer, e.g. layer 0 at the template's last token):
        # no separation at all; CH and DB are 0/0 ratios, which sklearn reports as 1 and 0 (a perfect DB!)
        warnings.warn("all points are identical: the groups cannot be told apart (constant features); "
                      "silhouette and centroid distance are 0, Calinski-Harabasz and Davies-Bouldin NaN",
                      IdenticalPointsWarning, stacklevel=2)
        return {name: m.identical for name, m in CLUSTER_METRICS.items()}
    if np.all(Z == Z[:1]):
        return {name: m.identical for name, m in CLUSTER_METRICS.items()}
    centroids = np.stack([Z[y == c].mean(axis=0) for c in classes])
    return {name: m.score(Z, y, centroids) for name, m in CLUSTER_METRICS.items()}


def cluster_plan(
    d: np.ndarray, n_per_cluster: int | None, n_components: int, hidden_size: int, key: str = ""
) -> tuple[np.ndarray, np.ndarray, int]:
    """Positive rows, negative rows and the per-direction sample size; clear errors if impossible.

    ``d`` holds the directions of one persona's statements; ``key`` names it in the messages.
    """
    pos, neg = np.flatnonzero(d == "positive"), np.flatnonzero(d == "negative")
    where = f" for {key!r}" if key else ""
    if len(pos) == 0 or len(neg) == 0:
        only = "negative" if len(pos) == 0 else "positive"
        raise ValueError(
            f"directions{where} has only one class ({only!r}): the cluster metrics need both "
            "positive and negative statements"
        )
    if n_per_cluster is None:
        m = min(len(pos), len(neg))
    else:
        m = check_int(n_per_cluster, "n_per_cluster", min_val=1)
    if len(pos) < m or len(neg) < m:
        raise ValueError(
            f"{len(pos)} positive and {len(neg)} negative statements{where}, but n_per_cluster={m} "
            "needs that many of each; lower n_per_cluster (or pass None to use all)"
        )
    if m < 2 or n_components > 2 * m:
        raise ValueError(
            f"n_per_cluster={m} is too small for n_components={n_components}: need n_per_cluster >= 2 "
            "and 2 * n_per_cluster >= n_components"
        )
    if n_components > hidden_size:
        raise ValueError(f"n_components={n_components} exceeds hidden_size={hidden_size}")
    return pos, neg, m


def direction_clusters(
    X: Any,
    directions: Any,
    protocol: LayerProtocol | None = None,
    *,
    seed: int = 0,
    shuffled_control: bool = True,
    sample_key: str = "",
) -> pd.DataFrame:
    """The paper's protocol on one persona and one layer: PCA, then cluster metrics of ``+`` vs ``-``.

    Each of ``protocol.n_reps`` repetitions draws ``protocol.n_per_cluster`` positive and as many
    negative statements without replacement, fits PCA (``protocol.n_components``) on those rows
    and scores the two directions as clusters on the projections (``cluster_scores``). The
    shuffled-labels control scores the same projections with the direction labels permuted.

    Parameters
    ----------
    X : array (n_statements, hidden_size)
        One persona's activations at one layer.
    directions : array (n_statements,)
        "positive" / "negative" per row.
    protocol : LayerProtocol, optional
        Components, repetitions and statements per direction (default: the paper's 4, 5, 100).
    seed : int
    shuffled_control : bool
        Also score with permuted direction labels (control "shuffled_labels").
    sample_key : str
        Extra seed key, e.g. the persona name; the samples depend on ``seed``, ``sample_key`` and
        the repetition only, so every layer is scored on the same statements.

    Returns
    -------
    DataFrame
        Long table, columns ``control, rep, metric, value``.
    """
    protocol = check_settings(protocol, LayerProtocol, "protocol")
    X = check_matrix(X)
    d = check_labels(directions, X.shape[0], "directions").astype(str)
    check_directions(d, "directions")
    seed = check_seed(seed)
    pos, neg, m = cluster_plan(d, protocol.n_per_cluster, protocol.n_components, X.shape[1], sample_key)
    warn_if_constant(X, sample_key)
    labels = np.repeat(np.array(["positive", "negative"]), m)
    rows = []
    with one_blas_thread():  # small matrices: BLAS threads cost more than they give
        for rep in range(protocol.n_reps):
            rng = seeded_rng(seed, "cluster", sample_key, rep)
            idx = np.concatenate([rng.choice(pos, m, replace=False), rng.choice(neg, m, replace=False)])
            Z = pca_projections(X[idx], protocol.n_components)
            for metric, value in cluster_scores(Z, labels).items():
                rows.append(("none", rep, metric, value))
            if shuffled_control:
                perm = seeded_rng(seed, "cluster-shuffle", sample_key, rep).permutation(labels)
                for metric, value in cluster_scores(Z, perm).items():
                    rows.append(("shuffled_labels", rep, metric, value))
    return pd.DataFrame(rows, columns=["control", "rep", "metric", "value"])
