"""The analysis drivers: every persona and layer, each analysis beside its controls.

- ``cluster_separation``: the cluster protocol (``direction_clusters``) per persona and layer.
- ``persona_classification``: predict the persona from each layer.
- ``direction_classification``: predict ``+`` vs ``-`` within each persona, per layer.
- ``analyse_layers``: all three, validated up front, with provenance in ``attrs["metadata"]``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from personas._core.checks import NOT_GIVEN, check_classes, check_int, check_meta, check_seed, renamed
from personas.layers.classifiers import CLASSIFIERS, _check_classifiers, cross_validate_classifier
from personas.layers.clusters import _cluster_plan, direction_clusters
from personas.layers.indices import _layer_matrix, _resolve_layers, relative_depth
from personas.layers.pca import _one_blas_thread
from personas.layers.results import RESULT_COLUMNS, _finish, _summarise
from personas.layers.settings import LayerProtocol, ProbeSettings, _field_names, _with_overrides
from personas._core.provenance import now_iso, package_versions

__all__ = ["cluster_separation", "persona_classification", "direction_classification", "analyse_layers"]


def _parallel(n_jobs: int | None, n_tasks: int) -> Parallel:
    # the active joblib backend: processes (loky, the default) for the many small per-persona
    # tasks, whose BLAS joblib limits to their share of the cores; or Dask inside
    # personas._core.parallel.dask_cluster
    return Parallel(n_jobs=1 if n_tasks <= 1 else n_jobs, prefer="processes")


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
    n_per_cluster: int | None = 100,
    seed: int = 0,
    controls: bool = True,
    n_jobs: int | None = -1,
    progress: bool = True,
    n_per_direction: Any = NOT_GIVEN,
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
    n_components, n_reps, n_per_cluster, seed
        See ``direction_clusters``.
    controls : bool
        Add the layer-0 and shuffled-label controls.
    n_jobs : int or None
        Worker processes over personas (-1 = all cores).
    progress : bool
        Show a progress bar over layers.
    n_per_direction : int or None
        Deprecated alias of ``n_per_cluster``.

    Returns
    -------
    DataFrame
        Tidy table (``RESULT_COLUMNS``), analysis "cluster", classifier "none".
    """
    n_per_cluster = renamed(n_per_cluster, n_per_direction, new="n_per_cluster", old="n_per_direction",
                            new_default=100)
    layers = _resolve_layers(layers, activations, controls)
    meta = check_meta(meta, _layer_matrix(activations, layers[0]).shape[0], ["persona", "direction"])
    n_blocks = check_int(n_blocks, "n_blocks", min_val=1)
    relative_depth(np.array(layers), n_blocks)
    personas = _personas_in_order(meta)
    groups = {p: np.flatnonzero(meta["persona"].astype(str).to_numpy() == p) for p in personas}
    directions = meta["direction"].astype(str).to_numpy()
    kwargs = dict(
        n_components=n_components, n_reps=n_reps, n_per_cluster=n_per_cluster, seed=check_seed(seed),
        shuffled_control=controls,
    )
    hidden = _layer_matrix(activations, layers[0]).shape[1]
    for p, idx in groups.items():  # fail fast, before any heavy work, on a persona that cannot be sampled
        _cluster_plan(directions[idx], n_per_cluster, check_int(n_components, "n_components", min_val=1), hidden, p)
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
    control_folds: int | None = None,
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
    meta = check_meta(meta, _layer_matrix(activations, layers[0]).shape[0], ["persona"])
    n_blocks = check_int(n_blocks, "n_blocks", min_val=1)
    relative_depth(np.array(layers), n_blocks)
    y = meta["persona"].astype(str).to_numpy()
    check_classes(y, "persona", min_count=check_int(n_folds, "n_folds", min_val=2))
    frames, n_nc = [], 0
    for layer in tqdm(layers, desc=f"persona classifiers ({model})", disable=not progress, unit="layer"):
        X = _layer_matrix(activations, layer, len(meta))
        long = cross_validate_classifier(
            X, y, classifiers=classifiers, n_folds=n_folds, seed=seed, shuffled_control=controls,
            seed_key="persona", n_trees=n_trees, probe_components=probe_components, probe_C=probe_C,
            probe_max_iter=probe_max_iter, control_folds=control_folds, n_jobs=n_jobs,
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
    control_folds: int | None = None,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict ``+`` vs ``-`` within each persona, per layer (``cross_validate_classifier``).

    The default is the linear probe only: ExtraTrees here means ``n_folds`` x 2 controls forests
    per persona and layer (thousands for the paper's 14 personas); pass
    ``classifiers=("extra_trees", "logistic")`` for both. Personas run in ``n_jobs`` processes.

    Returns
    -------
    DataFrame
        Tidy table, analysis "direction_classifier", one persona per row group.
    """
    layers = _resolve_layers(layers, activations, controls)
    meta = check_meta(meta, _layer_matrix(activations, layers[0]).shape[0], ["persona", "direction"])
    n_blocks = check_int(n_blocks, "n_blocks", min_val=1)
    relative_depth(np.array(layers), n_blocks)
    n_folds = check_int(n_folds, "n_folds", min_val=2)
    personas = _personas_in_order(meta)
    groups = {p: np.flatnonzero(meta["persona"].astype(str).to_numpy() == p) for p in personas}
    directions = meta["direction"].astype(str).to_numpy()
    for p, idx in groups.items():
        check_classes(directions[idx], "direction", min_count=n_folds, what=f" for persona {p!r}")
    kwargs = dict(
        classifiers=_check_classifiers(classifiers), n_folds=n_folds, seed=seed, shuffled_control=controls,
        n_trees=n_trees, probe_components=probe_components, probe_C=probe_C, probe_max_iter=probe_max_iter,
        control_folds=control_folds,
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


def analyse_layers(
    activations: Mapping[int, Any],
    meta: pd.DataFrame,
    *,
    model: str,
    n_blocks: int,
    layers: Iterable[int] | None = None,
    protocol: LayerProtocol | None = None,
    probes: ProbeSettings | None = None,
    seed: int = 0,
    controls: bool = True,
    n_jobs: int | None = -1,
    progress: bool = True,
    wording: Any = None,
    lengths: Any = None,
    **settings: Any,
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
    protocol : LayerProtocol, optional
        The cluster protocol (default: the paper's, 5 repetitions of 100 + 100 statements, 4 components).
    probes : ProbeSettings, optional
        Classifiers, folds, forest and probe (default: the paper's, 10 folds, 20 trees).
    seed : int
    controls : bool
        Shuffled-label controls for every analysis, and layer 0 when available.
    n_jobs : int or None
        Cores to use (-1 = all): threads for the ExtraTrees fits, processes over personas.
    progress : bool
        Progress bars (one per analysis, over layers).
    wording : array (n_statements, hidden_size), optional
        The wording control: layer 0 averaged over each statement's own tokens (a bag of input
        embeddings), whatever position the layers were taken at (``load_wording_controls``). At
        position ``last`` layer 0 is the embedding of the template's final token, the same for
        every statement, so the plain layer-0 control cannot fail; this one carries the words.
    lengths : array (n_statements,), optional
        The length control: each statement's token count, as a one-column feature.
    **settings
        Any field of ``LayerProtocol`` or ``ProbeSettings`` (``n_reps=2``, ``n_folds=3``, ...),
        replacing that field of ``protocol`` / ``probes``. ``n_per_direction`` is a deprecated
        alias of ``n_per_cluster``.

    Returns
    -------
    DataFrame
        Tidy table with ``RESULT_COLUMNS``. ``attrs["metadata"]`` holds the parameters, package
        versions, wall time per analysis and probe fits stopped by ``probe_max_iter``;
        ``save_results`` writes it beside the table. The wording and length controls are rows
        with ``control`` "wording" / "length" and ``layer`` 0 (their features do not depend on
        the layer analysed: read them as horizontal reference lines beside every layer), every
        analysis, persona, classifier and metric as the real rows (no shuffled labels).
    """
    if "n_per_direction" in settings:
        settings["n_per_cluster"] = renamed(settings.pop("n_per_cluster", None), settings.pop("n_per_direction"),
                                            new="n_per_cluster", old="n_per_direction")
    protocol_fields, probe_fields = _field_names(LayerProtocol), _field_names(ProbeSettings)
    unknown = sorted(set(settings) - protocol_fields - probe_fields)
    if unknown:
        raise TypeError(
            f"analyse_layers got unexpected keyword(s) {unknown}; settings are the fields of "
            f"LayerProtocol {sorted(protocol_fields)} and ProbeSettings {sorted(probe_fields)}"
        )
    protocol = _with_overrides(protocol, LayerProtocol, {k: v for k, v in settings.items() if k in protocol_fields}, "protocol")
    probes = _with_overrides(probes, ProbeSettings, {k: v for k, v in settings.items() if k in probe_fields}, "probes")
    classifiers, direction_classifiers = probes.classifiers, probes.direction_classifiers
    n_components, n_reps, n_per_cluster = protocol.n_components, protocol.n_reps, protocol.n_per_cluster
    n_folds = probes.n_folds
    seed = check_seed(seed)
    n_blocks = check_int(n_blocks, "n_blocks", min_val=1)
    chosen = _resolve_layers(layers, activations, controls)  # warns once if layer 0 is missing
    control_features = _control_features(wording, lengths, np.shape(activations[chosen[0]])[0])
    _validate_all(activations, meta, chosen, n_blocks=n_blocks, n_components=n_components,
                  n_per_cluster=n_per_cluster, n_folds=n_folds, classifiers=classifiers,
                  direction_classifiers=direction_classifiers)
    common = dict(model=model, n_blocks=n_blocks, layers=chosen, seed=seed, controls=controls, n_jobs=n_jobs,
                  progress=progress)
    probe = probes.probe
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

    _run("cluster", cluster_separation, n_components=n_components, n_reps=n_reps, n_per_cluster=n_per_cluster)
    if classifiers:
        _run("persona_classifier", persona_classification, classifiers=classifiers, n_folds=n_folds, **probe)
    if direction_classifiers:
        _run("direction_classifier", direction_classification, classifiers=direction_classifiers, n_folds=n_folds,
             **probe)
    for name, X in control_features.items():
        t0 = time.perf_counter()
        tables.extend(_feature_control(name, X, meta, common, classifiers, direction_classifiers, probe,
                                       n_components=n_components, n_reps=n_reps, n_per_cluster=n_per_cluster,
                                       n_folds=n_folds))
        timings[f"{name}_control"] = round(time.perf_counter() - t0, 3)
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
            "n_components": n_components, "n_reps": n_reps, "n_per_cluster": n_per_cluster,
            "n_folds": n_folds, "seed": seed, "classifiers": list(classifiers),
            "direction_classifiers": list(direction_classifiers), "controls": controls, **probe,
        },
        "probe_fits_at_max_iter": int(n_nc),
        "seconds": timings,
        "layer_convention": "0 = embeddings, i = output of block i",
        "feature_controls": {
            name: CONTROL_DESCRIPTIONS[name] + " (rows with control=" + repr(name) + " at layer 0)"
            for name in control_features
        },
        "versions": package_versions(("numpy", "scipy", "pandas", "scikit-learn", "joblib")),
        "created": now_iso(),
    }
    return table


#: The feature controls ``analyse_layers`` can add, in words.
CONTROL_DESCRIPTIONS = {
    "wording": "layer 0 averaged over the statement's own tokens (bag of input embeddings), any position",
    "length": "the statement's token count alone (one feature)",
}


def _control_features(wording: Any, lengths: Any, n: int) -> dict[str, np.ndarray]:
    """The wording and length controls as row-aligned float matrices, checked before any work."""
    out: dict[str, np.ndarray] = {}
    if wording is not None:
        X = np.asarray(wording)
        if X.ndim != 2 or X.shape[0] != n:
            raise ValueError(
                f"wording must be (n_statements={n}, hidden_size), row-aligned with meta; got shape {X.shape}. "
                "Use load_wording_controls (layer 0 extracted with position='mean')"
            )
        out["wording"] = X
    if lengths is not None:
        L = np.asarray(lengths)
        if L.ndim != 1 or L.shape[0] != n or L.dtype.kind not in "iuf":
            raise ValueError(f"lengths must be numbers of shape (n_statements={n},); got shape {L.shape}, dtype {L.dtype}")
        out["length"] = L.astype(np.float64)[:, None]
    return out


def _feature_control(name, X, meta, common, classifiers, direction_classifiers, probe, *, n_components, n_reps,
                     n_per_cluster, n_folds) -> list[pd.DataFrame]:
    """Every analysis on one control's features (as layer 0, no shuffled labels), labelled control=name."""
    kw = dict(common, layers=[0], controls=False, progress=False)
    acts = {0: X}
    parts = [cluster_separation(acts, meta, **kw, n_components=min(n_components, X.shape[1]), n_reps=n_reps,
                                n_per_cluster=n_per_cluster)]
    if classifiers:
        parts.append(persona_classification(acts, meta, **kw, classifiers=classifiers, n_folds=n_folds, **probe))
    if direction_classifiers:
        parts.append(direction_classification(acts, meta, **kw, classifiers=direction_classifiers, n_folds=n_folds,
                                              **probe))
    for part in parts:
        part["control"] = name
    return parts


def _validate_all(
    activations: Mapping[int, Any],
    meta: Any,
    layers: list[int],
    *,
    n_blocks: int,
    n_components: int,
    n_per_cluster: int | None,
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
    meta = check_meta(meta, first[0], ["persona", "direction"])
    relative_depth(np.array(layers), n_blocks)
    personas = meta["persona"].astype(str).to_numpy()
    directions = meta["direction"].astype(str).to_numpy()
    for p in _personas_in_order(meta):
        idx = personas == p
        _cluster_plan(directions[idx], n_per_cluster, n_components, first[1], p)
        if direction_classifiers:
            check_classes(directions[idx], "direction", min_count=n_folds, what=f" for persona {p!r}")
    if classifiers:
        check_classes(personas, "persona", min_count=n_folds)
