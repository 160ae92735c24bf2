"""Plots of DeepScan experiment summaries: precision and recall per persona and method."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from personas.viz.style import finish_figure, figure_slug, persona_colors

__all__ = ["plot_precision_recall"]


def plot_precision_recall(
    summary: pd.DataFrame,
    *,
    level: int | None = None,
    title: str | None = None,
    out_dir: str | os.PathLike | None = None,
    name: str | None = None,
) -> Figure:
    """Grouped bars of mean precision and recall (error bars: std over runs).

    Parameters
    ----------
    summary : DataFrame
        Columns persona, level, method, precision_mean, precision_std,
        recall_mean, recall_std (as ``personas.scans.driver.run_persona_scans`` returns).
    level : int, optional
        Keep one level; default: the only level present (error if several).
    title : str, optional
    out_dir : path, optional
        Save ``<name>.png`` there (default name ``precision_recall_level<level>``).
    name : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    need = {"persona", "level", "method", "precision_mean", "precision_std", "recall_mean", "recall_std"}
    missing = need - set(summary.columns)
    if missing:
        raise ValueError(f"summary lacks columns {sorted(missing)}; pass the table of run_persona_scans")
    levels = sorted(summary["level"].unique())
    if level is None:
        if len(levels) != 1:
            raise ValueError(f"summary holds levels {levels}; pass level= to choose one")
        level = levels[0]
    data = summary[summary["level"] == level]
    if data.empty:
        raise ValueError(f"no rows for level {level}; levels present: {levels}")
    personas = list(dict.fromkeys(data["persona"]))
    methods = list(dict.fromkeys(data["method"]))
    width = 0.8 / len(methods)
    x = np.arange(len(personas))
    fig = Figure(figsize=(max(8, 1.1 * len(personas) + 4), 4.5))
    axes = fig.subplots(1, 2, sharey=True)
    colors = persona_colors(methods)
    for ax, metric in zip(axes, ("precision", "recall")):
        for j, method in enumerate(methods):
            part = data[data["method"] == method].set_index("persona").reindex(personas)
            ax.bar(
                x + (j - (len(methods) - 1) / 2) * width, part[f"{metric}_mean"], width,
                yerr=part[f"{metric}_std"], capsize=2, label=method, color=colors[method],
            )
        ax.set_xticks(x, personas, rotation=45, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("persona")
        ax.set_ylabel(f"{metric} (mean ± std over runs)")
        ax.set_title(metric)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[1].legend(title="method", fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(title or f"DeepScan level {level}: precision and recall per persona")
    fig.tight_layout()
    return finish_figure(fig, out_dir, name or figure_slug("precision_recall", f"level{level}"))
