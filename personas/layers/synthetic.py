"""Synthetic activations with separation planted at chosen layers, for tests, benchmarks and demos."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from personas._core.checks import check_float, check_int, check_seed
from personas._core.provenance import seeded_rng

__all__ = ["synthetic_activations"]


def _synthetic_meta(n_personas: int, n_per_direction: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The statements table of the synthetic personas, each row's persona index and sign (+1 / -1)."""
    names = [f"persona_{i:02d}" for i in range(n_personas)]
    per = 2 * n_per_direction
    persona_idx = np.repeat(np.arange(n_personas), per)
    sign = np.tile(np.repeat([1.0, -1.0], n_per_direction), n_personas)
    meta = pd.DataFrame({
        "id": [f"{names[p]}/{j:04d}" for p in range(n_personas) for j in range(per)],
        "persona": [names[p] for p in persona_idx],
        "direction": np.where(sign > 0, "positive", "negative"),
        "statement": [f"synthetic statement {j} of {names[p]}" for p in range(n_personas) for j in range(per)],
    })
    return meta, persona_idx, sign


def synthetic_activations(
    *,
    n_personas: int = 3,
    n_per_direction: int = 50,
    hidden_size: int = 64,
    layers: Iterable[int] = range(5),
    persona_signal: Mapping[int, float] | float = 0.0,
    direction_signal: Mapping[int, float] | float = 0.0,
    signal_fraction: float = 0.25,
    background_rank: int = 4,
    seed: int = 0,
    dtype: Any = np.float32,
) -> tuple[dict[int, np.ndarray], pd.DataFrame]:
    """Activations with separation planted at chosen layers, for tests, benchmarks and demos.

    Every layer is isotropic noise N(0, 1) per node plus a low-rank background: ``background_rank``
    orthonormal directions with standard deviations from 3 down to 1.5 (a few dominant directions,
    as in real activations). At a layer with persona signal ``s``, each persona's statements are
    shifted by a persona-specific vector; with direction signal ``t``, positive statements move by
    ``+t/2`` and negative ones by ``-t/2`` along a persona-specific vector. Signal vectors live on a
    random ``signal_fraction`` of the nodes and their Euclidean norm is ``s`` (or ``t``) times
    ``sqrt(hidden_size)``, the norm of a noise row, so ``t = 0.5`` puts the ``+`` and ``-``
    centroids half a noise-norm apart.

    Parameters
    ----------
    n_personas, n_per_direction, hidden_size : int
    layers : iterable of int
    persona_signal, direction_signal : float or dict of layer -> float
        Strength per layer (missing layers: 0).
    signal_fraction : float
        Share of nodes that carry the planted vectors.
    background_rank : int
    seed : int
    dtype : numpy dtype

    Returns
    -------
    activations : dict of int -> ndarray (n_personas * 2 * n_per_direction, hidden_size)
    meta : DataFrame
        Columns ``id, persona, direction, statement`` as ``load_layers`` returns; personas are
        named "persona_00", "persona_01", ...
    """
    n_personas = check_int(n_personas, "n_personas", min_val=1)
    n_per_direction = check_int(n_per_direction, "n_per_direction", min_val=1)
    hidden_size = check_int(hidden_size, "hidden_size", min_val=1)
    seed = check_seed(seed)
    signal_fraction = check_float(signal_fraction, "signal_fraction", min_val=0, include_min=False, max_val=1)
    layers = [int(layer) for layer in layers]
    meta, persona_idx, sign = _synthetic_meta(n_personas, n_per_direction)

    def strength(spec, layer):
        return float(spec.get(layer, 0.0)) if isinstance(spec, Mapping) else float(spec)

    rng = seeded_rng(seed, "synthetic-vectors")
    n_sig = max(1, int(round(signal_fraction * hidden_size)))

    def vectors(count):
        v = np.zeros((count, hidden_size))
        for i in range(count):
            nodes = rng.choice(hidden_size, n_sig, replace=False)
            v[i, nodes] = rng.standard_normal(n_sig)
        return v / np.linalg.norm(v, axis=1, keepdims=True) * np.sqrt(hidden_size)

    persona_vec, direction_vec = vectors(n_personas), vectors(n_personas)
    activations = {}
    for layer in layers:
        lr = seeded_rng(seed, "synthetic-layer", layer)
        X = lr.standard_normal((len(meta), hidden_size), dtype=np.float32)
        if background_rank:
            basis = np.linalg.qr(lr.standard_normal((hidden_size, background_rank)))[0].T.astype(np.float32)
            X += (lr.standard_normal((len(meta), background_rank), dtype=np.float32)
                  * np.linspace(3.0, 1.5, background_rank, dtype=np.float32)) @ basis
        s, t = strength(persona_signal, layer), strength(direction_signal, layer)
        if s:
            X += (s * persona_vec[persona_idx]).astype(np.float32)
        if t:
            X += (0.5 * t * sign[:, None] * direction_vec[persona_idx]).astype(np.float32)
        activations[layer] = X.astype(dtype, copy=False)
    return activations, meta
