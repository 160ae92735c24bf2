"""The untrained-model control: the same architecture with re-initialised weights, seeded.

A layer profile that peaks late may say more about depth (residual streams grow and mix
with every block, trained or not) than about what training put there. Running the same
extraction and layer analysis on the same architecture with random weights tells the two
apart: if the random model also "peaks in the final third", the claim is about depth.

- ``untrained_model``: a freshly initialised copy of a loaded model's architecture, built
  from its config under ``torch.manual_seed(seed)`` (the global generator is restored after),
  same class, dtype and device; its ``personas_source`` names it ``untrained_name(...)``.
- ``untrained_name``: the model name the control's activations are stored under, so they
  never mix with the trained model's.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from personas._core.checks import check_int, check_seed

__all__ = ["UNTRAINED_STORE", "UntrainedControl", "untrained_store_dir", "untrained_name", "untrained_model",
           "control_statements"]


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
        Seed of the weight initialisation. The control has the loaded model's dtype and device.
    """

    n_per_direction: int | None = None
    init_seed: int = 0

    def __post_init__(self) -> None:
        if self.n_per_direction is not None:
            check_int(self.n_per_direction, "n_per_direction", min_val=1)
        check_int(self.init_seed, "init_seed", min_val=0)


def control_statements(statements: pd.DataFrame, n_per_direction: int | None) -> pd.DataFrame:
    """The control's statements: the first ``n_per_direction`` per persona and direction (all for None).

    The statements table is already seeded and shuffled, so the first rows are a random sample.
    """
    if n_per_direction is None:
        return statements
    return statements.groupby(["persona", "direction"], sort=False).head(n_per_direction).reset_index(drop=True)



def untrained_name(model_name: str, seed: int = 0) -> str:
    """``"<model_name> (untrained, seed <seed>)"``: the store and table name of the control."""
    return f"{model_name} (untrained, seed {check_seed(seed)})"


def untrained_model(model, *, seed: int = 0, model_name: str | None = None):
    """The architecture of ``model`` with freshly initialised weights.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A loaded model (e.g. from ``load_model``); only its config, class, dtype and device
        are used, its weights are left untouched.
    seed : int
        Seed of the initialisation (``torch.manual_seed`` inside a forked generator, so the
        caller's random state is unchanged).
    model_name : str, optional
        The trained model's name (default: its ``personas_source["name"]`` or config name);
        the copy is named ``untrained_name(model_name, seed)``.

    Returns
    -------
    transformers.PreTrainedModel
        In eval mode, with ``personas_source = {"name", "path": None, "revision": None,
        "fingerprint": None, "untrained_seed", "trained_model"}``: the store fingerprints it
        by its parameters, never by the trained checkpoint's files or revision.
    """
    seed = check_seed(seed)
    config = getattr(model, "config", None)
    if config is None or not hasattr(type(model), "_from_config"):
        raise TypeError(f"untrained_model needs a transformers model with a config, got {type(model).__name__}")
    source = getattr(model, "personas_source", None) or {}
    name = model_name or source.get("name") or getattr(config, "name_or_path", None) or type(model).__name__
    param = next(model.parameters())
    config = copy.deepcopy(config)
    config._name_or_path = ""  # nothing of the trained checkpoint identifies the copy
    config._commit_hash = None
    devices = [param.device] if param.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        fresh = type(model)._from_config(config, dtype=param.dtype)
    fresh.to(param.device)
    fresh.eval()
    fresh.personas_source = {"name": untrained_name(name, seed), "path": None, "revision": None, "fingerprint": None,
                             "untrained_seed": seed, "trained_model": str(name)}
    return fresh
