"""The steered-text arm's tables: shifts over prompts with bootstrap intervals, the persona direction
against its random directions, the alpha sweep, and texts side by side.

A *shift* of a metric (a scorer's score, or a coherence metric) is, for one prompt, its value on
the text steered at alpha minus its value on the unsteered text of the same prompt; the table
gives the mean over prompts and a bootstrap interval (prompts resampled with replacement, the
same resamples for every arm, alpha and metric of a persona). The persona direction is compared
with its random directions by :func:`personas.causal.compare.control_summary`, the rule of the
readouts' arms, so the report words both alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from personas._core.checks import check_int
from personas._core.provenance import derive_rng
from personas.causal.compare import control_summary

__all__ = ["TEXT_METRICS", "GATED_METRICS", "text_shifts", "text_comparisons", "text_sweep",
           "steered_text_examples"]

#: Gated scorers (a score column each) then the coherence metrics (not gated).
GATED_METRICS = ("persona_score", "agreement_score")
TEXT_METRICS = (*GATED_METRICS, "nll", "distinct_2", "zlib_ratio")

SHIFT_COLUMNS = ["persona", "layer", "metric", "arm", "draw", "alpha", "shift", "shift_low", "shift_high",
                 "n_prompts"]


def prompt_bootstrap(n_prompts: int, n_boot: int, seed: int, persona: str) -> np.ndarray:
    """``(n_boot, n_prompts)`` prompt indices drawn with replacement, seeded by ``seed`` and the persona."""
    rng = derive_rng(seed, persona, "text_bootstrap")
    return rng.integers(0, n_prompts, (n_boot, n_prompts))


def _mean_interval(d: np.ndarray, boot: np.ndarray, ci: float) -> tuple[float, float, float, int]:
    """Mean of the finite entries of ``d (n_prompts,)``, its bootstrap interval, how many are finite."""
    ok = np.isfinite(d)
    if not ok.any():
        return np.nan, np.nan, np.nan, 0
    reps = np.where(ok[boot], d[boot], 0.0).sum(1)
    counts = ok[boot].sum(1)
    reps = reps[counts > 0] / counts[counts > 0]
    lo, hi = np.quantile(reps, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(d[ok].mean()), float(lo), float(hi), int(ok.sum())


def text_shifts(frame: pd.DataFrame, *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Per persona, metric, arm, draw and alpha != 0: the mean shift over prompts and its bootstrap interval.

    Parameters
    ----------
    frame : DataFrame
        The scored texts (``steered_text``): ``persona, layer, prompt_index, arm, draw, alpha`` and
        the metric columns of :data:`TEXT_METRICS` present. Alpha 0 rows are the unsteered texts.
    n_boot, ci, seed :
        Prompt resamples, interval coverage; the resamples are seeded by ``seed`` and the persona.

    Returns
    -------
    DataFrame
        ``persona, layer, metric, arm, draw, alpha, shift, shift_low, shift_high, n_prompts``
        (prompts whose shift is finite: a metric NaN on a text, e.g. distinct-2 of one word, drops it).
    """
    rows = []
    metrics = [m for m in TEXT_METRICS if m in frame.columns]
    for persona, part in frame.groupby("persona", sort=False):
        prompts = np.sort(part["prompt_index"].unique())
        boot = prompt_bootstrap(len(prompts), n_boot, seed, persona)
        base = part[part["alpha"] == 0].drop_duplicates("prompt_index").set_index("prompt_index").reindex(prompts)
        steered = part[part["alpha"] != 0]
        for (arm, draw, alpha), g in steered.groupby(["arm", "draw", "alpha"], sort=False):
            g = g.set_index("prompt_index").reindex(prompts)
            for metric in metrics:
                d = g[metric].to_numpy(dtype=float) - base[metric].to_numpy(dtype=float)
                rows.append([persona, int(part["layer"].iloc[0]), metric, arm, int(draw), float(alpha),
                             *_mean_interval(d, boot, ci)])
    return pd.DataFrame(rows, columns=SHIFT_COLUMNS)


def text_comparisons(shifts: pd.DataFrame, gate: pd.DataFrame) -> pd.DataFrame:
    """The persona direction against its random directions, per persona, gated scorer and alpha.

    The columns of :func:`personas.causal.compare.comparisons` (``readout`` = the scorer, ``effect`` =
    the mean shift of its score over prompts), plus ``informative`` (the scorer's gate).
    """
    rows = []
    gates = {(r.persona, r.scorer): bool(r.informative) for r in gate.itertuples()} if len(gate) else {}
    sel = shifts[shifts["metric"].isin(GATED_METRICS)] if len(shifts) else shifts
    for (persona, metric, alpha), g in (sel.groupby(["persona", "metric", "alpha"], sort=False) if len(sel) else []):
        arm = g[g["arm"] == "direction"]
        null = g[g["arm"] == "random_direction"]["shift"].to_numpy(dtype=float)
        if arm.empty or not np.isfinite(arm["shift"].iloc[0]) or not len(null) or not np.isfinite(null).all():
            continue
        a = arm.iloc[0]
        row = {"persona": persona, "readout": metric, "layer": int(a["layer"]), "arm": "direction",
               "control": "random_direction", "alpha": float(alpha), "effect": float(a["shift"]),
               "effect_low": float(a["shift_low"]), "effect_high": float(a["shift_high"]), "n_control": len(null),
               **control_summary(float(a["shift"]), null),
               "difference": np.nan, "difference_low": np.nan, "difference_high": np.nan,
               "control_min": float(null.min()), "control_max": float(null.max()),
               "informative": gates.get((persona, metric), False)}
        rows.append(row)
    return pd.DataFrame(rows)


def text_sweep(frame: pd.DataFrame) -> pd.DataFrame:
    """Per persona and alpha of the sweep: the mean over prompts of every metric and of ``n_tokens``."""
    if frame.empty:
        return pd.DataFrame()
    metrics = [m for m in (*TEXT_METRICS, "n_tokens") if m in frame.columns]
    table = frame.groupby(["persona", "layer", "arm", "alpha"], sort=False)[metrics].mean().reset_index()
    table.insert(4, "n_prompts", frame.groupby(["persona", "layer", "arm", "alpha"], sort=False).size().to_numpy())
    return table.sort_values(["persona", "alpha"], kind="stable").reset_index(drop=True)


def _short(text, width: int) -> str:
    text = "" if not isinstance(text, str) else " ".join(text.split())
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def steered_text_examples(result, n_prompts: int = 2, width: int = 160) -> pd.DataFrame:
    """Texts side by side: ``-alpha``, 0 and ``+alpha`` along the persona direction, with their scores.

    Parameters
    ----------
    result : CausalResult
        A causal check with the steered-text arm (``result.steered_text``).
    n_prompts : int
        Prompts per persona (the first ones).
    width : int
        Characters kept of each text (whitespace collapsed; "…" marks a cut).

    Returns
    -------
    DataFrame
        One row per persona and prompt: ``persona, prompt``, then per alpha ``text <alpha>`` and
        ``score <alpha>`` (the persona scorer's score). Empty without the arm.
    """
    n_prompts = check_int(n_prompts, "n_prompts", min_val=1)
    width = check_int(width, "width", min_val=8)
    frame = getattr(result, "steered_text", None)
    if frame is None or frame.empty:
        return pd.DataFrame()
    own = frame[(frame["arm"] == "direction") & (frame["part"] == "arm" if "part" in frame else True)]
    rows = []
    for persona, part in own.groupby("persona", sort=False):
        alphas = sorted(part["alpha"].unique())
        for p in sorted(part["prompt_index"].unique())[:n_prompts]:
            texts = part[part["prompt_index"] == p].set_index("alpha")
            row = {"persona": persona, "prompt": texts["prompt"].iloc[0]}
            for alpha in alphas:
                label = "0" if alpha == 0 else f"{alpha:+g}"
                row[f"text {label}"] = _short(texts.loc[alpha, "text"], width)
                score = texts.loc[alpha, "persona_score"] if "persona_score" in texts else np.nan
                row[f"score {label}"] = float(score)
            rows.append(row)
    return pd.DataFrame(rows)
