"""Report sections on layer localisation: the paper's Table 1/5 layout, the profile, the chosen layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personas._core.io import read_json
from personas.layers.clusters import CLUSTER_METRICS
from personas.layers.results import LOWER_IS_BETTER
from personas.report.tables import figure_links, markdown_table, mean_std, missing

__all__ = ["CLUSTER_SHORT", "read_layer_table", "persona_table", "layer_profile", "chosen_layer_text",
           "final_third_claim", "final_third_numbers", "read_untrained_table", "FINAL_THIRD_BAND"]

#: The paper's abbreviations of the cluster metrics (Tables 1 and 5).
CLUSTER_SHORT = {name: m.short for name, m in CLUSTER_METRICS.items()}
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


def layer_profile(table: pd.DataFrame, out: Path, untrained: pd.DataFrame | None = None) -> str:
    """One row per layer: separation and classifier accuracy, each beside its controls.

    With ``untrained`` (the untrained-model control's table), its silhouette per layer is a
    column beside the trained model's.
    """
    cols: dict[str, pd.Series] = {}
    real, shuffled = _cluster(table), _cluster(table, "shuffled_labels")
    for metric in ("silhouette", "centroid_distance"):
        cols[f"{CLUSTER_SHORT[metric]} (mean over personas)"] = _by_layer(real[real["metric"] == metric])
        part = shuffled[shuffled["metric"] == metric]
        if len(part):
            cols[f"{CLUSTER_SHORT[metric]} shuffled"] = _by_layer(part)
        if untrained is not None and metric == "silhouette":
            part = _cluster(untrained)
            cols["SH untrained model"] = _by_layer(part[part["metric"] == metric])
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
    if untrained is not None:
        lines += ["", "*SH untrained model*: the same architecture with re-initialised weights (seeded), the same "
                  "statements, extraction and cluster protocol: what depth alone gives."]
        figs = figure_links(out, "untrained_control_*.png", "trained against untrained model by relative depth", 2)
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
        lower = metric in LOWER_IS_BETTER
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


#: Half-width of the inconclusive band of the final-third claim, in silhouette units (docs/verdicts.md).
FINAL_THIRD_BAND = 0.01
_N_BOOT = 2000
_MAX_EXACT_FLIPS = 2 ** 14


def read_untrained_table(out: Path) -> pd.DataFrame | None:
    """``tables/layer_metrics_untrained.csv``: the untrained-model control, when the study ran it."""
    path = out / "tables" / "layer_metrics_untrained.csv"
    return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.exists() else None


def final_third_numbers(table: pd.DataFrame, metric: str = "silhouette", seed: int = 0) -> dict | None:
    """The final-third claim as one estimate with an interval and a p-value.

    Per persona, ``gap`` = its best ``metric`` over the final-third layers minus its best over
    the earlier layers (layer 0, the embeddings, left out). The estimate is the mean gap over
    personas; the interval a 95% percentile bootstrap over personas (``_N_BOOT`` resamples,
    seeded); the p-value a two-sided sign-flip test of the per-persona gaps (every sign
    pattern up to 2**14 of them, else that many random ones). None when the table has no
    layer on one side of 2/3.
    """
    real = _cluster(table)
    part = real[(real["metric"] == metric) & (real["layer"] > 0)]
    if not len(part):
        return None
    depth = table.groupby("layer")["relative_depth"].first()
    late = part["layer"].map(depth) >= FINAL_THIRD
    if late.all() or not late.any():
        return None
    best_late = part[late].groupby("persona")["mean"].max()
    best_early = part[~late].groupby("persona")["mean"].max()
    gaps = (best_late - best_early.reindex(best_late.index)).dropna().to_numpy(float)
    if not len(gaps):
        return None
    rng = np.random.default_rng(seed)
    boot = gaps[rng.integers(0, len(gaps), (_N_BOOT, len(gaps)))].mean(1)
    lo, hi = (float(x) for x in np.quantile(boot, [0.025, 0.975]))
    n = len(gaps)
    if 2 ** n <= _MAX_EXACT_FLIPS:
        signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    else:
        signs = rng.choice([-1, 1], size=(_MAX_EXACT_FLIPS, n))
    flipped = np.abs((signs * gaps).mean(1))
    p = float(np.mean(flipped >= abs(gaps.mean()) - 1e-12))
    estimate = float(gaps.mean())
    return {"estimate": estimate, "ci_low": min(lo, estimate), "ci_high": max(hi, estimate), "p_value": p,
            "n_personas": n}


def _profile_facts(table: pd.DataFrame, metric: str) -> dict | None:
    real = _cluster(table)
    part = real[(real["metric"] == metric) & (real["layer"] > 0)]
    if not len(part):
        return None
    depth = table.groupby("layer")["relative_depth"].first()
    mean = part.groupby("layer")["mean"].mean()
    best = int(mean.idxmax())
    peaks = part.loc[part.groupby("persona")["mean"].idxmax(), "layer"].astype(int)
    shuffled = _cluster(table, "shuffled_labels")
    shuffled = shuffled[(shuffled["metric"] == metric) & (shuffled["layer"] == best)]["mean"].mean()
    wording = table[(table["analysis"] == "cluster") & (table["control"] == "wording") & (table["metric"] == metric)]
    return {"best_layer": best, "relative_depth": float(depth[best]), "score": float(mean[best]),
            "shuffled_control": float(shuffled), "wording_control": float(wording["mean"].mean()) if len(wording)
            else float("nan"), "personas_peaking_in_final_third": float(np.mean([depth[x] >= FINAL_THIRD for x in peaks]))}


def final_third_claim(table: pd.DataFrame, metric: str = "silhouette", untrained: pd.DataFrame | None = None,
                      band: float = FINAL_THIRD_BAND) -> dict | None:
    """The paper's claim "personas diverge most in the final third of the layers", as tested here.

    The verdict comes from ``final_third_numbers`` by the rule of ``personas.report.verdicts``
    (band ``band``). It is "inconclusive" too when the best layer does not beat its
    shuffled-label and wording controls, and when the untrained-model control (``untrained``,
    the same architecture with random weights) is itself "supported": then the late peak is
    a property of depth, not of personas.

    Returns
    -------
    dict or None
        ``claim, metric, best_layer, relative_depth, score, shuffled_control, wording_control,
        personas_peaking_in_final_third, estimate, ci_low, ci_high, p_value, verdict, reason``
        and, with ``untrained``, ``untrained`` (the same keys for the control, or None).
    """
    from personas.report.verdicts import claim_verdict

    facts = _profile_facts(table, metric)
    if facts is None:
        return None
    numbers = final_third_numbers(table, metric)
    out = {"claim": "personas diverge most in the final third of the layers", "metric": metric, **facts}
    if numbers is None:
        out.update(estimate=float("nan"), ci_low=float("nan"), ci_high=float("nan"), p_value=float("nan"),
                   verdict="inconclusive", reason="no analysed layer on one side of the final third")
        return out
    verdict = claim_verdict(numbers["estimate"], numbers["ci_low"], numbers["ci_high"], numbers["p_value"], band=band)
    label, reason = verdict.label, verdict.reason
    controls = [facts["shuffled_control"], facts["wording_control"]]
    if label == "supported" and not all(facts["score"] > c for c in controls if np.isfinite(c)):
        label, reason = "inconclusive", reason + "; but the best layer does not beat its shuffled or wording control"
    out.update(numbers, verdict=label, reason=reason)
    if untrained is not None:
        control = final_third_claim(untrained, metric, band=band)
        out["untrained"] = control
        if control is not None and control["verdict"] == "supported" and label == "supported":
            out["verdict"] = "inconclusive"
            out["reason"] = (reason + "; but the untrained model (same architecture, random weights) also peaks in "
                             "the final third by the same rule, so the late peak is about depth, not personas")
    return out
