"""Principal components of activations: exact for small matrices, seeded randomized SVD for large ones.

- ``pca_projections``: scores of statements on their first principal components (sklearn's PCA up
  to column signs, which are made deterministic).
- ``pca_scores``: the shared engine, which also scores held-out rows (a test fold) on the axes.

Small linear algebra runs with one BLAS thread (``personas._core.parallel.one_blas_thread``):
parallelism comes from joblib over personas instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from personas._core.checks import check_int, check_matrix, check_seed
from personas._core.parallel import one_blas_thread
from personas._core.provenance import seeded_rng

__all__ = ["pca_projections"]

# Above this many samples *and* features the fold PCA of the probe uses a seeded randomized SVD;
# below it, an exact eigendecomposition of the smaller Gram matrix (equal to sklearn's PCA).
EXACT_PCA_LIMIT = 1024


def _flip_signs(scores: np.ndarray) -> np.ndarray:
    # deterministic signs: the largest-magnitude projection of each component is positive
    idx = np.argmax(np.abs(scores), axis=0)
    signs = np.sign(scores[idx, np.arange(scores.shape[1])])
    signs[signs == 0] = 1
    return scores * signs


def pca_scores(
    Z: np.ndarray,
    k: int,
    *,
    Z_new: np.ndarray | None = None,
    seed: int = 0,
    n_iter: int = 2,
    exact: bool | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores of the rows of column-centred ``Z`` (n, p) on its top-``k`` principal axes.

    Also scores ``Z_new`` (m, p) on the same axes when given (e.g. a test fold, centred with the
    training mean). Exact when ``min(n, p) <= 1024`` or ``exact=True``: eigendecomposition (float64)
    of the Gram matrix ``Z Z^T`` when ``n <= p`` (new rows then score as ``Z_new Z^T U / sqrt(w)``)
    or of ``Z^T Z``; directions with zero variance are dropped, so fewer than ``k`` columns may
    come back. Otherwise a seeded randomized SVD (``n_iter`` power iterations, QR-normalised, 10
    oversamples): only its matrix products use several BLAS threads, the small QR/SVD steps one.

    Returns
    -------
    scores : ndarray (n, <=k), float64
    new_scores : ndarray (m, <=k), float64, or None
    """
    n, p = Z.shape
    if exact is None:
        exact = min(n, p) <= EXACT_PCA_LIMIT
    if exact and n <= p:
        with one_blas_thread():
            G = Z @ Z.T
            K = None if Z_new is None else Z_new @ Z.T
            w, U = np.linalg.eigh(G.astype(np.float64))
        order = np.argsort(w)[::-1][:k]
        w = w[order]
        keep = w > max(w[0], 0.0) * 1e-10 if len(w) and w[0] > 0 else np.zeros(len(w), bool)
        U, root = U[:, order][:, keep], np.sqrt(w[keep])
        scores = U * root
        return scores, None if K is None else (K.astype(np.float64) @ U) / root
    if exact:
        with one_blas_thread():
            w, V = np.linalg.eigh((Z.T @ Z).astype(np.float64))
        order = np.argsort(w)[::-1][:k]
        order = order[w[order] > max(w[order[0]], 0.0) * 1e-10] if w[order[0]] > 0 else order[:0]
        V = V[:, order]
        return Z.astype(np.float64) @ V, None if Z_new is None else Z_new.astype(np.float64) @ V
    # randomized range finder (Halko, Martinsson & Tropp 2011, algorithm 4.4)
    width = min(k + 10, n, p)
    Y = Z @ seeded_rng(seed, "range").standard_normal((p, width)).astype(Z.dtype)
    for _ in range(n_iter):
        with one_blas_thread():
            Y = np.linalg.qr(Y)[0]
        Y = Z @ (Z.T @ Y)
    with one_blas_thread():
        Q = np.linalg.qr(Y)[0]
    B = Q.T @ Z  # (width, p); Z ~ Q B, so the SVD of B gives Z's axes
    with one_blas_thread():  # B = Ub S Vt via the small (width, width) matrix B B^T = Ub S^2 Ub^T
        w, Ub = np.linalg.eigh((B @ B.T).astype(np.float64))
    order = np.argsort(w)[::-1][:k]
    order = order[w[order] > max(w[order[0]], 0.0) * 1e-10] if w[order[0]] > 0 else order[:0]
    Ub, S = Ub[:, order], np.sqrt(w[order])
    scores = (Q.astype(np.float64) @ Ub) * S
    # new rows: Z_new Vt^T = Z_new B^T Ub / S
    return scores, None if Z_new is None else ((Z_new @ B.T).astype(np.float64) @ Ub) / S


def pca_projections(X: Any, n_components: int = 4, *, seed: int = 0) -> np.ndarray:
    """Project statements on their first principal components.

    Parameters
    ----------
    X : array (n_statements, hidden_size)
    n_components : int
        Number of components, at most ``min(n_statements, hidden_size)``.
    seed : int
        Used only above 1024 statements *and* nodes, where a randomized SVD (7 power iterations)
        replaces the exact decomposition.

    Returns
    -------
    ndarray (n_statements, n_components), float64
        Equal to ``sklearn.decomposition.PCA(n_components).fit_transform(X)`` up to the sign of
        each column (signs here: the largest-magnitude projection of each component is positive).
    """
    X = check_matrix(X)
    n_components = check_int(n_components, "n_components", min_val=1)
    if n_components > min(X.shape):
        raise ValueError(
            f"n_components={n_components} exceeds min(n_statements, hidden_size)={min(X.shape)} for X of shape {X.shape}"
        )
    if X.dtype != np.float64 and min(X.shape) <= EXACT_PCA_LIMIT:
        X = X.astype(np.float64)  # small exact case: full precision, cheap
    Z = X - X.mean(axis=0, dtype=np.float64).astype(X.dtype)
    scores, _ = pca_scores(Z, n_components, seed=check_seed(seed), n_iter=7)
    if scores.shape[1] < n_components:  # rank-deficient input: pad with zero projections
        scores = np.hstack([scores, np.zeros((scores.shape[0], n_components - scores.shape[1]))])
    return _flip_signs(np.asarray(scores, dtype=np.float64))
