"""Extraction planning: which layers and which token position a study reads from a model.

- ``extraction_plan``: the layers asked for, checked, with layer 0 (the embedding control)
  added, and the read position with ``"auto"`` resolved for this model.
- ``extract_with_controls``: the study's extraction: the planned layers into the store, and the
  wording control (layer 0 averaged over the statement's tokens) into its own store beside it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import pandas as pd

from personas._core.checks import check_choice, check_settings
from personas.model.extraction import READ_POSITIONS, ExtractionSettings, extract_to_store
from personas.model.hooks import layer_info, resolve_layers
from personas.model.loading import default_position
from personas.model.untrained import (UntrainedControl, control_statements, untrained_model, untrained_name,
                                      untrained_store_dir)
from personas.store.paths import wording_store_dir

__all__ = ["ExtractionPlan", "extraction_plan", "extract_with_controls", "extract_untrained_control"]


@dataclass(frozen=True)
class ExtractionPlan:
    """What to read from one model.

    Attributes
    ----------
    layers : tuple of int
        Layer indices (0 = embeddings, i = output of block i), sorted, layer 0 included.
    position : str
        The token position read (one of ``READ_POSITIONS``).
    n_blocks : int
        Transformer blocks of the model.
    """

    layers: tuple[int, ...]
    position: str
    n_blocks: int


def extraction_plan(model, layers="default", position: str = "auto") -> ExtractionPlan:
    """The layers (layer 0 added as the control) and the read position (``"auto"`` resolved) for ``model``.

        plan = extraction_plan(model, "default", "auto")
        plan.layers, plan.position, plan.n_blocks    # (0, 1, 4, ..., n_blocks - 1), "last", n_blocks

    Parameters
    ----------
    model : nn.Module
    layers : "default", "all" or iterable of int
        As :func:`personas.model.hooks.resolve_layers`.
    position : "auto" or one of ``READ_POSITIONS``
        ``"auto"``: :func:`personas.model.loading.default_position` (``"last"`` for decoders, as
        the paper, ``"mean"`` for encoders).
    """
    check_choice(position, "position", ("auto", *READ_POSITIONS))
    n_blocks = layer_info(model)["n_blocks"]
    chosen = tuple(resolve_layers(layers, n_blocks, add_control=True))
    return ExtractionPlan(chosen, default_position(model) if position == "auto" else position, n_blocks)


def extract_with_controls(
    model,
    tokenizer,
    statements: pd.DataFrame,
    *,
    model_name: str,
    layers,
    store_dir: str | os.PathLike,
    settings: ExtractionSettings,
    wording_control: bool = True,
    sources=None,
    progress: bool = True,
) -> pd.DataFrame:
    """The study's extraction: ``layers`` into ``store_dir``, and the wording control beside it.

        plan = extraction_plan(model, "default")
        stored = extract_with_controls(model, tokenizer, statements, model_name=model_name, layers=plan.layers,
                                       store_dir="output/activations", settings=ExtractionSettings(plan.position))

    Returns :func:`extract_to_store`'s table for the planned layers. With ``wording_control``,
    layer 0 is also read at position ``"mean"`` (the pass stops after the embeddings) into
    ``wording_store_dir(store_dir)``, which ``load_wording_controls`` reads. ``sources``
    (the user's input files and their sha256, ``study_inputs(...).files``) go into both manifests.
    """
    stored = extract_to_store(model, tokenizer, statements, model_name=model_name, layers=list(layers),
                              store_dir=store_dir, settings=settings, sources=sources, progress=progress)
    if wording_control:
        extract_to_store(model, tokenizer, statements, model_name=model_name, layers=[0],
                         store_dir=wording_store_dir(store_dir), settings=dataclasses.replace(settings, position="mean"),
                         sources=sources, progress=progress)
    return stored


def extract_untrained_control(
    model,
    tokenizer,
    statements: pd.DataFrame,
    *,
    model_name: str,
    layers,
    store_dir: str | os.PathLike,
    settings: ExtractionSettings,
    control: UntrainedControl | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The untrained-model control's extraction, from the model already loaded (built as the wording control is).

        stored = extract_untrained_control(model, tokenizer, statements, model_name=model_name,
                                           layers=plan.layers, store_dir=store_dir, settings=settings,
                                           control=UntrainedControl(n_per_direction=100))

    ``model``'s architecture is re-initialised with ``control.init_seed`` (``untrained_model``: a
    copy, ``model`` itself is left alone, so for a while both are in memory), and the first
    ``control.n_per_direction`` statements per persona and direction are extracted with the trained
    model's ``settings`` into ``untrained_store_dir(store_dir, control.n_per_direction)`` under
    ``untrained_name(model_name, control.init_seed)``. ``layers.untrained_layer_control`` analyses it.

    Returns
    -------
    DataFrame
        :func:`extract_to_store`'s table; ``attrs["seconds"]`` the seconds it took.
    """
    control = check_settings(control, UntrainedControl, "control")
    t0 = time.perf_counter()
    fresh = untrained_model(model, seed=control.init_seed, model_name=model_name)
    stored = extract_to_store(fresh, tokenizer, control_statements(statements, control.n_per_direction),
                              model_name=untrained_name(model_name, control.init_seed), layers=list(layers),
                              store_dir=untrained_store_dir(store_dir, control.n_per_direction), settings=settings,
                              progress=progress)
    del fresh
    stored.attrs["seconds"] = round(time.perf_counter() - t0, 1)
    return stored
