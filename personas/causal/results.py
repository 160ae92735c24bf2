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
    steered_text, text_gate, text_effects, text_comparisons, text_sweep : DataFrame
        The steered-text arm (:mod:`personas.causal.text_check`; empty when it did not run): every
        text with its scores; the scorers' gates; the mean shift of each metric over prompts
        (alpha minus 0) with its bootstrap interval over prompts; the persona direction against
        its random directions (``comparisons``' columns); the alpha sweep.
    """

    gate: pd.DataFrame
    scores: pd.DataFrame
    effects: pd.DataFrame
    comparisons: pd.DataFrame
    specificity: pd.DataFrame
    specificity_test: pd.DataFrame
    dose_response: pd.DataFrame
    meta: dict = field(default_factory=dict)
    steered_text: pd.DataFrame = field(default_factory=pd.DataFrame)
    text_gate: pd.DataFrame = field(default_factory=pd.DataFrame)
    text_effects: pd.DataFrame = field(default_factory=pd.DataFrame)
    text_comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    text_sweep: pd.DataFrame = field(default_factory=pd.DataFrame)

    #: Tables every saved result holds.
    REQUIRED = ("gate", "scores", "effects", "comparisons", "specificity", "specificity_test", "dose_response")
    #: Every table (a result saved before the steered-text arm lacks the last ones: they load empty).
    TABLES = (*REQUIRED, "steered_text", "text_gate", "text_effects", "text_comparisons", "text_sweep")

    def tables(self) -> dict[str, pd.DataFrame]:
        """``{name: DataFrame}`` of every table."""
        return {name: getattr(self, name) for name in self.TABLES}


def table_file(name: str, prefix: str = "causal") -> str:
    """The file of a table: ``<prefix>_<table>.csv``, except the steered texts of the default prefix,
    ``steered_text.csv`` (``causal/steered_text.csv`` of a study)."""
    return "steered_text.csv" if (name, prefix) == ("steered_text", "causal") else f"{prefix}_{name}.csv"


def save_causal_result(result: CausalResult, out_dir: str | os.PathLike, prefix: str = "causal") -> dict[str, Path]:
    """Write every table as ``<prefix>_<table>.csv`` (:func:`table_file`) and ``<prefix>_check.json``
    (metadata), atomically.

    Returns
    -------
    dict
        ``{table name: path}``, plus ``"meta"``.
    """
    out = Path(out_dir)
    written = {name: write_table(df, out / table_file(name, prefix)) for name, df in result.tables().items()}
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
    missing = [t for t in CausalResult.REQUIRED if t not in tables]
    if missing:
        raise ValueError(f"{meta_path} lists no tables {missing}; rewrite the result with save_causal_result")
    if "text" in tables.get("steered_text", ()):  # an empty text reads back as NaN
        tables["steered_text"]["text"] = tables["steered_text"]["text"].fillna("").astype(str)
    return CausalResult(**{t: tables.get(t, pd.DataFrame()) for t in CausalResult.TABLES}, meta=meta)
