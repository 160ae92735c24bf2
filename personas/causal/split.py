"""Held-out and training statements, and the seeded random controls of the causal check."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

from personas._core.provenance import derive_rng


# ------------------------------------------------------------------ statements


def split_statements(
    statements: pd.DataFrame,
    persona: str,
    *,
    n_heldout: int,
    n_train: int | None,
    exclude_ids: Iterable[str] = (),
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held-out and training statements of one persona, balanced by direction, seeded.

    Held-out statements (``n_heldout`` per direction) are drawn from those whose id
    is not in ``exclude_ids`` (DeepScan's pools); training statements (``n_train`` per
    direction, None for all) from the rest, which may include excluded ids. The draw
    depends only on ``seed``, the persona's name and the direction.

    Returns
    -------
    (heldout, train) : DataFrames, rows of ``statements`` (positive first).
    """
    rows = statements[statements["persona"] == persona]
    if rows.empty:
        raise ValueError(f"no statements of persona {persona!r}; pass statements holding its rows")
    excluded = set(map(str, exclude_ids))
    heldout, train = [], []
    for direction in ("positive", "negative"):
        side = rows[rows["direction"] == direction]
        free = side[~side["id"].astype(str).isin(excluded)]
        if len(free) < n_heldout:
            raise ValueError(
                f"persona {persona!r} has {len(free)} {direction} statements outside exclude_ids, fewer than "
                f"n_heldout={n_heldout}; lower n_heldout or load more statements (load_statements(..., "
                "n_per_direction=None))"
            )
        rng = derive_rng(seed, persona, direction, "heldout")
        pick = np.sort(rng.choice(len(free), size=n_heldout, replace=False))
        held = free.iloc[pick]
        rest = side[~side.index.isin(held.index)]
        n = len(rest) if n_train is None else n_train
        if len(rest) < max(n, 1):
            raise ValueError(
                f"persona {persona!r} has {len(rest)} {direction} statements left for training after the held-out "
                f"draw, fewer than n_train={n_train}; lower n_train or n_heldout"
            )
        rng = derive_rng(seed, persona, direction, "train")
        train.append(rest.iloc[np.sort(rng.choice(len(rest), size=n, replace=False))])
        heldout.append(held)
    return pd.concat(heldout), pd.concat(train)


def random_node_draws(seed: int, persona: str, hidden_size: int, size: int, n: int) -> np.ndarray:
    """The random-node control sets of ``causal_check``: ``(n, size)`` unit indices, each row without repeats.

    Drawn uniformly from all ``hidden_size`` units (salient ones included), seeded by
    ``seed`` and the persona's name.
    """
    rng = derive_rng(seed, persona, "random_nodes")
    out = np.empty((n, size), dtype=np.int64)
    for k in range(n):
        out[k] = rng.choice(hidden_size, size=size, replace=False)
    return out


def random_unit_directions(seed: int, persona: str, hidden_size: int, n: int) -> np.ndarray:
    """The random steering directions of ``causal_check``: ``(n, hidden_size)`` unit vectors (isotropic Gaussian)."""
    rng = derive_rng(seed, persona, "random_directions")
    units = rng.standard_normal((n, hidden_size))
    return units / np.linalg.norm(units, axis=1, keepdims=True)



