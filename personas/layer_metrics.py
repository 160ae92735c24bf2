"""Layer localisation: which layers separate personas, how strongly, and whether that is more than wording.

Three analyses, each run per layer on plain arrays (activations ``(n_statements, hidden_size)``
plus row-aligned labels), each reported beside two controls:

``cluster``
    The paper's protocol, per persona: PCA of ``n_per_direction`` ``+`` and ``-`` statements,
    then silhouette, Calinski-Harabasz, Davies-Bouldin and the Euclidean distance between the
    two centroids on the projections; ``n_reps`` seeded repetitions, mean and std.
``persona_classifier``
    Across personas: predict the persona from the activations with ExtraTrees (20 trees, as
    published) and a linear probe, in ONE stratified k-fold pass per classifier that scores
    accuracy, weighted precision and weighted F1 on the same predictions (the published code
    ran three separate cross-validations, one per metric).
``direction_classifier``
    Within each persona: predict ``+`` vs ``-`` (the linear probe by default; ExtraTrees on request).

Controls: the embedding layer (index 0, added automatically when it is in the activations) and
``shuffled_labels``, the same pipeline on randomly permuted labels (same folds, same samples), which
should sit at chance. Results come as one tidy table (see ``RESULT_COLUMNS``); ``most_divergent_layers``
names the layers that separate personas most and whether they fall in the final third of the model.

Seeds: every random choice (samples, folds, permutations, trees, randomized SVD) derives from ``seed``
and a stable key (analysis, persona, repetition or fold), never from the layer, so all layers are
compared on the same statements, folds and permutations, and results do not depend on ``n_jobs``.
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
import warnings
import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from threadpoolctl import ThreadpoolController
from tqdm.auto import tqdm

from personas.io import read_json, write_json, write_table

__all__ = [
    "CLUSTER_METRICS",
    "CLASSIFIER_METRICS",
    "CLASSIFIERS",
    "LOWER_IS_BETTER",
    "RESULT_COLUMNS",
    "check_layers",
    "relative_depth",
    "pca_projections",
    "cluster_scores",
    "direction_clusters",
    "cross_validate_classifier",
    "cluster_separation",
    "persona_classification",
    "direction_classification",
    "analyse_layers",
    "save_results",
    "load_results",
    "combine_results",
    "select_metric_rows",
    "most_divergent_layers",
    "choose_layer",
    "embed_2d",
    "synthetic_activations",
]

CLUSTER_METRICS: tuple[str, ...] = ("silhouette", "calinski_harabasz", "davies_bouldin", "centroid_distance")
CLASSIFIER_METRICS: tuple[str, ...] = ("accuracy", "precision_weighted", "f1_weighted")
CLASSIFIERS: tuple[str, ...] = ("extra_trees", "logistic")
#: Metrics where a smaller value means more separated (all others: larger is more separated).
LOWER_IS_BETTER: frozenset[str] = frozenset({"davies_bouldin"})
#: Columns of every results table, in this order. ``classifier`` is "none" for the cluster analysis,
#: ``persona`` is "ALL" for the across-persona classifier, ``std`` is over repetitions or folds
#: (ddof=0) and ``n`` is how many values the mean and std summarise.
RESULT_COLUMNS: list[str] = [
    "model",
    "layer",
    "relative_depth",
    "persona",
    "analysis",
    "classifier",
    "control",
    "metric",
    "mean",
    "std",
    "n",
]
_KEY_COLUMNS = ["model", "layer", "persona", "analysis", "classifier", "control", "metric"]
_DIRECTIONS = ("positive", "negative")
_CONTROLS = ("none", "shuffled_labels")
# Small linear algebra (a few hundred rows) runs with one BLAS thread: on a busy 2-core machine,
# OpenBLAS threads waking up for each small call made the cluster protocol 40x and L-BFGS 10-20x
# slower (measured); parallelism comes from joblib over personas instead.
# Above this many samples *and* features the fold PCA of the probe uses a seeded randomized SVD;
# below it, an exact eigendecomposition of the smaller Gram matrix (as fast, and equal to sklearn).
_EXACT_PCA_LIMIT = 1024


# ----------------------------------------------------------------------------- validation helpers


def _seed_int(seed: int, *keys: Any) -> int:
    """A 32-bit seed derived from ``seed`` and stable keys (strings hashed with CRC32, not ``hash``)."""
    entropy = [int(seed) & 0xFFFFFFFF] + [
        zlib.crc32(k.encode("utf-8")) if isinstance(k, str) else int(k) & 0xFFFFFFFF for k in keys
    ]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _rng(seed: int, *keys: Any) -> np.random.Generator:
    return np.random.default_rng(_seed_int(seed, *keys))


def _check_seed(seed: Any) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")
    return int(seed)


def _check_matrix(X: Any, name: str = "X") -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n_statements, hidden_size); got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape}); pass at least one statement and one node")
    if not np.issubdtype(X.dtype, np.floating):
        if not (np.issubdtype(X.dtype, np.integer) or X.dtype == bool):
            raise ValueError(f"{name} must hold numbers; got dtype {X.dtype}")
        X = X.astype(np.float32)
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values; drop or repair those statements first")
    return X


def _check_labels(labels: Any, n: int, name: str) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D with one label per statement; got shape {y.shape}")
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} labels but there are {n} statements; they must be aligned row for row")
    return y


def _py(x: Any) -> Any:
    """A numpy scalar as the Python value (so messages read 'b', not np.str_('b'))."""
    return x.item() if isinstance(x, np.generic) else x


def _check_classes(y: np.ndarray, name: str, min_count: int = 1, what: str = "") -> tuple[np.ndarray, np.ndarray]:
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        only = _py(classes[0]) if len(classes) else "nothing"
        raise ValueError(
            f"{name} has only one class ({only!r}){what}: separating needs at least two; "
            "pass statements of several personas / both directions"
        )
    if counts.min() < min_count:
        small = _py(classes[int(np.argmin(counts))])
        raise ValueError(
            f"{name}: class {small!r} has only {counts.min()} statements{what}, fewer than n_folds={min_count}; "
            "lower n_folds or add statements"
        )
    return classes, counts


def _check_directions(directions: np.ndarray, name: str = "direction") -> None:
    bad = sorted({str(d) for d in np.unique(directions)} - set(_DIRECTIONS))
    if bad:
        raise ValueError(f"{name} values must be 'positive' or 'negative'; got {bad}")


def _check_meta(meta: Any, n: int, columns: Sequence[str]) -> pd.DataFrame:
    if not isinstance(meta, pd.DataFrame):
        raise ValueError(
            "meta must be a pandas DataFrame with columns "
            f"{list(columns)} aligned with the activation rows (as personas.store.load_layers returns); "
            f"got {type(meta).__name__}"
        )
    missing = [c for c in columns if c not in meta.columns]
    if missing:
        raise ValueError(f"meta lacks columns {missing}; it has {list(meta.columns)}")
    if len(meta) != n:
        raise ValueError(f"meta has {len(meta)} rows but the activations have {n}; they must be aligned row for row")
    if meta[list(columns)].isna().any().any():
        raise ValueError(f"meta has missing values in {list(columns)}")
    if "direction" in columns:
        _check_directions(meta["direction"].to_numpy())
    return meta


def _check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def _check_classifiers(classifiers: Any, name: str = "classifiers") -> tuple[str, ...]:
    if isinstance(classifiers, str):
        classifiers = (classifiers,)
    classifiers = tuple(classifiers)
    bad = [c for c in classifiers if c not in CLASSIFIERS]
    if bad:
        raise ValueError(f"{name}: unknown classifier(s) {bad}; choose from {list(CLASSIFIERS)}")
    return classifiers


def check_layers(layers: Iterable[int] | None, available: Mapping[int, Any] | Iterable[int]) -> list[int]:
    """Validate requested layers against those available (e.g. the keys of ``load_layers``' dict).

    Parameters
    ----------
    layers : iterable of int or None
        Requested layer indices (0 = embeddings, i = output of block i); None means all available.
    available : mapping or iterable of int
        The available layers, or the activations dict itself.

    Returns
    -------
    list of int
        The requested layers in the order given, duplicates dropped.

    Raises
    ------
    ValueError
        Naming the missing layers and listing the available ones.
    """
    avail = sorted(int(k) for k in (available.keys() if isinstance(available, Mapping) else available))
    if layers is None:
        if not avail:
            raise ValueError("no layers available: the activations are empty; extract some layers first")
        return avail
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    req: list[int] = []
    for layer in layers:
        if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"layers must be ints; got {layer!r}")
        if int(layer) not in req:
            req.append(int(layer))
    if not req:
        raise ValueError(f"no layers requested; available layers: {avail}")
    missing = [layer for layer in req if layer not in set(avail)]
    if missing:
        raise ValueError(
            f"layers {missing} are not in the store; available layers: {avail}. "
            "Extract those layers first or pick from the available ones."
        )
    return req


def relative_depth(layer: int | np.ndarray, n_blocks: int) -> float | np.ndarray:
    """``layer / n_blocks``: 0 = embeddings, 1 = output of the last block.

    Raises ValueError if ``n_blocks`` is not a positive int or a layer lies outside ``[0, n_blocks]``.
    """
    n_blocks = _check_positive_int(n_blocks, "n_blocks")
    arr = np.asarray(layer)
    if arr.size and (arr.min() < 0 or arr.max() > n_blocks):
        raise ValueError(f"layer(s) {arr.tolist()} outside [0, n_blocks={n_blocks}]; is n_blocks the model's block count?")
    out = arr / n_blocks
    return float(out) if out.ndim == 0 else out


def _resolve_layers(layers: Iterable[int] | None, activations: Mapping[int, Any], controls: bool) -> list[int]:
    if not isinstance(activations, Mapping):
        raise ValueError(
            "activations must be a dict {layer: array (n_statements, hidden_size)} as load_layers returns; "
            f"got {type(activations).__name__}"
        )
    chosen = check_layers(layers, activations)
    if controls:
        if 0 in activations and 0 not in chosen:
            chosen = [0] + chosen  # the embedding-layer control rides along whenever it is available
        elif 0 not in activations:
            warnings.warn(
                "layer 0 (embeddings) is not in the activations, so the embedding-layer control is missing; "
                "extract layer 0 too to compare every layer with the wording alone",
                stacklevel=3,
            )
    return sorted(chosen)


def _layer_matrix(activations: Mapping[int, Any], layer: int, n: int | None = None) -> np.ndarray:
    X = _check_matrix(activations[layer], name=f"activations[{layer}]")
    if n is not None and X.shape[0] != n:
        raise ValueError(f"activations[{layer}] has {X.shape[0]} rows but meta has {n}; they must be aligned")
    return X


def _summarise(long: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std (ddof=0) and count of ``value`` per group of a long per-repetition/per-fold table."""
    g = long.groupby(by, sort=False, dropna=False)["value"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "n": g.size()}).reset_index()
    return out


def _finish(frames: list[pd.DataFrame], model: str, n_blocks: int) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    table["model"] = str(model)
    table["layer"] = table["layer"].astype(int)
    table["relative_depth"] = relative_depth(table["layer"].to_numpy(), n_blocks)
    table["n"] = table["n"].astype(int)
    return table[RESULT_COLUMNS]


# ----------------------------------------------------------------------------- PCA and cluster metrics


def _flip_signs(scores: np.ndarray) -> np.ndarray:
    # deterministic signs: the largest-magnitude projection of each component is positive
    idx = np.argmax(np.abs(scores), axis=0)
    signs = np.sign(scores[idx, np.arange(scores.shape[1])])
    signs[signs == 0] = 1
    return scores * signs


_BLAS_CONTROLLER = None


def _one_blas_thread():
    """Context manager limiting BLAS/OpenMP to one thread.

    The controller is built once: building one scans the loaded libraries (~10 ms), which at a few
    hundred calls per layer cost seconds.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS before looking for it)
        import sklearn.linear_model  # noqa: F401

        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1)


def _pca_scores(
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
        exact = min(n, p) <= _EXACT_PCA_LIMIT
    if exact and n <= p:
        with _one_blas_thread():
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
        with _one_blas_thread():
            w, V = np.linalg.eigh((Z.T @ Z).astype(np.float64))
        order = np.argsort(w)[::-1][:k]
        order = order[w[order] > max(w[order[0]], 0.0) * 1e-10] if w[order[0]] > 0 else order[:0]
        V = V[:, order]
        return Z.astype(np.float64) @ V, None if Z_new is None else Z_new.astype(np.float64) @ V
    # randomized range finder (Halko, Martinsson & Tropp 2011, algorithm 4.4)
    width = min(k + 10, n, p)
    Y = Z @ _rng(seed, "range").standard_normal((p, width)).astype(Z.dtype)
    for _ in range(n_iter):
        with _one_blas_thread():
            Y = np.linalg.qr(Y)[0]
        Y = Z @ (Z.T @ Y)
    with _one_blas_thread():
        Q = np.linalg.qr(Y)[0]
    B = Q.T @ Z  # (width, p); Z ~ Q B, so the SVD of B gives Z's axes
    with _one_blas_thread():  # B = Ub S Vt via the small (width, width) matrix B B^T = Ub S^2 Ub^T
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
    X = _check_matrix(X)
    n_components = _check_positive_int(n_components, "n_components")
    if n_components > min(X.shape):
        raise ValueError(
            f"n_components={n_components} exceeds min(n_statements, hidden_size)={min(X.shape)} for X of shape {X.shape}"
        )
    if X.dtype != np.float64 and min(X.shape) <= _EXACT_PCA_LIMIT:
        X = X.astype(np.float64)  # small exact case: full precision, cheap
    Z = X - X.mean(axis=0, dtype=np.float64).astype(X.dtype)
    scores, _ = _pca_scores(Z, n_components, seed=_check_seed(seed), n_iter=7)
    if scores.shape[1] < n_components:  # rank-deficient input: pad with zero projections
        scores = np.hstack([scores, np.zeros((scores.shape[0], n_components - scores.shape[1]))])
    return _flip_signs(np.asarray(scores, dtype=np.float64))


def cluster_scores(Z: Any, labels: Any) -> dict[str, float]:
    """Separation of labelled groups of points: the paper's four cluster metrics.

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
    """
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    Z = _check_matrix(Z, "Z")
    y = _check_labels(labels, Z.shape[0], "labels")
    classes, _ = _check_classes(y, "labels")
    if len(classes) >= Z.shape[0]:
        raise ValueError(f"labels has {len(classes)} groups for {Z.shape[0]} points; need fewer groups than points")
    centroids = np.stack([Z[y == c].mean(axis=0) for c in classes])
    diffs = centroids[:, None, :] - centroids[None, :, :]
    iu = np.triu_indices(len(classes), 1)
    return {
        "silhouette": float(silhouette_score(Z, y)),
        "calinski_harabasz": float(calinski_harabasz_score(Z, y)),
        "davies_bouldin": float(davies_bouldin_score(Z, y)),
        "centroid_distance": float(np.linalg.norm(diffs[iu], axis=1).mean()),
    }


def _cluster_plan(
    d: np.ndarray, n_per_direction: int | None, n_components: int, hidden_size: int, key: str = ""
) -> tuple[np.ndarray, np.ndarray, int]:
    """Positive rows, negative rows and the per-direction sample size; clear errors if impossible."""
    pos, neg = np.flatnonzero(d == "positive"), np.flatnonzero(d == "negative")
    where = f" for {key!r}" if key else ""
    if len(pos) == 0 or len(neg) == 0:
        only = "negative" if len(pos) == 0 else "positive"
        raise ValueError(
            f"directions{where} has only one class ({only!r}): the cluster metrics need both "
            "positive and negative statements"
        )
    if n_per_direction is None:
        m = min(len(pos), len(neg))
    else:
        m = _check_positive_int(n_per_direction, "n_per_direction")
    if len(pos) < m or len(neg) < m:
        raise ValueError(
            f"{len(pos)} positive and {len(neg)} negative statements{where}, but n_per_direction={m} "
            "needs that many of each; lower n_per_direction (or pass None to use all)"
        )
    if m < 2 or n_components > 2 * m:
        raise ValueError(
            f"n_per_direction={m} is too small for n_components={n_components}: need n_per_direction >= 2 "
            "and 2 * n_per_direction >= n_components"
        )
    if n_components > hidden_size:
        raise ValueError(f"n_components={n_components} exceeds hidden_size={hidden_size}")
    return pos, neg, m


def direction_clusters(
    X: Any,
    directions: Any,
    *,
    n_components: int = 4,
    n_reps: int = 5,
    n_per_direction: int | None = 100,
    seed: int = 0,
    shuffled_control: bool = True,
    sample_key: str = "",
) -> pd.DataFrame:
    """The paper's protocol on one persona and one layer: PCA, then cluster metrics of ``+`` vs ``-``.

    Each repetition draws ``n_per_direction`` positive and as many negative statements without
    replacement, fits PCA on those ``2 * n_per_direction`` rows and scores the two directions as
    clusters on the projections (``cluster_scores``). The shuffled-labels control scores the same
    projections with the direction labels permuted.

    Parameters
    ----------
    X : array (n_statements, hidden_size)
        One persona's activations at one layer.
    directions : array (n_statements,)
        "positive" / "negative" per row.
    n_components : int
        PCA components (the paper's plots use 4).
    n_reps : int
        Repetitions with fresh samples (the paper: 5).
    n_per_direction : int or None
        Statements per direction and repetition (the paper: 100); None uses all of the smaller direction.
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
    X = _check_matrix(X)
    d = _check_labels(directions, X.shape[0], "directions").astype(str)
    _check_directions(d, "directions")
    n_components = _check_positive_int(n_components, "n_components")
    n_reps = _check_positive_int(n_reps, "n_reps")
    seed = _check_seed(seed)
    pos, neg, m = _cluster_plan(d, n_per_direction, n_components, X.shape[1], sample_key)
    labels = np.repeat(np.array(["positive", "negative"]), m)
    rows = []
    with _one_blas_thread():  # small matrices: BLAS threads cost more than they give 
        for rep in range(n_reps):
            rng = _rng(seed, "cluster", sample_key, rep)
            idx = np.concatenate([rng.choice(pos, m, replace=False), rng.choice(neg, m, replace=False)])
            Z = pca_projections(X[idx], n_components)
            for metric, value in cluster_scores(Z, labels).items():
                rows.append(("none", rep, metric, value))
            if shuffled_control:
                perm = _rng(seed, "cluster-shuffle", sample_key, rep).permutation(labels)
                for metric, value in cluster_scores(Z, perm).items():
                    rows.append(("shuffled_labels", rep, metric, value))
    return pd.DataFrame(rows, columns=["control", "rep", "metric", "value"])


# ----------------------------------------------------------------------------- classifiers


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
    """Standardise and reduce on the training fold only; return (train, test) features."""
    Ztr, Zte = _standardise(X[train], X[test])
    n, p = Ztr.shape
    if n_components is None or n_components >= min(n, p):
        if n < p:
            # Exact reduction: an L2-penalised linear model's weights lie in the span of the
            # training rows, so fitting on their coordinates in that span (n dims instead of p)
            # gives the same predictions as fitting on all p nodes.
            return _pca_scores(Ztr, n, Z_new=Zte, exact=True)
        return Ztr, Zte
    Ftr, Fte = _pca_scores(Ztr, n_components, Z_new=Zte, seed=seed, n_iter=svd_iter)
    return Ftr, np.asarray(Fte, dtype=np.float64)


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
        about 30% faster: the splitter reads columns).
    ``logistic``
        Linear probe: standardise (mean/std of the training fold), project on the training fold's
        top ``probe_components`` principal components, then L2 logistic regression
        (``sklearn.linear_model.LogisticRegression(C=probe_C, max_iter=probe_max_iter, tol=probe_tol)``).
        Scaler and PCA see only training rows, so nothing leaks from the test fold. Why PCA: on a
        7560 x 4096 training fold (14 personas x 600) a full-dimensional L-BFGS step costs ~90 ms
        in scikit-learn (~25 ms at best: it is memory bound) and a shuffled-label control took
        ~570 steps to converge (measured); in 128 dims a step costs about a millisecond and every
        fit converged within 100 steps, and the fold PCA (a seeded randomized SVD with
        ``probe_svd_iter`` power iterations, ~1 s; one iteration is ~40% cheaper but, on the
        benchmark's synthetic data, lowered the probe's accuracy on weakly separated layers, e.g.
        0.93 -> 0.84) is computed once per fold and
        shared by the real and the control fit. With ``probe_components=None`` (or at least the
        training fold's rank) the probe is the exact full-dimensional one: when the fold has fewer
        rows than nodes it is fitted on the rows' coordinates in their span, which gives the same
        predictions as all nodes (the weights of an L2-penalised linear model lie in that span).
        Warm starts across folds are deliberately not used: a model trained on the previous fold
        has seen this fold's test rows. Fits stopped by ``probe_max_iter`` are counted in
        ``result.attrs["n_not_converged"]``.

    Controls
    --------
    With ``shuffled_control``, the same folds are refitted with ``y`` randomly permuted (control
    "shuffled_labels"), which should score at chance (accuracy about the largest class share).

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

    Returns
    -------
    DataFrame
        Long table, columns ``classifier, control, fold, metric, value`` (one row per fold and metric).
    """
    from sklearn.ensemble import ExtraTreesClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    X = _check_matrix(X)
    y = _check_labels(y, X.shape[0], "y")
    classifiers = _check_classifiers(classifiers)
    n_folds = _check_positive_int(n_folds, "n_folds", minimum=2)
    seed = _check_seed(seed)
    n_trees = _check_positive_int(n_trees, "n_trees")
    probe_max_iter = _check_positive_int(probe_max_iter, "probe_max_iter")
    if probe_components is not None:
        probe_components = _check_positive_int(probe_components, "probe_components")
    if not probe_C > 0:
        raise ValueError(f"probe_C must be > 0; got {probe_C!r}")
    where = f" for {seed_key!r}" if seed_key else ""
    _check_classes(y, "y", min_count=n_folds, what=where)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float32)

    folds = list(StratifiedKFold(n_folds, shuffle=True, random_state=_seed_int(seed, "folds", seed_key)).split(X, y))
    label_sets = {"none": y}
    if shuffled_control:
        label_sets["shuffled_labels"] = _rng(seed, "shuffled-labels", seed_key).permutation(y)

    rows: list[tuple] = []
    n_not_converged = 0
    if "extra_trees" in classifiers:
        # nodes x statements, C-ordered, once: each fold's Fortran-ordered training matrix is then
        # a contiguous gather (0.03 s instead of 0.4-0.8 s at 7560 x 4096)
        XT = np.ascontiguousarray(X.T, dtype=np.float32)  # sklearn trees work in float32
    for i, (train, test) in enumerate(folds):
        if "extra_trees" in classifiers:
            Xtr = np.take(XT, train, axis=1).T  # (n_train, hidden_size), Fortran order
            Xte = X[test].astype(np.float32, copy=False)
            for control, labels in label_sets.items():
                forest = ExtraTreesClassifier(
                    n_estimators=n_trees, random_state=_seed_int(seed, "extra_trees", seed_key), n_jobs=n_jobs
                )
                forest.fit(Xtr, labels[train])
                for metric, value in _fold_scores(labels[test], forest.predict(Xte)).items():
                    rows.append(("extra_trees", control, i, metric, value))
            del Xtr
        if "logistic" in classifiers:
            Ftr, Fte = _probe_features(
                X, train, test, probe_components, _seed_int(seed, "probe-svd", seed_key, i), probe_svd_iter
            )
            for control, labels in label_sets.items():
                probe = LogisticRegression(C=probe_C, max_iter=probe_max_iter, tol=probe_tol)
                # one BLAS thread: L-BFGS-B's many tiny BLAS calls are 10-20x slower with threads
                # waking up for each of them, and the reduced problem gains nothing from threads
                with warnings.catch_warnings(), _one_blas_thread():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    probe.fit(Ftr, labels[train])
                n_not_converged += int(np.max(probe.n_iter_) >= probe_max_iter)
                for metric, value in _fold_scores(labels[test], probe.predict(Fte)).items():
                    rows.append(("logistic", control, i, metric, value))
    out = pd.DataFrame(rows, columns=["classifier", "control", "fold", "metric", "value"])
    out.attrs["n_not_converged"] = n_not_converged
    return out


# ----------------------------------------------------------------------------- multi-layer analyses


_BACKEND = "loky"


def _parallel(n_jobs: int | None, n_tasks: int) -> Parallel:
    # processes (loky) for the many small per-persona tasks; BLAS inside each worker is limited to
    # its share of the cores by joblib, so nothing is oversubscribed
    return Parallel(n_jobs=1 if n_tasks <= 1 else n_jobs, backend=_BACKEND)


def _cluster_task(X: np.ndarray, directions: np.ndarray, persona: str, kwargs: dict) -> pd.DataFrame:
    out = direction_clusters(X, directions, sample_key=persona, **kwargs)
    out.insert(0, "persona", persona)
    return out


def _direction_task(X: np.ndarray, directions: np.ndarray, persona: str, kwargs: dict) -> pd.DataFrame:
    with _one_blas_thread():  # one task per core: parallelism comes from the processes
        out = cross_validate_classifier(X, directions, seed_key=persona, n_jobs=1, **kwargs)
    n_nc = out.attrs.get("n_not_converged", 0)
    out.insert(0, "persona", persona)
    out.attrs["n_not_converged"] = n_nc
    return out


def _personas_in_order(meta: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(meta["persona"].astype(str)))


def cluster_separation(
    activations: Mapping[int, Any],
    meta: pd.DataFrame,
    *,
    model: str,
    n_blocks: int,
    layers: Iterable[int] | None = None,
    n_components: int = 4,
    n_reps: int = 5,
    n_per_direction: int | None = 100,
    seed: int = 0,
    controls: bool = True,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> pd.DataFrame:
    """The paper's cluster protocol (``direction_clusters``) for every persona and layer.

    Parameters
    ----------
    activations : dict of int -> array (n_statements, hidden_size)
        As ``personas.store.load_layers`` returns.
    meta : DataFrame
        Row-aligned, with columns ``persona`` and ``direction``.
    model : str
        Model name for the table.
    n_blocks : int
        Number of transformer blocks (relative depth = layer / n_blocks).
    layers : iterable of int, optional
        Default: all in ``activations``. With ``controls``, layer 0 is added when available.
    n_components, n_reps, n_per_direction, seed
        See ``direction_clusters``.
    controls : bool
        Add the layer-0 and shuffled-label controls.
    n_jobs : int or None
        Worker processes over personas (-1 = all cores).
    progress : bool
        Show a progress bar over layers.

    Returns
    -------
    DataFrame
        Tidy table (``RESULT_COLUMNS``), analysis "cluster", classifier "none".
    """
    layers = _resolve_layers(layers, activations, controls)
    meta = _check_meta(meta, _layer_matrix(activations, layers[0]).shape[0], ["persona", "direction"])
    n_blocks = _check_positive_int(n_blocks, "n_blocks")
    relative_depth(np.array(layers), n_blocks)
    personas = _personas_in_order(meta)
    groups = {p: np.flatnonzero(meta["persona"].astype(str).to_numpy() == p) for p in personas}
    directions = meta["direction"].astype(str).to_numpy()
    kwargs = dict(
        n_components=n_components, n_reps=n_reps, n_per_direction=n_per_direction, seed=_check_seed(seed),
        shuffled_control=controls,
    )
    hidden = _layer_matrix(activations, layers[0]).shape[1]
    for p, idx in groups.items():  # fail fast, before any heavy work, on a persona that cannot be sampled
        _cluster_plan(directions[idx], n_per_direction, _check_positive_int(n_components, "n_components"), hidden, p)
    frames = []
    with _parallel(n_jobs, len(personas)) as parallel:
        for layer in tqdm(layers, desc=f"cluster metrics ({model})", disable=not progress, unit="layer"):
            X = _layer_matrix(activations, layer, len(meta))
            parts = parallel(delayed(_cluster_task)(X[idx], directions[idx], p, kwargs) for p, idx in groups.items())
            long = pd.concat(parts, ignore_index=True)
            summary = _summarise(long, ["persona", "control", "metric"])
            summary.insert(0, "layer", layer)
            summary["analysis"] = "cluster"
            summary["classifier"] = "none"
            frames.append(summary)
    return _finish(frames, model, n_blocks)


def persona_classification(
    activations: Mapping[int, Any],
    meta: pd.DataFrame,
    *,
    model: str,
    n_blocks: int,
    layers: Iterable[int] | None = None,
    classifiers: Sequence[str] = CLASSIFIERS,
    n_folds: int = 10,
    seed: int = 0,
    controls: bool = True,
    n_trees: int = 20,
    probe_components: int | None = 128,
    probe_C: float = 1.0,
    probe_max_iter: int = 100,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict the persona from each layer's activations (``cross_validate_classifier``).

    Parameters are those of ``cluster_separation`` and ``cross_validate_classifier``; ``meta``
    needs a ``persona`` column with at least two personas.

    Returns
    -------
    DataFrame
        Tidy table, analysis "persona_classifier", persona "ALL"; ``attrs["n_not_converged"]``
        counts probe fits stopped by ``probe_max_iter``.
    """
    layers = _resolve_layers(layers, activations, controls)
    meta = _check_meta(meta, _layer_matrix(activations, layers[0]).shape[0], ["persona"])
    n_blocks = _check_positive_int(n_blocks, "n_blocks")
    relative_depth(np.array(layers), n_blocks)
    y = meta["persona"].astype(str).to_numpy()
    _check_classes(y, "persona", min_count=_check_positive_int(n_folds, "n_folds", 2))
    frames, n_nc = [], 0
    for layer in tqdm(layers, desc=f"persona classifiers ({model})", disable=not progress, unit="layer"):
        X = _layer_matrix(activations, layer, len(meta))
        long = cross_validate_classifier(
            X, y, classifiers=classifiers, n_folds=n_folds, seed=seed, shuffled_control=controls,
            seed_key="persona", n_trees=n_trees, probe_components=probe_components, probe_C=probe_C,
            probe_max_iter=probe_max_iter, n_jobs=n_jobs,
        )
        n_nc += long.attrs.get("n_not_converged", 0)
        summary = _summarise(long, ["classifier", "control", "metric"])
        summary.insert(0, "layer", layer)
        summary["persona"] = "ALL"
        summary["analysis"] = "persona_classifier"
        frames.append(summary)
    out = _finish(frames, model, n_blocks)
    out.attrs["n_not_converged"] = n_nc
    return out


def direction_classification(
    activations: Mapping[int, Any],
    meta: pd.DataFrame,
    *,
    model: str,
    n_blocks: int,
    layers: Iterable[int] | None = None,
    classifiers: Sequence[str] = ("logistic",),
    n_folds: int = 10,
    seed: int = 0,
    controls: bool = True,
    n_trees: int = 20,
    probe_components: int | None = 128,
    probe_C: float = 1.0,
    probe_max_iter: int = 100,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict ``+`` vs ``-`` within each persona, per layer (``cross_validate_classifier``).

    The default is the linear probe only: ExtraTrees here means 10 folds x 2 controls forests per
    persona and layer (3,080 for 14 personas x 11 layers, about 3 minutes on 2 cores); pass
    ``classifiers=("extra_trees", "logistic")`` for both. Personas run in ``n_jobs`` processes.

    Returns
    -------
    DataFrame
        Tidy table, analysis "direction_classifier", one persona per row group.
    """
    layers = _resolve_layers(layers, activations, controls)
    meta = _check_meta(meta, _layer_matrix(activations, layers[0]).shape[0], ["persona", "direction"])
    n_blocks = _check_positive_int(n_blocks, "n_blocks")
    relative_depth(np.array(layers), n_blocks)
    n_folds = _check_positive_int(n_folds, "n_folds", 2)
    personas = _personas_in_order(meta)
    groups = {p: np.flatnonzero(meta["persona"].astype(str).to_numpy() == p) for p in personas}
    directions = meta["direction"].astype(str).to_numpy()
    for p, idx in groups.items():
        _check_classes(directions[idx], "direction", min_count=n_folds, what=f" for persona {p!r}")
    kwargs = dict(
        classifiers=_check_classifiers(classifiers), n_folds=n_folds, seed=seed, shuffled_control=controls,
        n_trees=n_trees, probe_components=probe_components, probe_C=probe_C, probe_max_iter=probe_max_iter,
    )
    frames, n_nc = [], 0
    with _parallel(n_jobs, len(personas)) as parallel:
        for layer in tqdm(layers, desc=f"direction classifiers ({model})", disable=not progress, unit="layer"):
            X = _layer_matrix(activations, layer, len(meta))
            parts = parallel(delayed(_direction_task)(X[idx], directions[idx], p, kwargs) for p, idx in groups.items())
            n_nc += sum(part.attrs.get("n_not_converged", 0) for part in parts)
            long = pd.concat(parts, ignore_index=True)
            summary = _summarise(long, ["persona", "classifier", "control", "metric"])
            summary.insert(0, "layer", layer)
            summary["analysis"] = "direction_classifier"
            frames.append(summary)
    out = _finish(frames, model, n_blocks)
    out.attrs["n_not_converged"] = n_nc
    return out


def _versions() -> dict[str, str]:
    import joblib
    import scipy
    import sklearn

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
    }


def analyse_layers(
    activations: Mapping[int, Any],
    meta: pd.DataFrame,
    *,
    model: str,
    n_blocks: int,
    layers: Iterable[int] | None = None,
    n_components: int = 4,
    n_reps: int = 5,
    n_per_direction: int | None = 100,
    n_folds: int = 10,
    seed: int = 0,
    classifiers: Sequence[str] = CLASSIFIERS,
    direction_classifiers: Sequence[str] = ("logistic",),
    controls: bool = True,
    n_trees: int = 20,
    probe_components: int | None = 128,
    probe_C: float = 1.0,
    probe_max_iter: int = 100,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> pd.DataFrame:
    """Everything for a set of layers: cluster metrics, persona and direction classifiers, controls.

    Parameters
    ----------
    activations : dict of int -> array (n_statements, hidden_size)
        ``{layer: activations}`` as ``personas.store.load_layers`` returns (0 = embeddings).
    meta : DataFrame
        Row-aligned, columns ``persona`` and ``direction`` ("positive" / "negative").
    model : str
        Model name written in the table.
    n_blocks : int
        The model's number of transformer blocks (relative depth = layer / n_blocks).
    layers : iterable of int, optional
        Layers to analyse (default: all available); layer 0 is added as a control when available.
    n_components, n_reps, n_per_direction
        Cluster protocol (the paper: 4 components in its plots, 5 repetitions of 100 + 100).
    n_folds : int
        Cross-validation folds of every classifier (the paper: 10).
    seed : int
    classifiers : sequence of {"extra_trees", "logistic"}
        Persona classifiers (ExtraTrees as published, and the linear probe); empty to skip.
    direction_classifiers : sequence of {"extra_trees", "logistic"}
        ``+`` vs ``-`` classifiers within each persona; empty to skip.
    controls : bool
        Shuffled-label controls for every analysis, and layer 0 when available.
    n_trees, probe_components, probe_C, probe_max_iter
        See ``cross_validate_classifier``.
    n_jobs : int or None
        Cores to use (-1 = all): threads for the ExtraTrees fits, processes over personas.
    progress : bool
        Progress bars (one per analysis, over layers).

    Returns
    -------
    DataFrame
        Tidy table with ``RESULT_COLUMNS``. ``attrs["metadata"]`` holds the parameters, package
        versions, wall time per analysis and probe fits stopped by ``probe_max_iter``;
        ``save_results`` writes it beside the table.
    """
    classifiers = _check_classifiers(classifiers)
    direction_classifiers = _check_classifiers(direction_classifiers, "direction_classifiers")
    seed = _check_seed(seed)
    n_blocks = _check_positive_int(n_blocks, "n_blocks")
    n_folds = _check_positive_int(n_folds, "n_folds", 2)
    n_components = _check_positive_int(n_components, "n_components")
    chosen = _resolve_layers(layers, activations, controls)  # warns once if layer 0 is missing
    _validate_all(activations, meta, chosen, n_blocks=n_blocks, n_components=n_components,
                  n_per_direction=n_per_direction, n_folds=n_folds, classifiers=classifiers,
                  direction_classifiers=direction_classifiers)
    common = dict(model=model, n_blocks=n_blocks, layers=chosen, seed=seed, controls=controls, n_jobs=n_jobs,
                  progress=progress)
    probe = dict(n_trees=n_trees, probe_components=probe_components, probe_C=probe_C, probe_max_iter=probe_max_iter)
    timings: dict[str, float] = {}
    tables = []
    n_nc = 0

    def _run(name: str, fn, **kw) -> None:
        nonlocal n_nc
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"layer 0 \(embeddings\) is not in the activations")
            table = fn(activations, meta, **common, **kw)
        timings[name] = round(time.perf_counter() - t0, 3)
        n_nc += table.attrs.get("n_not_converged", 0)
        tables.append(table)

    _run("cluster", cluster_separation, n_components=n_components, n_reps=n_reps, n_per_direction=n_per_direction)
    if classifiers:
        _run("persona_classifier", persona_classification, classifiers=classifiers, n_folds=n_folds, **probe)
    if direction_classifiers:
        _run("direction_classifier", direction_classification, classifiers=direction_classifiers, n_folds=n_folds,
             **probe)
    table = pd.concat(tables, ignore_index=True)[RESULT_COLUMNS]
    table.attrs["metadata"] = {
        "kind": "layer-metrics",
        "model": str(model),
        "n_blocks": n_blocks,
        "layers": chosen,
        "personas": _personas_in_order(meta),
        "n_statements": int(len(meta)),
        "hidden_size": int(np.asarray(activations[chosen[0]]).shape[1]),
        "parameters": {
            "n_components": n_components, "n_reps": n_reps, "n_per_direction": n_per_direction,
            "n_folds": n_folds, "seed": seed, "classifiers": list(classifiers),
            "direction_classifiers": list(direction_classifiers), "controls": controls, "n_trees": n_trees,
            "probe_components": probe_components, "probe_C": probe_C, "probe_max_iter": probe_max_iter,
        },
        "probe_fits_at_max_iter": int(n_nc),
        "seconds": timings,
        "layer_convention": "0 = embeddings, i = output of block i",
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return table


def _validate_all(
    activations: Mapping[int, Any],
    meta: Any,
    layers: list[int],
    *,
    n_blocks: int,
    n_components: int,
    n_per_direction: int | None,
    n_folds: int,
    classifiers: tuple[str, ...],
    direction_classifiers: tuple[str, ...],
) -> None:
    """Every check ``analyse_layers`` can make before the heavy work, so bad input fails at once."""
    shapes = {layer: np.shape(activations[layer]) for layer in layers}
    first = shapes[layers[0]]
    if len(first) != 2:
        raise ValueError(f"activations[{layers[0]}] must be 2-D (n_statements, hidden_size); got shape {first}")
    odd = {layer: s for layer, s in shapes.items() if s[0] != first[0]}
    if odd:
        raise ValueError(f"layers have different numbers of rows: {shapes}; all must be aligned with meta")
    meta = _check_meta(meta, first[0], ["persona", "direction"])
    relative_depth(np.array(layers), n_blocks)
    personas = meta["persona"].astype(str).to_numpy()
    directions = meta["direction"].astype(str).to_numpy()
    for p in _personas_in_order(meta):
        idx = personas == p
        _cluster_plan(directions[idx], n_per_direction, n_components, first[1], p)
        if direction_classifiers:
            _check_classes(directions[idx], "direction", min_count=n_folds, what=f" for persona {p!r}")
    if classifiers:
        _check_classes(personas, "persona", min_count=n_folds)


# ----------------------------------------------------------------------------- results tables


def _check_table(table: Any, name: str = "table") -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{name} must be a results DataFrame from analyse_layers; got {type(table).__name__}")
    missing = [c for c in RESULT_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; a results table has {RESULT_COLUMNS}")
    return table


def save_results(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a results table atomically as CSV or Parquet (by suffix), metadata beside it.

    The metadata (``table.attrs["metadata"]``, when present) goes to ``<path without suffix>.json``.
    Returns the table's path.
    """
    table = _check_table(table)
    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"results path {path} must end in .csv or .parquet")
    out = write_table(table[RESULT_COLUMNS].reset_index(drop=True), path)
    meta = table.attrs.get("metadata")
    if meta:
        write_json(path.with_suffix(".json"), {**meta, "table": path.name})
    return out


def load_results(path: str | Path) -> pd.DataFrame:
    """Read a table written by ``save_results`` (metadata, if beside it, into ``attrs["metadata"]``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results table at {path}")
    if path.suffix == ".csv":
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    elif path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        raise ValueError(f"results path {path} must end in .csv or .parquet")
    table = _check_table(table, str(path))
    for col in ("model", "persona", "analysis", "classifier", "control", "metric"):
        table[col] = table[col].astype(str)
    table["layer"] = table["layer"].astype(int)
    side = path.with_suffix(".json")
    if side.exists():
        table.attrs["metadata"] = read_json(side)
    return table


def combine_results(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack results tables of several models (or analyses) into one, checking they fit together.

    Raises ValueError when a table is malformed or the same (model, layer, persona, analysis,
    classifier, control, metric) appears twice, e.g. one model's table passed twice.
    """
    tables = [_check_table(t, f"tables[{i}]") for i, t in enumerate(tables)]
    if not tables:
        raise ValueError("no tables to combine")
    combined = pd.concat([t[RESULT_COLUMNS] for t in tables], ignore_index=True)
    dup = combined.duplicated(_KEY_COLUMNS, keep=False)
    if dup.any():
        first = combined.loc[dup, _KEY_COLUMNS].iloc[0].to_dict()
        raise ValueError(
            f"{int(dup.sum())} duplicated result rows, e.g. {first}; each model's table should be passed once"
        )
    metas = [t.attrs.get("metadata") for t in tables if t.attrs.get("metadata")]
    if metas:
        combined.attrs["metadata"] = {"kind": "layer-metrics-combined", "parts": metas}
    return combined.sort_values(["model", "analysis", "layer", "persona", "classifier", "control", "metric"],
                                kind="stable").reset_index(drop=True)


def _default_analysis(metric: str) -> str:
    return "cluster" if metric in CLUSTER_METRICS else "persona_classifier"



def select_metric_rows(
    table: pd.DataFrame, metric: str, analysis: str | None = None, classifier: str | None = None
) -> tuple[pd.DataFrame, str, str]:
    """Rows of one metric, analysis and classifier of a results table, with clear errors when absent.

    ``analysis`` defaults to "cluster" for cluster metrics and "persona_classifier" otherwise;
    ``classifier`` to "extra_trees" when present, else the first one in the rows.

    Returns
    -------
    (rows, analysis, classifier)
    """
    table = _check_table(table)
    if metric not in set(table["metric"]):
        raise ValueError(f"metric {metric!r} not in the table; available: {sorted(set(table['metric']))}")
    analysis = analysis or _default_analysis(metric)
    sub = table[(table["metric"] == metric) & (table["analysis"] == analysis)]
    if sub.empty:
        have = sorted(set(table.loc[table["metric"] == metric, "analysis"]))
        raise ValueError(f"no {metric!r} rows for analysis {analysis!r}; available analyses: {have}")
    if classifier is None:
        present = list(dict.fromkeys(sub["classifier"]))
        classifier = "extra_trees" if "extra_trees" in present else present[0]
    sub = sub[sub["classifier"] == classifier]
    if sub.empty:
        raise ValueError(f"no rows for classifier {classifier!r} in analysis {analysis!r}")
    return sub, analysis, classifier


def most_divergent_layers(
    table: pd.DataFrame,
    metric: str = "silhouette",
    *,
    k: int = 3,
    analysis: str | None = None,
    classifier: str | None = None,
    persona: str | None = None,
    include_embedding: bool = False,
) -> pd.DataFrame:
    """The ``k`` layers where personas separate most, per model, with their controls.

    Per model and layer, the score is the metric's mean (averaged over personas unless ``persona``
    is given) with control "none"; layers are ranked from most to least separated, so descending
    for most metrics and ascending for Davies-Bouldin (``LOWER_IS_BETTER``).

    Parameters
    ----------
    table : DataFrame
        From ``analyse_layers`` or ``combine_results``.
    metric : str
        E.g. "silhouette", "centroid_distance", "accuracy".
    k : int
        Layers to return per model.
    analysis : str, optional
        Default "cluster" for cluster metrics, "persona_classifier" for classifier metrics.
    classifier : str, optional
        For classifier analyses: default "extra_trees" when present, else the first available.
    persona : str, optional
        One persona only (default: the mean over personas).
    include_embedding : bool
        Rank layer 0 too (default: it is the control, not a candidate).

    Returns
    -------
    DataFrame
        Columns ``model, rank, layer, relative_depth, metric, score, shuffled, embedding,
        in_final_third``: ``shuffled`` is the shuffled-label control at that layer and
        ``embedding`` the layer-0 score (NaN when absent); ``in_final_third`` is
        ``relative_depth >= 2/3``.
    """
    table = _check_table(table)
    k = _check_positive_int(k, "k")
    sub, analysis, classifier = select_metric_rows(table, metric, analysis, classifier)
    if persona is not None:
        sub = sub[sub["persona"] == persona]
        if sub.empty:
            raise ValueError(f"no rows for persona {persona!r}; available: {sorted(set(table['persona']))}")
    scores = sub.groupby(["model", "control", "layer"], sort=True)[["mean", "relative_depth"]].mean().reset_index()
    real = scores[scores["control"] == "none"]
    shuffled = scores[scores["control"] == "shuffled_labels"].set_index(["model", "layer"])["mean"]
    ascending = metric in LOWER_IS_BETTER
    out = []
    for model, part in real.groupby("model", sort=True):
        emb = part.loc[part["layer"] == 0, "mean"]
        embedding = float(emb.iloc[0]) if len(emb) else float("nan")
        cand = part if include_embedding else part[part["layer"] != 0]
        if cand.empty:
            raise ValueError(f"model {model!r} has no layer other than 0 to rank for {metric!r}")
        cand = cand.sort_values(["mean", "layer"], ascending=[ascending, True]).head(k)
        for rank, row in enumerate(cand.itertuples(index=False), start=1):
            out.append({
                "model": model,
                "rank": rank,
                "layer": int(row.layer),
                "relative_depth": float(row.relative_depth),
                "metric": metric,
                "score": float(row.mean),
                "shuffled": float(shuffled.get((model, row.layer), np.nan)),
                "embedding": embedding,
                "in_final_third": bool(row.relative_depth >= 2 / 3 - 1e-12),
            })
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- 2-D views


def embed_2d(
    X: Any,
    method: str = "pca",
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
    method : {"pca", "umap"}
        PCA (first two components, see ``pca_projections``) or UMAP (seeded; run on the first
        ``pca_dims`` principal components, the usual denoising step, which also makes it fast).
    seed : int
    n_neighbors, min_dist : UMAP settings (``n_neighbors`` capped at ``n_statements - 1``).

    Returns
    -------
    ndarray (n_statements, 2)
    """
    X = _check_matrix(X)
    seed = _check_seed(seed)
    if method == "pca":
        if min(X.shape) < 2:
            raise ValueError(f"a 2-D PCA view needs at least 2 statements and 2 nodes; X has shape {X.shape}")
        return pca_projections(X, 2, seed=seed)
    if method != "umap":
        raise ValueError(f"method must be 'pca' or 'umap'; got {method!r}")
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


# ----------------------------------------------------------------------------- synthetic data


def synthetic_activations(
    *,
    n_personas: int = 3,
    n_per_direction: int = 50,
    hidden_size: int = 64,
    layers: Iterable[int] = range(5),
    persona_signal: Mapping[int, float] | float = 0.0,
    direction_signal: Mapping[int, float] | float = 0.0,
    signal_fraction: float = 0.25,
    background_rank: int = 4,
    seed: int = 0,
    dtype: Any = np.float32,
) -> tuple[dict[int, np.ndarray], pd.DataFrame]:
    """Activations with separation planted at chosen layers, for tests, benchmarks and demos.

    Every layer is isotropic noise N(0, 1) per node plus a low-rank background: ``background_rank``
    orthonormal directions with standard deviations from 3 down to 1.5 (a few dominant directions,
    as in real activations). At a layer with persona signal ``s``, each persona's statements are
    shifted by a persona-specific vector; with direction signal ``t``, positive statements move by
    ``+t/2`` and negative ones by ``-t/2`` along a persona-specific vector. Signal vectors live on a
    random ``signal_fraction`` of the nodes and their Euclidean norm is ``s`` (or ``t``) times
    ``sqrt(hidden_size)``, the norm of a noise row, so ``t = 0.5`` puts the ``+`` and ``-``
    centroids half a noise-norm apart.

    Parameters
    ----------
    n_personas, n_per_direction, hidden_size : int
    layers : iterable of int
    persona_signal, direction_signal : float or dict of layer -> float
        Strength per layer (missing layers: 0).
    signal_fraction : float
        Share of nodes that carry the planted vectors.
    background_rank : int
    seed : int
    dtype : numpy dtype

    Returns
    -------
    activations : dict of int -> ndarray (n_personas * 2 * n_per_direction, hidden_size)
    meta : DataFrame
        Columns ``id, persona, direction, statement`` as ``load_layers`` returns; personas are
        named "persona_00", "persona_01", ...
    """
    n_personas = _check_positive_int(n_personas, "n_personas")
    n_per_direction = _check_positive_int(n_per_direction, "n_per_direction")
    hidden_size = _check_positive_int(hidden_size, "hidden_size")
    seed = _check_seed(seed)
    if not 0 < signal_fraction <= 1:
        raise ValueError(f"signal_fraction must be in (0, 1]; got {signal_fraction!r}")
    layers = [int(layer) for layer in layers]
    names = [f"persona_{i:02d}" for i in range(n_personas)]
    per = 2 * n_per_direction
    persona_idx = np.repeat(np.arange(n_personas), per)
    sign = np.tile(np.repeat([1.0, -1.0], n_per_direction), n_personas)
    meta = pd.DataFrame({
        "id": [f"{names[p]}/{j:04d}" for p in range(n_personas) for j in range(per)],
        "persona": [names[p] for p in persona_idx],
        "direction": np.where(sign > 0, "positive", "negative"),
        "statement": [f"synthetic statement {j} of {names[p]}" for p in range(n_personas) for j in range(per)],
    })

    def strength(spec, layer):
        return float(spec.get(layer, 0.0)) if isinstance(spec, Mapping) else float(spec)

    rng = _rng(seed, "synthetic-vectors")
    n_sig = max(1, int(round(signal_fraction * hidden_size)))

    def vectors(count):
        v = np.zeros((count, hidden_size))
        for i in range(count):
            nodes = rng.choice(hidden_size, n_sig, replace=False)
            v[i, nodes] = rng.standard_normal(n_sig)
        return v / np.linalg.norm(v, axis=1, keepdims=True) * np.sqrt(hidden_size)

    persona_vec, direction_vec = vectors(n_personas), vectors(n_personas)
    activations = {}
    for layer in layers:
        lr = _rng(seed, "synthetic-layer", layer)
        X = lr.standard_normal((len(meta), hidden_size), dtype=np.float32)
        if background_rank:
            basis = np.linalg.qr(lr.standard_normal((hidden_size, background_rank)))[0].T.astype(np.float32)
            X += (lr.standard_normal((len(meta), background_rank), dtype=np.float32)
                  * np.linspace(3.0, 1.5, background_rank, dtype=np.float32)) @ basis
        s, t = strength(persona_signal, layer), strength(direction_signal, layer)
        if s:
            X += (s * persona_vec[persona_idx]).astype(np.float32)
        if t:
            X += (0.5 * t * sign[:, None] * direction_vec[persona_idx]).astype(np.float32)
        activations[layer] = X.astype(dtype, copy=False)
    return activations, meta


def choose_layer(table: pd.DataFrame, metric: str = "silhouette", *, k: int = 3, **kwargs: Any) -> dict:
    """The single most divergent layer, as a JSON-ready record for the DeepScan notebook.

    Parameters
    ----------
    table : DataFrame
        One model's results (``analyse_layers``).
    metric : str
        Ranking metric (see ``most_divergent_layers``).
    k : int
        Layers kept in the ``ranking`` field.
    **kwargs
        Passed to ``most_divergent_layers`` (``analysis``, ``classifier``, ``persona``).

    Returns
    -------
    dict
        ``layer``, ``relative_depth``, ``in_final_third``, ``metric``, ``model`` and ``ranking``
        (the top-``k`` rows of ``most_divergent_layers`` with their controls).
    """
    models = table["model"].unique() if "model" in table else []
    if len(models) != 1:
        raise ValueError(f"choose_layer needs one model's table, got models {list(models)}; filter the table first")
    ranking = most_divergent_layers(table, metric, k=k, **kwargs)
    best = ranking.iloc[0]
    return {
        "model": str(best["model"]),
        "layer": int(best["layer"]),
        "relative_depth": float(best["relative_depth"]),
        "in_final_third": bool(best["in_final_third"]),
        "metric": metric,
        "ranking": ranking.to_dict(orient="records"),
    }
