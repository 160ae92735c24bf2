"""The steered-text arm: texts generated along the persona direction and along random directions of
the same norm, and their offline scores (:mod:`personas.causal.text_scores`, :mod:`personas.causal.coherence`).

The random directions are those of the readouts' steering arms (``random_unit_directions`` with
the same ``key = (seed, persona)``), so a text arm and a readout arm steer along the same controls.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from personas._core.checks import check_float, check_int
from personas.causal.coherence import coherence_scores
from personas.causal.split import random_unit_directions
from personas.causal.text_scores import TextScorer, score_texts
from personas.model.generation import NEUTRAL_PROMPTS, steer_generate

__all__ = ["steered_text_arm", "score_text_frame"]


def steered_text_arm(model, tokenizer, unit, scale: float, layer: int, alphas, *, n_random: int = 2,
                     key: tuple = (0, "persona"), prompts: Sequence[str] = NEUTRAL_PROMPTS,
                     **options) -> pd.DataFrame:
    """Texts steered by ``alpha * scale * unit`` and by ``n_random`` random directions of the same norm.

    Parameters
    ----------
    model, tokenizer :
        A causal LM and its tokenizer.
    unit : array ``(hidden,)``
        The persona direction, unit norm (``Geometry.unit`` of :func:`personas.causal.arms.persona_geometry`).
    scale : float
        The mean norm of the hidden states at ``layer`` (``Geometry.scale``): the vector at alpha 1
        is ``scale * unit``.
    layer : int or Placement
        The layer (a :class:`personas.model.generation.Placement` also names where the blocks and the
        final norm are).
    alphas : sequence of float
        Strengths; 0 (the unsteered baseline, decoded once per prompt) is always added.
    n_random : int
        Random unit directions ``r_k`` (arm ``"random_direction"``, draw ``k``), steered as ``alpha * scale * r_k``.
    key : (seed, persona)
        Seeds the random directions exactly as the readouts' steering arms do.
    prompts : sequence of str
        User turns (default ``NEUTRAL_PROMPTS``).
    **options :
        ``positions``, ``max_new_tokens`` (default 40), ``sampling``, ``batch_size`` of
        :func:`personas.model.generation.steer_generate`.

    Returns
    -------
    DataFrame
        ``steer_generate``'s table plus ``scale``.
    """
    unit = np.asarray(unit, dtype=np.float64)
    if unit.ndim != 1 or not np.isfinite(unit).all() or abs(np.linalg.norm(unit) - 1.0) > 1e-4:
        raise ValueError(f"unit must be a finite unit vector (hidden,); got shape {unit.shape} and norm "
                         f"{np.linalg.norm(unit) if unit.size else 0.0:.4g}: normalise it, and pass its norm as scale")
    scale = check_float(scale, "scale", min_val=0.0, include_min=False)
    n_random = check_int(n_random, "n_random", min_val=0)
    directions = {"direction": scale * unit}
    if n_random:
        directions["random_direction"] = scale * random_unit_directions(*key, len(unit), n_random)
    alphas = [0.0] + [a for a in alphas if a != 0]
    return steer_generate(model, tokenizer, prompts, directions, layer, alphas, **options).assign(scale=scale)


def score_text_frame(frame: pd.DataFrame, scorers: Sequence[TextScorer] = (), *, model=None, tokenizer=None,
                     batch_size: int = 16) -> pd.DataFrame:
    """``frame`` (of :func:`steered_text_arm` or ``steer_generate``) with one score column per scorer.

    Each distinct (prompt, text) is scored once. Columns ``score:<scorer name>``, and with
    ``model`` and ``tokenizer`` (run unsteered) the coherence columns ``nll``, ``distinct_2``,
    ``zlib_ratio``. Whether a scorer is informative is its ``gate``.
    """
    pairs = frame[["prompt", "text"]].drop_duplicates().reset_index(drop=True)
    texts, prompts = pairs["text"].tolist(), pairs["prompt"].tolist()
    for scorer in scorers:
        pairs[f"score:{scorer.name}"] = score_texts(scorer, texts, prompts=prompts).scores
    if model is not None:
        if tokenizer is None:
            raise ValueError("coherence needs the tokenizer too; pass model= and tokenizer=")
        scores = coherence_scores(model, tokenizer, texts, prompts=prompts, batch_size=batch_size)
        pairs = pairs.assign(nll=scores.nll, distinct_2=scores.distinct_2, zlib_ratio=scores.zlib_ratio)
    return frame.merge(pairs, on=["prompt", "text"], how="left", validate="many_to_one")
