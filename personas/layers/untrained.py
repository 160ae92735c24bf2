"""The untrained-model control of the layer claim: its analysis.

``personas.model.plan.extract_untrained_control`` builds the same architecture with seeded random
weights from the model already loaded (``personas.model.untrained``) and runs the same extraction
into the store under its own model name, as the wording control is built; ``untrained_layer_control``
reads it back and runs the same cluster protocol (with its shuffled-label control) on the same
statements. Its table sits beside the
trained model's (``combine_results``) in the relative-depth plot and in the report's
"final third" verdict.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Sequence

import pandas as pd

from personas._core.checks import check_settings
from personas.layers.analyses import cluster_separation
from personas.layers.settings import LayerProtocol
from personas.model.hooks import resolve_layers
from personas.model.untrained import UntrainedControl, control_statements, untrained_name, untrained_store_dir
from personas.store.read import load_layers, store_manifest

__all__ = ["untrained_layer_control"]

def untrained_layer_control(
    model_name: str,
    statements: pd.DataFrame,
    *,
    layers: Sequence[int] | str,
    store_dir: str | os.PathLike,
    protocol: LayerProtocol | None = None,
    control: UntrainedControl | None = None,
    extracted: pd.DataFrame | None = None,
    seed: int = 0,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> pd.DataFrame:
    """Cluster metrics per layer of ``model_name``'s architecture with re-initialised weights.

        stored = extract_untrained_control(model, tokenizer, statements, model_name=model_name, layers=plan.layers,
                                           store_dir=store_dir, settings=settings, control=control)
        untrained = untrained_layer_control(model_name, statements, layers=plan.layers, store_dir=store_dir,
                                            control=control, extracted=stored)

    Parameters
    ----------
    model_name : str
        The trained model's name, as given to ``load_model`` and to the extraction.
    statements : DataFrame
        The trained model's statements (``load_statements`` output), the same rows.
    layers : "default", "all" or list of int
        Layers analysed (as extracted by :func:`personas.model.plan.extract_untrained_control`).
    store_dir : path
        The trained model's activation store; the control is read from
        ``untrained_store_dir(store_dir, control.n_per_direction)`` as ``untrained_name(model_name, control.init_seed)``.
    protocol : LayerProtocol, optional
        The trained model's cluster protocol.
    control : UntrainedControl, optional
        As given to the extraction (default: all statements, seed 0).
    extracted : DataFrame, optional
        The extraction's table: its status counts and seconds go into the metadata.
    seed : int
        Seed of the cluster protocol (the same as the trained model's analysis, so both see
        the same repetitions and shuffles).
    n_jobs, progress :
        Worker processes of the cluster protocol; progress bars.

    Returns
    -------
    DataFrame
        ``RESULT_COLUMNS`` rows, analysis "cluster" (controls: layer 0 and shuffled labels), with
        ``model`` = ``untrained_name(model_name, init_seed)``; ``attrs["metadata"]`` records
        the seeds and the seconds of extraction and analysis.
    """
    control = check_settings(control, UntrainedControl, "control")
    name = untrained_name(model_name, control.init_seed)
    statements, protocol = _subset(statements, check_settings(protocol, LayerProtocol, "protocol"),
                                   control.n_per_direction)
    t1 = time.perf_counter()
    personas = list(dict.fromkeys(statements["persona"]))
    folder = untrained_store_dir(store_dir, control.n_per_direction)
    manifest = store_manifest(folder, name, personas[0])
    n_blocks = int(manifest["n_blocks"])
    activations, meta = load_layers(folder, name, personas, resolve_layers(layers, n_blocks))
    table = cluster_separation(activations, meta, model_name=name, n_blocks=n_blocks, protocol=protocol, seed=seed,
                               n_jobs=n_jobs, progress=progress)
    seconds = {"cluster analysis": round(time.perf_counter() - t1, 1)}
    if extracted is not None and "seconds" in extracted.attrs:
        seconds = {"extraction": extracted.attrs["seconds"], **seconds}
    table.attrs["metadata"] = {
        "kind": "untrained-control", "model": name, "trained_model": str(model_name),
        "init_seed": int(control.init_seed), "seed": int(seed), "n_statements": int(len(statements)),
        "n_reps": int(protocol.n_reps), "seconds": seconds,
        **({"extraction": extracted["status"].value_counts().to_dict()} if extracted is not None else {}),
    }
    return table


def _subset(statements: pd.DataFrame, protocol: LayerProtocol, n_per_direction: int | None):
    """The first ``n_per_direction`` statements per persona and direction, and the protocol for them."""
    if n_per_direction is not None:
        need = protocol.n_per_cluster or 1
        if n_per_direction < need:
            raise ValueError(f"n_per_direction must be an int >= the protocol's n_per_cluster "
                             f"({need}) or None, got {n_per_direction!r}; raise it (the notebook's "
                             "untrained_per_direction) or pass None to keep every statement")
        statements = control_statements(statements, n_per_direction)
        if protocol.n_per_cluster is not None and n_per_direction == protocol.n_per_cluster and protocol.n_reps > 1:
            # every repetition would draw the same statements: one is enough
            protocol = dataclasses.replace(protocol, n_reps=1)
    return statements, protocol
