"""The persona scans driver: DeepScan experiments per persona and level, run files, index."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from personas._core.io import write_json
from personas.scans.summary import summarise_runs
from personas.scans.settings import PoolSizes, SampleSizes, _settings
from personas.scans.null_runs import _reused_null_auc, _write_null_runs, null_file_name
from personas.scans.pools import _level_targets, experiment_seed, run_file_name, scan_pools, topic_pools


def run_persona_scans(
    activations: np.ndarray,
    meta: pd.DataFrame,
    personas: Sequence[str],
    *,
    layer: int,
    model: str,
    runs_dir: str | Path,
    levels: Sequence[int] = (2, 1, 0),
    topics: dict[str, list[str]] | None = None,
    config=None,
    background_size: int = 250,
    clean_size: int = 50,
    anomalous_size: int = 300,
    clean_ssize: int = 50,
    anom_ssize: int = 50,
    n_runs: int = 100,
    seed: int = 0,
    detection: bool = True,
    baselines: Sequence[str] = (),
    n_jobs: int = 1,
    progress: bool = True,
    pools: PoolSizes | None = None,
    samples: SampleSizes | None = None,
    store_fingerprint: str | None = None,
    baseline_levels: Sequence[int] | None = None,
) -> pd.DataFrame:
    """The paper's DeepScan experiments for every persona and level, with run files.

    For each (persona, level), and at level 0 for each *topic* with a loaded persona
    (:func:`topic_pools`, named ``"<topic>+"``): choose the pools (:func:`scan_pools`), run
    ``deepscan.run_experiment`` into ``runs_dir/<run_file_name>`` (resumed when the
    file exists with the same configuration), optionally the detection power
    (ROC AUC of mixed vs clean-only samples) and the baselines of
    :mod:`personas.scans.baselines` on the very samples of the runs. Writes
    ``runs_dir/index.json`` (``{"levels": {level: {persona: file}}}``) for the node analysis; with
    ``detection``, also each experiment's null runs (:func:`null_file_name`, the nodes chosen in
    clean-only scans) and ``index["null"][level][persona]``.

    Parameters
    ----------
    activations : ndarray, (n_statements, hidden_size)
        One layer's activations, rows aligned with ``meta``.
    meta : DataFrame
        Columns ``id``, ``persona``, ``direction`` (as ``load_layers`` returns).
    personas : list of str
    layer : int
        The layer scanned (recorded in the run files' node layout).
    model : str
    runs_dir : path
    levels : sequence of {2, 1, 0}
        Default: all three, as the paper's Table 2.
    topics : dict, optional
        Needed for levels 1 and 0.
    config : deepscan.ScanConfig, str or dict, optional
        Scan settings (default: deepscan's consistent method).
    background_size, clean_size, anomalous_size : int
        Pool sizes (paper: 250, 50, 300).
    clean_ssize, anom_ssize, n_runs : int
        Records per run from each pool and number of runs (paper: 50, 50, 100).
    seed : int
        Study seed; each experiment's seed is :func:`experiment_seed`.
    detection : bool
        Also compute the detection power (``deepscan.detection_power``, n_runs pairs).
    baselines : sequence of str
        Any of "lof", "iforest", "kmeans".
    baseline_levels : sequence of int, optional
        The levels the baselines run at (default: every level in ``levels``).
    n_jobs : int
        Parallel runs (joblib); results do not depend on it.
    pools, samples : PoolSizes, SampleSizes, optional
        The pool and sample sizes as settings objects (instead of the six keywords above).
    store_fingerprint : str, optional
        ``personas.store.store_fingerprint`` of the activations scanned: recorded in every
        run file's ``inputs`` (a rerun on a changed store is refused, never mixed), in
        ``index.json`` and in the returned table.

    Returns
    -------
    DataFrame
        One row per (persona, level, method): persona, level, method ("deepscan"
        or a baseline), then the columns of
        :func:`personas.scans.summary.summarise_runs` (n_runs, precision_mean,
        precision_std, precision_n_none, recall_mean, recall_std, recall_n_none;
        std with ddof=0), detection_auc (deepscan rows), run_file.
    """
    import deepscan

    from personas.scans.baselines import baseline_runs

    pools = _settings(pools, PoolSizes, dict(background=background_size, clean=clean_size, anomalous=anomalous_size),
                      dict(background=250, clean=50, anomalous=300), "pools")
    samples = _settings(samples, SampleSizes, dict(clean=clean_ssize, anomalous=anom_ssize, n_runs=n_runs),
                        dict(clean=50, anomalous=50, n_runs=100), "samples")
    background_size, clean_size, anomalous_size = pools.background, pools.clean, pools.anomalous
    clean_ssize, anom_ssize, n_runs = samples.clean, samples.anomalous, samples.n_runs

    activations = np.asarray(activations)
    if activations.ndim != 2 or len(activations) != len(meta):
        raise ValueError(
            f"activations must be (n_statements, hidden_size) aligned with meta ({len(meta)} rows), "
            f"got shape {activations.shape}"
        )
    runs_dir = Path(runs_dir)
    node_layout = deepscan.make_node_layout([layer], activations.shape[1])
    index: dict[str, dict[str, str]] = {}
    null_index: dict[str, dict[str, str]] = {}
    timings: dict[str, dict[str, float]] = {}
    rows = []
    for level in levels:
        for persona, topic in _level_targets(level, personas, topics):
            if topic is None:
                pools = scan_pools(
                    meta, persona, level=level, topics=topics, background_size=background_size,
                    clean_size=clean_size, anomalous_size=anomalous_size, seed=seed,
                )
            else:
                pools = topic_pools(
                    meta, topic, topics, background_size=background_size, clean_size=clean_size,
                    anomalous_size=anomalous_size, seed=seed,
                )
            bg, clean, anom = activations[pools.background], activations[pools.clean], activations[pools.anomalous]
            exp_seed = experiment_seed(seed, persona, level)
            path = runs_dir / run_file_name(persona, level, layer)
            t0 = time.perf_counter()
            result = deepscan.run_experiment(
                bg, clean, anom, clean_ssize=clean_ssize, anom_ssize=anom_ssize, n_runs=n_runs, seed=exp_seed,
                config=config, run_file=path, node_layout=node_layout, persona=persona, model=model,
                layers=[layer], n_jobs=n_jobs, progress=progress,
                metadata={"level": level, "pools": pools.description, "study_seed": seed, **pools.ids(meta)},
                inputs=None if store_fingerprint is None else {"store": store_fingerprint},
            )
            index.setdefault(str(level), {})[persona] = path.name
            seconds = {"deepscan": time.perf_counter() - t0}
            auc = None
            t0 = time.perf_counter()
            if detection:
                null_path = runs_dir / null_file_name(persona, level, layer)
                # the null runs of the same experiment on the same data are reused, like its run file
                auc = _reused_null_auc(null_path, result.header)
                if auc is None:
                    power = deepscan.detection_power(
                        bg, clean, anom, clean_ssize=clean_ssize, anom_ssize=anom_ssize, n_runs=n_runs,
                        seed=exp_seed, config=config, n_jobs=n_jobs, progress=False,
                    )
                    auc = power.auc
                    _write_null_runs(null_path, power, persona=persona, level=level, layer=layer, model=model,
                                     n_nodes=activations.shape[1], node_layout=node_layout, run_file=path.name,
                                     experiment=result.header)
                null_index.setdefault(str(level), {})[persona] = null_path.name
                seconds["detection"] = time.perf_counter() - t0
            runs = result.runs
            rows.append(_summary_row(persona, level, "deepscan", runs, auc=auc, run_file=path.name))
            if baselines and (baseline_levels is None or level in baseline_levels):
                t0 = time.perf_counter()
                pairs = zip(runs["run_id"], runs["sample_clean"], runs["sample_anomalous"])
                table = baseline_runs(bg, clean, anom, pairs, methods=baselines, seed=exp_seed)
                for method, part in table.groupby("method", sort=False):
                    rows.append(_summary_row(persona, level, method, part, auc=None, run_file=path.name))
                seconds["baselines"] = time.perf_counter() - t0
            # wall times stay out of the table (same inputs, same table), in the index instead
            timings[f"level{level}/{persona}"] = {k: round(v, 3) for k, v in seconds.items()}
    record = {"layer": layer, "model": model, "levels": index, "personas": list(personas),
              "store_fingerprint": store_fingerprint}
    if null_index:
        record["null"] = null_index
    record["seconds"] = timings  # per experiment: deepscan runs, detection (null runs), baselines
    write_json(runs_dir / "index.json", record)
    table = pd.DataFrame(rows)
    table["store_fingerprint"] = store_fingerprint
    return table


def check_runs_current(index: dict, store_dir: str | Path, model: str) -> None:
    """Refuse run files made from other activations than the store now holds.

    Parameters
    ----------
    index : dict
        ``runs_dir/index.json`` as :func:`run_persona_scans` writes it.
    store_dir, model :
        The activation store and model name the node analysis reads statements from.

    Raises
    ------
    ValueError
        When the index records a store fingerprint that differs from the store's now
        (the activations were re-extracted, e.g. with another position or checkpoint).
    """
    from personas.store.fingerprints import store_fingerprint

    recorded = index.get("store_fingerprint")
    if recorded is None:
        return  # made without a fingerprint (older run files or a bare call): nothing to compare
    personas = index.get("personas")
    if not personas:
        raise ValueError("index.json records a store fingerprint but not the personas it covers; rerun the scans")
    now = store_fingerprint(store_dir, model, personas, [int(index["layer"])])
    if now != recorded:
        raise ValueError(
            f"the run files were made from other activations than {store_dir} now holds for {model!r} "
            f"(store fingerprint {recorded} then, {now} now): rerun run_deepscan.ipynb (or the study) so that "
            "run files, tables and the store agree"
        )




def _summary_row(persona, level, method, runs: pd.DataFrame, *, auc, run_file) -> dict:
    # the one summary of runs (population std, runs without a defined value left out)
    return {"persona": persona, "level": level, "method": method, **summarise_runs(runs),
            "detection_auc": auc, "run_file": run_file}


