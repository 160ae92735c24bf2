"""Feature controls that can fail: the statement's words (a bag of input embeddings) and its length.

At position ``last`` the embedding layer (index 0) holds the embedding of the prompt's final
token: in a decoder with a chat template that is the same token for every statement, so the
layer-0 control is constant by construction and says nothing about wording. The wording control
is layer 0 averaged over the statement's own tokens (``position="mean"``), whatever position the
analysed layers were taken at; the length control is the statement's token count alone.

Both are extracted into a store of their own, ``<store_dir>/wording-control`` (layer 0 only: the
forward pass stops after the embeddings, so it costs next to nothing):

    ul.extract_with_controls(model, tokenizer, statements, model_name=model_name, layers=plan.layers,
                             store_dir=store_dir, settings=settings)     # wording_control=True
    wording, lengths = ul.load_wording_controls(store_dir, model_name, personas, meta)
    table = ul.analyse_layers(activations, meta, ..., controls=ul.LayerControls(wording=wording, lengths=lengths))

- ``WORDING_STORE``, ``wording_store_dir``: where the controls live (``personas.store.paths``).
- ``load_wording_controls``: the two controls, row-aligned with the activations' ``meta``.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import pandas as pd

from personas.store.paths import WORDING_STORE, wording_store_dir

__all__ = ["WORDING_STORE", "wording_store_dir", "load_wording_controls"]


def load_wording_controls(
    store_dir: str | os.PathLike,
    model: str,
    personas: Sequence[str],
    meta: pd.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The wording and length controls of ``personas``, stacked as ``load_layers`` stacks activations.

    Parameters
    ----------
    store_dir : path
        The main store; the controls are read from ``wording_store_dir(store_dir)``.
    model : str
    personas : list of str
        In the order of the activations.
    meta : DataFrame, optional
        The activations' table (``load_layers``); when given, the controls' statement ids must match
        it row for row.

    Returns
    -------
    wording : ndarray (n_statements, hidden_size)
        Layer 0 averaged over each statement's own tokens.
    lengths : ndarray of int64 (n_statements,)
        Tokens per prompt (``n_tokens`` of the manifests). A fixed template adds the same number
        of tokens to every statement, which changes none of the metrics (all are invariant to
        shifting a feature), so this is the statement's token count as far as they can tell.

    Raises
    ------
    FileNotFoundError
        The control store is missing (the message says how to make it).
    ValueError
        It was not made at position "mean", lacks layer 0 or token counts, or does not match ``meta``.
    """
    from personas.store.read import load_layers, store_manifest

    where = wording_store_dir(store_dir)
    personas = [personas] if isinstance(personas, str) else list(personas)
    try:
        manifests = [store_manifest(where, model, p) for p in personas]
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"no wording control in {where}: extract it with extract_to_store(..., layers=[0], "
            f"store_dir=wording_store_dir(store_dir), settings=ExtractionSettings(position='mean')) ({exc})"
        ) from None
    for p, m in zip(personas, manifests):
        if m.get("position") != "mean":
            raise ValueError(f"{where} holds position {m.get('position')!r} for {p!r}; the wording control needs 'mean'")
        if len(m.get("n_tokens") or []) != len(m["ids"]):
            raise ValueError(f"{where}: the manifest of {p!r} lacks per-statement n_tokens; re-extract it")
    acts, control_meta = load_layers(where, model, personas, [0])
    if meta is not None:
        ours, theirs = control_meta["id"].astype(str).tolist(), meta["id"].astype(str).tolist()
        if ours != theirs:
            n_diff = sum(a != b for a, b in zip(ours, theirs)) + abs(len(ours) - len(theirs))
            raise ValueError(
                f"the wording control's statements differ from the activations' ({n_diff} of {len(theirs)} ids); "
                "extract both from the same statements"
            )
    lengths = np.concatenate([np.asarray(m["n_tokens"], dtype=np.int64) for m in manifests])
    return acts[0], lengths
