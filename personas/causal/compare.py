"""The causal check's comparisons: arms against their controls, the specificity matrix and its
permutation test, and the dose-response table."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from personas.causal.arms import alpha_key
from personas.causal.stats import empirical_test, paired_difference
from personas._core.provenance import derive_rng

#: arm -> its controls (many random draws, or one harder control compared paired)
CONTROLS = {
    "direction": ("random_direction",),
    "salient_ablation": ("random_ablation", "top_variance_ablation"),
    "salient_direction": ("random_restricted_direction",),
}


def control_summary(value: float, values) -> dict:
    """An arm's effect ``value`` against its random controls' effects ``values (K,)``: the controls'
    mean, std and largest ``|effect|``, the arm's percentile among them and the two-sided empirical
    p-value (the columns ``comparisons`` gives each arm; the report words them)."""
    values = np.asarray(values, dtype=float)
    pct, p = empirical_test(value, values, "two-sided")
    return {"control_mean": float(values.mean()), "control_std": float(values.std(ddof=1)) if len(values) > 1
            else np.nan, "control_max_abs": float(np.abs(values).max()), "percentile": pct, "p_value": p}


def _control_row(arm: dict, null: pd.DataFrame) -> dict:
    return control_summary(arm["specific_effect"], null["specific_effect"].to_numpy(dtype=float))


def comparisons(effects: pd.DataFrame, shifts: dict, held: dict, ci: float) -> pd.DataFrame:
    """Every arm against its controls, per persona, readout, layer and alpha.

    Random controls (many draws): the control's mean, std and largest ``|effect|``, the arm's
    percentile among the draws and the two-sided empirical p-value. Top-variance nodes (one
    set): the paired bootstrap interval of (salient - top-variance) specific effect.
    ``held`` maps ``(persona, readout)`` to its ``HeldOut``.
    """
    rows = []
    if effects.empty:
        return pd.DataFrame()
    own = effects[effects["steer_persona"] == effects["persona"]]
    for arm_name, controls in CONTROLS.items():
        for _, arm in own[own["intervention"] == arm_name].iterrows():
            same = own[(own["persona"] == arm["persona"]) & (own["readout"] == arm["readout"])
                       & (own["layer"] == arm["layer"])]
            same = same[same["alpha"].isna()] if np.isnan(arm["alpha"]) else same[same["alpha"] == arm["alpha"]]
            for control in controls:
                null = same[same["intervention"] == control]
                if null.empty:
                    continue
                row = {"persona": arm["persona"], "readout": arm["readout"], "layer": arm["layer"], "arm": arm_name,
                       "control": control, "alpha": arm["alpha"], "effect": arm["specific_effect"],
                       "effect_low": arm["specific_effect_low"], "effect_high": arm["specific_effect_high"],
                       "n_control": len(null)}
                row.update(_control_row(arm, null))
                row["difference"] = row["difference_low"] = row["difference_high"] = np.nan
                if len(null) == 1:  # one harder control: the paired bootstrap of the difference is the test
                    h = held[(arm["persona"], arm["readout"])]
                    a = alpha_key(arm["alpha"])
                    key = (arm["persona"], arm["readout"], arm["layer"], arm_name, a, 0, arm["persona"])
                    ctrl = (arm["persona"], arm["readout"], arm["layer"], control, a, 0, arm["persona"])
                    row["difference"], row["difference_low"], row["difference_high"] = paired_difference(
                        h.base + shifts[key], h.base + shifts[ctrl], h.base, h.positive, h.boot, ci)
                rows.append(row)
    return pd.DataFrame(rows)


def diagonal_dominance(matrix: np.ndarray) -> float:
    """Mean of the diagonal minus mean of the off-diagonal cells of a ``(k, k)`` matrix."""
    k = matrix.shape[0]
    off = ~np.eye(k, dtype=bool)
    return float(np.trace(matrix) / k - matrix[off].mean())


def row_permutation_test(matrix: np.ndarray, n_permutations: int, seed: int) -> dict:
    """Diagonal dominance against the rows permuted (which direction goes with which persona).

    All ``k!`` permutations when ``k! <= n_permutations`` (exact p-value, the identity
    included), else ``n_permutations`` seeded random ones with the +1 correction.
    """
    k = matrix.shape[0]
    stat = diagonal_dominance(matrix)
    if math.factorial(k) <= n_permutations:
        null = np.array([diagonal_dominance(matrix[list(p)]) for p in itertools.permutations(range(k))])
        p, exact = float((null >= stat - 1e-12).mean()), True
    else:
        rng = derive_rng(seed, "specificity", "permutations")
        null = np.array([diagonal_dominance(matrix[rng.permutation(k)]) for _ in range(n_permutations)])
        p, exact = float((1 + (null >= stat - 1e-12).sum()) / (n_permutations + 1)), False
    return {"k": k, "statistic": stat, "p_value": p, "n_permutations": len(null), "exact": exact,
            "null_mean": float(null.mean()), "null_std": float(null.std())}


def specificity_table(effects: pd.DataFrame, personas: list[str], readout: str, layer: int,
                      alpha: float) -> tuple[pd.DataFrame, np.ndarray]:
    """The long table and ``(k, k)`` matrix of specific effects: row = steered persona, column = read persona."""
    sel = effects[(effects["readout"] == readout) & (effects["layer"] == layer) & (effects["alpha"] == alpha)
                  & (effects["intervention"] == "direction")]
    matrix = np.full((len(personas), len(personas)), np.nan)
    rows = []
    for i, steer in enumerate(personas):
        for j, read in enumerate(personas):
            cell = sel[(sel["steer_persona"] == steer) & (sel["persona"] == read)]
            if cell.empty:
                raise ValueError(f"no specificity cell for steering {steer!r}, reading {read!r}")
            c = cell.iloc[0]
            matrix[i, j] = c["specific_effect"]
            rows.append({"steer_persona": steer, "read_persona": read, "alpha": alpha, "layer": layer,
                         "readout": readout, "specific_effect": c["specific_effect"],
                         "specific_effect_low": c["specific_effect_low"],
                         "specific_effect_high": c["specific_effect_high"]})
    return pd.DataFrame(rows), matrix


def dose_table(effects: pd.DataFrame, personas: list[str], layers: list[int], readout: str,
               alphas, n_random: int) -> pd.DataFrame:
    """Specific effect against alpha per persona and layer: the direction (bootstrap interval) and the
    random directions (mean, band = smallest to largest draw); alpha 0 is the baseline (0)."""
    rows = []
    if effects.empty:
        effects = pd.DataFrame(columns=["readout", "steer_persona", "persona", "layer", "alpha", "intervention"])
    own = effects[(effects["readout"] == readout) & (effects["steer_persona"] == effects["persona"])]
    for persona, layer, alpha in itertools.product(personas, layers, alphas):
        if alpha == 0:
            for name, n in (("direction", 1), ("random_direction", n_random)):
                rows.append({"persona": persona, "readout": readout, "layer": layer, "alpha": 0.0,
                             "intervention": name, "specific_effect": 0.0, "low": 0.0, "high": 0.0, "n_draws": n})
            continue
        sel = own[(own["persona"] == persona) & (own["layer"] == layer) & (own["alpha"] == alpha)]
        d = sel[sel["intervention"] == "direction"]
        r = sel[(sel["intervention"] == "random_direction") & (sel["draw"] < n_random)]
        if d.empty:
            continue
        rows.append({"persona": persona, "readout": readout, "layer": layer, "alpha": alpha,
                     "intervention": "direction", "specific_effect": float(d["specific_effect"].iloc[0]),
                     "low": float(d["specific_effect_low"].iloc[0]), "high": float(d["specific_effect_high"].iloc[0]),
                     "n_draws": 1})
        if len(r):
            v = r["specific_effect"].to_numpy(dtype=float)
            rows.append({"persona": persona, "readout": readout, "layer": layer, "alpha": alpha,
                         "intervention": "random_direction", "specific_effect": float(v.mean()),
                         "low": float(v.min()), "high": float(v.max()), "n_draws": len(v)})
    return pd.DataFrame(rows, columns=["persona", "readout", "layer", "alpha", "intervention", "specific_effect",
                                       "low", "high", "n_draws"])
