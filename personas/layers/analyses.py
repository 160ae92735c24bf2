"""The analysis drivers: every persona and layer, each analysis beside its controls.

- ``cluster_separation``: the cluster protocol (``direction_clusters``) per persona and layer.
- ``persona_classification``: predict the persona from each layer.
- ``direction_classification``: predict ``+`` vs ``-`` within each persona, per layer.
- ``analyse_layers``: all three, validated up front, with provenance in ``attrs["metadata"]``.

The three share one prelude (``_prepare``: layers, statements table, personas) and one loop
over layers (``_per_layer``); each says only what it scores on one layer.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from personas._core.checks import check_classes, check_int, check_meta, check_seed, check_settings
from personas._core.notes import ConstantFeaturesWarning, aggregated_warnings, constant_layer_message
from personas._core.parallel import jobs_for, one_blas_thread
from personas._core.provenance import now_iso, package_versions
from personas.layers.classifiers import cross_validate_classifier
from personas.layers.clusters import cluster_plan, direction_clusters
from personas.layers.indices import layer_matrix, relative_depth
from personas.layers.results import RESULT_COLUMNS, finish_table, summarise_long
from personas.layers.settings import LayerControls, LayerProtocol, ProbeSettings
from personas.model.hooks import resolve_layers

__all__ = ["cluster_separation", "persona_classification", "direction_classification", "analyse_layers"]


def _parallel(n_jobs: int | None, n_tasks: int, n_values: int, **kwargs) -> Parallel:
    # the active joblib backend: processes (loky, the default) for the many small per-persona
    # tasks, whose BLAS joblib limits to their share of the cores; or Dask inside
    # personas._core.parallel.dask_scheduler. One task, or a small layer matrix: serially (jobs_for)
    return Parallel(n_jobs=1 if n_tasks <= 1 else jobs_for(n_jobs, n_values), prefer="processes", **kwargs)


def _cluster_task(X, directions, persona: str, protocol: LayerProtocol, seed: int, controls: bool) -> pd.DataFrame:
    with warnings.catch_warnings():  # said once per layer by _per_layer, not once per persona and worker
        warnings.simplefilter("ignore", ConstantFeaturesWarning)
        out = direction_clusters(X, directions, protocol, seed=seed, shuffled_control=controls, sample_key=persona)
    out.insert(0, "persona", persona)
    return out


def _direction_task(X, directions, persona: str, probes: ProbeSettings, seed: int, controls: bool) -> pd.DataFrame:
    with one_blas_thread(), warnings.catch_warnings():  # one task per core; constant layers: see _per_layer
        warnings.simplefilter("ignore", ConstantFeaturesWarning)
        out = cross_validate_classifier(X, directions, probes, classifiers=probes.direction_classifiers, seed=seed,
                                        shuffled_control=controls, seed_key=persona, n_jobs=1)
    n_nc = out.attrs.get("n_not_converged", 0)
    out.insert(0, "persona", persona)
    out.attrs["n_not_converged"] = n_nc
    return out


def _personas_in_order(meta: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(meta["persona"].astype(str)))


@dataclass(frozen=True)
class _Prepared:
    """What every analysis needs before its first layer: checked layers, table and personas."""

    layers: list[int]
    meta: pd.DataFrame
    n_blocks: int
    groups: dict[str, np.ndarray]  # persona -> its rows
    directions: np.ndarray | None  # "positive" / "negative" per row, when meta has them
    hidden_size: int

    @property
    def matrix_size(self) -> int:
        """Numbers in one layer's matrix (statements x nodes): how much one parallel loop reads."""
        return len(self.meta) * self.hidden_size


def _prepare(activations: Mapping[int, Any], meta: Any, layers, n_blocks: int, controls: bool,
             columns: list[str]) -> _Prepared:
    """The shared prelude: layers resolved (layer 0 added as a control), shapes, meta and depth checked."""
    if not isinstance(activations, Mapping):
        raise ValueError(
            "activations must be a dict {layer: array (n_statements, hidden_size)} as load_layers returns; "
            f"got {type(activations).__name__}"
        )
    layers = resolve_layers(layers, available=activations, add_control=controls)
    shapes = {layer: np.shape(activations[layer]) for layer in layers}
    first = shapes[layers[0]]
    if len(first) != 2:
        raise ValueError(f"activations[{layers[0]}] must be 2-D (n_statements, hidden_size); got shape {first}")
    if any(s[0] != first[0] for s in shapes.values()):
        raise ValueError(f"layers have different numbers of rows: {shapes}; all must be aligned with meta")
    meta = check_meta(meta, first[0], columns)
    n_blocks = check_int(n_blocks, "n_blocks", min_val=1)
    relative_depth(np.array(layers), n_blocks)
    persona = meta["persona"].astype(str).to_numpy()
    groups = {p: np.flatnonzero(persona == p) for p in _personas_in_order(meta)}
    directions = meta["direction"].astype(str).to_numpy() if "direction" in meta.columns else None
    return _Prepared(layers, meta, n_blocks, groups, directions, int(first[1]))


def _check_plans(prep: _Prepared, protocol: LayerProtocol | None, probes: ProbeSettings | None,
                 personas: bool, directions: bool) -> None:
    """Fail fast, before any heavy work, on a persona that cannot be sampled or folded."""
    for p, idx in prep.groups.items():
        if protocol is not None:
            cluster_plan(prep.directions[idx], protocol.n_per_cluster, protocol.n_components, prep.hidden_size, p)
        if directions:
            check_classes(prep.directions[idx], "direction", min_count=probes.n_folds, what=f" for persona {p!r}")
    if personas:
        check_classes(prep.meta["persona"].astype(str).to_numpy(), "persona", min_count=probes.n_folds)


def _scored(score: Callable[[np.ndarray], pd.DataFrame], X: np.ndarray) -> pd.DataFrame:
    """``score(X)`` with the constant-layer warning silenced (``_per_layer`` says it once per layer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConstantFeaturesWarning)
        return score(X)


def _per_layer(activations, prep: _Prepared, score: Callable[[np.ndarray], pd.DataFrame], *, by: list[str],
               labels: dict[str, str], what: str, model_name: str, progress: bool,
               parallel: Parallel | None = None) -> pd.DataFrame:
    """The one loop over layers: ``score`` each layer's matrix, summarise, label, stack.

    With ``parallel`` (a joblib ``Parallel``) the layers are its tasks, scored in its workers in
    layer order; ``score`` is then sent to them, so it must be picklable (a closure is, by loky).
    """
    matrices = [layer_matrix(activations, layer, len(prep.meta)) for layer in prep.layers]  # the arrays themselves
    for layer, X in zip(prep.layers, matrices):  # said up front, once per layer, in this (the caller's) thread
        constant = [p for p, idx in prep.groups.items() if len(idx) and bool(np.all(X[idx] == X[idx[:1]]))]
        if constant:  # one line for the layer, however many personas and analyses
            warnings.warn(constant_layer_message(layer, constant, len(prep.groups)), ConstantFeaturesWarning,
                          stacklevel=4)
    if parallel is None:
        longs = (_scored(score, X) for X in matrices)
    else:
        longs = parallel(delayed(_scored)(score, X) for X in matrices)
    frames, n_nc = [], 0
    bar = tqdm(prep.layers, desc=f"{what} ({model_name})", disable=not progress, unit="layer")
    for layer, long in zip(bar, longs):
        n_nc += long.attrs.get("n_not_converged", 0)
        summary = summarise_long(long, by)
        summary.insert(0, "layer", layer)
        for column, value in labels.items():
            summary[column] = value
        frames.append(summary)
    out = finish_table(frames, model_name, prep.n_blocks)
    out.attrs["n_not_converged"] = n_nc
    return out


def _cluster_table(activations, prep: _Prepared, protocol: LayerProtocol, seed: int, controls: bool,
                   n_jobs, progress: bool, model_name: str) -> pd.DataFrame:
    with _parallel(n_jobs, len(prep.groups), prep.matrix_size) as parallel:
        def score(X):
            return pd.concat(parallel(delayed(_cluster_task)(X[idx], prep.directions[idx], p, protocol, seed, controls)
                                      for p, idx in prep.groups.items()), ignore_index=True)

        return _per_layer(activations, prep, score, by=["persona", "control", "metric"],
                          labels={"analysis": "cluster", "classifier": "none"}, what="cluster metrics",
                          model_name=model_name, progress=progress)


def _persona_table(activations, prep: _Prepared, probes: ProbeSettings, seed: int, controls: bool,
                   n_jobs, progress: bool, model_name: str) -> pd.DataFrame:
    # one layer per worker, each fitting its folds on one core: the forest's threads and the probe's
    # serial L-BFGS leave cores idle within a layer; results do not depend on where a fold is fitted
    y = prep.meta["persona"].astype(str).to_numpy()

    def score(X):
        with one_blas_thread():
            return cross_validate_classifier(X, y, probes, seed=seed, shuffled_control=controls, seed_key="persona",
                                             n_jobs=1)

    with _parallel(n_jobs, len(prep.layers), prep.matrix_size, return_as="generator") as parallel:
        return _per_layer(activations, prep, score, by=["classifier", "control", "metric"],
                          labels={"persona": "ALL", "analysis": "persona_classifier"}, what="persona classifiers",
                          model_name=model_name, progress=progress, parallel=parallel)


def _direction_table(activations, prep: _Prepared, probes: ProbeSettings, seed: int, controls: bool,
                     n_jobs, progress: bool, model_name: str) -> pd.DataFrame:
    with _parallel(n_jobs, len(prep.groups), prep.matrix_size) as parallel:
        def score(X):
            parts = parallel(delayed(_direction_task)(X[idx], prep.directions[idx], p, probes, seed, controls)
                             for p, idx in prep.groups.items())
            long = pd.concat(parts, ignore_index=True)
            long.attrs["n_not_converged"] = sum(part.attrs.get("n_not_converged", 0) for part in parts)
            return long

        return _per_layer(activations, prep, score, by=["persona", "classifier", "control", "metric"],
                          labels={"analysis": "direction_classifier"}, what="direction classifiers",
                          model_name=model_name, progress=progress)


def cluster_separation(
    activations: Mapping[int, Any],
    meta: pd.DataFrame,
    *,
    model_name: str,
    n_blocks: int,
    layers=None,
    protocol: LayerProtocol | None = None,
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
    model_name : str
        Model name for the table.
    n_blocks : int
        Number of transformer blocks (relative depth = layer / n_blocks).
    layers : iterable of int, optional
        Default: all in ``activations``. With ``controls``, layer 0 is added when available.
    protocol : LayerProtocol, optional
        Components, repetitions and statements per direction (default: the paper's).
    seed : int
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
    protocol = check_settings(protocol, LayerProtocol, "protocol")
    prep = _prepare(activations, meta, layers, n_blocks, controls, ["persona", "direction"])
    _check_plans(prep, protocol, None, personas=False, directions=False)
    return _cluster_table(activations, prep, protocol, check_seed(seed), controls, n_jobs, progress, model_name)


def persona_classification(
    activations: Mapping[int, Any],
    meta: pd.DataFrame,
    *,
    model_name: str,
    n_blocks: int,
    layers=None,
    probes: ProbeSettings | None = None,
    seed: int = 0,
    controls: bool = True,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict the persona from each layer's activations (``cross_validate_classifier``).

    Parameters are those of ``cluster_separation``, with ``probes`` (``ProbeSettings``: the
    classifiers ``probes.classifiers``, folds, forest, probe) instead of ``protocol``; ``meta``
    needs a ``persona`` column with at least two personas.

    Returns
    -------
    DataFrame
        Tidy table, analysis "persona_classifier", persona "ALL"; ``attrs["n_not_converged"]``
        counts probe fits stopped by ``probe_max_iter``.
    """
    probes = check_settings(probes, ProbeSettings, "probes")
    prep = _prepare(activations, meta, layers, n_blocks, controls, ["persona"])
    _check_plans(prep, None, probes, personas=True, directions=False)
    return _persona_table(activations, prep, probes, check_seed(seed), controls, n_jobs, progress, model_name)


def direction_classification(
    activations: Mapping[int, Any],
    meta: pd.DataFrame,
    *,
    model_name: str,
    n_blocks: int,
    layers=None,
    probes: ProbeSettings | None = None,
    seed: int = 0,
    controls: bool = True,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict ``+`` vs ``-`` within each persona, per layer (``cross_validate_classifier``).

    The classifiers are ``probes.direction_classifiers`` (default: the linear probe only, as
    ExtraTrees here means ``n_folds`` x 2 controls forests per persona and layer). Personas run
    in ``n_jobs`` processes. Other parameters as ``persona_classification``.

    Returns
    -------
    DataFrame
        Tidy table, analysis "direction_classifier", one persona per row group.
    """
    probes = check_settings(probes, ProbeSettings, "probes")
    prep = _prepare(activations, meta, layers, n_blocks, controls, ["persona", "direction"])
    _check_plans(prep, None, probes, personas=False, directions=True)
    return _direction_table(activations, prep, probes, check_seed(seed), controls, n_jobs, progress, model_name)


def analyse_layers(
    activations: Mapping[int, Any],
    meta: pd.DataFrame,
    *,
    model_name: str,
    n_blocks: int,
    protocol: LayerProtocol | None = None,
    probes: ProbeSettings | None = None,
    controls: LayerControls | None = None,
    seed: int = 0,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> pd.DataFrame:
    """Everything for a set of layers: cluster metrics, persona and direction classifiers, controls.

        activations, meta = load_layers(store_dir, model_name, personas)
        table = analyse_layers(activations, meta, model_name=model_name, n_blocks=30)
        save_results(table, out / "tables" / "layer_metrics.csv")

    Returns a tidy table: a row per layer, persona, analysis, classifier, control and metric.

    Parameters
    ----------
    activations : dict of int -> array (n_statements, hidden_size)
        ``{layer: activations}`` as ``personas.store.load_layers`` returns (0 = embeddings); every
        layer in it is analysed (pass a smaller dict for fewer).
    meta : DataFrame
        Row-aligned, columns ``persona`` and ``direction`` ("positive" / "negative").
    model_name : str
        Model name written in the table.
    n_blocks : int
        The model's number of transformer blocks (relative depth = layer / n_blocks).
    protocol : LayerProtocol, optional
        The cluster protocol (default: the paper's, 5 repetitions of 100 + 100 statements, 4 components).
    probes : ProbeSettings, optional
        Classifiers, folds, forest and probe (default: the paper's, 10 folds, 20 trees).
    controls : LayerControls, optional
        Layer 0 and shuffled labels (``baseline``, default on), the wording and the length control.
    seed : int
    n_jobs, progress : int or None, bool
        Cores (-1 = all: ExtraTrees threads, processes over personas); progress bars over layers.

    Returns
    -------
    DataFrame
        ``RESULT_COLUMNS``; ``attrs["metadata"]`` (written beside it by ``save_results``) holds
        the parameters, versions, wall times and probe fits stopped by ``probe_max_iter``. The
        wording and length controls are rows with ``control`` "wording" / "length" at ``layer``
        0 (reference lines beside every layer), no shuffled labels.
    """
    protocol = check_settings(protocol, LayerProtocol, "protocol")
    probes = check_settings(probes, ProbeSettings, "probes")
    controls = check_settings(controls, LayerControls, "controls")
    seed = check_seed(seed)
    prep = _prepare(activations, meta, None, n_blocks, controls.baseline, ["persona", "direction"])
    control_features = _control_features(controls, len(prep.meta))
    _check_plans(prep, protocol, probes, personas=bool(probes.classifiers),
                 directions=bool(probes.direction_classifiers))
    timings: dict[str, float] = {}
    tables = []
    steps = [("cluster", _cluster_table, protocol)]
    if probes.classifiers:
        steps.append(("persona_classifier", _persona_table, probes))
    if probes.direction_classifiers:
        steps.append(("direction_classifier", _direction_table, probes))
    with aggregated_warnings(ConstantFeaturesWarning):  # a constant layer is said once, not once per analysis
        for name, table_of, settings in steps:
            t0 = time.perf_counter()
            tables.append(table_of(activations, prep, settings, seed, controls.baseline, n_jobs, progress, model_name))
            timings[name] = round(time.perf_counter() - t0, 3)
        for name, X in control_features.items():
            t0 = time.perf_counter()
            tables.extend(_feature_control(name, X, prep.meta, protocol, probes, seed=seed, n_jobs=n_jobs,
                                           model_name=model_name, n_blocks=prep.n_blocks))
            timings[f"{name}_control"] = round(time.perf_counter() - t0, 3)
    table = pd.concat(tables, ignore_index=True)[RESULT_COLUMNS]
    n_nc = sum(t.attrs.get("n_not_converged", 0) for t in tables)
    table.attrs["metadata"] = _metadata(prep, protocol, probes, controls.baseline, seed, model_name, n_nc, timings,
                                        control_features)
    return table


def _metadata(prep: _Prepared, protocol: LayerProtocol, probes: ProbeSettings, controls: bool, seed: int,
              model_name: str, n_nc: int, timings: dict, control_features: dict) -> dict:
    """The provenance ``analyse_layers`` writes beside its table."""
    return {
        "kind": "layer-metrics",
        "model": str(model_name),
        "n_blocks": prep.n_blocks,
        "layers": prep.layers,
        "personas": list(prep.groups),
        "n_statements": int(len(prep.meta)),
        "hidden_size": prep.hidden_size,
        "parameters": {
            "n_components": protocol.n_components, "n_reps": protocol.n_reps, "n_per_cluster": protocol.n_per_cluster,
            "n_folds": probes.n_folds, "seed": seed, "classifiers": list(probes.classifiers),
            "direction_classifiers": list(probes.direction_classifiers), "controls": controls, **probes.probe,
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


#: The feature controls ``analyse_layers`` can add, in words.
CONTROL_DESCRIPTIONS = {
    "wording": "layer 0 averaged over the statement's own tokens (bag of input embeddings), any position",
    "length": "the statement's token count alone (one feature)",
}


def _control_features(controls: LayerControls, n: int) -> dict[str, np.ndarray]:
    """The wording and length controls as row-aligned float matrices, checked before any work."""
    wording, lengths = controls.wording, controls.lengths
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


def _feature_control(name: str, X: np.ndarray, meta: pd.DataFrame, protocol: LayerProtocol,
                     probes: ProbeSettings, *, seed: int, n_jobs, model_name: str, n_blocks: int) -> list[pd.DataFrame]:
    """Every analysis on one control's features (as layer 0, no shuffled labels), labelled control=name."""
    kw = dict(model_name=model_name, n_blocks=n_blocks, seed=seed, controls=False, n_jobs=n_jobs, progress=False)
    acts = {0: X}
    small = dataclasses.replace(protocol, n_components=min(protocol.n_components, X.shape[1]))
    parts = [cluster_separation(acts, meta, protocol=small, **kw)]
    if probes.classifiers:
        parts.append(persona_classification(acts, meta, probes=probes, **kw))
    if probes.direction_classifiers:
        parts.append(direction_classification(acts, meta, probes=probes, **kw))
    for part in parts:
        part["control"] = name
    return parts
