"""Result tables of the layer analyses: their columns, saving and loading, and choosing a layer.

- ``RESULT_COLUMNS``: the tidy table every analysis returns; ``LOWER_IS_BETTER`` its reversed metrics.
- ``save_results`` / ``load_results`` / ``combine_results``: CSV or Parquet with a JSON sidecar.
- ``select_metric_rows``, ``most_divergent_layers`` and ``choose_layer``: the layers where
  personas separate most, beside their controls.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from personas._core.checks import check_int
from personas._core.io import read_json, write_json, write_table
from personas.layers.clusters import CLUSTER_METRICS
from personas.layers.indices import relative_depth

__all__ = [
    "LOWER_IS_BETTER",
    "RESULT_COLUMNS",
    "save_results",
    "load_results",
    "combine_results",
    "select_metric_rows",
    "most_divergent_layers",
    "choose_layer",
    "CHOSEN_LAYER_FILE",
    "save_chosen_layer",
    "read_chosen_layer",
]


#: Metrics where a smaller value means more separated (all others: larger is more separated),
#: from the metric registry ``CLUSTER_METRICS``.
LOWER_IS_BETTER: frozenset[str] = frozenset(name for name, m in CLUSTER_METRICS.items() if m.lower_is_better)


#: Columns of every results table, in this order. ``classifier`` is "none" for the cluster analysis,
#: ``persona`` is "ALL" for the across-persona classifier, ``std`` is over repetitions or folds
#: (ddof=0) and ``n`` is how many values the mean and std summarise.
RESULT_COLUMNS: list[str] = [
    "model",
    "layer",
    "relative_depth",
    "persona",
    "analysis",
    "classifier",
    "control",
    "metric",
    "mean",
    "std",
    "n",
]


_KEY_COLUMNS = ["model", "layer", "persona", "analysis", "classifier", "control", "metric"]


def summarise_long(long: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean, std (ddof=0) and count of ``value`` per group of a long per-repetition/per-fold table."""
    g = long.groupby(by, sort=False, dropna=False)["value"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=0), "n": g.size()}).reset_index()
    return out


def finish_table(frames: list[pd.DataFrame], model: str, n_blocks: int) -> pd.DataFrame:
    """The per-layer summaries as one results table: model, relative depth, ``RESULT_COLUMNS`` order."""
    if not frames:
        return pd.DataFrame(columns=RESULT_COLUMNS)
    table = pd.concat(frames, ignore_index=True)
    table["model"] = str(model)
    table["layer"] = table["layer"].astype(int)
    table["relative_depth"] = relative_depth(table["layer"].to_numpy(), n_blocks)
    table["n"] = table["n"].astype(int)
    return table[RESULT_COLUMNS]


def _check_table(table: Any, name: str = "table") -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{name} must be a results DataFrame from analyse_layers; got {type(table).__name__}")
    missing = [c for c in RESULT_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{name} lacks columns {missing}; a results table has {RESULT_COLUMNS}")
    return table


def save_results(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a results table atomically as CSV or Parquet (by suffix), metadata beside it.

    The metadata (``table.attrs["metadata"]``, when present) goes to ``<path without suffix>.json``.
    Returns the table's path.
    """
    table = _check_table(table)
    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"results path {path} must end in .csv or .parquet")
    out = write_table(table[RESULT_COLUMNS].reset_index(drop=True), path)
    meta = table.attrs.get("metadata")
    if meta:
        write_json(path.with_suffix(".json"), {**meta, "table": path.name})
    return out


def load_results(path: str | Path) -> pd.DataFrame:
    """Read a table written by ``save_results`` (metadata, if beside it, into ``attrs["metadata"]``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results table at {path}")
    if path.suffix == ".csv":
        table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    elif path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        raise ValueError(f"results path {path} must end in .csv or .parquet")
    table = _check_table(table, str(path))
    for col in ("model", "persona", "analysis", "classifier", "control", "metric"):
        table[col] = table[col].astype(str)
    table["layer"] = table["layer"].astype(int)
    side = path.with_suffix(".json")
    if side.exists():
        table.attrs["metadata"] = read_json(side)
    return table


def combine_results(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Stack results tables of several models (or analyses) into one, checking they fit together.

    Raises ValueError when a table is malformed or the same (model, layer, persona, analysis,
    classifier, control, metric) appears twice, e.g. one model's table passed twice.
    """
    tables = [_check_table(t, f"tables[{i}]") for i, t in enumerate(tables)]
    if not tables:
        raise ValueError("no tables to combine")
    combined = pd.concat([t[RESULT_COLUMNS] for t in tables], ignore_index=True)
    dup = combined.duplicated(_KEY_COLUMNS, keep=False)
    if dup.any():
        first = combined.loc[dup, _KEY_COLUMNS].iloc[0].to_dict()
        raise ValueError(
            f"{int(dup.sum())} duplicated result rows, e.g. {first}; each model's table should be passed once"
        )
    metas = [t.attrs.get("metadata") for t in tables if t.attrs.get("metadata")]
    if metas:
        combined.attrs["metadata"] = {"kind": "layer-metrics-combined", "parts": metas}
    return combined.sort_values(["model", "analysis", "layer", "persona", "classifier", "control", "metric"],
                                kind="stable").reset_index(drop=True)


def _default_analysis(metric: str) -> str:
    return "cluster" if metric in CLUSTER_METRICS else "persona_classifier"


def select_metric_rows(
    table: pd.DataFrame, metric: str, analysis: str | None = None, classifier: str | None = None
) -> tuple[pd.DataFrame, str, str]:
    """Rows of one metric, analysis and classifier of a results table, with clear errors when absent.

    ``analysis`` defaults to "cluster" for cluster metrics and "persona_classifier" otherwise;
    ``classifier`` to "extra_trees" when present, else the first one in the rows.

    Returns
    -------
    (rows, analysis, classifier)
    """
    table = _check_table(table)
    if metric not in set(table["metric"]):
        raise ValueError(f"metric {metric!r} not in the table; available: {sorted(set(table['metric']))}")
    analysis = analysis or _default_analysis(metric)
    sub = table[(table["metric"] == metric) & (table["analysis"] == analysis)]
    if sub.empty:
        have = sorted(set(table.loc[table["metric"] == metric, "analysis"]))
        raise ValueError(f"no {metric!r} rows for analysis {analysis!r}; available analyses: {have}")
    if classifier is None:
        present = list(dict.fromkeys(sub["classifier"]))
        classifier = "extra_trees" if "extra_trees" in present else present[0]
    sub = sub[sub["classifier"] == classifier]
    if sub.empty:
        raise ValueError(f"no rows for classifier {classifier!r} in analysis {analysis!r}")
    return sub, analysis, classifier


def most_divergent_layers(
    table: pd.DataFrame,
    metric: str = "silhouette",
    *,
    k: int = 3,
    analysis: str | None = None,
    classifier: str | None = None,
    persona: str | None = None,
    include_embedding: bool = False,
) -> pd.DataFrame:
    """The ``k`` layers where personas separate most, per model, with their controls.

    Per model and layer, the score is the metric's mean (averaged over personas unless ``persona``
    is given) with control "none"; layers are ranked from most to least separated, so descending
    for most metrics and ascending for Davies-Bouldin (``LOWER_IS_BETTER``).

    Parameters
    ----------
    table : DataFrame
        From ``analyse_layers`` or ``combine_results``.
    metric : str
        E.g. "silhouette", "centroid_distance", "accuracy".
    k : int
        Layers to return per model.
    analysis : str, optional
        Default "cluster" for cluster metrics, "persona_classifier" for classifier metrics.
    classifier : str, optional
        For classifier analyses: default "extra_trees" when present, else the first available.
    persona : str, optional
        One persona only (default: the mean over personas).
    include_embedding : bool
        Rank layer 0 too (default: it is the control, not a candidate).

    Returns
    -------
    DataFrame
        Columns ``model, rank, layer, relative_depth, metric, score, shuffled, embedding,
        in_final_third``: ``shuffled`` is the shuffled-label control at that layer and
        ``embedding`` the layer-0 score (NaN when absent); ``in_final_third`` is
        ``relative_depth >= 2/3``.
    """
    table = _check_table(table)
    k = check_int(k, "k", min_val=1)
    sub, analysis, classifier = select_metric_rows(table, metric, analysis, classifier)
    if persona is not None:
        sub = sub[sub["persona"] == persona]
        if sub.empty:
            raise ValueError(f"no rows for persona {persona!r}; available: {sorted(set(table['persona']))}")
    scores = sub.groupby(["model", "control", "layer"], sort=True)[["mean", "relative_depth"]].mean().reset_index()
    real = scores[scores["control"] == "none"]
    shuffled = scores[scores["control"] == "shuffled_labels"].set_index(["model", "layer"])["mean"]
    ascending = metric in LOWER_IS_BETTER
    out = []
    for model, part in real.groupby("model", sort=True):
        emb = part.loc[part["layer"] == 0, "mean"]
        embedding = float(emb.iloc[0]) if len(emb) else float("nan")
        cand = part if include_embedding else part[part["layer"] != 0]
        if cand.empty:
            raise ValueError(f"model {model!r} has no layer other than 0 to rank for {metric!r}")
        cand = cand.sort_values(["mean", "layer"], ascending=[ascending, True]).head(k)
        for rank, row in enumerate(cand.itertuples(index=False), start=1):
            out.append({
                "model": model,
                "rank": rank,
                "layer": int(row.layer),
                "relative_depth": float(row.relative_depth),
                "metric": metric,
                "score": float(row.mean),
                "shuffled": float(shuffled.get((model, row.layer), np.nan)),
                "embedding": embedding,
                "in_final_third": bool(row.relative_depth >= 2 / 3 - 1e-12),
            })
    return pd.DataFrame(out)


def choose_layer(table: pd.DataFrame, metric: str = "silhouette", *, k: int = 3, **kwargs: Any) -> dict:
    """The single most divergent layer, as a JSON-ready record for the DeepScan notebook.

    Parameters
    ----------
    table : DataFrame
        One model's results (``analyse_layers``).
    metric : str
        Ranking metric (see ``most_divergent_layers``).
    k : int
        Layers kept in the ``ranking`` field.
    **kwargs
        Passed to ``most_divergent_layers`` (``analysis``, ``classifier``, ``persona``).

    Returns
    -------
    dict
        ``layer``, ``relative_depth``, ``in_final_third``, ``metric``, ``model`` and ``ranking``
        (the top-``k`` rows of ``most_divergent_layers`` with their controls).
    """
    models = table["model"].unique() if "model" in table else []
    if len(models) != 1:
        raise ValueError(f"choose_layer needs one model's table, got models {list(models)}; filter the table first")
    ranking = most_divergent_layers(table, metric, k=k, **kwargs)
    best = ranking.iloc[0]
    return {
        "model": str(best["model"]),
        "layer": int(best["layer"]),
        "relative_depth": float(best["relative_depth"]),
        "in_final_third": bool(best["in_final_third"]),
        "metric": metric,
        "ranking": ranking.to_dict(orient="records"),
    }


#: The file in a study's output folder that hands the chosen layer to the scans.
CHOSEN_LAYER_FILE = "chosen_layer.json"


def save_chosen_layer(chosen: dict, out_dir: str | Path) -> Path:
    """Write :func:`choose_layer`'s record to ``out_dir/chosen_layer.json`` (atomically); returns the path."""
    path = Path(out_dir) / CHOSEN_LAYER_FILE
    write_json(path, chosen)
    return path


def read_chosen_layer(out_dir: str | Path) -> int:
    """The layer :func:`save_chosen_layer` recorded in ``out_dir`` (what the scans read by default)."""
    path = Path(out_dir) / CHOSEN_LAYER_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {CHOSEN_LAYER_FILE} in {out_dir}: run representation_extraction.ipynb with "
                                "this out_dir first, or give the layer explicitly")
    return int(read_json(path)["layer"])
