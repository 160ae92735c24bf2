"""The causal check's result: tables, metadata, and how they are saved and loaded (CSV + JSON, no pickle)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from personas._core.io import read_json, write_json, write_table


@dataclass
class CausalResult:
    """Tables of one causal check (tidy, one row per observation) and its metadata.

    Attributes
    ----------
    gate : DataFrame
        Per persona and readout, before any intervention: ``n_heldout``, ``auc`` of the
        baseline score for ``+`` against ``-`` held-out statements, ``auc_low``/``auc_high``
        (bootstrap), ``informative`` (the interval excludes 0.5), ``mean_positive``, ``mean_negative``.
    scores : DataFrame
        Every held-out score: ``persona, readout, layer, intervention, alpha, draw, id, direction, score, shift``.
    effects : DataFrame
        Per persona (read), readout, layer, intervention, alpha, draw and ``steer_persona``:
        ``bias_shift``, ``specific_effect`` (shift of ``+`` minus shift of ``-``), ``mean_abs_shift``,
        each with its bootstrap interval (``*_low``, ``*_high``). Ablations have alpha NaN.
    comparisons : DataFrame
        Each arm against each control (:data:`personas.causal.compare.CONTROLS`).
    specificity : DataFrame
        ``steer_persona, read_persona, alpha, layer, readout, specific_effect`` (+ interval).
    specificity_test : DataFrame
        One row: ``k, statistic`` (diagonal dominance), ``p_value`` (row permutations), ...
    dose_response : DataFrame
        ``persona, readout, layer, alpha, intervention, specific_effect, low, high, n_draws``.
    meta : dict
        Settings, model, readouts, statement ids, seeds, pass counts, timings, versions.
    """

    gate: pd.DataFrame
    scores: pd.DataFrame
    effects: pd.DataFrame
    comparisons: pd.DataFrame
    specificity: pd.DataFrame
    specificity_test: pd.DataFrame
    dose_response: pd.DataFrame
    meta: dict = field(default_factory=dict)

    TABLES = ("gate", "scores", "effects", "comparisons", "specificity", "specificity_test", "dose_response")

    def tables(self) -> dict[str, pd.DataFrame]:
        """``{name: DataFrame}`` of every table."""
        return {name: getattr(self, name) for name in self.TABLES}


def save_causal_result(result: CausalResult, out_dir: str | os.PathLike, prefix: str = "causal") -> dict[str, Path]:
    """Write every table as ``<prefix>_<table>.csv`` and ``<prefix>_check.json`` (metadata), atomically.

    Returns
    -------
    dict
        ``{table name: path}``, plus ``"meta"``.
    """
    out = Path(out_dir)
    written = {name: write_table(df, out / f"{prefix}_{name}.csv") for name, df in result.tables().items()}
    meta = dict(result.meta, tables={name: path.name for name, path in written.items()})
    written["meta"] = write_json(out / f"{prefix}_check.json", meta)
    return written


def _read_table(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:  # an empty table written without columns
        return pd.DataFrame()


def load_causal_result(out_dir: str | os.PathLike, prefix: str = "causal") -> CausalResult:
    """Read back what :func:`save_causal_result` wrote (e.g. to build the report from artifacts)."""
    out = Path(out_dir)
    meta_path = out / f"{prefix}_check.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} does not exist; run causal_check and save_causal_result first")
    meta = read_json(meta_path)
    tables = {name: _read_table(out / file) for name, file in meta.pop("tables").items()}
    missing = [t for t in CausalResult.TABLES if t not in tables]
    if missing:
        raise ValueError(f"{meta_path} lists no tables {missing}; rewrite the result with save_causal_result")
    return CausalResult(**{t: tables[t] for t in CausalResult.TABLES}, meta=meta)
