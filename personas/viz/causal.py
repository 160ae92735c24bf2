"""Plots of the causal check (:mod:`personas.causal`): dose-response curves and the ablation null.

Both follow the convention of :mod:`personas.viz`: the check's tables first, options
keyword-only, a pyplot-free Figure returned and, given ``out_dir``, saved as ``<name>.png``.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from personas.causal.results import ABLATION_METRICS
from personas._core.checks import check_choice
from personas.viz.style import _finish

__all__ = ["INTERVENTION_STYLES", "plot_dose_response", "plot_ablation_null"]

INTERVENTION_STYLES = {
    "direction": {"color": "tab:blue", "label": "persona direction"},
    "salient_direction": {"color": "tab:orange", "label": "direction on salient nodes"},
    "random_direction": {"color": "tab:gray", "label": "random directions (mean, band: draws)"},
}
_METRIC_LABELS = {
    "specific_effect": "Persona-specific effect of the ablation\n(shift of + statements minus shift of -)",
    "bias_shift": "Bias shift of the ablation (mean margin shift)",
    "mean_abs_shift": "Mean |margin shift| of the ablation",
}


def _personas(table: pd.DataFrame, personas: Sequence[str] | None, what: str) -> list[str]:
    if table.empty:
        raise ValueError(f"the {what} table is empty; run personas.causal.causal_check first")
    available = list(dict.fromkeys(table["persona"]))
    if personas is None:
        return available
    missing = [p for p in personas if p not in available]
    if missing:
        raise ValueError(f"personas {missing} are not in the {what} table (it has {available})")
    return list(personas)


def plot_dose_response(
    dose_response: pd.DataFrame,
    *,
    personas: Sequence[str] | None = None,
    title: str | None = None,
    out_dir: str | os.PathLike | None = None,
    name: str = "causal_dose_response",
) -> Figure:
    """Margin and accuracy against steering strength, one column per persona.

    Top row: mean margin of ``+`` statements (solid) and ``-`` statements (dashed)
    for each intervention; curves that move together show a Yes-bias, curves that
    part show a persona-specific effect. Bottom row: accuracy of answering as the
    persona would. Random directions: mean over draws, band = the interval across draws.

    Parameters
    ----------
    dose_response : DataFrame
        ``CausalResult.dose_response``.
    personas : list of str, optional
        Columns to draw (default: every persona of the table).
    title : str, optional
    out_dir : path, optional
        Save ``<name>.png`` there.
    name : str
        File stem.
    """
    personas = _personas(dose_response, personas, "dose_response")
    fig = Figure(figsize=(4.2 * len(personas) + 0.8, 6.4), layout="constrained")
    axes = fig.subplots(2, len(personas), squeeze=False, sharex=True)
    for j, persona in enumerate(personas):
        top, bottom = axes[0, j], axes[1, j]
        rows = dose_response[dose_response["persona"] == persona]
        for intervention, style in INTERVENTION_STYLES.items():
            d = rows[rows["intervention"] == intervention].sort_values("alpha")
            if d.empty:
                continue
            a = d["alpha"].to_numpy()
            for column, ls, side in (("mean_margin_positive", "-", "+"), ("mean_margin_negative", "--", "-")):
                top.plot(a, d[column], ls=ls, marker="o", ms=3, color=style["color"],
                         label=f"{style['label']}, {side} statements")
                if intervention == "random_direction":
                    top.fill_between(a, d[f"{column}_low"], d[f"{column}_high"], color=style["color"], alpha=0.15,
                                     lw=0)
            bottom.plot(a, d["accuracy"], marker="o", ms=3, color=style["color"], label=style["label"])
            bottom.fill_between(a, d["accuracy_low"], d["accuracy_high"], color=style["color"], alpha=0.12, lw=0)
        top.axhline(0, color="black", lw=0.6)
        bottom.axhline(0.5, color="black", lw=0.6, ls=":")
        top.set_title(persona, fontsize=10)
        if j == 0:  # shared meaning across columns: label once
            top.set_ylabel("mean margin log p(Yes) - log p(No)")
            bottom.set_ylabel("accuracy (answered as the persona would)")
        bottom.set_xlabel("alpha (x mean activation norm)")
        bottom.set_ylim(-0.02, 1.02)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title or "Steering along the persona direction: dose-response on held-out statements")
    return _finish(fig, out_dir, name)


def plot_ablation_null(
    random_ablation: pd.DataFrame,
    ablation: pd.DataFrame,
    *,
    metric: str = "specific_effect",
    personas: Sequence[str] | None = None,
    bins: int = 20,
    title: str | None = None,
    out_dir: str | os.PathLike | None = None,
    name: str | None = None,
) -> Figure:
    """The salient-node ablation's effect against the histogram of random-node ablations.

    Parameters
    ----------
    random_ablation, ablation : DataFrame
        ``CausalResult.random_ablation`` and ``CausalResult.ablation``.
    metric : {"specific_effect", "bias_shift", "mean_abs_shift"}
    personas : list of str, optional
    bins : int
    title : str, optional
    out_dir : path, optional
        Save ``<name>.png`` there (default name ``causal_ablation_<metric>``).
    """
    check_choice(metric, "metric", ABLATION_METRICS)
    personas = _personas(ablation, personas, "ablation")
    fig = Figure(figsize=(4.2 * len(personas) + 0.6, 3.6), layout="constrained")
    axes = fig.subplots(1, len(personas), squeeze=False)
    for ax, persona in zip(axes[0], personas):
        null = random_ablation.loc[random_ablation["persona"] == persona, metric].to_numpy(dtype=float)
        row = ablation[(ablation["persona"] == persona) & (ablation["metric"] == metric)].iloc[0]
        if len(null):
            ax.hist(null, bins=bins, color="tab:gray", alpha=0.7,
                    label=f"{len(null)} random sets of {int(row['n_nodes'])} nodes")
        ax.axvline(row["salient"], color="tab:red", lw=2,
                   label=f"salient nodes (pct {row['percentile']:.0f}, p = {row['p_value']:.3g})")
        if np.isfinite(row.get("salient_low", np.nan)):
            ax.axvspan(row["salient_low"], row["salient_high"], color="tab:red", alpha=0.12, lw=0)
        ax.set_title(persona, fontsize=10)
        ax.set_xlabel(_METRIC_LABELS[metric])
        if ax is axes[0, 0]:
            ax.set_ylabel("random draws")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title or "Ablating the salient nodes against as many random nodes")
    return _finish(fig, out_dir, name or f"causal_ablation_{metric}")
