"""Which layers: validating requested layer indices and their relative depth.

Layer convention: 0 = embeddings, i = output of block i (as Hugging Face ``hidden_states``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from personas._core.checks import check_int, check_matrix

__all__ = ["check_layers", "relative_depth"]


def check_layers(layers: Iterable[int] | None, available: Mapping[int, Any] | Iterable[int]) -> list[int]:
    """Validate requested layers against those available (e.g. the keys of ``load_layers``' dict).

    Parameters
    ----------
    layers : iterable of int or None
        Requested layer indices (0 = embeddings, i = output of block i); None means all available.
    available : mapping or iterable of int
        The available layers, or the activations dict itself.

    Returns
    -------
    list of int
        The requested layers in the order given, duplicates dropped.

    Raises
    ------
    ValueError
        Naming the missing layers and listing the available ones.
    """
    avail = sorted(int(k) for k in (available.keys() if isinstance(available, Mapping) else available))
    if layers is None:
        if not avail:
            raise ValueError("no layers available: the activations are empty; extract some layers first")
        return avail
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    req: list[int] = []
    for layer in layers:
        if isinstance(layer, (bool, np.bool_)) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"layers must be ints; got {layer!r}")
        if int(layer) not in req:
            req.append(int(layer))
    if not req:
        raise ValueError(f"no layers requested; available layers: {avail}")
    missing = [layer for layer in req if layer not in set(avail)]
    if missing:
        raise ValueError(
            f"layers {missing} are not in the store; available layers: {avail}. "
            "Extract those layers first or pick from the available ones."
        )
    return req


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


def _resolve_layers(layers: Iterable[int] | None, activations: Mapping[int, Any], controls: bool) -> list[int]:
    if not isinstance(activations, Mapping):
        raise ValueError(
            "activations must be a dict {layer: array (n_statements, hidden_size)} as load_layers returns; "
            f"got {type(activations).__name__}"
        )
    chosen = check_layers(layers, activations)
    if controls:
        if 0 in activations and 0 not in chosen:
            chosen = [0] + chosen  # the embedding-layer control rides along whenever it is available
        elif 0 not in activations:
            warnings.warn(
                "layer 0 (embeddings) is not in the activations, so the embedding-layer control is missing; "
                "extract layer 0 too to compare every layer with the wording alone",
                stacklevel=3,
            )
    return sorted(chosen)


def _layer_matrix(activations: Mapping[int, Any], layer: int, n: int | None = None) -> np.ndarray:
    X = check_matrix(activations[layer], name=f"activations[{layer}]")
    if n is not None and X.shape[0] != n:
        raise ValueError(f"activations[{layer}] has {X.shape[0]} rows but meta has {n}; they must be aligned")
    return X
