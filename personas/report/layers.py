"""Report sections on layer localisation: the paper's Table 1/5 layout, the profile, the chosen layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personas._core.io import read_json
from personas.report.tables import figure_links, markdown_table, mean_std, missing

__all__ = ["CLUSTER_SHORT", "read_layer_table", "persona_table", "layer_profile", "chosen_layer_text",
           "final_third_claim"]

#: The paper's abbreviations of the cluster metrics (Tables 1 and 5).
CLUSTER_SHORT = {"silhouette": "SH", "calinski_harabasz": "CH", "davies_bouldin": "DB", "centroid_distance": "ED"}
FINAL_THIRD = 2 / 3


def read_layer_table(out: Path) -> pd.DataFrame | None:
    path = out / "tables" / "layer_metrics.csv"
    return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.exists() else None


def _cluster(table: pd.DataFrame, control: str = "none") -> pd.DataFrame:
    return table[(table["analysis"] == "cluster") & (table["control"] == control)]


def persona_table(table: pd.DataFrame) -> str:
    """Per persona SH/CH/DB/ED at the first and the last analysed layer, mean ± std over repetitions."""
    real = _cluster(table)
    layers = sorted(int(x) for x in real["layer"].unique() if int(x) > 0)
    if not layers:
        return missing("cluster metrics at layers above 0")
    first, last = layers[0], layers[-1]
    rows = []
    for persona, part in real.groupby("persona", sort=False):
        row = {"persona": persona}
        for layer in (first, last):
            at = part[part["layer"] == layer].set_index("metric")
            for metric, short in CLUSTER_SHORT.items():
                if metric in at.index:
                    row[f"{short} L{layer}"] = mean_std(at.at[metric, "mean"], at.at[metric, "std"])
        rows.append(row)
    text = [
        f"The paper's Table 1/5 layout: per persona, the cluster metrics of `+` against `-` statements at the "
        f"first (layer {first}) and last (layer {last}) analysed layers, mean ± std over the repetitions. "
        "SH silhouette (higher = more separated), CH Calinski-Harabasz (higher), DB Davies-Bouldin (lower), "
        "ED Euclidean distance between the two centroids.",
        "",
        markdown_table(pd.DataFrame(rows)),
    ]
    return "\n".join(text)


def _by_layer(part: pd.DataFrame) -> pd.Series:
    return part.groupby("layer")["mean"].mean()


def layer_profile(table: pd.DataFrame, out: Path) -> str:
    """One row per layer: separation and classifier accuracy, each beside its controls."""
    cols: dict[str, pd.Series] = {}
    real, shuffled = _cluster(table), _cluster(table, "shuffled_labels")
    for metric in ("silhouette", "centroid_distance"):
        cols[f"{CLUSTER_SHORT[metric]} (mean over personas)"] = _by_layer(real[real["metric"] == metric])
        part = shuffled[shuffled["metric"] == metric]
        if len(part):
            cols[f"{CLUSTER_SHORT[metric]} shuffled"] = _by_layer(part)
    clf = table[(table["analysis"] == "persona_classifier") & (table["metric"] == "accuracy")]
    for (name, control), part in clf.groupby(["classifier", "control"]):
        if control in ("none", "shuffled_labels"):
            label = f"persona acc. {name}" + (" shuffled" if control != "none" else "")
            cols[label] = part.groupby("layer")["mean"].mean()
    direction = table[(table["analysis"] == "direction_classifier") & (table["metric"] == "accuracy")
                      & (table["control"] == "none")]
    if len(direction):
        cols["+/- acc. (mean over personas)"] = _by_layer(direction)
    depth = table.groupby("layer")["relative_depth"].first()
    profile = pd.DataFrame({"relative depth": depth, **cols}).reset_index()
    n_personas = table.loc[table["persona"] != "ALL", "persona"].nunique()
    lines = [
        "Per layer (0 = the embedding output). Cluster metrics follow the paper's protocol (PCA of `+` and `-` "
        "per persona); classifiers predict the persona from the layer's activations; *shuffled* rows are the "
        f"chance control (chance accuracy 1/{n_personas} = {1 / max(n_personas, 1):.3f}).",
        "",
        markdown_table(profile),
    ]
    controls = _word_controls(table)
    if controls is not None:
        lines += ["", "Wording and length controls (the same metrics on layer 0 averaged over the statement's own "
                  "tokens, and on the token count alone), beside the best layer:", "", markdown_table(controls)]
    figs = figure_links(out, "*centroid_distance*.png", "centroid distance by layer (log scale, the paper's Fig. 2)", 2)
    if figs:
        lines += ["", figs]
    return "\n".join(lines)


def _word_controls(table: pd.DataFrame) -> pd.DataFrame | None:
    ctl = table[table["control"].isin(["wording", "length"])]
    if not len(ctl):
        return None
    real = table[table["control"] == "none"]
    keys = ["analysis", "classifier", "metric"]
    rows = []
    for (analysis, classifier, metric), part in ctl.groupby(keys + ["control"], sort=False).size().index.to_frame(
            index=False).groupby(keys, sort=False):
        at = real[(real["analysis"] == analysis) & (real["classifier"] == classifier) & (real["metric"] == metric)]
        if not len(at):
            continue
        per_layer = at[at["layer"] > 0].groupby("layer")["mean"].mean()
        lower = metric == "davies_bouldin"
        best_layer = per_layer.idxmin() if lower else per_layer.idxmax()
        row = {"analysis": analysis, "classifier": classifier, "metric": metric,
               "best layer": int(best_layer), "best": per_layer[best_layer]}
        for control in ("wording", "length"):
            c = ctl[(ctl["analysis"] == analysis) & (ctl["classifier"] == classifier) & (ctl["metric"] == metric)
                    & (ctl["control"] == control)]
            row[control] = c["mean"].mean() if len(c) else np.nan
        rows.append(row)
    return pd.DataFrame(rows) if rows else None


def chosen_layer_text(out: Path) -> str:
    path = out / "chosen_layer.json"
    if not path.exists():
        return missing("chosen_layer.json")
    chosen = read_json(path)
    lines = [
        f"Layer **{chosen['layer']}** (relative depth {chosen.get('relative_depth', float('nan')):.2f}), "
        f"the most divergent by **{chosen.get('metric')}** "
        f"({'in' if chosen.get('in_final_third') else 'not in'} the final third of the model). DeepScan and the "
        "node analysis use this layer.",
    ]
    ranking = pd.DataFrame(chosen.get("ranking", []))
    if len(ranking):
        lines += ["", "Ranking, with the controls at the same layer:", "", markdown_table(ranking)]
    return "\n".join(lines)


def final_third_claim(table: pd.DataFrame, metric: str = "silhouette") -> dict | None:
    """The paper's claim "personas diverge most in the final third of the layers", as tested here.

    Returns the best layer of the mean over personas, the share of personas whose own peak
    lies in the final third, the score at the best layer against the shuffled-label and
    wording controls, and a verdict.
    """
    real = _cluster(table)
    part = real[(real["metric"] == metric) & (real["layer"] > 0)]
    if not len(part):
        return None
    depth = table.groupby("layer")["relative_depth"].first()
    mean = part.groupby("layer")["mean"].mean()
    best = int(mean.idxmax())
    peaks = part.loc[part.groupby("persona")["mean"].idxmax(), "layer"].astype(int)
    share = float(np.mean([depth[layer] >= FINAL_THIRD for layer in peaks]))
    shuffled = _cluster(table, "shuffled_labels")
    shuffled = shuffled[(shuffled["metric"] == metric) & (shuffled["layer"] == best)]["mean"].mean()
    wording = table[(table["analysis"] == "cluster") & (table["control"] == "wording") & (table["metric"] == metric)]
    wording = wording["mean"].mean() if len(wording) else np.nan
    in_final = bool(depth[best] >= FINAL_THIRD)
    beats = mean[best] > (shuffled if np.isfinite(shuffled) else -np.inf) and (
        not np.isfinite(wording) or mean[best] > wording)
    verdict = "supported" if in_final and beats and share >= 0.5 else ("partly supported" if in_final or share >= 0.5
                                                                        else "not supported")
    return {
        "claim": "personas diverge most in the final third of the layers",
        "metric": metric, "best_layer": best, "relative_depth": float(depth[best]), "score": float(mean[best]),
        "shuffled_control": float(shuffled), "wording_control": float(wording),
        "personas_peaking_in_final_third": share, "verdict": verdict,
    }
