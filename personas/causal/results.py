"""The causal check's result: tables, metadata, and how they are saved and loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from personas._core.io import write_json, write_table


DEFAULT_ALPHAS = (-0.5, -0.25, -0.1, 0.1, 0.25, 0.5)
INTERVENTIONS = (
    "baseline",
    "salient_ablation",
    "random_ablation",
    "direction",
    "salient_direction",
    "random_direction",
)
# metric -> alternative of its test against the random-node draws
ABLATION_METRICS = {"specific_effect": "two-sided", "bias_shift": "two-sided", "mean_abs_shift": "greater"}
_STATS = ("mean_margin", "mean_margin_positive", "mean_margin_negative", "accuracy", "bias_shift",
          "specific_effect", "mean_abs_shift")


@dataclass
class CausalResult:
    """Tables of one causal check (tidy, one row per observation) and its metadata.

    Attributes
    ----------
    baseline : DataFrame
        Per persona: ``n_heldout``, ``mean_margin``, ``mean_margin_positive``,
        ``mean_margin_negative``, ``accuracy``, ``auc`` (ROC AUC of the margin against
        ``direction == "positive"``), ``n_salient``, ``direction_norm``, ``scale``.
    margins : DataFrame
        Every margin measured: ``persona, intervention, alpha, draw, id, direction, margin, shift``.
    steering : DataFrame
        Per persona, intervention, alpha and draw: the statistics of ``shift_summary``
        with bootstrap intervals (``*_low``, ``*_high``); includes the ablations (alpha NaN).
    dose_response : DataFrame
        Per persona, steering intervention and alpha (0 = baseline): the statistics
        averaged over draws; intervals are bootstrap (one draw) or the central
        ``ci`` range across draws (``random_direction``), as ``interval`` says.
    ablation : DataFrame
        Per persona and metric: the salient-node value (with bootstrap interval), the
        random-node mean and std, the salient value's percentile among the draws and
        the empirical p-value.
    random_ablation : DataFrame
        Per persona and draw: the metrics of each random-node ablation (the histogram)
        and ``n_salient_drawn``, how many of its nodes are salient.
    meta : dict
        Parameters, model, answer tokens, statement ids, seeds, timings, versions.
    """

    baseline: pd.DataFrame
    margins: pd.DataFrame
    steering: pd.DataFrame
    dose_response: pd.DataFrame
    ablation: pd.DataFrame
    random_ablation: pd.DataFrame
    meta: dict = field(default_factory=dict)

    TABLES = ("baseline", "margins", "steering", "dose_response", "ablation", "random_ablation")

    def tables(self) -> dict[str, pd.DataFrame]:
        """``{name: DataFrame}`` of every table."""
        return {name: getattr(self, name) for name in self.TABLES}



# ------------------------------------------------------------------ writing and reporting


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


def load_causal_result(out_dir: str | os.PathLike, prefix: str = "causal") -> CausalResult:
    """Read back what :func:`save_causal_result` wrote (e.g. to build the report from artifacts)."""
    from personas._core.io import read_json

    out = Path(out_dir)
    meta_path = out / f"{prefix}_check.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{meta_path} does not exist; run causal_check and save_causal_result first")
    meta = read_json(meta_path)
    tables = {name: pd.read_csv(out / file) for name, file in meta.pop("tables").items()}
    missing = [t for t in CausalResult.TABLES if t not in tables]
    if missing:
        raise ValueError(f"{meta_path} lists no tables {missing}; rewrite the result with save_causal_result")
    return CausalResult(**{t: tables[t] for t in CausalResult.TABLES}, meta=meta)



