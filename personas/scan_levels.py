"""The paper's DeepScan experiments as pools of statements: levels 2, 1 and 0.

A DeepScan experiment needs three pools of records (rows of one layer's
activations): a background that defines "normal", a clean pool drawn from the
same distribution as the background, and an anomalous pool. The persona paper
scans at three levels (its second question; ``docs/deepscan.md``, section 7):

- level 2, within a persona: background = 250 of the persona's ``-`` statements,
  clean pool = the other 50 ``-``, anomalous pool = its 300 ``+``;
- level 1, within a topic: background and clean pool = ``+`` statements of the
  *other* personas of the persona's topic, anomalous pool = the persona's ``+``;
- level 0, between topics, per *topic* as in the paper's Table 2 (rows Politics+,
  Ethics+, Personality+): anomalous pool = ``+`` statements of all the topic's
  personas, background and clean pool = ``+`` statements of the personas of the
  *other* topics (:func:`topic_pools`). ``scan_pools(..., level=0)`` keeps the
  per-persona variant (anomalous pool = one persona's ``+``) for users who want it.

At levels 1 and 0 the other personas' ``+`` statements are shuffled (seeded) and
split into background and clean pool, so the clean pool is never part of the
background it is scanned against.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from personas.checks import check_int
from personas.io import read_json, safe_name, write_json
from personas.nodes.summary import summarise_runs
from personas.provenance import derive_seed
from personas.scan_settings import PoolSizes, SampleSizes, _settings

__all__ = [
    "ScanPools",
    "scan_pools",
    "topic_pools",
    "topic_target",
    "LEVEL_NAMES",
    "experiment_seed",
    "run_file_name",
    "null_file_name",
    "run_persona_scans",
    "check_runs_current",
]

LEVEL_NAMES = {2: "within persona", 1: "within topic", 0: "between topics"}


@dataclass(frozen=True)
class ScanPools:
    """Row indices (into the activation matrix / statements table) of one experiment's pools.

    Attributes
    ----------
    persona, level : the persona scanned and the level (2, 1 or 0).
    background, clean, anomalous : int arrays of row indices.
    description : one line saying what each pool holds.
    """

    persona: str
    level: int
    background: np.ndarray
    clean: np.ndarray
    anomalous: np.ndarray
    description: str = field(default="")

    def ids(self, meta: pd.DataFrame) -> dict[str, list[str]]:
        """Statement ids of each pool, for the run file's metadata."""
        col = meta["id"].to_numpy()
        return {
            "background_ids": col[self.background].tolist(),
            "clean_pool_ids": col[self.clean].tolist(),
            "anomalous_pool_ids": col[self.anomalous].tolist(),
        }


def _topic_of(persona: str, topics: dict[str, list[str]]) -> str:
    for topic, members in topics.items():
        if persona in members:
            return topic
    raise ValueError(
        f"persona {persona!r} belongs to no topic in {sorted(topics)}; "
        "levels 1 and 0 need a topic grouping that contains it (see data/paper_personas.json)"
    )


def scan_pools(
    meta: pd.DataFrame,
    persona: str,
    *,
    level: int = 2,
    topics: dict[str, list[str]] | None = None,
    background_size: int = 250,
    clean_size: int = 50,
    anomalous_size: int = 300,
    seed: int = 0,
) -> ScanPools:
    """Choose the background, clean and anomalous rows of one experiment.

    Parameters
    ----------
    meta : DataFrame, (n_statements, ...)
        Statements aligned with the activation rows; needs columns ``id``,
        ``persona`` and ``direction``.
    persona : str
        The persona whose ``+`` statements form the anomalous pool.
    level : {2, 1, 0}
        Within persona, within topic, between topics (module docstring).
    topics : dict[str, list[str]], optional
        Topic -> personas; required for levels 1 and 0. Only personas present in
        ``meta`` are used.
    background_size, clean_size, anomalous_size : int
        Pool sizes (the paper: 250, 50, 300).
    seed : int
        Seed of the shuffles that split the pools.

    Returns
    -------
    ScanPools
    """
    missing = {"id", "persona", "direction"} - set(meta.columns)
    if missing:
        raise ValueError(f"meta lacks columns {sorted(missing)}; pass the table returned by load_layers")
    if level not in LEVEL_NAMES:
        raise ValueError(f"level must be 2, 1 or 0 ({LEVEL_NAMES}), got {level!r}")
    present = set(meta["persona"])
    if persona not in present:
        raise ValueError(f"persona {persona!r} is not among the loaded personas {sorted(present)}")
    for name, size in [("background_size", background_size), ("clean_size", clean_size), ("anomalous_size", anomalous_size)]:
        if int(size) < 1:
            raise ValueError(f"{name} must be >= 1, got {size}")

    rng = np.random.default_rng(seed)
    persona_rows = meta["persona"].to_numpy() == persona
    positive = meta["direction"].to_numpy() == "positive"
    anomalous = np.flatnonzero(persona_rows & positive)

    if level == 2:
        reference = np.flatnonzero(persona_rows & ~positive)
        source = f"'-' statements of {persona}"
    else:
        if topics is None:
            raise ValueError(f"level {level} needs `topics` (topic -> personas), e.g. load_topics()")
        topic = _topic_of(persona, topics)
        if level == 1:
            others = [p for p in topics[topic] if p != persona and p in present]
            source = f"'+' statements of the other {topic} personas"
        else:
            others = [p for t, members in topics.items() if t != topic for p in members if p in present]
            source = f"'+' statements of personas outside {topic}"
        if not others:
            raise ValueError(
                f"level {level} for {persona!r} needs other personas ({source}) among the loaded ones {sorted(present)}"
            )
        reference = np.flatnonzero(meta["persona"].isin(others).to_numpy() & positive)

    return _split_pools(rng, persona, level, reference, anomalous, source, f"'+' statements of {persona}",
                        background_size, clean_size, anomalous_size)


def _split_pools(rng, target, level, reference, anomalous, source, anomalous_source,
                 background_size, clean_size, anomalous_size) -> ScanPools:
    need = background_size + clean_size
    if reference.size < need:
        raise ValueError(
            f"level {level} for {target!r}: {reference.size} {source} available, "
            f"background_size + clean_size = {need}; lower the sizes or load more statements"
        )
    if anomalous.size < anomalous_size:
        raise ValueError(
            f"{target!r} has {anomalous.size} {anomalous_source}, anomalous_size = {anomalous_size}; "
            "lower anomalous_size or load more statements"
        )
    reference = rng.permutation(reference)
    anomalous = np.sort(rng.permutation(anomalous)[:anomalous_size])
    return ScanPools(
        persona=target,
        level=level,
        background=np.sort(reference[:background_size]),
        clean=np.sort(reference[background_size:need]),
        anomalous=anomalous,
        description=(
            f"level {level} ({LEVEL_NAMES[level]}): background and clean pool = {source}; "
            f"anomalous pool = {anomalous_source}"
        ),
    )


def topic_target(topic: str) -> str:
    """The name a level-0 experiment of ``topic`` goes by: ``"<topic>+"`` (the paper's Table 2 rows)."""
    return f"{topic}+"


def topic_pools(
    meta: pd.DataFrame,
    topic: str,
    topics: dict[str, list[str]],
    *,
    background_size: int = 250,
    clean_size: int = 50,
    anomalous_size: int = 300,
    seed: int = 0,
) -> ScanPools:
    """Pools of the paper's level 0 for one topic.

    Anomalous pool: ``anomalous_size`` of the ``+`` statements of every loaded persona
    of ``topic``; background and clean pool: ``+`` statements of the loaded personas
    of the other topics. The result's ``persona`` is :func:`topic_target` (``"Ethics+"``).

    Parameters
    ----------
    meta : DataFrame, (n_statements, ...)
        Columns ``id``, ``persona``, ``direction``.
    topic : str
        A key of ``topics``.
    topics : dict[str, list[str]]
        Topic -> personas.
    background_size, clean_size, anomalous_size : int
        Pool sizes.
    seed : int
        Seed of the shuffles that split the pools.
    """
    missing = {"id", "persona", "direction"} - set(meta.columns)
    if missing:
        raise ValueError(f"meta lacks columns {sorted(missing)}; pass the table returned by load_layers")
    if topic not in topics:
        raise ValueError(f"topic {topic!r} is not one of {sorted(topics)}")
    for name, size in [("background_size", background_size), ("clean_size", clean_size), ("anomalous_size", anomalous_size)]:
        check_int(size, name, min_val=1)
    present = set(meta["persona"])
    members = [p for p in topics[topic] if p in present]
    others = [p for t, ps in topics.items() if t != topic for p in ps if p in present]
    if not members:
        raise ValueError(f"topic {topic!r}: none of its personas {topics[topic]} is loaded ({sorted(present)})")
    if not others:
        raise ValueError(f"level 0 for topic {topic!r} needs personas of other topics among the loaded ones {sorted(present)}")
    positive = meta["direction"].to_numpy() == "positive"
    anomalous = np.flatnonzero(meta["persona"].isin(members).to_numpy() & positive)
    reference = np.flatnonzero(meta["persona"].isin(others).to_numpy() & positive)
    rng = np.random.default_rng(seed)
    return _split_pools(rng, topic_target(topic), 0, reference, anomalous,
                        f"'+' statements of personas outside {topic}", f"'+' statements of the {topic} personas",
                        background_size, clean_size, anomalous_size)


def _level_targets(level: int, personas: Sequence[str], topics: dict[str, list[str]] | None) -> list[tuple[str, str | None]]:
    """(target name, topic) pairs one level scans: personas at levels 2 and 1, topics at level 0.

    A level has no experiment where it has no background: level 1 for a persona that is
    the only one of its topic among ``personas``, level 0 when only one topic is present.
    Those are skipped with a warning naming them, so the other levels still run.
    """
    if level == 2:
        return [(p, None) for p in personas]
    if topics is None:
        raise ValueError(f"level {level} needs `topics` (topic -> personas), e.g. load_topics()")
    chosen = set(personas)
    if level == 1:
        alone = [p for p in personas if not any(p in m and (chosen & set(m)) - {p} for m in topics.values())]
        if alone:
            warnings.warn(
                f"level 1 (within topic) skipped for {alone}: no other persona of their topic is loaded",
                stacklevel=3,
            )
        return [(p, None) for p in personas if p not in alone]
    present = [t for t, members in topics.items() if chosen & set(members)]
    if len(present) < 2:
        warnings.warn(f"level 0 (between topics) skipped: only the topic(s) {present} are loaded", stacklevel=3)
        return []
    return [(topic_target(t), t) for t in present]


def experiment_seed(seed: int, persona: str, level: int) -> int:
    """Seed of one (persona, level) experiment, derived from the study seed.

    Built from the persona's *name* (crc32), not its position in a list, so adding
    or removing personas never changes another persona's runs.
    """
    return derive_seed(seed, int(level), persona)


def run_file_name(persona: str, level: int, layer: int) -> str:
    """File name of a run file: ``level<level>_layer<layer>_<persona>.jsonl`` (persona sanitised)."""
    return f"level{level}_layer{layer}_{safe_name(persona, '_')}.jsonl"


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
    :mod:`personas.baselines` on the very samples of the runs. Writes
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
        :func:`personas.nodes.summary.summarise_runs` (n_runs, precision_mean,
        precision_std, precision_n_none, recall_mean, recall_std, recall_n_none;
        std with ddof=0), detection_auc (deepscan rows), run_file.
    """
    import deepscan

    from personas.baselines import baseline_runs

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
    from personas.store import store_fingerprint

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
    from personas.provenance import now_iso, package_versions

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


def _summary_row(persona, level, method, runs: pd.DataFrame, *, auc, run_file) -> dict:
    # the one summary of runs (population std, runs without a defined value left out)
    return {"persona": persona, "level": level, "method": method, **summarise_runs(runs),
            "detection_auc": auc, "run_file": run_file}
