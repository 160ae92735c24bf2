"""Node layouts: which layer and unit each node (column) of concatenated activations is.

- :func:`make_node_layout`: the layout of several layers concatenated in order;
- :func:`node_to_layer_unit`: global node indices back to (layer, unit);
- :func:`layout_arrays`: a layout (as stored in a run-file header) as checked arrays.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

__all__ = ["make_node_layout", "node_to_layer_unit", "layout_arrays"]


def make_node_layout(layers: Sequence[int], n_units: int | Sequence[int]) -> list[dict]:
    """Node layout for activations of several layers concatenated in ``layers`` order.

    Parameters
    ----------
    layers : sequence of int
    n_units : int or sequence of int
        Units per layer (one int for all layers, e.g. the hidden size).

    Returns
    -------
    list of dict
        ``[{"layer": int, "n_units": int}, ...]``; global node = offset of its layer + unit.
    """
    layers = [int(x) for x in layers]
    sizes = [int(n_units)] * len(layers) if np.ndim(n_units) == 0 else [int(x) for x in n_units]
    if len(sizes) != len(layers):
        raise ValueError(f"n_units has {len(sizes)} entries but layers has {len(layers)}; give one size per layer")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"n_units must be positive, got {sizes}")
    return [{"layer": la, "n_units": s} for la, s in zip(layers, sizes)]


def layout_arrays(node_layout: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(layers, n_units)`` int64 arrays of a layout (dicts or (layer, n_units) pairs); ValueError if it is empty or bad."""
    if node_layout is None:
        raise ValueError("node_layout is None: this run has no node layout; pass [{'layer': int, 'n_units': int}, ...]")
    layers, sizes = [], []
    for item in node_layout:
        if isinstance(item, Mapping):
            layers.append(int(item["layer"]))
            sizes.append(int(item["n_units"]))
        else:
            la, n = item
            layers.append(int(la))
            sizes.append(int(n))
    if not layers:
        raise ValueError("node_layout is empty; it needs one {'layer', 'n_units'} entry per concatenated layer")
    sizes_a = np.asarray(sizes, dtype=np.int64)
    if (sizes_a <= 0).any():
        raise ValueError(f"node_layout n_units must be positive, got {sizes}")
    return np.asarray(layers, dtype=np.int64), sizes_a


def node_to_layer_unit(nodes: Iterable[int], node_layout: Any) -> tuple[np.ndarray, np.ndarray]:
    """Map global node indices back to (layer, unit within that layer).

    Parameters
    ----------
    nodes : array-like of int, shape (n,)
        Global node indices (columns of the concatenated activation matrix).
    node_layout : list of {"layer": int, "n_units": int} (or (layer, n_units) pairs)
        Concatenation order, as stored in a run file header.

    Returns
    -------
    layers, units : ndarray of int64, shape (n,)
    """
    layers, sizes = layout_arrays(node_layout)
    nodes_a = np.asarray(list(nodes) if not isinstance(nodes, np.ndarray) else nodes)
    if nodes_a.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not np.issubdtype(nodes_a.dtype, np.integer):
        raise ValueError(f"nodes must be integers, got dtype {nodes_a.dtype}")
    nodes_a = nodes_a.astype(np.int64).ravel()
    ends = np.cumsum(sizes)
    bad = (nodes_a < 0) | (nodes_a >= ends[-1])
    if bad.any():
        raise ValueError(
            f"node {int(nodes_a[bad][0])} is outside the node layout (0..{int(ends[-1]) - 1}); "
            "is this the layout of the run that produced these nodes?"
        )
    which = np.searchsorted(ends, nodes_a, side="right")
    starts = ends - sizes
    return layers[which], nodes_a - starts[which]
