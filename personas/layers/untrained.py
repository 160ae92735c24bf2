"""The untrained-model control of the layer claim, end to end: re-initialise, extract, analyse.

``untrained_layer_control`` loads the model (for its config and tokenizer), builds the same
architecture with seeded random weights (``personas.model.untrained``), runs the same
extraction into the same store under its own model name, and the same cluster protocol
(with its shuffled-label control) on the same statements. Its table sits beside the
trained model's (``combine_results``) in the relative-depth plot and in the report's
"final third" verdict.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from personas._core.checks import check_settings
from personas.layers.analyses import cluster_separation
from personas.layers.settings import LayerProtocol

__all__ = ["UNTRAINED_STORE", "UntrainedControl", "untrained_store_dir", "untrained_layer_control"]

UNTRAINED_STORE = "untrained-control"


def untrained_store_dir(store_dir: str | os.PathLike, n_per_direction: int | None = None) -> Path:
    """``<store_dir>/untrained-control/<n>-per-direction`` (``all`` for None): the control's store."""
    return Path(store_dir) / UNTRAINED_STORE / ("all" if n_per_direction is None else f"{n_per_direction}-per-direction")


@dataclass(frozen=True)
class UntrainedControl:
    """How the untrained-model control is built: its statements, its weights' seed, where it runs.

    Attributes
    ----------
    n_per_direction : int, optional
        Keep only the first ``n_per_direction`` statements of each persona and direction (the
        sample is already seeded and shuffled): less to extract; None keeps them all. At least
        the protocol's ``n_per_cluster``; equal to it, every repetition would draw the same
        statements, so the protocol runs one repetition.
    init_seed : int
        Seed of the weight initialisation.
    dtype, device : str
        As for ``load_model``.
    """

    n_per_direction: int | None = None
    init_seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"

    def __post_init__(self) -> None:
        from personas._core.checks import check_int

        if self.n_per_direction is not None:
            check_int(self.n_per_direction, "n_per_direction", min_val=1)
        check_int(self.init_seed, "init_seed", min_val=0)
        for field in ("dtype", "device"):
            if not isinstance(getattr(self, field), str):
                raise TypeError(f"{field} must be a string (as for load_model), got {getattr(self, field)!r}")


def untrained_layer_control(
    model_name: str,
    statements: pd.DataFrame,
    *,
    layers: Sequence[int] | str,
    store_dir: str | os.PathLike,
    extraction=None,
    protocol: LayerProtocol | None = None,
    control: UntrainedControl | None = None,
    seed: int = 0,
    n_jobs: int | None = -1,
    progress: bool = True,
) -> pd.DataFrame:
    """Cluster metrics per layer of ``model_name``'s architecture with re-initialised weights.

        control = UntrainedControl(n_per_direction=100)
        untrained = untrained_layer_control(model_name, statements, layers=plan.layers, store_dir=store_dir,
                                            control=control)

    Parameters
    ----------
    model_name : str
        The trained model (alias, hub name, local path or ``.gguf``), as given to ``load_model``.
    statements : DataFrame
        The trained model's statements (``load_statements`` output), the same rows.
    layers : "default", "all" or list of int
    store_dir : path
        The trained model's activation store; the control goes to
        ``untrained_store_dir(store_dir, control.n_per_direction)`` as
        ``untrained_name(model_name, control.init_seed)``, so other subsets never meet in one folder.
    extraction, protocol : ExtractionSettings, LayerProtocol, optional
        The trained model's extraction settings and cluster protocol.
    control : UntrainedControl, optional
        Statements per direction, the weights' seed, dtype and device (default: all statements, seed 0).
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
    from personas.model.extraction import extract_to_store
    from personas.model.hooks import layer_info, resolve_layers
    from personas.model.loading import load_model
    from personas.model.untrained import untrained_model, untrained_name
    from personas.store.read import load_layers

    control = check_settings(control, UntrainedControl, "control")
    n_per_direction, init_seed = control.n_per_direction, control.init_seed
    name = untrained_name(model_name, init_seed)
    statements, protocol = _subset(statements, protocol if protocol is not None else LayerProtocol(), n_per_direction)
    t0 = time.perf_counter()
    trained, tokenizer = load_model(model_name, dtype=control.dtype, device=control.device)
    model = untrained_model(trained, seed=init_seed, model_name=model_name)
    del trained
    store_dir = untrained_store_dir(store_dir, n_per_direction)
    stored = extract_to_store(model, tokenizer, statements, model_name=name, layers=layers, store_dir=store_dir,
                              settings=extraction, progress=progress)
    n_blocks = layer_info(model)["n_blocks"]
    wanted = resolve_layers(layers, n_blocks)
    del model
    t1 = time.perf_counter()
    personas = list(dict.fromkeys(statements["persona"]))
    activations, meta = load_layers(store_dir, name, personas, wanted)
    table = cluster_separation(activations, meta, model_name=name, n_blocks=n_blocks, protocol=protocol, seed=seed,
                               n_jobs=n_jobs, progress=progress)
    table.attrs["metadata"] = {
        "kind": "untrained-control", "model": name, "trained_model": str(model_name), "init_seed": int(init_seed),
        "seed": int(seed), "n_statements": int(len(statements)), "n_reps": int(protocol.n_reps),
        "extraction": stored["status"].value_counts().to_dict(),
        "seconds": {"extraction": round(t1 - t0, 1), "cluster analysis": round(time.perf_counter() - t1, 1)},
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
        statements = statements.groupby(["persona", "direction"], sort=False).head(n_per_direction)
        statements = statements.reset_index(drop=True)
        if protocol.n_per_cluster is not None and n_per_direction == protocol.n_per_cluster and protocol.n_reps > 1:
            # every repetition would draw the same statements: one is enough
            protocol = dataclasses.replace(protocol, n_reps=1)
    return statements, protocol
