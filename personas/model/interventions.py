"""Interventions on the residual stream at one layer, through the hook core's block finding.

Context managers that edit what :func:`personas.model.hooks.capture_layers` reads at a
layer (same convention: 0 = embeddings, i = output of block i, ``n_blocks`` = the
final norm's output when the model has one), at every token position or at the last
one only, and remove their hooks on exit, even on error::

    prepared = READOUTS["likelihood"]().prepare(tokenizer, statements)   # personas.model.readouts
    with ablate_nodes(model, layer=22, nodes=[3, 17], values=background_mean):
        ablated = prepared.scores(model)
    with add_vector(model, layer=22, vector=direction, alpha=0.5, positions="last"):
        ...

``positions="last"`` edits the final column of the batch, which is every row's last
prompt token under left padding (the position the Yes/No readout reads).
"""

from __future__ import annotations

import contextlib
import operator
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from personas._core.checks import check_choice, check_float
from personas.model.hooks import find_blocks, find_final_norm, layer_info, resolve_layers

__all__ = ["EDIT_POSITIONS", "edit_layer", "ablate_nodes", "add_vector", "check_nodes"]

EDIT_POSITIONS = ("all", "last")


def _edit(hidden: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor], positions: str) -> torch.Tensor:
    if positions == "all":
        return fn(hidden)
    out = hidden.clone()  # never edit the module's own output tensor in place
    out[:, -1] = fn(hidden[:, -1])
    return out


@contextlib.contextmanager
def edit_layer(
    model: nn.Module,
    layer: int,
    fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    positions: str = "all",
    blocks_path: str | None = None,
    final_norm: str | None = "auto",
) -> Iterator[None]:
    """Replace the hidden state ``h`` at ``layer`` by ``fn(h)`` while the context is open.

    Parameters
    ----------
    model : torch.nn.Module
        Any model ``personas.model.hooks.find_blocks`` understands.
    layer : int
        0..n_blocks (0 = embeddings, i = output of block i).
    fn : callable
        ``(..., hidden_size) -> (..., hidden_size)``; gets ``(batch, seq, hidden)`` with
        ``positions="all"`` and ``(batch, hidden)`` with ``"last"``. Must not edit in place.
    positions : {"all", "last"}
    blocks_path, final_norm :
        Overrides, see :mod:`personas.model.hooks`.
    """
    check_choice(positions, "positions", EDIT_POSITIONS)
    path, blocks = find_blocks(model, blocks_path)
    n_blocks = len(blocks)
    (layer,) = resolve_layers([layer], n_blocks)
    _, norm = find_final_norm(model, path, final_norm)

    handles = []
    try:
        if layer == 0:
            # the input of block 0 is the embeddings output (with any model-specific scaling)

            def pre_hook(module, args, kwargs):
                if args:
                    return (_edit(args[0], fn, positions),) + tuple(args[1:]), kwargs
                return args, dict(kwargs, hidden_states=_edit(kwargs["hidden_states"], fn, positions))

            handles.append(blocks[0].register_forward_pre_hook(pre_hook, with_kwargs=True))
        else:
            module = norm if (layer == n_blocks and norm is not None) else blocks[layer - 1]

            def hook(module, args, output):
                if isinstance(output, (tuple, list)):
                    return type(output)((_edit(output[0], fn, positions), *output[1:]))
                return _edit(output, fn, positions)

            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def check_nodes(nodes, hidden_size: int, name: str = "nodes") -> np.ndarray:
    """Unit indices as a sorted unique int64 array in ``0..hidden_size-1``.

    Raises
    ------
    ValueError
        Indices out of range, repeated, or not integers.
    """
    try:
        arr = np.asarray([operator.index(x) for x in np.asarray(nodes).ravel().tolist()], dtype=np.int64)
    except TypeError as exc:
        raise ValueError(f"{name} must be integer unit indices; got {nodes!r}") from exc
    bad = arr[(arr < 0) | (arr >= hidden_size)]
    if len(bad):
        raise ValueError(f"{name} {bad[:5].tolist()} out of range: units of this layer are 0..{hidden_size - 1}")
    if len(np.unique(arr)) != len(arr):
        raise ValueError(f"{name} lists some units twice; pass each unit once")
    return np.sort(arr)


def _vector(values, size: int, name: str) -> torch.Tensor:
    vec = torch.as_tensor(np.array(values, dtype=np.float32))  # a copy: read-only arrays (a Direction) are fine
    if vec.ndim != 1 or vec.shape[0] != size:
        raise ValueError(f"{name} must have shape ({size},); got {tuple(vec.shape)}")
    if not torch.isfinite(vec).all():
        raise ValueError(f"{name} holds non-finite values")
    return vec


@contextlib.contextmanager
def ablate_nodes(
    model: nn.Module,
    layer: int,
    nodes: Sequence[int],
    values,
    *,
    positions: str = "all",
    blocks_path: str | None = None,
    final_norm: str | None = "auto",
) -> Iterator[np.ndarray]:
    """Set units ``nodes`` of the hidden state at ``layer`` to fixed ``values`` (mean ablation).

    Parameters
    ----------
    nodes : sequence of int
        Unit indices ``0..hidden_size-1`` (each once); may be empty (no edit).
    values : array ``(hidden_size,)`` or ``(len(nodes),)``
        The value of each ablated unit, e.g. its mean over the background statements;
        a full vector is indexed by ``nodes``.
    positions : {"all", "last"}

    Yields
    ------
    ndarray
        The sorted unit indices ablated.
    """
    hidden = layer_info(model, blocks_path, final_norm)["hidden_size"]
    raw = np.asarray(nodes).ravel()
    nodes_arr = check_nodes(raw, hidden)
    values = np.asarray(values, dtype=np.float32).ravel()
    if values.shape[0] == hidden:
        fill = values[nodes_arr]
    elif values.shape[0] == len(nodes_arr):
        fill = values[np.argsort(raw, kind="stable")]  # values follow nodes into sorted order
    else:
        raise ValueError(f"values must have shape ({hidden},) or ({len(nodes_arr)},); got {values.shape}")
    fill_t = _vector(fill, len(nodes_arr), "values")
    idx = torch.as_tensor(nodes_arr)

    def fn(h: torch.Tensor) -> torch.Tensor:
        out = h.clone()
        out[..., idx.to(h.device)] = fill_t.to(device=h.device, dtype=h.dtype)
        return out

    if len(nodes_arr) == 0:
        yield nodes_arr
        return
    with edit_layer(model, layer, fn, positions=positions, blocks_path=blocks_path, final_norm=final_norm):
        yield nodes_arr


@contextlib.contextmanager
def add_vector(
    model: nn.Module,
    layer: int,
    vector,
    *,
    alpha: float = 1.0,
    positions: str = "all",
    blocks_path: str | None = None,
    final_norm: str | None = "auto",
) -> Iterator[None]:
    """Add ``alpha * vector`` to the hidden state at ``layer`` (steering).

    Parameters
    ----------
    vector : array ``(hidden_size,)``
    alpha : float
        Scale (any sign); 0 leaves the model untouched (no hook).
    positions : {"all", "last"}
    """
    hidden = layer_info(model, blocks_path, final_norm)["hidden_size"]
    alpha = check_float(alpha, "alpha")
    delta = alpha * _vector(vector, hidden, "vector")

    def fn(h: torch.Tensor) -> torch.Tensor:
        return h + delta.to(device=h.device, dtype=h.dtype)

    if alpha == 0.0:
        yield
        return
    with edit_layer(model, layer, fn, positions=positions, blocks_path=blocks_path, final_norm=final_norm):
        yield
