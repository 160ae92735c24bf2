"""Several models' studies compared: one ``report.md`` on relative depth, with one verdict across models."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import pandas as pd

from personas._core.io import write_text
from personas.causal.results import load_causal_result
from personas.model.sources import display_name
from personas.report.layers import final_third_claim, read_layer_table, read_untrained_table
from personas.report.tables import figure_links, markdown_table, missing
from personas.report.verdicts import across_models

__all__ = ["build_comparison_report", "write_comparison_report"]


def build_comparison_report(out_dir: str | os.PathLike, studies: Mapping[str, str | os.PathLike]) -> str:
    """Several models' studies on relative depth (the paper's Fig. 2 and Fig. 6), each beside its untrained
    control, one verdict across models (``across_models``), each model's causal gate, and links to each report."""
    from personas.layers import combine_results
    from personas.viz import plot_metric_by_relative_depth, plot_models_by_relative_depth

    out = Path(out_dir)
    tables, lines, untrained, causal = [], [], {}, []
    for model, sub in studies.items():
        sub = Path(sub)
        rel = os.path.relpath(sub / "report.md", out)
        lines.append(f"- `{display_name(model)}`: [{rel}]({rel})")
        table = read_layer_table(sub)
        if table is not None:
            tables.append(table)
            control = read_untrained_table(sub)
            if control is not None:
                untrained.update({m: control for m in table["model"].unique()})
        causal.append(_causal_line(display_name(model), sub))
    text = [f"# Persona study: {out.name}, {len(studies)} models compared", "", "Each model's own report:", "",
            *lines]
    if len(tables) >= 2:
        combined = combine_results(tables)
        figures = out / "figures"
        plot_models_by_relative_depth(combined, untrained, out_dir=figures)
        for metric in ("silhouette", "centroid_distance", "accuracy"):
            try:
                plot_metric_by_relative_depth(combined, metric, out_dir=figures)
            except ValueError:
                continue
        profile, verdicts = [], {}
        for model, part in combined.groupby("model", sort=False):
            claim = final_third_claim(part, untrained=untrained.get(model))
            if claim:
                control = claim.get("untrained") or {}
                verdicts[model] = claim["verdict"]
                profile.append({"model": model, "best layer (silhouette)": claim["best_layer"],
                                "relative depth": claim["relative_depth"], "silhouette": claim["score"],
                                "final third?": claim["relative_depth"] >= 2 / 3, "verdict": claim["verdict"],
                                "untrained control": control.get("verdict", "not run")})
        joint = across_models(verdicts)
        text += ["", "## Layer profiles on relative depth", "",
                 "Layer / number of blocks puts models of different depth on one axis (0 = embeddings, 1 = last "
                 "block); the final third is shaded, each model's untrained control (same architecture, random "
                 "weights) is dashed.", "", markdown_table(pd.DataFrame(profile)), "",
                 f"**Across models: {joint.label}** ({joint.reason}; the rule: docs/verdicts.md).", "",
                 figure_links(out, "models_by_relative_depth.png", "every model and its untrained control", 1),
                 figure_links(out, "metric_by_relative_depth_*.png", "metric by relative depth", 6)]
    text += ["", "## Causal check per model", "", *causal]
    return "\n".join(text) + "\n"


def _causal_line(model: str, sub: Path) -> str:
    """One line on a model's causal check: which readouts are informative, or why none ran."""
    folder = sub / "causal"
    if not (folder / "causal_check.json").exists():
        return f"- `{model}`: no causal check ({missing('causal/causal_check.json')})"
    try:
        result = load_causal_result(folder)
    except Exception as exc:  # a damaged result is named, never silently left out
        return f"- `{model}`: causal result unreadable ({type(exc).__name__}: {exc})"
    gate = result.gate
    if gate.empty:
        return f"- `{model}`: the causal check read no readout"
    why = gate["not_applicable"].fillna("") if "not_applicable" in gate else pd.Series("", index=gate.index)
    parts = []
    for readout, g in gate.groupby("readout", sort=False):
        reason = next((w for w in why[g.index] if w), "")
        parts.append(f"`{readout}` not applicable ({reason})" if reason else
                     f"`{readout}` informative for {int(g['informative'].astype(bool).sum())} of {len(g)} personas")
    return f"- `{model}`: " + "; ".join(parts)


def write_comparison_report(out_dir: str | os.PathLike, studies: Mapping[str, str | os.PathLike]) -> Path:
    """Write ``<out_dir>/report.md`` comparing ``studies`` ({model: study directory}); return its path."""
    return write_text(Path(out_dir) / "report.md", build_comparison_report(out_dir, studies))
