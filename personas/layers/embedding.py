"""2-D views of statements for scatter plots: PCA or (seeded) UMAP."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from personas._core.checks import check_matrix, check_seed
from personas.layers.pca import pca_projections

__all__ = ["embed_2d"]


def embed_2d(
    X: Any,
    embedding: str = "pca",
    *,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    pca_dims: int = 50,
) -> np.ndarray:
    """2-D coordinates of statements for a scatter plot.

    Parameters
    ----------
    X : array (n_statements, hidden_size)
    embedding : {"pca", "umap"}
        PCA (first two components, see ``pca_projections``) or UMAP (seeded; run on the first
        ``pca_dims`` principal components, the usual denoising step, which also makes it fast).
    seed : int
    n_neighbors, min_dist : UMAP settings (``n_neighbors`` capped at ``n_statements - 1``).

    Returns
    -------
    ndarray (n_statements, 2)
    """
    X = check_matrix(X)
    seed = check_seed(seed)
    if embedding == "pca":
        if min(X.shape) < 2:
            raise ValueError(f"a 2-D PCA view needs at least 2 statements and 2 nodes; X has shape {X.shape}")
        return pca_projections(X, 2, seed=seed)
    if embedding != "umap":
        raise ValueError(f"embedding must be 'pca' or 'umap'; got {embedding!r}")
    if X.shape[0] < 4:
        raise ValueError(f"UMAP needs at least 4 statements; X has {X.shape[0]}")
    import umap

    dims = min(pca_dims, *X.shape)
    Z = pca_projections(X, dims, seed=seed) if X.shape[1] > dims else X.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden by random_state" and numba chatter
        reducer = umap.UMAP(
            n_components=2, n_neighbors=min(n_neighbors, X.shape[0] - 1), min_dist=min_dist, random_state=seed,
            init="spectral" if X.shape[0] > 10 else "random",
        )
        return np.asarray(reducer.fit_transform(Z), dtype=np.float64)
