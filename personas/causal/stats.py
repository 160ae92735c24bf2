"""Statistics of the causal check: shift summaries with bootstrap intervals, empirical tests."""

from __future__ import annotations

import numpy as np

from deepscan import roc_auc
from personas._core.checks import check_choice


def bootstrap_index(positive: np.ndarray, n_boot: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pos, neg = np.flatnonzero(positive), np.flatnonzero(~positive)
    # resampled within each direction: every replicate keeps the balance of the sample
    return pos[rng.integers(0, len(pos), (n_boot, len(pos)))], neg[rng.integers(0, len(neg), (n_boot, len(neg)))]


def empirical_test(value: float, null: np.ndarray, alternative: str = "two-sided") -> tuple[float, float]:
    """Percentile of ``value`` among the ``null`` draws and its empirical p-value.

    Percentile = 100 x (fraction of draws below ``value`` + half the ties). p-value
    with the usual +1 correction: ``(1 + #{null >= value}) / (K + 1)`` for
    ``"greater"``, the mirror for ``"less"``, twice the smaller tail (at most 1) for
    ``"two-sided"``.
    """
    check_choice(alternative, "alternative", ("two-sided", "greater", "less"))
    null = np.asarray(null, dtype=float)
    k = len(null)
    if k == 0:
        return float("nan"), float("nan")
    percentile = 100.0 * ((null < value).mean() + 0.5 * (null == value).mean())
    greater = (1 + (null >= value).sum()) / (k + 1)
    less = (1 + (null <= value).sum()) / (k + 1)
    p = {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]
    return float(percentile), float(p)


def _effects(score: np.ndarray, base: np.ndarray, pos_idx: np.ndarray, neg_idx: np.ndarray) -> dict[str, np.ndarray]:
    """Shift statistics over statement indices ``pos_idx``/``neg_idx`` (``(..., n_pos)``, ``(..., n_neg)``)."""
    shift = score - base
    sp, sn = shift[pos_idx], shift[neg_idx]
    n = pos_idx.shape[-1] + neg_idx.shape[-1]
    return {
        "bias_shift": (sp.sum(-1) + sn.sum(-1)) / n,
        "specific_effect": sp.mean(-1) - sn.mean(-1),
        "mean_abs_shift": (np.abs(sp).sum(-1) + np.abs(sn).sum(-1)) / n,
    }


EFFECTS = ("bias_shift", "specific_effect", "mean_abs_shift")


def effect_summary(score, base, positive, boot=None, ci: float = 0.95) -> dict[str, float]:
    """Shift statistics of one intervention on any readout, with bootstrap intervals when ``boot`` is given.

    Parameters
    ----------
    score, base : ndarray ``(n,)``
        Readout scores with and without the intervention.
    positive : bool ndarray ``(n,)``
    boot : (ndarray ``(n_boot, n_pos)``, ndarray ``(n_boot, n_neg)``), optional
        Bootstrap statement indices (:func:`bootstrap_index`).

    Returns
    -------
    dict
        ``bias_shift`` (mean shift), ``specific_effect`` (mean shift of ``+`` minus ``-``
        statements), ``mean_abs_shift``; with ``boot``, also ``<stat>_low`` / ``<stat>_high``.
    """
    positive = np.asarray(positive, dtype=bool)
    out = {k: float(v) for k, v in _effects(score, base, np.flatnonzero(positive), np.flatnonzero(~positive)).items()}
    if boot is not None:
        lo, hi = (1 - ci) / 2, 1 - (1 - ci) / 2
        for k, v in _effects(score, base, *boot).items():
            out[f"{k}_low"], out[f"{k}_high"] = (float(x) for x in np.quantile(v, [lo, hi]))
    return out


def auc_interval(score: np.ndarray, positive: np.ndarray, boot, ci: float = 0.95) -> tuple[float, float, float]:
    """ROC AUC of ``score`` for ``positive`` and its bootstrap interval (resampled within each direction).

    Ties count one half. ``boot`` as for :func:`effect_summary`.
    """
    positive = np.asarray(positive, dtype=bool)
    score = np.asarray(score, dtype=float)
    auc = roc_auc(score[positive], score[~positive])  # the project's one AUC (Mann-Whitney, ties 1/2)
    sp, sn = score[boot[0]], score[boot[1]]  # (n_boot, n_pos), (n_boot, n_neg)
    wins = (sp[:, :, None] > sn[:, None, :]).mean((1, 2)) + 0.5 * (sp[:, :, None] == sn[:, None, :]).mean((1, 2))
    lo, hi = np.quantile(wins, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return auc, float(lo), float(hi)


def is_informative(auc: float, lo: float, hi: float, scores: np.ndarray) -> bool:
    """The gate: whether a readout separates the directions, i.e. its AUC interval ``[lo, hi]`` excludes 0.5.

    Never for scores that are constant or not all finite, nor for a NaN AUC or interval: such a
    readout cannot tell the directions apart, whatever its interval says.
    """
    scores = np.asarray(scores, dtype=float)
    if not (scores.size and np.isfinite(scores).all() and np.isfinite([auc, lo, hi]).all()):
        return False
    if scores.max() == scores.min():
        return False
    return not (lo <= 0.5 <= hi)


def paired_difference(a: np.ndarray, b: np.ndarray, base: np.ndarray, positive: np.ndarray, boot,
                      ci: float = 0.95) -> tuple[float, float, float]:
    """Specific effect of scores ``a`` minus that of ``b`` (same statements), with a paired bootstrap interval."""
    positive = np.asarray(positive, dtype=bool)
    idx = (np.flatnonzero(positive), np.flatnonzero(~positive))
    value = float(_effects(a, base, *idx)["specific_effect"] - _effects(b, base, *idx)["specific_effect"])
    reps = _effects(a, base, *boot)["specific_effect"] - _effects(b, base, *boot)["specific_effect"]
    lo, hi = np.quantile(reps, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return value, float(lo), float(hi)
