"""Null (clean-only) runs: the detection power's reference, written beside each run file, and read back.

The null-run file format in one module, as the run-file format keeps its writer and reader
together:

- ``null_file_name``: ``<run file stem>.null.json``.
- ``write_null_runs``: the nodes each clean-only (null) and mixed detection scan chose.
- ``reused_null_auc``: the detection AUC of an existing file made for the very same experiment.
- ``NullRuns`` / ``read_null_runs`` / ``load_null_runs`` / ``null_runs_of``: the files read back (``kind:
  deepscan-null-runs``), for the null-calibrated node sets of ``personas.nodes.calibration``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from personas._core.io import read_json, write_json
from personas._core.provenance import now_iso, package_versions
from personas.scans.pools import run_file_name

__all__ = ["null_file_name", "write_null_runs", "reused_null_auc", "null_matches_run_file", "NullRuns", "read_null_runs",
           "load_null_runs", "null_runs_of"]

NULL_RUNS_KIND = "deepscan-null-runs"
NULL_RUNS_FORMAT_VERSION = 1


def null_file_name(persona: str, level: int, layer: int) -> str:
    """File of an experiment's null runs: the run file's stem + ``.null.json``."""
    return run_file_name(persona, level, layer)[: -len(".jsonl")] + ".null.json"


def _experiment_key(header: dict) -> dict:
    """What makes two experiments the same: their configuration and input fingerprints (no times)."""
    return json.loads(json.dumps({"config": header.get("config"), "inputs": header.get("inputs")}, default=str))


def reused_null_auc(path: Path, header: dict) -> float | None:
    """The detection AUC of an existing null-run file made for this very experiment, else None."""
    import deepscan

    if not path.exists():
        return None
    try:
        old = read_json(path)
    except (OSError, ValueError):
        return None  # unreadable: recompute (the writer replaces it atomically)
    if old.get("experiment") != _experiment_key(header):
        return None
    return float(deepscan.roc_auc(old["scores_anomalous"], old["scores_clean"]))


def null_matches_run_file(null_header: dict, run_header: dict, run_file: str) -> list[str]:
    """How a null-run file's header disagrees with the run file it should belong to (empty: it belongs).

    Compared: the run file's name, the experiment (configuration and input fingerprints), and the
    persona, layer, seed and sample sizes the null runs record.
    """
    out = []
    if null_header.get("run_file") != run_file:
        out.append(f"it names run file {null_header.get('run_file')!r}")
    if null_header.get("experiment") != _experiment_key(run_header):
        out.append("it was made for another experiment (configuration or input data differ)")
    config = run_header.get("config", {})
    for key, run_key in (("persona", "persona"), ("seed", "seed"), ("n_runs", "n_runs"), ("clean_ssize", "clean_ssize"),
                         ("anom_ssize", "anom_ssize")):
        if key in null_header and run_key in config and null_header[key] != config[run_key]:
            out.append(f"its {key} is {null_header[key]!r}, the run file's {config[run_key]!r}")
    if "layer" in null_header and config.get("layers") not in (None, [null_header["layer"]]):
        out.append(f"its layer is {null_header['layer']!r}, the run file's {config['layers']!r}")
    return out


def write_null_runs(path: Path, power, experiment: dict, *, persona: str, level: int, layer: int, model_name: str,
                    node_layout: list, run_file: str) -> Path:
    """The nodes each clean-only (null) and mixed detection scan chose, with how they were made.

    The null runs scan ``clean_ssize + anom_ssize`` H0 records (background and clean pool) against
    the rest of H0: same sample size and number of runs as the experiment, nothing anomalous. They
    calibrate node selection (``personas.nodes.calibration``). ``power`` is what
    ``deepscan.detection_power`` returns, ``experiment`` the run file's header.
    """
    cfg = power.config
    return write_json(path, {
        "kind": NULL_RUNS_KIND,
        "format_version": NULL_RUNS_FORMAT_VERSION,
        "persona": persona,
        "level": int(level),
        "layer": int(layer),
        "model": model_name,
        "run_file": run_file,
        "n_runs": int(cfg["n_runs"]),
        "clean_ssize": int(cfg["clean_ssize"]),
        "anom_ssize": int(cfg["anom_ssize"]),
        "background_size": int(cfg["background_size"]),
        "seed": int(cfg["seed"]),
        "seed_stream": 1,
        "n_nodes": sum(int(part["n_units"]) for part in node_layout),
        "node_layout": node_layout,
        "scheme": "deepscan.detection_power: per run, H0 shuffled; clean-only sample of clean_ssize + anom_ssize "
                  "H0 records and mixed sample (clean_ssize of them + anom_ssize anomalous) scanned against the "
                  "other H0 records",
        "scores_clean": [float(x) for x in power.scores_clean],
        "scores_anomalous": [float(x) for x in power.scores_anomalous],
        "nodes_clean": [np.asarray(x).tolist() for x in power.nodes_clean],
        "nodes_anomalous": [np.asarray(x).tolist() for x in power.nodes_anomalous],
        "experiment": _experiment_key(experiment),
        "created": now_iso(),
        "versions": package_versions(("personas", "numpy")),
    })


@dataclass(frozen=True, eq=False)
class NullRuns:
    """The null runs of one experiment (``kind: deepscan-null-runs``).

    Attributes
    ----------
    header : dict
        Everything but the node lists: persona, level, layer, model, n_runs, clean_ssize,
        anom_ssize, background_size, seed, n_nodes, node_layout, scheme, created, versions.
    nodes_clean : list of list of int, one per run
        Nodes chosen in each clean-only scan: the null.
    nodes_anomalous : list of list of int, one per run
        Nodes chosen in the paired mixed scan (same background).
    path : Path or None
    """

    header: dict
    nodes_clean: list
    nodes_anomalous: list
    path: Path | None = None

    @property
    def n_runs(self) -> int:
        return len(self.nodes_clean)

    @property
    def n_nodes(self) -> int | None:
        n = self.header.get("n_nodes")
        return None if n is None else int(n)


def read_null_runs(path: str | os.PathLike) -> NullRuns:
    """Read a null run file written by ``run_persona_scans`` (``<run file stem>.null.json``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"null run file {path} does not exist; run run_persona_scans with detection=True")
    data = read_json(path)
    if not isinstance(data, dict) or data.get("kind") != NULL_RUNS_KIND:
        raise ValueError(f"{path} is not a null run file (kind {data.get('kind') if isinstance(data, dict) else None!r})")
    clean, mixed = data.get("nodes_clean"), data.get("nodes_anomalous")
    if not isinstance(clean, list) or not clean:
        raise ValueError(f"{path} holds no null runs (nodes_clean is empty or missing)")
    header = {k: v for k, v in data.items() if k not in ("nodes_clean", "nodes_anomalous")}
    return NullRuns(header=header, nodes_clean=clean, nodes_anomalous=mixed or [], path=path)


def load_null_runs(paths: Mapping[str, str | os.PathLike]) -> dict[str, NullRuns]:
    """``{persona: NullRuns}`` from ``{persona: path}`` (e.g. ``index["null"][level]`` of a runs directory)."""
    if not isinstance(paths, Mapping) or not paths:
        raise ValueError("paths must be a non-empty dict {persona: null run file}")
    return {str(p): read_null_runs(path) for p, path in paths.items()}


def null_runs_of(nulls: Mapping[str, NullRuns] | None, persona: str) -> NullRuns:
    """The null runs of ``persona`` in ``{persona: NullRuns}``; a clear error when they were not made."""
    if nulls is None:
        raise ValueError(
            "method 'calibrated' needs the null runs of each persona (nulls={persona: NullRuns}, from "
            "load_null_runs(index['null'][level])); rerun run_persona_scans with detection=True to write them"
        )
    if persona not in nulls:
        raise ValueError(f"no null runs for persona {persona!r} (have: {sorted(nulls)}); rerun its scans with detection=True")
    return nulls[persona]
