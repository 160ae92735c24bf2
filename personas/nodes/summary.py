"""Precision and recall per persona: ``summarise_runs`` applied to one run file per persona."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from personas.nodes.runs import read_runs
from personas.scans.summary import summarise_runs

__all__ = ["precision_recall_summary"]


def precision_recall_summary(
    run_files: Mapping[str, Any],
    none_as: float | None = None,
    ddof: int = 0,
) -> pd.DataFrame:
    """Precision and recall over runs, per persona.

    Every run of every file is counted (``n_runs``). Precision is undefined
    (None) in a run that chose no records, recall in a run without anomalous
    records; such runs are counted in ``*_n_none`` and either left out of the
    mean (``none_as=None``) or counted as ``none_as`` (e.g. 0.0).

    Parameters
    ----------
    run_files : dict
        ``{persona: RunFile}``.
    none_as : float, optional
        Value for undefined precision / recall; None leaves those runs out of
        the mean and std (they are still counted in ``n_runs`` and ``*_n_none``).
    ddof : int
        Delta degrees of freedom of the std (0: numpy's default, population std).

    Returns
    -------
    pandas.DataFrame
        Columns ``persona, n_runs, precision_mean, precision_std,
        precision_n_none, recall_mean, recall_std, recall_n_none, score_mean,
        n_records_mean, n_nodes_mean``.
    """
    if not isinstance(run_files, Mapping) or not run_files:
        raise ValueError("run_files must be a non-empty dict {persona: RunFile}")
    rows = []
    for persona, run_file in run_files.items():
        runs = read_runs(run_file)
        row: dict[str, Any] = {"persona": persona, **summarise_runs(runs, none_as=none_as, ddof=ddof)}
        for column in ("score", "n_records", "n_nodes"):
            values = pd.to_numeric(runs[column], errors="coerce") if column in runs else pd.Series(dtype=float)
            row[f"{column}_mean"] = float(values.mean()) if len(values) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)
