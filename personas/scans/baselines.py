"""Baseline anomaly detectors on the very samples a DeepScan experiment scanned.

The persona paper compares DeepScan with Local Outlier Factor, Isolation Forest
and KMeans on all nodes of the layer. Here each baseline sees the same
background and the same per-run samples as DeepScan (read from the run file), and
flags records of the sample as anomalous:

- ``lof``: ``LocalOutlierFactor(novelty=True)`` fitted on the background; a record
  is flagged when predicted an outlier;
- ``iforest``: ``IsolationForest`` fitted on the background (seeded), same rule;
- ``kmeans``: two clusters on the sample (seeded); the cluster whose centroid is
  farther from the background mean is flagged.

LOF and Isolation Forest are fitted once per experiment (the background does not
change between runs) and predict each pool record once: a novelty prediction reads
one record alone, so a run's flags are its records' flags. KMeans fits each sample.
Precision = |flagged & anomalous| / |flagged| (None when nothing is flagged),
recall = |flagged & anomalous| / n_anomalous, as DeepScan's.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from personas._core.parallel import one_blas_thread

__all__ = ["BASELINES", "baseline_runs"]

BASELINES = ("lof", "iforest", "kmeans")


def _precision_recall(flagged: np.ndarray, is_anomalous: np.ndarray) -> tuple[float | None, float | None]:
    hits = int(np.sum(flagged & is_anomalous))
    n_flagged, n_anomalous = int(flagged.sum()), int(is_anomalous.sum())
    precision = hits / n_flagged if n_flagged else None
    recall = hits / n_anomalous if n_anomalous else None
    return precision, recall


def baseline_runs(
    background: np.ndarray,
    clean_pool: np.ndarray,
    anomalous_pool: np.ndarray,
    samples: Iterable[tuple[int, Sequence[int], Sequence[int]]],
    *,
    methods: Sequence[str] = BASELINES,
    seed: int = 0,
) -> pd.DataFrame:
    """Run the baselines on each sample and score them like DeepScan.

    Parameters
    ----------
    background : ndarray, (n_background, n_nodes)
    clean_pool : ndarray, (n_clean, n_nodes)
    anomalous_pool : ndarray, (n_anomalous, n_nodes)
    samples : iterable of (run_id, clean_indices, anomalous_indices)
        The records of each run, as indices into the two pools; e.g. from a run
        file: ``zip(runs.run_id, runs.sample_clean, runs.sample_anomalous)``.
    methods : sequence of {"lof", "iforest", "kmeans"}
    seed : int
        Seed of Isolation Forest and KMeans.

    Returns
    -------
    DataFrame with columns run_id, method, n_flagged, precision, recall.
    """
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor

    unknown = sorted(set(methods) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {list(BASELINES)}")
    for name, arr in [("background", background), ("clean_pool", clean_pool), ("anomalous_pool", anomalous_pool)]:
        if np.ndim(arr) != 2 or len(arr) == 0:
            raise ValueError(f"{name} must be a non-empty 2-D array (records, nodes), got shape {np.shape(arr)}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or inf activations")
    if not (background.shape[1] == clean_pool.shape[1] == anomalous_pool.shape[1]):
        raise ValueError(
            f"node counts differ: background {background.shape[1]}, clean {clean_pool.shape[1]}, "
            f"anomalous {anomalous_pool.shape[1]}"
        )

    detectors = {}
    if "lof" in methods:
        detectors["lof"] = LocalOutlierFactor(n_neighbors=min(20, len(background) - 1), novelty=True).fit(background)
    if "iforest" in methods:
        detectors["iforest"] = IsolationForest(random_state=seed).fit(background)
    centre = background.mean(axis=0)
    # a novelty detector scores each record on its own: flag every pool record once, then pick each run's
    pool_flags = {name: (d.predict(clean_pool) == -1, d.predict(anomalous_pool) == -1) for name, d in detectors.items()}

    rows = []
    with one_blas_thread():  # KMeans on 100 records: OpenMP threads cost more than they share (3x here)
        for run_id, clean_idx, anom_idx in samples:
            rows += _run_rows(int(run_id), clean_pool, anomalous_pool, clean_idx, anom_idx, methods, pool_flags,
                              centre, seed)
    return pd.DataFrame(rows, columns=["run_id", "method", "n_flagged", "precision", "recall"])


def _run_rows(run_id: int, clean_pool: np.ndarray, anomalous_pool: np.ndarray, clean_idx, anom_idx,
              methods: Sequence[str], pool_flags: dict, centre: np.ndarray, seed: int) -> list[dict]:
    """One run's row per method: ``pool_flags[method]`` = (clean flags, anomalous flags) of every pool
    record for the novelty detectors; KMeans fits the run's sample (``centre``: the background mean)."""
    from sklearn.cluster import KMeans

    clean_idx, anom_idx = np.asarray(clean_idx, dtype=int), np.asarray(anom_idx, dtype=int)
    is_anomalous = np.r_[np.zeros(len(clean_idx), bool), np.ones(len(anom_idx), bool)]
    rows = []
    for method in methods:
        if method == "kmeans":
            sample = np.concatenate([clean_pool[clean_idx], anomalous_pool[anom_idx]])
            km = KMeans(n_clusters=2, n_init=10, random_state=seed).fit(sample)
            far = int(np.argmax(np.linalg.norm(km.cluster_centers_ - centre, axis=1)))
            flagged = km.labels_ == far
        else:
            clean_flags, anomalous_flags = pool_flags[method]
            flagged = np.concatenate([clean_flags[clean_idx], anomalous_flags[anom_idx]])
        precision, recall = _precision_recall(flagged, is_anomalous)
        rows.append({"run_id": run_id, "method": method, "n_flagged": int(flagged.sum()),
                     "precision": precision, "recall": recall})
    return rows
