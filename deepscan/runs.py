"""The runs table: what reading a run file gives, in either format.

- :data:`RUN_COLUMNS`: the columns of ``RunFile.runs``;
- :class:`RunFile`: a run file read back (header, runs, skipped and damaged lines);
- :func:`run_row`, :func:`runs_frame`, :func:`frame_from_rows`: run dicts as that table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

__all__ = ["RUN_COLUMNS", "RunFile", "run_row", "runs_frame", "frame_from_rows"]

#: Columns of ``RunFile.runs`` (and of ``ExperimentResult.runs``), in this order: the
#: contract's eleven, then ``seed``, ``sample_clean``, ``sample_anomalous`` (None for published files).
RUN_COLUMNS = [
    "run_id",
    "score",
    "alpha",
    "precision",
    "recall",
    "n_records",
    "n_nodes",
    "nodes",
    "records",
    "records_pool_index",
    "records_anomalous",
    "seed",
    "sample_clean",
    "sample_anomalous",
]


@dataclass(frozen=True)
class RunFile:
    """A run file read back.

    Attributes
    ----------
    path : Path
    format : str
        ``"jsonl"`` (this package) or ``"published"`` (paper text format).
    header : dict or None
        The header line (``config``, ``versions``, ``created``); None for published files.
    runs : pandas.DataFrame
        One row per run, sorted by ``run_id``, columns :data:`RUN_COLUMNS`.
        ``precision``/``recall`` are NaN where the file says null/None;
        ``records_pool_index``, ``records_anomalous``, ``seed``, ``sample_clean`` and
        ``sample_anomalous`` are None for published files.
    n_skipped : int
        Non-empty lines that are not runs (e.g. ``hyperparams:`` lines).
    n_damaged : int
        Lines meant as runs that did not parse, skipped because ``strict=False``
        (with ``strict=True``, the default, they are errors).
    damaged : tuple of str
        One ``"line <n>: <why>"`` per damaged line.
    """

    path: Path
    format: str
    header: dict | None
    runs: pd.DataFrame
    n_skipped: int
    n_damaged: int = 0
    damaged: tuple = ()

    @property
    def config(self) -> dict | None:
        """The header's configuration (None for published files)."""
        return None if self.header is None else self.header.get("config")


def frame_from_rows(rows: list[dict]) -> pd.DataFrame:
    """Rows made by :func:`run_row` (or the published reader) as the table, sorted by run id, typed."""
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    if len(df):
        df = df.sort_values("run_id", kind="stable").reset_index(drop=True)
    df = df.astype({"run_id": "int64", "score": "float64", "alpha": "float64", "precision": "float64",
                    "recall": "float64", "n_records": "int64", "n_nodes": "int64"})
    return df


def _as_float(x: Any) -> float:
    return math.nan if x is None else float(x)


def run_row(run: Mapping) -> dict:
    """One run (a run-file line as a dict) as a row of ``RunFile.runs`` (columns :data:`RUN_COLUMNS`)."""
    nodes = [int(v) for v in run["nodes"]]
    records = [int(v) for v in run["records"]]
    pool = run.get("records_pool_index")
    anomalous = run.get("records_anomalous")
    return {
        "run_id": int(run["run_id"]),
        "score": float(run["score"]),
        "alpha": _as_float(run.get("alpha")),
        "precision": _as_float(run.get("precision")),
        "recall": _as_float(run.get("recall")),
        "n_records": len(records),
        "n_nodes": len(nodes),
        "nodes": nodes,
        "records": records,
        "records_pool_index": None if pool is None else [int(v) for v in pool],
        "records_anomalous": None if anomalous is None else [bool(v) for v in anomalous],
        "seed": None if run.get("seed") is None else int(run["seed"]),
        "sample_clean": None if run.get("sample_clean") is None else [int(v) for v in run["sample_clean"]],
        "sample_anomalous": None if run.get("sample_anomalous") is None else [int(v) for v in run["sample_anomalous"]],
    }


def runs_frame(runs: Iterable[Mapping]) -> pd.DataFrame:
    """Runs (run-file line dicts) as the ``RunFile.runs`` DataFrame, sorted by run id."""
    return frame_from_rows([run_row(r) for r in runs])
