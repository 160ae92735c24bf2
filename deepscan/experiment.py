"""Experiments (many seeded scan runs), run files and detection power (docs/deepscan.md, section 7).

Reproducibility. Run ``i`` of an experiment with seed ``s`` draws everything from
``numpy.random.default_rng(run_seed(s, i))``, where ``run_seed`` reads an integer from
``SeedSequence(s).spawn(n_runs)[i]``. A run therefore depends only on (s, i): serial,
parallel (any joblib backend, e.g. Dask) and resumed experiments give identical runs,
and each run line stores its own seed.

Parallelism. Runs are grouped in chunks handed to ``joblib.Parallel``; the parent
process is the only writer of the run file (see :mod:`deepscan.runfile`).

Fingerprints. The run file's header records ``inputs`` (:mod:`deepscan.fingerprint`):
hashes of the three pools, of a custom score and any fingerprint the caller passes. A
run file is resumed only when they are equal, so runs on other data are never mixed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ._checks import check_int, check_n_jobs, check_pools
from ._util import jsonable
from .config import ScanConfig, as_scan_config
from .fingerprint import array_fingerprint, input_fingerprints, score_fingerprint
from .layout import layout_arrays
from .pvalues import counted_pvalues_node_major
from .runfile import new_header, open_run_file, read_run_file, runs_frame
from .scan import scan_node_major

__all__ = [
    "ExperimentResult",
    "DetectionPower",
    "SampleSpec",
    "run_experiment",
    "detection_power",
    "one_run",
    "run_seed",
    "roc_auc",
    "array_fingerprint",
    "score_fingerprint",
]


def run_seed(seed: int, run_id: int, stream: int = 0) -> int:
    """The seed of one run: 63 bits of ``SeedSequence(seed).spawn(...)[run_id]`` (stream 0).

    ``numpy.random.default_rng(run_seed(seed, i))`` is the generator of run ``i``.
    Stream 1 is used by :func:`detection_power`.
    """
    entropy = seed if stream == 0 else [seed, stream]
    state = np.random.SeedSequence(entropy, spawn_key=(int(run_id),)).generate_state(2, np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) & ((1 << 63) - 1))


def roc_auc(scores_anomalous, scores_clean) -> float:
    """ROC AUC of anomalous against clean scores: P(a > c) + P(a == c)/2 (Mann-Whitney)."""
    a = np.asarray(scores_anomalous, dtype=np.float64).ravel()
    c = np.asarray(scores_clean, dtype=np.float64).ravel()
    if a.size == 0 or c.size == 0:
        raise ValueError("roc_auc needs at least one anomalous and one clean score")
    both = np.concatenate([c, a])
    order = np.argsort(both, kind="stable")
    sorted_v = both[order]
    # average ranks (1-based) over ties
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], both.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(both.size)
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[c.size :].sum() - a.size * (a.size + 1) / 2.0
    return float(u / (a.size * c.size))


@dataclass(frozen=True)
class SampleSpec:
    """What the runs of an experiment draw: ``clean_ssize`` clean and ``anom_ssize`` anomalous
    records per sample, ``n_runs`` samples, from the experiment ``seed``.

    Build it with :meth:`checked`, which validates every field against the pools.
    """

    clean_ssize: int
    anom_ssize: int
    n_runs: int
    seed: int

    @classmethod
    def checked(cls, clean_ssize, anom_ssize, n_runs, seed, n_clean: int, n_anom: int) -> "SampleSpec":
        """The spec, after checking the sizes against pools of ``n_clean`` and ``n_anom`` records.

        Raises
        ------
        ValueError
            On a size that is not an integer >= 0, an empty sample, a size larger than its
            pool, ``n_runs`` < 1 or ``seed`` < 0.
        """
        clean_ssize = check_int(clean_ssize, "clean_ssize", 0)
        anom_ssize = check_int(anom_ssize, "anom_ssize", 0)
        if clean_ssize + anom_ssize < 1:
            raise ValueError("clean_ssize + anom_ssize must be >= 1: a sample needs at least one record")
        if clean_ssize > n_clean:
            raise ValueError(f"clean_ssize={clean_ssize} is larger than the clean pool ({n_clean} records); lower it or add records")
        if anom_ssize > n_anom:
            raise ValueError(f"anom_ssize={anom_ssize} is larger than the anomalous pool ({n_anom} records); lower it or add records")
        return cls(clean_ssize, anom_ssize, check_int(n_runs, "n_runs", 1), check_int(seed, "seed", 0))

    @property
    def size(self) -> int:
        """Records per sample."""
        return self.clean_ssize + self.anom_ssize

    def to_dict(self) -> dict:
        return {"clean_ssize": self.clean_ssize, "anom_ssize": self.anom_ssize, "n_runs": self.n_runs, "seed": self.seed}


@dataclass(frozen=True, eq=False)
class ExperimentResult:
    """Result of :func:`run_experiment`.

    Attributes
    ----------
    header : dict
        The run-file header: ``kind``, ``format_version``, ``config``, ``versions``, ``created``.
    runs : pandas.DataFrame
        One row per run, the same columns as ``read_run_file(...).runs``.
    run_file : Path or None
    """

    header: dict
    runs: pd.DataFrame
    run_file: Path | None = None

    @property
    def config(self) -> dict:
        return self.header["config"]

    def summary(self) -> dict:
        """Mean and std of score, precision and recall over runs."""
        out = {"n_runs": int(len(self.runs))}
        for col in ("score", "precision", "recall"):
            out[f"{col}_mean"] = float(self.runs[col].mean())
            out[f"{col}_std"] = float(self.runs[col].std())
        return out


@dataclass(frozen=True, eq=False)
class DetectionPower:
    """Result of :func:`detection_power`.

    Attributes
    ----------
    auc : float
        ROC AUC of the scores of samples with anomalous records against clean-only samples.
    scores_anomalous, scores_clean : ndarray (n_runs,)
    config : dict
    nodes_anomalous, nodes_clean : list of ndarray of int64, one per run
        Nodes chosen in each run's mixed and clean-only scan (sorted). The clean-only ones
        are the null of node selection: what a scan picks when nothing is anomalous.
    """

    auc: float
    scores_anomalous: np.ndarray
    scores_clean: np.ndarray
    config: dict
    nodes_anomalous: list | None = None
    nodes_clean: list | None = None


# ----------------------------------------------------------------------------- one run


def _counted_column(config: ScanConfig) -> int:
    """Which end of the p-value ranges the group scan counts: 0 (pmin, ibm-2025) or 1 (pmax)."""
    return 0 if config.count_with == "pmin" else 1


def one_run(run_id: int, p_t: np.ndarray, n_clean: int, spec: SampleSpec, config: ScanConfig) -> dict:
    """Run ``run_id`` of an experiment, as its run-file line (a dict).

    ``p_t`` holds the counted p-values of both pools, node-major (n_nodes, n_clean + n_anomalous).
    """
    rs = run_seed(spec.seed, run_id)
    rng = np.random.default_rng(rs)
    sc = rng.choice(n_clean, size=spec.clean_ssize, replace=False)
    sa = rng.choice(p_t.shape[1] - n_clean, size=spec.anom_ssize, replace=False)
    res = scan_node_major(p_t.take(np.concatenate([sc, n_clean + sa]), axis=1), config, seed=rng)
    records = res.records
    anomalous = records >= spec.clean_ssize
    pool_index = np.concatenate([sc, sa])[records]  # each sample position's index in its own pool
    hits = int(anomalous.sum())
    return {
        "kind": "run",
        "run_id": int(run_id),
        "seed": rs,
        "score": float(res.score),
        "alpha": None if math.isnan(res.alpha) else float(res.alpha),
        "sample_clean": sc.tolist(),
        "sample_anomalous": sa.tolist(),
        "records": records.tolist(),
        "records_pool_index": pool_index.astype(np.int64).tolist(),
        "records_anomalous": anomalous.tolist(),
        "nodes": res.nodes.tolist(),
        "precision": hits / records.size if records.size else None,
        "recall": hits / spec.anom_ssize if spec.anom_ssize else None,
    }


def _run_chunk(run_ids, p_t, n_clean, spec, config) -> list[dict]:
    return [one_run(i, p_t, n_clean, spec, config) for i in run_ids]


def _chunks(ids: Sequence[int], n_jobs: int) -> list[list[int]]:
    if not ids:
        return []
    if n_jobs == 1:  # in process: hand every finished run to the writer at once
        return [[i] for i in ids]
    size = max(1, math.ceil(len(ids) / (4 * abs(n_jobs))))  # a few chunks per worker
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


def _execute(fn, chunks, args, n_jobs, progress, total, desc):
    """Yield chunk results in chunk order, serially or through joblib."""
    bar = None
    if progress:
        try:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, desc=desc, unit="run")
        except ImportError:  # progress bars are optional
            bar = None
    try:
        if n_jobs == 1:
            results = (fn(c, *args) for c in chunks)
        else:
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(fn)(c, *args) for c in chunks)
        for out in results:
            if bar is not None:
                bar.update(len(out))
            yield out
    finally:
        if bar is not None:
            bar.close()


# ----------------------------------------------------------------------------- experiment


def _layout_entries(node_layout: Sequence | None, n_nodes: int) -> list[dict] | None:
    """The layout as ``[{"layer", "n_units"}, ...]``, checked to cover ``n_nodes``."""
    if node_layout is None:
        return None
    _, sizes = layout_arrays(node_layout)
    if int(sizes.sum()) != n_nodes:
        raise ValueError(f"node_layout covers {int(sizes.sum())} nodes but the activations have {n_nodes}; fix the layout")
    return [{"layer": int(d["layer"]), "n_units": int(d["n_units"])} if isinstance(d, Mapping)
            else {"layer": int(d[0]), "n_units": int(d[1])} for d in node_layout]


def _header_config(pools, spec: SampleSpec, config: ScanConfig, metadata, described: Mapping) -> dict:
    """The header's ``config``; ``described`` holds the caller's persona, model, layers and node_layout."""
    bg, cl, an = pools
    metadata = dict(metadata or {})
    node_layout = _layout_entries(described["node_layout"], bg.shape[1])
    given = {k: described[k] if described[k] is not None else metadata.get(k) for k in ("persona", "model", "layers")}
    layers = given["layers"]
    if layers is None and node_layout is not None:
        layers = [d["layer"] for d in node_layout]
    out = {
        "persona": given["persona"],
        "model": given["model"],
        "layers": None if layers is None else [int(x) for x in layers],
        "node_layout": node_layout,
        "n_nodes": int(bg.shape[1]),
        "background_size": int(bg.shape[0]),
        "clean_pool_size": int(cl.shape[0]),
        "anomalous_pool_size": int(an.shape[0]),
        **spec.to_dict(),
        **config.to_dict(),
        "metadata": metadata,
    }
    try:
        return jsonable(out)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON serialisable: {exc}") from None


def _compute_runs(pools, spec: SampleSpec, config: ScanConfig, n_jobs: int, progress: bool, todo: list[int]):
    """Yield the runs ``todo``, in order; p-values of both pools against the background are counted once."""
    if not todo:
        return
    bg, cl, an = pools
    # node-major, as the scan reads them
    p_t = counted_pvalues_node_major(bg, np.concatenate([cl, an], axis=0), config.tail, preset=config.preset,
                                     column=_counted_column(config))
    args = (p_t, cl.shape[0], spec, config)
    for out in _execute(_run_chunk, _chunks(todo, n_jobs), args, n_jobs, progress, len(todo), "deepscan runs"):
        yield from out


def run_experiment(background, clean_pool, anomalous_pool, *, clean_ssize: int, anom_ssize: int, n_runs: int,
                   seed: int, config: ScanConfig | str | dict | None = None, run_file: str | Path | None = None,
                   metadata: Mapping | None = None, node_layout: Sequence | None = None, persona: str | None = None,
                   model: str | None = None, layers: Sequence[int] | None = None, n_jobs: int = 1,
                   progress: bool = True, overwrite: bool = False, inputs: Mapping[str, Any] | None = None,
                   score_id: str | None = None, provenance: Mapping[str, Any] | None = None) -> ExperimentResult:
    """Run ``n_runs`` seeded group scans of samples drawn from a clean and an anomalous pool.

    Each run draws ``clean_ssize`` records from the clean pool and ``anom_ssize`` from the
    anomalous pool without replacement (sample positions: clean first), scans them against
    the background and records score, alpha*, the chosen records and nodes, precision and
    recall. p-values of both pools are computed once against the background.

    Parameters
    ----------
    background, clean_pool, anomalous_pool : arrays (n_background | n_clean | n_anomalous, n_nodes)
    clean_ssize, anom_ssize : int
        Records per sample from each pool.
    n_runs : int
    seed : int >= 0
        Experiment seed; run i uses ``run_seed(seed, i)``.
    config : ScanConfig, preset name or dict, optional
    run_file : path, optional
        JSON Lines run file. If it exists with the same configuration and inputs, its runs
        are kept and only the missing ones computed; otherwise a ValueError (``InputsChanged``
        for other inputs) names what differs and the file is left untouched (use a new path or
        ``overwrite=True``). While running, the file is locked: a second writer gets a RuntimeError.
    metadata : mapping, optional
        Free JSON metadata for the header (e.g. ``clean_pool_ids``); its keys ``persona``,
        ``model``, ``layers`` fill those header fields if not given.
    node_layout : list of {"layer", "n_units"}, optional
        How several concatenated layers map to nodes; must cover n_nodes.
    persona, model : str, optional
    layers : list of int, optional
        Defaults to the layers of ``node_layout``.
    n_jobs : int
        joblib workers (1 = in process; -1 = all cores); results do not depend on it. Use
        ``with joblib.parallel_config(backend=...)`` to run on e.g. a Dask cluster.
    progress, overwrite : bool
        Show a tqdm progress bar; replace an existing run file instead of resuming it.
    inputs, provenance : mapping, optional
        More fingerprints of where the arrays came from, recorded in the header's ``inputs``
        and compared on resume (keys ``background``, ``clean_pool``, ``anomalous_pool``, ``score``
        are reserved); ``provenance`` (e.g. files' SHA-256) goes in a new file's header, never compared.
    score_id : str, optional
        A name for a custom (callable) score, recorded instead of a hash of its code
        (:func:`score_fingerprint`; the function's ``deepscan_id`` attribute works too).

    Returns
    -------
    ExperimentResult
        Its header's ``inputs`` hold the fingerprints (``provenance``, if given, beside them).

    Raises
    ------
    ValueError
        Before any work, on bad arrays, sizes larger than the pools, bad n_runs/seed/n_jobs,
        a node layout that does not cover the nodes, or a run file with another configuration.
    """
    config = as_scan_config(config)
    pools = check_pools(background, clean_pool, anomalous_pool)
    spec = SampleSpec.checked(clean_ssize, anom_ssize, n_runs, seed, pools[1].shape[0], pools[2].shape[0])
    n_jobs = check_n_jobs(n_jobs)
    described = {"persona": persona, "model": model, "layers": layers, "node_layout": node_layout}
    header_config = _header_config(pools, spec, config, metadata, described)
    fingerprints = input_fingerprints(*pools, config, inputs, score_id)
    if run_file is None:
        runs = list(_compute_runs(pools, spec, config, n_jobs, progress, list(range(spec.n_runs))))
        return ExperimentResult(header=new_header(header_config, fingerprints, provenance), runs=runs_frame(runs),
                                run_file=None)
    # closing flushes: finished runs survive an error or an interrupt; the lock is released
    with open_run_file(run_file, header_config, inputs=fingerprints, overwrite=overwrite,
                       provenance=provenance) as writer:
        todo = [i for i in range(spec.n_runs) if i not in writer.done]
        writer.flush()  # the header is on disk from the start
        for run in _compute_runs(pools, spec, config, n_jobs, progress, todo):
            writer.add(run)
    rf = read_run_file(run_file)
    return ExperimentResult(header=rf.header, runs=rf.runs, run_file=Path(run_file))


# ----------------------------------------------------------------------------- detection power


def _one_detection(run_id: int, h0: np.ndarray, anomalous: np.ndarray, spec: SampleSpec, config: ScanConfig) -> tuple:
    """Scores and chosen nodes of one mixed and one clean-only sample scanned against the same background."""
    rng = np.random.default_rng(run_seed(spec.seed, run_id, stream=1))
    n = spec.size
    perm = rng.permutation(h0.shape[0])
    null_idx, bg_idx = perm[:n], perm[n:]
    anom_idx = rng.choice(anomalous.shape[0], size=spec.anom_ssize, replace=False)
    evaluated = np.concatenate([h0[null_idx], anomalous[anom_idx]], axis=0)
    p_t = counted_pvalues_node_major(h0[bg_idx], evaluated, config.tail, preset=config.preset,
                                     column=_counted_column(config))
    mixed = np.r_[0 : spec.clean_ssize, n : n + spec.anom_ssize]
    r_mixed = scan_node_major(p_t.take(mixed, axis=1), config, seed=rng)
    r_null = scan_node_major(np.ascontiguousarray(p_t[:, :n]), config, seed=rng)
    return r_mixed.score, r_null.score, np.sort(r_mixed.nodes).astype(np.int64), np.sort(r_null.nodes).astype(np.int64)


def _detection_chunk(run_ids, h0, anomalous, spec, config):
    return [_one_detection(i, h0, anomalous, spec, config) for i in run_ids]


def detection_power(background, clean_pool, anomalous_pool, *, clean_ssize: int, anom_ssize: int, n_runs: int,
                    seed: int, config: ScanConfig | str | dict | None = None, n_jobs: int = 1,
                    progress: bool = True) -> DetectionPower:
    """Detection power: ROC AUC of scores of samples with anomalous records vs clean-only samples.

    Scheme (paired, no record is ever scanned against a background containing it):
    the H0 records (background and clean pool together, ``n0`` records) are
    shuffled in each run; the first ``n = clean_ssize + anom_ssize`` form the
    clean-only sample, the other ``n0 - n`` the run's background. The mixed sample
    is the first ``clean_ssize`` records of the clean-only sample plus
    ``anom_ssize`` records drawn from the anomalous pool. Both samples have the same
    size and are scanned against the same background, so the AUC measures only
    the effect of the anomalous records. The background is ``n0 - n`` records
    (e.g. 250 + 50 - 100 = 200), smaller than in :func:`run_experiment`.

    Parameters
    ----------
    As :func:`run_experiment`. Runs use seed stream 1 of ``seed`` (independent of the
    experiment's runs); results do not depend on ``n_jobs``.

    Returns
    -------
    DetectionPower
        AUC ~ 0.5 when the anomalous pool looks like H0, ~ 1 for a strong signal.

    Raises
    ------
    ValueError
        On bad inputs (as run_experiment), or if fewer than one H0 record would be left as background.
    """
    config = as_scan_config(config)
    bg, cl, an = check_pools(background, clean_pool, anomalous_pool)
    h0 = np.concatenate([bg, cl], axis=0)
    spec = SampleSpec.checked(clean_ssize, anom_ssize, n_runs, seed, h0.shape[0], an.shape[0])
    if h0.shape[0] - spec.size < 1:
        raise ValueError(
            f"background ({bg.shape[0]}) + clean pool ({cl.shape[0]}) records leave no background after taking "
            f"a clean-only sample of {spec.size}; use smaller samples or more H0 records"
        )
    n_jobs = check_n_jobs(n_jobs)
    pairs: list[tuple] = []
    chunks = _chunks(list(range(spec.n_runs)), n_jobs)
    for out in _execute(_detection_chunk, chunks, (h0, an, spec, config), n_jobs, progress, spec.n_runs, "detection power"):
        pairs.extend(out)
    s_mixed = np.array([p[0] for p in pairs])
    s_null = np.array([p[1] for p in pairs])
    cfg = {**spec.to_dict(), "background_size": int(h0.shape[0] - spec.size), **config.to_dict()}
    return DetectionPower(auc=roc_auc(s_mixed, s_null), scores_anomalous=s_mixed, scores_clean=s_null, config=cfg,
                          nodes_anomalous=[p[2] for p in pairs], nodes_clean=[p[3] for p in pairs])
