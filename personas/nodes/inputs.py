"""The node analysis's inputs: a runs directory's run files and null runs, topics, statements.

- ``read_level``: one level of a runs directory (``index.json``, written by the scans): its run
  files and, when they were made, its null runs.
- ``statement_table``: the stored statements of some personas (``id``, ``statement``), to attach
  text to flagged statements.
- ``level0_sets``: the salient sets of the paper's level 0 (one per topic), when it was run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from personas._core.io import read_json
from personas.nodes.frequencies import SalientSets, salient_sets
from personas.nodes.runs import load_runs
from personas.scans.null_runs import load_null_runs
from personas.store.read import store_manifest

__all__ = ["LevelRuns", "read_level", "statement_table", "level0_sets"]


@dataclass(frozen=True, eq=False)
class LevelRuns:
    """The experiments of one level of a runs directory.

    Attributes
    ----------
    index : dict
        ``index.json`` of the runs directory (layer, model, levels, null runs, store fingerprint).
    level : int
    run_files : dict
        ``{persona or topic: RunFile}``, in the order of the index.
    nulls : dict or None
        ``{persona or topic: NullRuns}``, or None when the scans made no null runs.
    """

    index: dict
    level: int
    run_files: dict[str, Any]
    nulls: dict[str, Any] | None


def read_level(runs_dir: str | os.PathLike, level: int, personas: Sequence[str] | None = None) -> LevelRuns:
    """The run files (and null runs) of one level of ``runs_dir``, as ``run_persona_scans`` indexed them.

        runs = read_level(out / "runs", 2)
        sets = salient_sets(runs.run_files, method="calibrated", nulls=runs.nulls)

    Parameters
    ----------
    runs_dir : path
        Holds ``index.json`` and the files it names.
    level : {2, 1, 0}
    personas : list of str, optional
        A subset, in this order (default: every persona of the level, in the index's order).
    """
    runs_dir = Path(runs_dir)
    index = read_json(runs_dir / "index.json")
    files = index["levels"].get(str(level), {})
    personas = list(personas) if personas else list(files)
    unknown = [p for p in personas if p not in files]
    if not personas or unknown:
        raise ValueError(f"level {level} of {runs_dir} has run files for {list(files)}; asked for "
                         f"{unknown or personas}: run the scans at this level first (run_deepscan.ipynb: levels)")
    null_files = index.get("null", {}).get(str(level), {})
    nulls = load_null_runs({p: runs_dir / null_files[p] for p in personas}) if null_files else None
    return LevelRuns(index, level, load_runs({p: runs_dir / files[p] for p in personas}), nulls)


def statement_table(store_dir: str | os.PathLike, model_name: str, personas: Sequence[str]) -> pd.DataFrame:
    """The stored statements of ``personas`` (columns ``id``, ``statement``), from the store's manifests."""
    return pd.concat(
        [pd.DataFrame({k: store_manifest(store_dir, model_name, p)[k] for k in ("ids", "statements")})
         for p in personas], ignore_index=True).rename(columns={"ids": "id", "statements": "statement"})


def level0_sets(runs_dir: str | os.PathLike, method: str, *, min_fraction: float | None = None,
                q: float = 0.05) -> SalientSets | None:
    """The salient sets per topic of level 0, or None when level 0 was not run on two topics or more.

    ``method`` as :func:`salient_sets`; "calibrated" falls back to "union" when level 0 has no
    null runs.
    """
    index = read_json(Path(runs_dir) / "index.json")
    if len(index["levels"].get("0", {})) < 2:
        return None
    runs = read_level(runs_dir, 0)
    if runs.nulls is None and method == "calibrated":
        method = "union"
    return salient_sets(runs.run_files, min_fraction, method=method, nulls=runs.nulls, q=q)
