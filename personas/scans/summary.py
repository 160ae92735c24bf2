"""Precision and recall over runs: the one summary of a set of runs used everywhere in ``personas``.

``summarise_runs`` summarises one runs table (a run file's, or a baseline's on the same samples);
``personas.nodes.summary.precision_recall_summary`` applies it to one run file per persona. Standard deviations are
population ones (``ddof=0``) unless asked otherwise. (``deepscan.ExperimentResult.summary``,
which stays independent of this package, reports the sample std, ``ddof=1``: pass ``ddof=1``
here to compare with it.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from personas._core.checks import check_int


__all__ = ["summarise_runs"]


def summarise_runs(runs: pd.DataFrame, *, none_as: float | None = None, ddof: int = 0) -> dict[str, Any]:
    """Mean and std of precision and recall over the rows (runs) of ``runs``.

    Precision is undefined (None / NaN) in a run that chose no records, recall in a run
    without anomalous records; such runs are counted in ``<metric>_n_none`` and either left
    out of the mean and std (``none_as=None``) or counted as ``none_as`` (e.g. 0.0).

    Parameters
    ----------
    runs : DataFrame, (n_runs, ...)
        Columns ``precision`` and ``recall``.
    none_as : float, optional
    ddof : int
        Delta degrees of freedom of the std (0: population std, numpy's default).

    Returns
    -------
    dict
        ``n_runs, precision_mean, precision_std, precision_n_none, recall_mean, recall_std,
        recall_n_none``; means and stds are NaN when no run defines them (std also when fewer
        than ``ddof + 1`` runs do).
    """
    ddof = check_int(ddof, "ddof", min_val=0)
    missing = [c for c in ("precision", "recall") if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}; it has {list(runs.columns)}")
    out: dict[str, Any] = {"n_runs": int(len(runs))}
    for metric in ("precision", "recall"):
        values = pd.to_numeric(runs[metric], errors="coerce").to_numpy(dtype=float)
        undefined = np.isnan(values)
        if none_as is not None:
            values = np.where(undefined, float(none_as), values)
        kept = values[~np.isnan(values)]
        out[f"{metric}_mean"] = float(kept.mean()) if kept.size else np.nan
        out[f"{metric}_std"] = float(kept.std(ddof=ddof)) if kept.size > ddof else np.nan
        out[f"{metric}_n_none"] = int(undefined.sum())
    return out
