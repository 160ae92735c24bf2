"""``report.md``: a short written summary of a study, built from the artifacts its notebooks wrote.

Reads, under a study's output directory: ``study.json`` (parameters, timings),
``tables/layer_metrics.csv`` and ``chosen_layer.json`` (representation_extraction),
``tables/deepscan_precision_recall.csv`` (run_deepscan) and ``tables/nodes/*.csv``
(vis_top_nodes). A missing artifact is reported as missing in its section rather
than failing the whole report, so a partial study still gets a readable report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from personas.io import read_json, write_text

__all__ = ["REPORT_SECTIONS", "markdown_table", "build_report", "write_report"]

REPORT_SECTIONS = (
    "## Configuration",
    "## Layer profile",
    "## Chosen layer",
    "## DeepScan precision and recall",
    "## Node overlaps",
    "## Artifacts",
)


def markdown_table(df: pd.DataFrame, digits: int = 3) -> str:
    """A DataFrame as a GitHub-flavoured markdown table (floats rounded to ``digits``)."""

    def cell(v) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        if isinstance(v, (float, np.floating)):
            return f"{v:.{digits}g}" if abs(v) >= 1e4 or (v != 0 and abs(v) < 1e-3) else f"{v:.{digits}f}"
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "|".join("---" for _ in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _missing(what: str) -> str:
    return f"_Not available: {what} was not found (did the notebook that writes it run?)._"


def _configuration(study: dict) -> str:
    p = {**study.get("notebook_defaults", {}), **study.get("parameters", {})}
    keys = [
        "model_name", "personas", "n_per_direction", "layers", "position", "template", "n_runs", "clean_ssize",
        "anom_ssize", "background_size", "score", "tail", "thresholds", "a_max", "restarts", "preset", "seed",
    ]
    rows = [(k, "the paper's 14" if k == "personas" and p.get(k) is None else p[k]) for k in keys if k in p]
    rows.append(("scan layer", "chosen by representation_extraction" if p.get("layer") is None else p["layer"]))
    t = study.get("timings_s", {})
    timing = ", ".join(f"{k}: {v:.0f} s" for k, v in t.items())
    text = markdown_table(pd.DataFrame(rows, columns=["parameter", "value"])) if rows else "(notebook defaults)"
    return f"{text}\n\nWall time: {timing or 'unknown'}."


def _layer_profile(out: Path) -> tuple[str, str]:
    path = out / "tables" / "layer_metrics.csv"
    chosen_path = out / "chosen_layer.json"
    if not path.exists():
        return _missing("tables/layer_metrics.csv"), _missing("chosen_layer.json")
    table = pd.read_csv(path)
    real = table[table["control"] == "none"]
    cols: dict[str, pd.Series] = {}
    cluster = real[real["analysis"] == "cluster"]
    for metric in ("silhouette", "centroid_distance", "davies_bouldin"):
        part = cluster[cluster["metric"] == metric]
        if len(part):
            cols[f"{metric} (mean over personas)"] = part.groupby("layer")["mean"].mean()
    clf = table[(table["analysis"] == "persona_classifier") & (table["metric"] == "accuracy")]
    for (name, control), part in clf.groupby(["classifier", "control"]):
        label = f"persona accuracy, {name}" + (" (shuffled labels)" if control != "none" else "")
        cols[label] = part.set_index("layer")["mean"]
    direction = real[(real["analysis"] == "direction_classifier") & (real["metric"] == "accuracy")]
    if len(direction):
        cols["+/- accuracy (mean over personas)"] = direction.groupby("layer")["mean"].mean()
    depth = table.groupby("layer")["relative_depth"].first()
    profile = pd.DataFrame({"relative depth": depth, **cols}).reset_index()
    n_personas = table.loc[table["persona"] != "ALL", "persona"].nunique()
    text = [
        "Per layer (0 = embeddings, the wording control). Cluster metrics follow the paper's protocol "
        "(PCA of + and - per persona); classifiers predict the persona from the layer's activations; "
        f"the shuffled-label rows are the chance control (chance accuracy = 1/{n_personas} = {1 / max(n_personas, 1):.3f}).",
        "",
        markdown_table(profile),
    ]
    if not chosen_path.exists():
        return "\n".join(text), _missing("chosen_layer.json")
    chosen = read_json(chosen_path)
    ranking = pd.DataFrame(chosen.get("ranking", []))
    lines = [
        f"Layer **{chosen['layer']}** (relative depth {chosen.get('relative_depth', float('nan')):.2f}), "
        f"the most divergent by **{chosen.get('metric')}** "
        f"({'in' if chosen.get('in_final_third') else 'not in'} the final third of the model).",
    ]
    if len(ranking):
        lines += ["", "Ranking, with the controls at the same layer:", "", markdown_table(ranking)]
    return "\n".join(text), "\n".join(lines)


def _precision_recall(out: Path) -> str:
    path = out / "tables" / "deepscan_precision_recall.csv"
    if not path.exists():
        return _missing("tables/deepscan_precision_recall.csv")
    s = pd.read_csv(path)
    # unstack, not pivot_table: a baseline that never flags anything has all-NaN precision, and stays visible
    wide = s.set_index(["level", "persona", "method"])[["precision_mean", "recall_mean"]].unstack("method")
    methods = list(dict.fromkeys(s["method"]))
    table = pd.DataFrame(index=wide.index)
    for m in methods:
        table[f"{m} P"] = wide[("precision_mean", m)]
        table[f"{m} R"] = wide[("recall_mean", m)]
    if "detection_auc" in s and s["detection_auc"].notna().any():
        auc = s[s["method"] == "deepscan"].set_index(["level", "persona"])["detection_auc"]
        table["deepscan AUC"] = auc
    table = table.reset_index()
    mean = s.groupby(["level", "method"], sort=False)[["precision_mean", "recall_mean"]].mean().reset_index()
    lines = [
        "Mean precision (P) and recall (R) over runs per persona; baselines on the very same samples. "
        "AUC: detection power (ROC AUC of samples with anomalous records against clean-only samples).",
        "",
        markdown_table(table),
        "",
        "Averaged over personas:",
        "",
        markdown_table(mean.rename(columns={"precision_mean": "precision", "recall_mean": "recall"})),
    ]
    return "\n".join(lines)


def _overlaps(out: Path) -> str:
    nodes = out / "tables" / "nodes"
    if not (nodes / "set_sizes.csv").exists():
        return _missing("tables/nodes/set_sizes.csv")
    sizes = pd.read_csv(nodes / "set_sizes.csv")
    lines = ["Salient nodes per persona (union over runs unless a run fraction was set):", "", markdown_table(sizes)]
    if (nodes / "overlap_table.csv").exists():
        ov = pd.read_csv(nodes / "overlap_table.csv")
        keep = [c for c in ("group", "n_personas", "union", "shared_by_all", "shared_fraction", "shared_expected",
                            "shared_p_adjusted", "jaccard_mean") if c in ov]
        lines += ["", "Nodes shared by all personas of a group, against chance (hypergeometric):", "",
                  markdown_table(ov[keep])]
        for row in ov.itertuples(index=False):
            if row.n_personas < 2:
                continue
            if row.shared_p_adjusted < 0.05:
                verdict = "significantly more than chance"
            else:
                verdict = "not more than chance"
            lines.append(
                f"- {row.group}: {row.shared_by_all} nodes shared by all {row.n_personas} personas "
                f"({row.shared_fraction:.1%} of nodes; {row.shared_expected:.1f} expected by chance given the set "
                f"sizes): {verdict} (adjusted p = {row.shared_p_adjusted:.3g})."
            )
    if (nodes / "pairwise_overlaps.csv").exists():
        pw = pd.read_csv(nodes / "pairwise_overlaps.csv").sort_values("jaccard", ascending=False)
        keep = [c for c in ("persona_a", "persona_b", "intersection", "jaccard", "expected", "p_adjusted") if c in pw]
        lines += ["", "Most and least similar pairs (Jaccard):", "",
                  markdown_table(pd.concat([pw.head(3), pw.tail(3)])[keep].drop_duplicates())]
    return "\n".join(lines)


def _artifacts(out: Path) -> str:
    groups = []
    for sub in ("figures", "tables", "tables/nodes", "runs", "notebooks"):
        d = out / sub
        if d.is_dir():
            files = sorted(p.name for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
            if files:
                groups.append(f"- `{sub}/`: " + ", ".join(f"`{f}`" for f in files))
    return "\n".join(groups) or "_No artifacts found._"


def build_report(out_dir: str | os.PathLike) -> str:
    """The report's markdown text for a study directory (sections: ``REPORT_SECTIONS``)."""
    out = Path(out_dir)
    if not out.is_dir():
        raise ValueError(f"study directory {out} does not exist; run the study first (python -m personas.study)")
    study = read_json(out / "study.json") if (out / "study.json").exists() else {}
    params = study.get("parameters", {})
    layer_text, chosen_text = _layer_profile(out)
    sections: Sequence[tuple[str, str]] = [
        ("## Configuration", _configuration(study)),
        ("## Layer profile", layer_text),
        ("## Chosen layer", chosen_text),
        ("## DeepScan precision and recall", _precision_recall(out)),
        ("## Node overlaps", _overlaps(out)),
        ("## Artifacts", _artifacts(out)),
    ]
    title = f"# Persona study: {out.name}\n\nModel `{params.get('model_name', 'unknown')}`; generated by `personas.report`."
    return "\n\n".join([title, *(f"{head}\n\n{body}" for head, body in sections)]) + "\n"


def write_report(out_dir: str | os.PathLike) -> Path:
    """Write ``<out_dir>/report.md`` atomically and return its path."""
    return write_text(Path(out_dir) / "report.md", build_report(out_dir))
