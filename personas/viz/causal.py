"""Plots of the causal check (:mod:`personas.causal`): dose response, specificity heat map, ablation null.

They follow the convention of :mod:`personas.viz`: the check's tables first, options
keyword-only, a pyplot-free Figure returned and, given ``out_dir``, saved as ``<name>.png``.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from personas.viz.style import finish_figure

__all__ = ["plot_dose_response", "plot_specificity", "plot_ablation_null", "causal_figures"]

_EFFECT = "specific effect\n(shift of + minus shift of - statements)"


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
    """Specific effect against alpha, one panel per layer (columns) and persona (rows).

    The persona direction with its bootstrap interval (error bars); random directions of
    the same norm: their mean (dashed) and the band from the smallest to the largest draw.

    Parameters
    ----------
    dose_response : DataFrame
        ``CausalResult.dose_response``.
    personas : list of str, optional
    title : str, optional
    out_dir : path, optional
        Save ``<name>.png`` there.
    name : str
    """
    personas = _personas(dose_response, personas, "dose_response")
    layers = sorted(dose_response["layer"].unique())
    fig = Figure(figsize=(3.8 * len(layers) + 0.8, 3.2 * len(personas) + 0.8), layout="constrained")
    axes = fig.subplots(len(personas), len(layers), squeeze=False, sharey="row")
    for i, persona in enumerate(personas):
        for j, layer in enumerate(layers):
            ax = axes[i, j]
            rows = dose_response[(dose_response["persona"] == persona) & (dose_response["layer"] == layer)]
            r = rows[rows["intervention"] == "random_direction"].sort_values("alpha")
            if len(r):
                ax.fill_between(r["alpha"], r["low"], r["high"], color="tab:gray", alpha=0.25, lw=0,
                                label="random directions (band: draws)")
                ax.plot(r["alpha"], r["specific_effect"], color="tab:gray", ls="--", lw=1)
            d = rows[rows["intervention"] == "direction"].sort_values("alpha")
            ax.errorbar(d["alpha"], d["specific_effect"], yerr=[d["specific_effect"] - d["low"],
                        d["high"] - d["specific_effect"]], color="tab:blue", marker="o", ms=3, capsize=2,
                        label="persona direction (bootstrap interval)")
            ax.axhline(0, color="black", lw=0.6)
            ax.set_title(f"{persona}, layer {layer}", fontsize=9)
            ax.set_xlabel("alpha (x mean hidden-state norm)")
            if j == 0:
                ax.set_ylabel(_EFFECT)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    readout = dose_response["readout"].iloc[0] if "readout" in dose_response else "readout"
    fig.suptitle(title or f"Dose response: steering along the persona direction ({readout} readout, held-out)")
    return finish_figure(fig, out_dir, name)


def plot_specificity(
    specificity: pd.DataFrame,
    specificity_test: pd.DataFrame | None = None,
    *,
    title: str | None = None,
    out_dir: str | os.PathLike | None = None,
    name: str = "causal_specificity",
) -> Figure:
    """Heat map of specific effects: row = the persona whose direction is added, column = the persona read.

    Parameters
    ----------
    specificity, specificity_test : DataFrame
        ``CausalResult.specificity`` and (optional, for the subtitle) ``CausalResult.specificity_test``.
    """
    if specificity.empty:
        raise ValueError("the specificity table is empty; run causal_check with n_specificity >= 2")
    order = list(dict.fromkeys(specificity["steer_persona"]))
    matrix = specificity.pivot(index="steer_persona", columns="read_persona", values="specific_effect")
    values = matrix.loc[order, order].to_numpy(dtype=float)
    limit = float(np.nanmax(np.abs(values))) or 1.0
    fig = Figure(figsize=(1.1 * len(order) + 3.0, 1.0 * len(order) + 2.2), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
    for i in range(len(order)):
        for j in range(len(order)):
            ax.text(j, i, f"{values[i, j]:+.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(order)), order, rotation=40, ha="right", fontsize=8)
    ax.set_yticks(range(len(order)), order, fontsize=8)
    ax.set_xlabel("held-out statements read (persona)")
    ax.set_ylabel("direction added (persona)")
    fig.colorbar(image, ax=ax, label=_EFFECT)
    subtitle = ""
    if specificity_test is not None and not specificity_test.empty:
        t = specificity_test.iloc[0]
        subtitle = f"\ndiagonal dominance {t['statistic']:+.3f}, row-permutation p = {t['p_value']:.3g}"
    alpha = specificity["alpha"].iloc[0]
    ax.set_title((title or f"Specificity: steering along one persona's direction (alpha {alpha:+g})") + subtitle,
                 fontsize=10)
    return finish_figure(fig, out_dir, name)


def plot_ablation_null(
    effects: pd.DataFrame,
    *,
    readout: str | None = None,
    personas: Sequence[str] | None = None,
    bins: int = 20,
    title: str | None = None,
    out_dir: str | os.PathLike | None = None,
    name: str = "causal_ablation",
) -> Figure:
    """The salient-node ablation's specific effect against random-node ablations and the top-variance nodes.

    Parameters
    ----------
    effects : DataFrame
        ``CausalResult.effects``.
    readout : str, optional
        Which readout (default: the first with ablations).
    """
    abl = effects[effects["intervention"].isin(["salient_ablation", "random_ablation", "top_variance_ablation"])]
    if abl.empty:
        raise ValueError("no ablation in the effects table (every readout was uninformative?)")
    readout = readout or abl["readout"].iloc[0]
    abl = abl[abl["readout"] == readout]
    personas = _personas(abl, personas, "ablation")
    fig = Figure(figsize=(4.2 * len(personas) + 0.6, 3.6), layout="constrained")
    axes = fig.subplots(1, len(personas), squeeze=False)
    for ax, persona in zip(axes[0], personas):
        rows = abl[abl["persona"] == persona]
        null = rows.loc[rows["intervention"] == "random_ablation", "specific_effect"].to_numpy(dtype=float)
        if len(null):
            ax.hist(null, bins=bins, color="tab:gray", alpha=0.7, label=f"{len(null)} random node sets")
        for intervention, color, label in (("salient_ablation", "tab:red", "salient nodes"),
                                           ("top_variance_ablation", "tab:purple", "top-variance nodes")):
            sel = rows[rows["intervention"] == intervention]
            if len(sel):
                r = sel.iloc[0]
                ax.axvline(r["specific_effect"], color=color, lw=2, label=label)
                ax.axvspan(r["specific_effect_low"], r["specific_effect_high"], color=color, alpha=0.12, lw=0)
        ax.set_title(persona, fontsize=10)
        ax.set_xlabel("specific effect of the ablation")
        if ax is axes[0, 0]:
            ax.set_ylabel("random draws")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title or f"Ablating the salient nodes against random and top-variance nodes ({readout} readout)")
    return finish_figure(fig, out_dir, name)


def causal_figures(result, *, out_dir: str | os.PathLike | None = None) -> list[Figure]:
    """Every causal-check figure a result has data for: the dose response, the specificity matrix and the
    ablation null, in that order (saved under ``out_dir`` when given); a part that did not run gives none."""
    figures = []
    if len(result.dose_response):
        figures.append(plot_dose_response(result.dose_response, out_dir=out_dir))
    if len(result.specificity):
        figures.append(plot_specificity(result.specificity, result.specificity_test, out_dir=out_dir))
    effects = result.effects
    if "intervention" in effects and effects["intervention"].str.endswith("ablation").any():
        figures.append(plot_ablation_null(effects, out_dir=out_dir))
    return figures
