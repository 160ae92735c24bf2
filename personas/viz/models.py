"""Several models on one axis: cluster metrics against relative depth, each beside its untrained control."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from personas.layers import CLUSTER_METRICS, select_metric_rows
from personas.viz.style import figure_slug, finish_figure, persona_colors

__all__ = ["plot_models_by_relative_depth"]


def plot_models_by_relative_depth(
    table: pd.DataFrame,
    controls: dict[str, pd.DataFrame] | None = None,
    *,
    metrics: tuple[str, ...] = ("silhouette", "centroid_distance"),
    out_dir: str | Path | None = None,
    name: str | None = None,
) -> Figure:
    """One panel per cluster metric against relative depth (layer / n_blocks): every model, solid, and its
    untrained control (same architecture, random weights), dashed in the same colour; final third shaded.

    Parameters
    ----------
    table : DataFrame
        Layer results of several models (``combine_results``); the mean over personas is drawn.
    controls : dict, optional
        ``{model: its untrained control's layer results}`` (``read_untrained_table``).
    metrics : tuple of str
        Cluster metrics (``CLUSTER_METRICS``), one panel each; centroid distance on a log scale.
    out_dir, name :
        Saves ``<name or "models_by_relative_depth">.png`` under ``out_dir``.
    """
    unknown = [m for m in metrics if m not in CLUSTER_METRICS]
    if unknown or not metrics:
        raise ValueError(f"metrics must be cluster metrics {list(CLUSTER_METRICS)}; got {list(metrics)}")
    models = list(dict.fromkeys(table["model"]))
    colors = persona_colors(models)
    fig = Figure(figsize=(6 * len(metrics), 4.5), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics):
        ax.axvspan(2 / 3, 1.0, color="0.9", zorder=0, label="final third")
        for model in models:
            for label, rows, style in ((model, table[table["model"] == model], "-"),
                                       (f"{model}, untrained", (controls or {}).get(model), "--")):
                if rows is None:
                    continue
                sub, _, _ = select_metric_rows(rows, metric)
                curve = sub[sub["control"] == "none"].groupby("relative_depth")["mean"].mean()
                ax.plot(curve.index, curve.to_numpy(), ls=style, marker="o" if style == "-" else None, ms=3,
                        color=colors[model], label=label, alpha=1.0 if style == "-" else 0.7)
        if metric == "centroid_distance":
            ax.set_yscale("log")
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("relative depth (layer / number of blocks; 0 = embeddings)")
        ax.set_ylabel(f"{CLUSTER_METRICS[metric].label} (mean over personas)")
        ax.set_title(f"{CLUSTER_METRICS[metric].label} by relative depth")
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.suptitle("+ vs - clusters across models, trained (solid) and untrained (dashed)")
    return finish_figure(fig, out_dir, name or figure_slug("models_by_relative_depth"))
