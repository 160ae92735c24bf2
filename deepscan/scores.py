"""Scoring functions of a subset: Berk-Jones, Higher Criticism, Kolmogorov-Smirnov (docs/deepscan.md, section 2).

A score function takes ``(n_alpha, n, alpha)`` (numpy arrays broadcast together:
entries with p-value <= alpha, entries, threshold) and returns the score. Every
score is 0 unless ``n_alpha > n * alpha``; the scans enforce this for user
functions too, so a user function only has to be right where ``n_alpha > n * alpha``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["SCORES", "berk_jones", "higher_criticism", "kolmogorov_smirnov", "get_score", "score_name", "apply_score"]

ScoreFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _prepare(n_alpha, n, alpha):
    na = np.asarray(n_alpha, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    a = np.asarray(alpha, dtype=np.float64)
    return na, nn, a, na > nn * a


def higher_criticism(n_alpha, n, alpha) -> np.ndarray:
    """``(N_a - N*alpha) / sqrt(N*alpha*(1 - alpha))``, 0 unless ``N_a > N*alpha``."""
    na, nn, a, pos = _prepare(n_alpha, n, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (na - nn * a) / np.sqrt(nn * a * (1.0 - a))
    return np.where(pos, s, 0.0)


def kolmogorov_smirnov(n_alpha, n, alpha) -> np.ndarray:
    """``(N_a - N*alpha) / sqrt(N)``, 0 unless ``N_a > N*alpha``."""
    na, nn, a, pos = _prepare(n_alpha, n, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (na - nn * a) / np.sqrt(nn)
    return np.where(pos, s, 0.0)


def berk_jones(n_alpha, n, alpha) -> np.ndarray:
    """``N * KL(N_a/N || alpha)``; ``N*ln(1/alpha)`` when ``N_a == N``; 0 unless ``N_a > N*alpha``."""
    na, nn, a, pos = _prepare(n_alpha, n, alpha)
    rest = nn - na
    with np.errstate(divide="ignore", invalid="ignore"):
        # N*ln(1/alpha) when every entry counts, as docs/deepscan.md (and the published code) write it:
        # N*ln(N/(N*alpha)) can differ from it in the last bit
        t1 = np.where(na == nn, nn * np.log(1.0 / a), na * np.log(na / (nn * a)))
        t2 = np.where(rest > 0, rest * np.log(rest / (nn * (1.0 - a))), 0.0)  # 0*log 0 = 0
    return np.where(pos, t1 + t2, 0.0)


SCORES: dict[str, ScoreFunction] = {
    "hc": higher_criticism,
    "bj": berk_jones,
    "ks": kolmogorov_smirnov,
}
_ALIASES = {
    "hc": "hc", "higher_criticism": "hc", "higher-criticism": "hc", "highercriticism": "hc",
    "bj": "bj", "berk_jones": "bj", "berk-jones": "bj", "berkjones": "bj",
    "ks": "ks", "kolmogorov_smirnov": "ks", "kolmogorov-smirnov": "ks", "kolmogorovsmirnov": "ks",
}


def score_name(score: str | ScoreFunction) -> str:
    """Canonical name: 'hc', 'bj', 'ks', or 'custom:<function name>' for a callable."""
    if callable(score):
        return "custom:" + getattr(score, "__qualname__", getattr(score, "__name__", type(score).__name__))
    try:
        return _ALIASES[str(score).lower().replace(" ", "_")]
    except KeyError:
        raise ValueError(
            f"unknown score {score!r}; use 'hc' (higher_criticism), 'bj' (berk_jones), 'ks' "
            "(kolmogorov_smirnov) or a function f(n_alpha, n, alpha) -> score"
        ) from None


def get_score(score: str | ScoreFunction) -> ScoreFunction:
    """The score function for a name (see :func:`score_name`) or a user callable."""
    if callable(score):
        return score
    return SCORES[score_name(score)]


def apply_score(fn: ScoreFunction, n_alpha: np.ndarray, n: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Evaluate ``fn`` and enforce the rule "0 unless n_alpha > n*alpha" (and n > 0)."""
    na = np.asarray(n_alpha, dtype=np.float64)
    nn = np.asarray(n, dtype=np.float64)
    a = np.asarray(alpha, dtype=np.float64)
    with np.errstate(all="ignore"):
        s = np.asarray(fn(na, nn, a), dtype=np.float64)
    pos = (na > nn * a) & (nn > 0)
    s = np.where(pos, s, 0.0)
    if not np.isfinite(s).all():
        raise ValueError("the score function returned NaN or inf where n_alpha > n*alpha; check it on those inputs")
    return s
