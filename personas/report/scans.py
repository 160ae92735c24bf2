"""Report sections on DeepScan: precision and recall per level (Table 2), against the baselines (Table 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from personas._core.io import read_json
from personas.report.tables import markdown_table, mean_std, missing

__all__ = ["read_scan_summary", "subset_sizes", "precision_recall_table", "baselines_table"]

_LEVEL_NAMES = {2: "2 (within persona)", 1: "1 (within topic)", 0: "0 (between topics)"}
_BASELINE_NAMES = {"lof": "LOF", "iforest": "Isolation Forest", "kmeans": "KMeans"}


def read_scan_summary(out: Path) -> pd.DataFrame | None:
    path = out / "tables" / "deepscan_precision_recall.csv"
    return pd.read_csv(path) if path.exists() else None


def subset_sizes(out: Path) -> pd.DataFrame:
    """Mean number of records and nodes in DeepScan's subsets (|R*|, |O_S*|) per level and target."""
    import deepscan

    index_file = out / "runs" / "index.json"
    if not index_file.exists():
        return pd.DataFrame(columns=["level", "persona", "records_mean", "nodes_mean"])
    index = read_json(index_file)
    rows = []
    for level, files in index.get("levels", {}).items():
        for target, name in files.items():
            path = out / "runs" / name
            if not path.exists():
                continue
            runs = deepscan.read_run_file(path).runs
            rows.append({
                "level": int(level), "persona": target,
                "records_mean": float(np.mean([len(r) for r in runs["records"]])) if len(runs) else np.nan,
                "nodes_mean": float(np.mean([len(n) for n in runs["nodes"]])) if len(runs) else np.nan,
            })
    return pd.DataFrame(rows, columns=["level", "persona", "records_mean", "nodes_mean"])


def precision_recall_table(summary: pd.DataFrame | None) -> str:
    """The paper's Table 2: DeepScan precision and recall ± std over runs, per level and persona (topic at 0)."""
    if summary is None:
        return missing("tables/deepscan_precision_recall.csv")
    ds = summary[summary["method"] == "deepscan"]
    rows = []
    for row in ds.itertuples(index=False):
        rows.append({
            "level": _LEVEL_NAMES.get(int(row.level), row.level), "persona or topic": row.persona,
            "precision": mean_std(row.precision_mean, row.precision_std),
            "recall": mean_std(row.recall_mean, row.recall_std),
            "detection AUC": getattr(row, "detection_auc", np.nan), "runs": row.n_runs,
        })
    mean = ds.groupby("level", sort=False).agg(precision=("precision_mean", "mean"), recall=("recall_mean", "mean"),
                                                targets=("persona", "size")).reset_index()
    return "\n".join([
        "Mean ± std over runs of DeepScan's precision (anomalous records among those chosen) and recall "
        "(anomalous records found). Level 2: background = `-` statements of the persona, anomalous = its `+`; "
        "level 1: background = `+` of the other personas of its topic; level 0, per topic as the paper: "
        "anomalous = `+` of the topic's personas, background = `+` of the other topics. Detection AUC: ROC AUC of "
        "run scores of samples with anomalous records against clean-only samples of the same size.",
        "",
        markdown_table(pd.DataFrame(rows)),
        "",
        "Mean over personas (topics at level 0):",
        "",
        markdown_table(mean),
    ])


def baselines_table(summary: pd.DataFrame | None, sizes: pd.DataFrame, sample: tuple[int, int] | None = None) -> str:
    """The paper's Table 8: LOF, Isolation Forest and KMeans against DeepScan on the same samples.

    ``sample``: ``(clean, anomalous)`` records per run, for the precision of a random pick.
    """
    if summary is None:
        return missing("tables/deepscan_precision_recall.csv")
    methods = [m for m in dict.fromkeys(summary["method"]) if m != "deepscan"]
    if not methods:
        return "_No baselines were run (parameter `baselines`)._"
    rows = []
    for level, part in summary.groupby("level", sort=False):
        row = {"level": _LEVEL_NAMES.get(int(level), level)}
        for method in ["deepscan", *methods]:
            m = part[part["method"] == method]
            name = _BASELINE_NAMES.get(method, "DeepScan" if method == "deepscan" else method)
            row[f"{name} P"] = m["precision_mean"].mean()
            row[f"{name} R"] = m["recall_mean"].mean()
            if method == "deepscan" and len(sizes):
                row["DeepScan |O_S*|"] = sizes.loc[sizes["level"] == level, "nodes_mean"].mean()
        rows.append(row)
    return "\n".join([
        "Precision (P) and recall (R), mean over runs and personas, of each method on the very samples DeepScan "
        "scanned; the baselines flag records using all nodes, DeepScan a subset of |O_S*| nodes (mean over runs)."
        + ("" if not sample or sum(sample) <= 0 else
           f" A random pick has precision {sample[1] / sum(sample):.2f} ({sample[1]} of the {sum(sample)} records "
           "of each sample are anomalous)."),
        "",
        markdown_table(pd.DataFrame(rows)),
    ])
