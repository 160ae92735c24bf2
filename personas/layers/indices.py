"""Layer indices of the analyses: relative depth, and one layer's activation matrix checked.

Which layers exist and which were asked for is checked by ``personas.model.hooks.resolve_layers``.

Layer convention: 0 = embeddings, i = output of block i (as Hugging Face ``hidden_states``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from personas._core.checks import check_int, check_matrix

__all__ = ["relative_depth", "layer_matrix"]


def relative_depth(layer: int | np.ndarray, n_blocks: int) -> float | np.ndarray:
    """``layer / n_blocks``: 0 = embeddings, 1 = output of the last block.

    Raises ValueError if ``n_blocks`` is not a positive int or a layer lies outside ``[0, n_blocks]``.
    """
    n_blocks = check_int(n_blocks, "n_blocks", min_val=1)
    arr = np.asarray(layer)
    if arr.size and (arr.min() < 0 or arr.max() > n_blocks):
        raise ValueError(f"layer(s) {arr.tolist()} outside [0, n_blocks={n_blocks}]; is n_blocks the model's block count?")
    out = arr / n_blocks
    return float(out) if out.ndim == 0 else out


def layer_matrix(activations: Mapping[int, Any], layer: int, n: int | None = None) -> np.ndarray:
    """``activations[layer]`` checked as a finite matrix, with ``n`` rows when given (aligned with meta)."""
    X = check_matrix(activations[layer], name=f"activations[{layer}]")
    if n is not None and X.shape[0] != n:
        raise ValueError(f"activations[{layer}] has {X.shape[0]} rows but meta has {n}; they must be aligned")
    return X
