"""Plots of layer localisation: PCA grids, metric-by-layer curves with controls, heatmaps, 2-D views.

Every function returns a matplotlib ``Figure`` (created without pyplot, so a notebook shows it
once and nothing accumulates in pyplot's registry) and, given ``out_dir``, also writes it there
atomically as PNG under a descriptive file name (named in each docstring). Nothing is specific to
the paper's personas: names, counts and colors come from the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from personas.layers import (
    CLASSIFIER_METRICS,
    CLUSTER_METRICS,
    LOWER_IS_BETTER,
    embed_2d,
    pca_projections,
    select_metric_rows,
)
from personas.model.hooks import resolve_layers
from personas.viz.style import finish_figure, figure_slug, persona_colors

__all__ = [
    "plot_pca_grid",
    "plot_metric_by_layer",
    "plot_metric_by_relative_depth",
    "plot_classifier_heatmap",
    "plot_scatter_2d",
]

_PRETTY = {
    **{name: m.label for name, m in CLUSTER_METRICS.items()},
    "accuracy": "accuracy",
    "precision_weighted": "weighted precision",
    "f1_weighted": "weighted F1",
}
_ANALYSES = {
    "cluster": "+ vs - clusters",
    "persona_classifier": "persona classifier",
    "direction_classifier": "+ vs - classifier",
}


# ----------------------------------------------------------------------------- helpers








def _metric_label(metric: str) -> str:
    label = _PRETTY.get(metric, metric)
    return f"{label} (lower = more separated)" if metric in LOWER_IS_BETTER else label


def _select(
    table: pd.DataFrame,
    metric: str,
    analysis: str | None,
    classifier: str | None,
    model: str | None,
    one_model: bool,
) -> tuple[pd.DataFrame, str, str, str | None]:
    """Rows of one metric / analysis / classifier (and model), with clear errors when absent."""
    sub, analysis, classifier = select_metric_rows(table, metric, analysis, classifier)
    models = list(dict.fromkeys(sub["model"]))
    if model is not None:
        if model not in models:
            raise ValueError(f"model {model!r} not in the table; available: {models}")
        sub = sub[sub["model"] == model]
    elif one_model:
        if len(models) > 1:
            raise ValueError(f"the table holds several models {models}; pass model_name= to pick one")
        model = models[0]
    return sub, analysis, classifier, model


def _rows_of_persona(meta: pd.DataFrame, persona: str | None, n: int) -> tuple[np.ndarray, str | None]:
    if not isinstance(meta, pd.DataFrame) or "direction" not in meta.columns:
        raise ValueError("meta must be a DataFrame with a 'direction' column (and 'persona'), aligned with the activations")
    if len(meta) != n:
        raise ValueError(f"meta has {len(meta)} rows but the activations have {n}; they must be aligned")
    if "persona" not in meta.columns:
        return np.arange(n), persona
    personas = list(dict.fromkeys(meta["persona"].astype(str)))
    if persona is None:
        if len(personas) > 1:
            raise ValueError(f"meta holds several personas; pass persona= one of {personas}")
        persona = personas[0]
    if persona not in personas:
        raise ValueError(f"persona {persona!r} not in meta; available: {personas}")
    return np.flatnonzero(meta["persona"].astype(str).to_numpy() == persona), persona


# ----------------------------------------------------------------------------- PCA grid


def plot_pca_grid(
    activations: Mapping[int, Any],
    meta: pd.DataFrame,
    *,
    persona: str | None = None,
    layers: Iterable[int] | None = None,
    n_components: int = 4,
    n_points_per_direction: int | None = None,
    seed: int = 0,
    model_name: str | None = None,
    out_dir: str | Path | None = None,
    name: str | None = None,
) -> Figure:
    """The paper's PCA pair grid: per layer, PC0 against PC0..PC(n-1), ``+`` and ``-`` coloured.

    Each row is a layer (PCA fitted on that layer's rows of the persona); the first panel shows
    the distribution of PC0 per direction, the others PC0 (x) against PC1, PC2, ...

    Parameters
    ----------
    activations : dict of int -> array (n_statements, hidden_size)
    meta : DataFrame
        Row-aligned, columns ``direction`` and ``persona``.
    persona : str, optional
        Needed when ``meta`` holds several personas.
    layers : iterable of int, optional
        Default: all in ``activations``.
    n_components : int
        Components per row (the paper: 4).
    n_points_per_direction : int, optional
        Plot a seeded sample of this many statements per direction (default: all).
    seed : int
    model_name : str, optional
        For the title and file name.
    out_dir : path, optional
        Writes ``pca_grid_<model_name>_<persona>.png``.
    name : str, optional
        File stem instead of the descriptive default.
    """
    layers = resolve_layers(layers, available=activations)
    n = np.shape(activations[layers[0]])[0]
    rows, persona = _rows_of_persona(meta, persona, n)
    directions = meta["direction"].astype(str).to_numpy()[rows]
    if n_points_per_direction is not None:
        rng = np.random.default_rng(seed)
        keep = []
        for d in dict.fromkeys(directions):
            idx = np.flatnonzero(directions == d)
            keep.append(np.sort(rng.choice(idx, min(n_points_per_direction, len(idx)), replace=False)))
        keep = np.sort(np.concatenate(keep))
        rows, directions = rows[keep], directions[keep]
    colors = persona_colors(list(dict.fromkeys(directions)))
    fig = Figure(figsize=(2.8 * n_components, 2.5 * len(layers)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(layers), n_components, squeeze=False))
    for r, layer in enumerate(layers):
        Z = pca_projections(np.asarray(activations[layer])[rows], n_components, seed=seed)
        for c in range(n_components):
            ax = axes[r, c]
            for d, color in colors.items():
                mask = directions == d
                if c == 0:
                    ax.hist(Z[mask, 0], bins=30, color=color, alpha=0.55, label=d)
                else:
                    ax.scatter(Z[mask, 0], Z[mask, c], s=6, color=color, alpha=0.6, label=d, linewidths=0)
            ax.set_xlabel("PC0")
            ax.set_ylabel("count" if c == 0 else f"PC{c}")
            ax.set_title(f"layer {layer}: PC0 vs PC{c}", fontsize=9)
    axes[0, -1].legend(title="direction", fontsize=8, markerscale=2)
    fig.suptitle(f"PCA of + and - statements: {persona}" + (f" ({model_name})" if model_name else ""))
    return finish_figure(fig, out_dir, name or figure_slug("pca_grid", model_name, persona))


# ----------------------------------------------------------------------------- metric curves


def plot_metric_by_layer(
    table: pd.DataFrame,
    metric: str = "silhouette",
    *,
    analysis: str | None = None,
    classifier: str | None = None,
    personas: Sequence[str] | None = None,
    model_name: str | None = None,
    log_scale: bool | None = None,
    out_dir: str | Path | None = None,
    name: str | None = None,
) -> Figure:
    """A metric against layer, one line per persona (mean +/- std), with both controls beside.

    Controls: the shuffled-label curve (dashed, mean over the personas shown) and horizontal lines
    (means over personas) for the wording control (dotted: layer 0 averaged over the statement's
    tokens) and the length control (dash-dotted: token counts), rows with control "wording" /
    "length" from ``analyse_layers(..., wording=, lengths=)``; without a wording control, the
    embedding layer's value at the analysed position (dotted). Layer 0 is not part of the persona
    lines.

    Parameters
    ----------
    table : DataFrame
        From ``analyse_layers`` (one model, or pass ``model_name``).
    metric : str
    analysis : str, optional
        Default "cluster" for cluster metrics, "persona_classifier" for classifier metrics.
    classifier : str, optional
        For classifier analyses (default: "extra_trees" when present).
    personas : sequence of str, optional
        Subset of personas to draw (default: all).
    model_name : str, optional
    log_scale : bool, optional
        Default: log y for centroid distance (as the paper), linear otherwise.
    out_dir : path, optional
        Writes ``metric_by_layer_<model_name>_<analysis>[_<classifier>]_<metric>.png``.
    name : str, optional
        File stem instead of the descriptive default.
    """
    sub, analysis, classifier, model_name = _select(table, metric, analysis, classifier, model_name, one_model=True)
    if personas is not None:
        missing = sorted(set(personas) - set(sub["persona"]))
        if missing:
            raise ValueError(f"personas {missing} not in the table; available: {sorted(set(sub['persona']))}")
        sub = sub[sub["persona"].isin(list(personas))]
    if log_scale is None:
        log_scale = metric == "centroid_distance"
    real = sub[sub["control"] == "none"]
    shuffled = sub[sub["control"] == "shuffled_labels"]
    names = list(dict.fromkeys(real["persona"]))
    colors = persona_colors(names)
    fig = Figure(figsize=(8.5 if len(names) > 6 else 7, 4.5), layout="constrained")
    ax = fig.subplots()
    for label in names:
        part = real[(real["persona"] == label) & (real["layer"] != 0)].sort_values("layer")
        x, m, s = part["layer"].to_numpy(), part["mean"].to_numpy(), part["std"].to_numpy()
        ax.plot(x, m, marker="o", ms=3, color=colors[label], label=label)
        lower = np.clip(m - s, m * 1e-3, None) if log_scale else m - s
        ax.fill_between(x, lower, m + s, color=colors[label], alpha=0.15, linewidth=0)
    _draw_controls(ax, sub, real, shuffled)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("layer (0 = embeddings, i = output of block i)")
    ax.set_ylabel(_metric_label(metric))
    what = _ANALYSES.get(analysis, analysis) + ("" if classifier == "none" else f", {classifier}")
    ax.set_title(f"{_PRETTY.get(metric, metric)} by layer: {what} ({model_name})")
    if len(names) > 6:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize=8)
    return finish_figure(fig, out_dir, name or figure_slug("metric_by_layer", model_name, analysis, None if classifier == "none" else classifier, metric))


def _draw_controls(ax, sub: pd.DataFrame, real: pd.DataFrame, shuffled: pd.DataFrame) -> None:
    """The controls of a metric-by-layer plot: shuffled labels (a curve), wording and length (lines)."""
    if not shuffled.empty:
        ctrl = shuffled[shuffled["layer"] != 0].groupby("layer")["mean"].mean()
        ax.plot(ctrl.index, ctrl.to_numpy(), ls="--", color="0.2", label="shuffled labels (control)")
    features = {control: sub.loc[sub["control"] == control, "mean"] for control in ("wording", "length")}
    styles = {"wording": (":", "0.25", "wording: layer 0 averaged over the statement (control)"),
              "length": ("-.", "0.55", "length: token count alone (control)")}
    for control, values in features.items():
        if len(values):
            ls, color, label = styles[control]
            ax.axhline(float(values.mean()), ls=ls, color=color, label=label)
    emb = real.loc[real["layer"] == 0, "mean"]
    if len(emb) and not len(features["wording"]):
        # without a wording control; at position "last" it can be constant (the template's final token)
        ax.axhline(float(emb.mean()), ls=":", color="0.4", label="embedding layer 0 (control)")


def plot_metric_by_relative_depth(
    table: pd.DataFrame,
    metric: str = "silhouette",
    *,
    analysis: str | None = None,
    classifier: str | None = None,
    persona: str | None = None,
    log_scale: bool | None = None,
    out_dir: str | Path | None = None,
    name: str | None = None,
) -> Figure:
    """A metric against relative depth (layer / n_blocks), one line per model, final third shaded.

    Lines are means over personas (or one ``persona``); each model's shuffled-label control is
    dashed in the same color. Use ``combine_results`` to put several models in one table.

    Parameters
    ----------
    table : DataFrame
        Results of one or more models.
    metric, analysis, classifier, log_scale
        As in ``plot_metric_by_layer``.
    persona : str, optional
        One persona instead of the mean over personas.
    out_dir : path, optional
        Writes ``metric_by_relative_depth_<analysis>[_<classifier>]_<metric>.png``.
    name : str, optional
        File stem instead of the descriptive default.
    """
    sub, analysis, classifier, _ = _select(table, metric, analysis, classifier, None, one_model=False)
    if persona is not None:
        if persona not in set(sub["persona"]):
            raise ValueError(f"persona {persona!r} not in the table; available: {sorted(set(sub['persona']))}")
        sub = sub[sub["persona"] == persona]
    if log_scale is None:
        log_scale = metric == "centroid_distance"
    models = list(dict.fromkeys(sub["model"]))
    colors = persona_colors(models)
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.axvspan(2 / 3, 1.0, color="0.9", zorder=0, label="final third")
    for m_name in models:
        part = sub[sub["model"] == m_name]
        for control, style in (("none", "-"), ("shuffled_labels", "--")):
            curve = part[part["control"] == control].groupby("relative_depth")["mean"].mean()
            if curve.empty:
                continue
            label = m_name if control == "none" else f"{m_name}, shuffled labels"
            ax.plot(curve.index, curve.to_numpy(), ls=style, marker="o" if control == "none" else None, ms=3,
                    color=colors[m_name], label=label, alpha=1.0 if control == "none" else 0.6)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("relative depth (layer / number of blocks; 0 = embeddings)")
    ax.set_ylabel(_metric_label(metric))
    what = _ANALYSES.get(analysis, analysis) + ("" if classifier == "none" else f", {classifier}")
    who = persona if persona else "mean over personas"
    ax.set_title(f"{_PRETTY.get(metric, metric)} by relative depth: {what} ({who})")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return finish_figure(fig, out_dir, name or figure_slug("metric_by_relative_depth", analysis, None if classifier == "none" else classifier, metric))


# ----------------------------------------------------------------------------- heatmap


def plot_classifier_heatmap(
    table: pd.DataFrame,
    *,
    analysis: str = "persona_classifier",
    classifier: str | None = None,
    persona: str | None = None,
    model_name: str | None = None,
    metrics: Sequence[str] = CLASSIFIER_METRICS,
    out_dir: str | Path | None = None,
    name: str | None = None,
) -> Figure:
    """Classifier scores as a heatmap (metric x layer), the shuffled-label control beside it.

    Parameters
    ----------
    table : DataFrame
    analysis : {"persona_classifier", "direction_classifier"}
    classifier : str, optional
        Default "extra_trees" when present.
    persona : str, optional
        For the direction classifier: one persona (default: mean over personas).
    model_name : str, optional
        Needed when the table holds several models.
    metrics : sequence of str
        Rows of the heatmap.
    out_dir : path, optional
        Writes ``classifier_heatmap_<model_name>_<analysis>_<classifier>.png``.
    name : str, optional
        File stem instead of the descriptive default.
    """
    subs = []
    for metric in metrics:
        sub, analysis, classifier, model_name = _select(table, metric, analysis, classifier, model_name, one_model=True)
        subs.append(sub)
    sub = pd.concat(subs)
    if persona is not None:
        if persona not in set(sub["persona"]):
            raise ValueError(f"persona {persona!r} not in the table; available: {sorted(set(sub['persona']))}")
        sub = sub[sub["persona"] == persona]
    layers = sorted(sub["layer"].unique())
    controls = [c for c in ("none", "shuffled_labels") if c in set(sub["control"])]
    fig = Figure(figsize=(1.0 + 0.62 * len(layers) * len(controls) + 1.5, 1.2 + 0.55 * len(metrics)),
                 layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(controls), sharey=True))
    image = None
    for ax, control in zip(axes, controls):
        grid = (sub[sub["control"] == control].groupby(["metric", "layer"])["mean"].mean()
                .unstack("layer").reindex(index=list(metrics), columns=layers))
        image = ax.imshow(grid.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if value > 0.6 else "white")
        ax.set_xticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_yticks(range(len(metrics)), [_PRETTY.get(m, m) for m in metrics])
        ax.set_xlabel("layer")
        ax.set_ylabel("metric")
        ax.set_title("shuffled labels (control)" if control == "shuffled_labels" else "real labels", fontsize=10)
    fig.colorbar(image, ax=list(axes), shrink=0.9, label="score")
    who = f", {persona}" if persona else (", mean over personas" if analysis != "persona_classifier" else "")
    fig.suptitle(f"{_ANALYSES.get(analysis, analysis)} ({classifier}{who}), {model_name}")
    return finish_figure(fig, out_dir, name or figure_slug("classifier_heatmap", model_name, analysis, classifier))


# ----------------------------------------------------------------------------- 2-D scatter


def plot_scatter_2d(
    X: Any,
    labels: Any,
    *,
    embedding: str = "pca",
    color_by: str = "persona",
    layer: int | None = None,
    model_name: str | None = None,
    seed: int = 0,
    out_dir: str | Path | None = None,
    name: str | None = None,
    **embed_kwargs: Any,
) -> Figure:
    """Statements of one layer in 2-D (PCA or UMAP), coloured by persona or direction.

    Parameters
    ----------
    X : array (n_statements, hidden_size)
        One layer's activations.
    labels : DataFrame or array (n_statements,)
        ``meta`` (the column ``color_by`` is used) or the labels themselves.
    embedding : {"pca", "umap"}
        See ``personas.layers.embed_2d`` (UMAP is seeded).
    color_by : str
        Column of ``meta`` to color by (e.g. "persona", "direction"); with plain labels, the
        legend title.
    layer, model_name : for the title and file name.
    seed : int
    out_dir : path, optional
        Writes ``scatter_<embedding>_<model_name>_layer<layer>_<color_by>.png``.
    name : str, optional
        File stem instead of the descriptive default.
    **embed_kwargs
        Passed to ``embed_2d`` (e.g. ``n_neighbors``, ``min_dist``).
    """
    X = np.asarray(X)
    if isinstance(labels, pd.DataFrame):
        if color_by not in labels.columns:
            raise ValueError(f"labels has no column {color_by!r}; columns: {list(labels.columns)}")
        values = labels[color_by].astype(str).to_numpy()
    else:
        values = np.asarray(labels).astype(str)
    if values.ndim != 1 or len(values) != len(X):
        raise ValueError(f"{len(values)} labels for {len(X)} statements; they must be aligned row for row")
    coords = embed_2d(X, embedding, seed=seed, **embed_kwargs)
    names = list(dict.fromkeys(values))
    colors = persona_colors(names)
    fig = Figure(figsize=(8 if len(names) > 8 else 6.5, 5.5), layout="constrained")
    ax = fig.subplots()
    size = 12 if len(X) < 2000 else 4
    for label in names:
        mask = values == label
        ax.scatter(coords[mask, 0], coords[mask, 1], s=size, color=colors[label], alpha=0.7, label=label,
                   linewidths=0)
    axis = "PC" if embedding == "pca" else "UMAP "
    start = 0 if embedding == "pca" else 1
    ax.set_xlabel(f"{axis}{start}")
    ax.set_ylabel(f"{axis}{start + 1}")
    where = " ".join(x for x in (model_name or "", f"layer {layer}" if layer is not None else "") if x)
    ax.set_title(f"{embedding.upper()} of statements by {color_by}" + (f" ({where})" if where else ""))
    ax.legend(title=color_by, fontsize=8, markerscale=2, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return finish_figure(fig, out_dir, name or figure_slug("scatter", embedding, model_name, None if layer is None else f"layer{layer}", color_by))
