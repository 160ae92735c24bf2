"""The persona scans driver: DeepScan experiments per persona and level, run files, null runs, index.

``run_persona_scans`` reads like the paper's Table 2: plan the experiments (level, persona or
topic), choose each one's pools, scan them into a run file, compute the detection power from
the null runs, run the baselines on the same samples, and write the index.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

import deepscan
from deepscan.runfile import ConfigChanged, InputsChanged
from personas._core.checks import check_settings
from personas._core.io import write_json
from personas._core.parallel import jobs_for
from personas.scans.baselines import baseline_runs
from personas.scans.null_runs import null_file_name, reused_null_auc, write_null_runs
from personas.scans.pools import ScanPools, experiment_seed, level_targets, run_file_name, scan_pools, topic_pools
from personas.scans.settings import PoolSizes, ScanPlan, ScanSettings
from personas.scans.summary import summarise_runs

__all__ = ["run_persona_scans", "check_runs_current"]


@dataclass(frozen=True)
class _Target:
    """One experiment of the plan: a persona at level 2 or 1, or a topic (``"<topic>+"``) at level 0."""

    level: int
    name: str
    topic: str | None


@dataclass(frozen=True, eq=False)
class _Pools:
    """One experiment's pools, drawn once: their rows, their activations and the experiment's seed."""

    chosen: ScanPools
    background: np.ndarray
    clean: np.ndarray
    anomalous: np.ndarray
    seed: int

    @property
    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.background, self.clean, self.anomalous


@dataclass(frozen=True, eq=False)
class _Study:
    """What every experiment of one ``run_persona_scans`` call shares."""

    activations: np.ndarray
    meta: pd.DataFrame
    plan: ScanPlan
    settings: ScanSettings
    model_name: str
    runs_dir: Path
    seed: int
    n_jobs: int
    progress: bool
    store_fingerprint: str | Mapping[str, str] | None
    node_layout: list

    @property
    def layer(self) -> int:
        return self.plan.layer


def run_persona_scans(
    activations: np.ndarray,
    meta: pd.DataFrame,
    plan: ScanPlan,
    *,
    model_name: str,
    runs_dir: str | Path,
    settings: ScanSettings | None = None,
    seed: int = 0,
    n_jobs: int = 1,
    progress: bool = True,
    store_fingerprint: str | Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """The paper's DeepScan experiments for every persona and level, with run files.

        plan = ScanPlan(personas, layer=29, topics=load_topics())
        summary = run_persona_scans(X, meta, plan, model_name=model_name, runs_dir=out / "runs")
        summary[["persona", "level", "method", "precision_mean", "recall_mean", "detection_auc"]]

    Per (persona, level), and at level 0 per *topic* (``"<topic>+"``): the pools
    (:func:`scan_pools`, :func:`topic_pools`), ``deepscan.run_experiment`` into
    ``runs_dir/<run_file_name>`` (resumed when the file exists with the same configuration), the
    detection power from the null runs (reused when made for the same experiment) and the
    baselines on the very samples of the runs; then ``runs_dir/index.json``
    (``{"levels": {level: {persona: file}}, "null": {...}}``) for the node analysis.

    Parameters
    ----------
    activations : ndarray, (n_statements, hidden_size)
        One layer's activations (``plan.layer``), rows aligned with ``meta``.
    meta : DataFrame
        Columns ``id``, ``persona``, ``direction`` (as ``load_layers`` returns).
    plan : ScanPlan
        The personas, the layer, the levels (default: all three), the topics and where they
        came from (``sources``, recorded in new run files' headers as ``provenance``).
    model_name : str
    runs_dir : path
    settings : ScanSettings, optional
        Pool and sample sizes, DeepScan settings, detection power, baselines (default: the paper's).
    seed : int
        Study seed; each experiment's seed is :func:`experiment_seed`.
    n_jobs : int
        Parallel runs (joblib); results do not depend on it. Experiments of fewer than
        ``personas._core.parallel.SMALL_WORK`` numbers (runs x sample records x nodes) run serially.
    progress : bool
    store_fingerprint : str or dict, optional
        ``store_fingerprint`` of the activations scanned, or better ``store_fingerprints`` (one
        per persona): recorded in every run file's ``inputs`` (with the dict, only the
        fingerprints of the personas in the experiment's pools, so adding a persona leaves the
        other personas' level-2 run files as they are), in ``index.json`` and in the table. A
        run file whose inputs changed (its pools now hold other statements, or other
        activations) is recomputed and reported so.

    The experiments' status (``computed``, ``reused``, ``resumed``, ``recomputed``) goes to
    ``index.json["status"]`` and one printed line.

    Returns
    -------
    DataFrame
        One row per (persona, level, method): persona, level, method ("deepscan" or a baseline),
        the columns of :func:`personas.scans.summary.summarise_runs`, detection_auc (deepscan
        rows), run_file, store_fingerprint.
    """
    study = _study(activations, meta, plan, check_settings(settings, ScanSettings, "settings"), model_name=model_name,
                   runs_dir=runs_dir, seed=seed, n_jobs=n_jobs, progress=progress, store_fingerprint=store_fingerprint)
    index: dict[str, dict[str, dict[str, str]]] = {"levels": {}, "null": {}, "status": {}}
    timings: dict[str, dict[str, float]] = {}
    rows = []
    for target in _targets(plan):
        rows += _experiment(study, target, index, timings)
    _write_index(study, index, timings)
    _print_status(index["status"])
    table = pd.DataFrame(rows)
    table["store_fingerprint"] = [_experiment_fingerprint(study, None) for _ in rows] if rows else []
    return table


def _experiment(study: _Study, target: _Target, index: dict, timings: dict) -> list[dict]:
    """One experiment: pools, scan into its run file, detection power, baselines; its rows of the table."""
    chosen = _target_pools(study.meta, target, study.plan.topics, study.settings.pool_sizes, study.seed)
    X = study.activations
    pools = _Pools(chosen, X[chosen.background], X[chosen.clean], X[chosen.anomalous],
                   experiment_seed(study.seed, target.name, target.level))
    seconds: dict[str, float] = {}
    with _timed(seconds, "deepscan"):
        result, path, status = _scan(study, target, pools)
    index["status"][f"level{target.level}/{target.name}"] = status
    index["levels"].setdefault(str(target.level), {})[target.name] = path.name
    auc = None
    if study.settings.detection:
        with _timed(seconds, "detection"):
            auc, null_path = _detection_auc(study, target, pools, result)
        index["null"].setdefault(str(target.level), {})[target.name] = null_path.name
    rows = [_summary_row(target, "deepscan", result.runs, auc=auc, run_file=path.name)]
    if _runs_baselines(study.settings, target.level):
        with _timed(seconds, "baselines"):
            rows += _baseline_rows(study, target, pools, result.runs, run_file=path.name)
    # wall times stay out of the table (same inputs, same table), in the index instead
    timings[f"level{target.level}/{target.name}"] = {k: round(v, 3) for k, v in seconds.items()}
    return rows


def _print_status(status: dict[str, str]) -> None:
    """One line: how many run files were reused, computed, resumed, recomputed (those named)."""
    counts: dict[str, list[str]] = {}
    for name, state in status.items():
        counts.setdefault(state, []).append(name)
    parts = [f"{len(names)} {state}" + (f" ({', '.join(names)}: their pools changed)" if state == "recomputed" else "")
             for state, names in counts.items()]
    if parts:
        print("run files: " + "; ".join(parts), flush=True)


def _experiment_fingerprint(study: _Study, chosen: ScanPools | None) -> str | None:
    """The store fingerprint an experiment records: the given one, or that of the personas in its pools."""
    given = study.store_fingerprint
    if given is None or isinstance(given, str):
        return given
    if chosen is None:  # the table: one fingerprint over every persona scanned
        involved = sorted(given)
    else:
        rows = np.concatenate([chosen.background, chosen.clean, chosen.anomalous])
        involved = sorted(set(study.meta["persona"].to_numpy()[rows].astype(str)))
    missing = [p for p in involved if p not in given]
    if missing:
        raise ValueError(f"store_fingerprint has no fingerprint for persona(s) {missing}; "
                         "pass store_fingerprints(store_dir, model_name, personas, [layer])")
    payload = json.dumps({p: given[p] for p in involved}, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def _study(activations, meta, plan: ScanPlan, settings: ScanSettings, **shared) -> _Study:
    """The checked inputs of one call, with the node layout of the scanned layer."""
    plan = check_settings(plan, ScanPlan, "plan", required=True)
    activations = np.asarray(activations)
    if activations.ndim != 2 or len(activations) != len(meta):
        raise ValueError(
            f"activations must be (n_statements, hidden_size) aligned with meta ({len(meta)} rows), "
            f"got shape {activations.shape}"
        )
    layout = deepscan.make_node_layout([plan.layer], activations.shape[1])
    sizes = settings.sample_sizes  # small experiments run serially: starting workers costs more than they share
    n_jobs = jobs_for(shared["n_jobs"], sizes.n_runs * (sizes.clean + sizes.anomalous) * activations.shape[1])
    return _Study(activations, meta, plan, settings, shared["model_name"], Path(shared["runs_dir"]), shared["seed"],
                  n_jobs, shared["progress"], shared["store_fingerprint"], layout)


@contextmanager
def _timed(seconds: dict[str, float], key: str):
    t0 = time.perf_counter()
    yield
    seconds[key] = time.perf_counter() - t0


def _runs_baselines(settings: ScanSettings, level: int) -> bool:
    return bool(settings.baselines) and (settings.baseline_levels is None or level in settings.baseline_levels)


def _targets(plan: ScanPlan) -> list[_Target]:
    """The experiments of ``plan``, level by level: personas at levels 2 and 1, topics at level 0 (skips warned)."""
    return [_Target(level, name, topic) for level in plan.levels
            for name, topic in level_targets(level, plan.personas, plan.topics)]


def _target_pools(meta: pd.DataFrame, target: _Target, topics, sizes: PoolSizes, seed: int) -> ScanPools:
    if target.topic is None:
        return scan_pools(meta, target.name, level=target.level, topics=topics, sizes=sizes, seed=seed)
    return topic_pools(meta, target.topic, topics, sizes=sizes, seed=seed)


def _scan(study: _Study, target: _Target, pools: _Pools):
    """The DeepScan experiment of one target into its run file; returns the result, the file's path, its status.

    Status: ``computed`` (new file), ``reused`` (every run was there: the file is not rewritten),
    ``resumed`` (missing runs added) or ``recomputed`` (the pools now hold other data, or the
    experiment's settings changed).
    """
    chosen = pools.chosen
    path = study.runs_dir / run_file_name(target.name, target.level, study.layer)
    fingerprint = _experiment_fingerprint(study, chosen)
    before = path.stat().st_mtime_ns if path.exists() else None
    ids = chosen.ids(study.meta)
    sizes = study.settings.sample_sizes
    kwargs = dict(
        clean_ssize=sizes.clean, anom_ssize=sizes.anomalous, n_runs=sizes.n_runs,
        seed=pools.seed, config=study.settings.config, run_file=path, node_layout=study.node_layout, persona=target.name,
        model=study.model_name, layers=[study.layer], n_jobs=study.n_jobs, progress=study.progress,
        metadata={"level": target.level, "pools": chosen.description, "study_seed": study.seed, **ids},
        inputs=None if fingerprint is None else {"store": fingerprint}, provenance=study.plan.sources,
    )
    if before is not None and _pools_changed(path, ids):
        # same experiment, other statements in its pools (e.g. a persona added to its topic): redo it
        return deepscan.run_experiment(*pools.arrays, overwrite=True, **kwargs), path, "recomputed"
    try:
        result = deepscan.run_experiment(*pools.arrays, **kwargs)
    except (InputsChanged, ConfigChanged):  # other activations (a re-extracted persona), or other settings
        # (e.g. -p n_runs 20): the study's own run file of this experiment is made again
        return deepscan.run_experiment(*pools.arrays, overwrite=True, **kwargs), path, "recomputed"
    if before is None:
        return result, path, "computed"
    return result, path, "reused" if path.stat().st_mtime_ns == before else "resumed"


def _pools_changed(path: Path, ids: dict[str, list[str]]) -> bool:
    """Whether an existing run file's pools held other statements than ``ids`` (then it is recomputed)."""
    try:
        old = deepscan.read_run_file(path).header.get("config", {}).get("metadata", {})
    except (ValueError, OSError):
        return False  # not a readable run file: run_experiment says what is wrong with it
    return any(k in old and old[k] != v for k, v in ids.items())


def _detection_auc(study: _Study, target: _Target, pools: _Pools, result) -> tuple[float, Path]:
    """The detection power of one experiment: reused from its null runs when made for it, else computed."""
    null_path = study.runs_dir / null_file_name(target.name, target.level, study.layer)
    auc = reused_null_auc(null_path, result.header)
    if auc is None:
        power = deepscan.detection_power(
            *pools.arrays, clean_ssize=study.settings.sample_sizes.clean, anom_ssize=study.settings.sample_sizes.anomalous,
            n_runs=study.settings.sample_sizes.n_runs, seed=pools.seed,
            config=study.settings.config, n_jobs=study.n_jobs, progress=False,
        )
        auc = power.auc
        write_null_runs(null_path, power, result.header, persona=target.name, level=target.level, layer=study.layer,
                        model_name=study.model_name, node_layout=study.node_layout,
                        run_file=run_file_name(target.name, target.level, study.layer))
    return auc, null_path


def _baseline_rows(study: _Study, target: _Target, pools: _Pools, runs: pd.DataFrame, *,
                   run_file: str) -> list[dict]:
    """The baselines on the very samples of the runs, one summary row per method."""
    pairs = zip(runs["run_id"], runs["sample_clean"], runs["sample_anomalous"])
    table = baseline_runs(*pools.arrays, pairs, methods=study.settings.baselines, seed=pools.seed)
    return [_summary_row(target, method, part, auc=None, run_file=run_file)
            for method, part in table.groupby("method", sort=False)]


def _write_index(study: _Study, index: dict, timings: dict) -> None:
    given = study.store_fingerprint
    record = {"layer": study.layer, "model": study.model_name, "levels": index["levels"],
              "personas": list(study.plan.personas),
              "store_fingerprint": given if given is None or isinstance(given, str) else None}
    if given is not None and not isinstance(given, str):
        record["store_fingerprints"] = dict(given)
    record["status"] = index["status"]
    if index["null"]:
        record["null"] = index["null"]
    record["seconds"] = timings  # per experiment: deepscan runs, detection (null runs), baselines
    write_json(study.runs_dir / "index.json", record)


def check_runs_current(index: dict, store_dir: str | Path, model_name: str) -> None:
    """Refuse run files made from other activations than the store now holds.

    Parameters
    ----------
    index : dict
        ``runs_dir/index.json`` as :func:`run_persona_scans` writes it.
    store_dir, model_name :
        The activation store and model name the node analysis reads statements from.

    Raises
    ------
    ValueError
        When the index records a store fingerprint that differs from the store's now
        (the activations were re-extracted, e.g. with another position or checkpoint).
    """
    from personas.store.fingerprints import store_fingerprint, store_fingerprints

    per_persona = index.get("store_fingerprints")
    if per_persona:
        now = store_fingerprints(store_dir, model_name, list(per_persona), [int(index["layer"])])
        changed = sorted(p for p, f in per_persona.items() if now[p] != f)
        if changed:
            raise ValueError(
                f"the run files of {changed} were made from other activations than {store_dir} now holds for "
                f"{model_name!r}: rerun run_deepscan.ipynb (or the study) so that run files, tables and the store agree"
            )
        return
    recorded = index.get("store_fingerprint")
    if recorded is None:
        return  # made without a fingerprint (a bare call): nothing to compare
    personas = index.get("personas")
    if not personas:
        raise ValueError("index.json records a store fingerprint but not the personas it covers; rerun the scans")
    now = store_fingerprint(store_dir, model_name, personas, [int(index["layer"])])
    if now != recorded:
        raise ValueError(
            f"the run files were made from other activations than {store_dir} now holds for {model_name!r} "
            f"(store fingerprint {recorded} then, {now} now): rerun run_deepscan.ipynb (or the study) so that "
            "run files, tables and the store agree"
        )


def _summary_row(target: _Target, detector: str, runs: pd.DataFrame, *, auc, run_file: str) -> dict:
    # the one summary of runs (population std, runs without a defined value left out); the table
    # column stays "method" (DeepScan or a baseline), as the published tables have it
    return {"persona": target.name, "level": target.level, "method": detector, **summarise_runs(runs),
            "detection_auc": auc, "run_file": run_file}
