"""Null (clean-only) runs: the detection power's reference, written beside each run file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from personas._core.io import read_json, write_json
from personas.scans.pools import run_file_name


def null_file_name(persona: str, level: int, layer: int) -> str:
    """File of an experiment's null runs: the run file's stem + ``.null.json``."""
    return run_file_name(persona, level, layer)[: -len(".jsonl")] + ".null.json"


def _experiment_key(header: dict) -> dict:
    """What makes two experiments the same: their configuration and input fingerprints (no times)."""
    return {"config": header.get("config"), "inputs": header.get("inputs")}


def _reused_null_auc(path: Path, header: dict) -> float | None:
    """The detection AUC of an existing null-run file made for this very experiment, else None."""
    import deepscan

    if not path.exists():
        return None
    try:
        old = read_json(path)
    except (OSError, ValueError):
        return None  # unreadable: recompute (the writer replaces it atomically)
    if old.get("experiment") != json.loads(json.dumps(_experiment_key(header), default=str)):
        return None
    return float(deepscan.roc_auc(old["scores_anomalous"], old["scores_clean"]))


def _write_null_runs(path: Path, power, *, persona, level, layer, model, n_nodes, node_layout, run_file,
                     experiment: dict) -> Path:
    """The nodes each clean-only (null) and mixed detection scan chose, with how they were made.

    The null runs scan ``clean_ssize + anom_ssize`` H0 records (background and clean pool) against
    the rest of H0: same sample size and number of runs as the experiment, nothing anomalous. They
    calibrate node selection (``personas.nodes.calibration``).
    """
    from personas._core.provenance import now_iso, package_versions

    cfg = power.config
    return write_json(path, {
        "kind": "deepscan-null-runs",
        "format_version": 1,
        "persona": persona,
        "level": int(level),
        "layer": int(layer),
        "model": model,
        "run_file": run_file,
        "n_runs": int(cfg["n_runs"]),
        "clean_ssize": int(cfg["clean_ssize"]),
        "anom_ssize": int(cfg["anom_ssize"]),
        "background_size": int(cfg["background_size"]),
        "seed": int(cfg["seed"]),
        "seed_stream": 1,
        "n_nodes": int(n_nodes),
        "node_layout": node_layout,
        "scheme": "deepscan.detection_power: per run, H0 shuffled; clean-only sample of clean_ssize + anom_ssize "
                  "H0 records and mixed sample (clean_ssize of them + anom_ssize anomalous) scanned against the "
                  "other H0 records",
        "scores_clean": [float(x) for x in power.scores_clean],
        "scores_anomalous": [float(x) for x in power.scores_anomalous],
        "nodes_clean": [np.asarray(x).tolist() for x in power.nodes_clean],
        "nodes_anomalous": [np.asarray(x).tolist() for x in power.nodes_anomalous],
        "experiment": json.loads(json.dumps(_experiment_key(experiment), default=str)),
        "created": now_iso(),
        "versions": package_versions(("personas", "numpy")),
    })


