"""Experiments (many seeded scan runs), run files and detection power (docs/deepscan.md, section 7).

Reproducibility. Run ``i`` of an experiment with seed ``s`` draws everything from
``numpy.random.default_rng(run_seed(s, i))``, where ``run_seed`` reads an integer from
``SeedSequence(s).spawn(n_runs)[i]``. A run therefore depends only on (s, i): serial,
parallel (any joblib backend, e.g. Dask) and resumed experiments give identical runs,
and each run line stores its own seed.

Parallelism. Runs are grouped in chunks handed to ``joblib.Parallel``; the parent
process is the only writer of the run file (see :mod:`deepscan.runfile`).

Fingerprints. The run file's header records ``inputs``: a SHA-256 of each array
(background, clean and anomalous pools: dtype, shape and bytes, see
:func:`array_fingerprint`), of a custom score (:func:`score_fingerprint`) and any
fingerprint the caller passes (e.g. of the activation store the arrays came
from). A run file is resumed only when they are equal, so runs on other data are
never mixed in.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ._checks import as_activations, check_same_width
from .config import ScanConfig
from .pvalues import counted_pvalues_node_major
from .runfile import _jsonable, _layout_arrays, open_run_file, package_versions, read_run_file, runs_frame
from .scan import _config, scan_node_major

__all__ = [
    "ExperimentResult",
    "DetectionPower",
    "run_experiment",
    "detection_power",
    "run_seed",
    "roc_auc",
    "array_fingerprint",
    "score_fingerprint",
]


def array_fingerprint(a: np.ndarray) -> str:
    """``"sha256:<hex>"`` of an array's dtype, shape and bytes (C order)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B") if a.size else b"")
    return "sha256:" + h.hexdigest()


def _value_digest(h, value: Any, depth: int = 0) -> None:
    """Feed a stable description of a callable's constant, default or closure value to ``h``."""
    if depth > 20:
        h.update(b"<deep>")
    elif inspect.iscode(value):
        _code_digest(h, value, depth + 1)
    elif callable(value) and hasattr(value, "__code__"):
        _function_digest(h, value, depth + 1)
    elif isinstance(value, np.ndarray):
        h.update(array_fingerprint(value).encode())
    elif isinstance(value, (tuple, list, frozenset, set)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        h.update(f"{type(value).__name__}[".encode())
        for v in items:
            _value_digest(h, v, depth + 1)
            h.update(b",")
        h.update(b"]")
    elif isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=repr):
            h.update(repr(k).encode())
            _value_digest(h, value[k], depth + 1)
        h.update(b"}")
    else:
        h.update(repr(value).encode())  # numbers, strings, None: stable across processes


def _code_digest(h, code, depth: int) -> None:
    h.update(code.co_code)
    h.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for const in code.co_consts:
        _value_digest(h, const, depth + 1)


def _function_digest(h, fn, depth: int) -> None:
    _code_digest(h, fn.__code__, depth)
    _value_digest(h, fn.__defaults__, depth + 1)
    _value_digest(h, fn.__kwdefaults__, depth + 1)
    for cell in fn.__closure__ or ():
        try:
            _value_digest(h, cell.cell_contents, depth + 1)
        except ValueError:  # an empty cell
            h.update(b"<empty>")


def score_fingerprint(score: Any, name: str | None = None) -> str | None:
    """What identifies a custom score function in a run file's ``inputs`` (None for a built-in score).

    ``name`` (or the function's ``deepscan_id`` attribute) is used as given:
    ``"name:<name>"``; choose one that changes when the function does. Otherwise
    ``"code-sha256:<hex>"`` over the function's bytecode, constants, defaults and
    closure values (functools.partial and callable objects: their function and
    arguments). Globals the function reads are not included: give a name when the
    behaviour depends on them, or when the hash is not stable across processes
    (a closure over an object without a stable ``repr``).
    """
    if name is None:
        name = getattr(score, "deepscan_id", None)
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a score's name (score_id or deepscan_id) must be a non-empty string, got {name!r}")
        return f"name:{name}"
    if not callable(score):
        return None
    import functools

    h = hashlib.sha256()
    if isinstance(score, functools.partial):
        _value_digest(h, (score.func, score.args, score.keywords))
    elif hasattr(score, "__code__"):
        _function_digest(h, score, 0)
    else:  # a callable object: its class's __call__ and its attributes
        call = getattr(type(score), "__call__", None)
        h.update(f"{type(score).__module__}.{type(score).__qualname__}".encode())
        if hasattr(call, "__code__"):
            _function_digest(h, call, 0)
        _value_digest(h, getattr(score, "__dict__", {}))
    return "code-sha256:" + h.hexdigest()


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


# ----------------------------------------------------------------------------- validation


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_pools(background, clean_pool, anomalous_pool):
    bg = as_activations(background, "background")
    cl = as_activations(clean_pool, "clean_pool")
    an = as_activations(anomalous_pool, "anomalous_pool")
    check_same_width(bg, cl, ("background", "clean_pool"))
    check_same_width(bg, an, ("background", "anomalous_pool"))
    return bg, cl, an


def _check_sizes(clean_ssize, anom_ssize, n_clean, n_anom):
    clean_ssize = _check_int(clean_ssize, "clean_ssize", 0)
    anom_ssize = _check_int(anom_ssize, "anom_ssize", 0)
    if clean_ssize + anom_ssize < 1:
        raise ValueError("clean_ssize + anom_ssize must be >= 1: a sample needs at least one record")
    if clean_ssize > n_clean:
        raise ValueError(f"clean_ssize={clean_ssize} is larger than the clean pool ({n_clean} records); lower it or add records")
    if anom_ssize > n_anom:
        raise ValueError(f"anom_ssize={anom_ssize} is larger than the anomalous pool ({n_anom} records); lower it or add records")
    return clean_ssize, anom_ssize


# ----------------------------------------------------------------------------- one run


def _one_run(run_id: int, seed: int, p_t: np.ndarray, n_clean: int, clean_ssize: int, anom_ssize: int, config: ScanConfig) -> dict:
    """One run; ``p_t`` holds the counted p-values of both pools, node-major (n_nodes, n_clean + n_anomalous)."""
    rs = run_seed(seed, run_id)
    rng = np.random.default_rng(rs)
    sc = rng.choice(n_clean, size=clean_ssize, replace=False)
    sa = rng.choice(p_t.shape[1] - n_clean, size=anom_ssize, replace=False)
    res = scan_node_major(p_t.take(np.concatenate([sc, n_clean + sa]), axis=1), config, seed=rng)
    records = res.records
    anomalous = records >= clean_ssize
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
        "recall": hits / anom_ssize if anom_ssize else None,
    }


def _run_chunk(run_ids, seed, p_t, n_clean, clean_ssize, anom_ssize, config) -> list[dict]:
    return [_one_run(i, seed, p_t, n_clean, clean_ssize, anom_ssize, config) for i in run_ids]


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


def run_experiment(
    background,
    clean_pool,
    anomalous_pool,
    *,
    clean_ssize: int,
    anom_ssize: int,
    n_runs: int,
    seed: int,
    config: ScanConfig | str | dict | None = None,
    run_file: str | Path | None = None,
    metadata: Mapping | None = None,
    node_layout: Sequence | None = None,
    persona: str | None = None,
    model: str | None = None,
    layers: Sequence[int] | None = None,
    n_jobs: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    inputs: Mapping[str, Any] | None = None,
    score_id: str | None = None,
) -> ExperimentResult:
    """Run ``n_runs`` seeded group scans of samples drawn from a clean and an anomalous pool.

    Each run draws ``clean_ssize`` records from the clean pool and ``anom_ssize``
    from the anomalous pool without replacement (sample positions: clean first),
    scans them against the background and records score, alpha*, the chosen
    records and nodes, precision and recall. p-values of both pools are computed
    once against the background (the background is sorted once).

    Parameters
    ----------
    background : array (n_background, n_nodes)
    clean_pool : array (n_clean, n_nodes)
    anomalous_pool : array (n_anomalous, n_nodes)
    clean_ssize, anom_ssize : int
        Records per sample from each pool.
    n_runs : int
    seed : int >= 0
        Experiment seed; run i uses ``run_seed(seed, i)``.
    config : ScanConfig, preset name or dict, optional
    run_file : path, optional
        JSON Lines run file. If it exists with the same configuration and inputs,
        the runs it holds are kept and only the missing ones computed; a different
        configuration or different inputs (other arrays, another custom score, other
        ``inputs``) raise ValueError naming what differs, and leave the file
        untouched (use a new path or ``overwrite=True``). While running, the file
        is locked: a second writer gets a RuntimeError.
    metadata : mapping, optional
        Free JSON metadata stored in the header (e.g. ``clean_pool_ids``). Keys
        ``persona``, ``model``, ``layers`` fill those header fields if not given.
    node_layout : list of {"layer", "n_units"}, optional
        How several concatenated layers map to nodes; must cover n_nodes.
    persona, model : str, optional
    layers : list of int, optional
        Defaults to the layers of ``node_layout``.
    n_jobs : int
        joblib workers (1 = in process; -1 = all cores). Results do not depend on it.
        Use ``with joblib.parallel_config(backend=...)`` to run on e.g. a Dask cluster.
    progress : bool
        Show a tqdm progress bar.
    overwrite : bool
        Replace an existing run file instead of resuming it.
    inputs : mapping, optional
        More fingerprints of where the arrays came from, recorded in the header's
        ``inputs`` and compared on resume (e.g. ``{"store": personas.store.store_fingerprint(...)}``).
        Keys ``background``, ``clean_pool``, ``anomalous_pool`` and ``score`` are reserved.
    score_id : str, optional
        A name for a custom (callable) score, recorded instead of a hash of its code
        (see :func:`score_fingerprint`); the function's ``deepscan_id`` attribute works too.

    Returns
    -------
    ExperimentResult
        Its header's ``inputs`` hold the fingerprints.

    Raises
    ------
    ValueError
        Before any work, on bad arrays (NaN/inf, width mismatch, empty pools),
        sizes larger than the pools, bad n_runs/seed/n_jobs, a node layout that
        does not cover the nodes, or a run file with another configuration.
    """
    config = _config(config)
    bg, cl, an = _check_pools(background, clean_pool, anomalous_pool)
    clean_ssize, anom_ssize = _check_sizes(clean_ssize, anom_ssize, cl.shape[0], an.shape[0])
    n_runs = _check_int(n_runs, "n_runs", 1)
    seed = _check_int(seed, "seed", 0)
    n_jobs = _check_n_jobs(n_jobs)
    metadata = dict(metadata or {})
    if node_layout is not None:
        _, sizes = _layout_arrays(node_layout)
        if int(sizes.sum()) != bg.shape[1]:
            raise ValueError(f"node_layout covers {int(sizes.sum())} nodes but the activations have {bg.shape[1]}; fix the layout")
        node_layout = [{"layer": int(d["layer"]), "n_units": int(d["n_units"])} if isinstance(d, Mapping)
                       else {"layer": int(d[0]), "n_units": int(d[1])} for d in node_layout]
    persona = persona if persona is not None else metadata.get("persona")
    model = model if model is not None else metadata.get("model")
    layers = layers if layers is not None else metadata.get("layers")
    if layers is None and node_layout is not None:
        layers = [d["layer"] for d in node_layout]
    header_config = {
        "persona": persona,
        "model": model,
        "layers": None if layers is None else [int(x) for x in layers],
        "node_layout": node_layout,
        "n_nodes": int(bg.shape[1]),
        "background_size": int(bg.shape[0]),
        "clean_pool_size": int(cl.shape[0]),
        "anomalous_pool_size": int(an.shape[0]),
        "clean_ssize": clean_ssize,
        "anom_ssize": anom_ssize,
        "n_runs": n_runs,
        "seed": seed,
        **config.to_dict(),
        "metadata": metadata,
    }

    try:
        header_config = _jsonable(header_config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata must be JSON serialisable: {exc}") from None
    fingerprints = _input_fingerprints(bg, cl, an, config, inputs, score_id)
    writer = open_run_file(run_file, header_config, inputs=fingerprints, overwrite=overwrite) if run_file is not None else None
    new_runs: list[dict] = []
    try:
        done = writer.done if writer is not None else set()
        todo = [i for i in range(n_runs) if i not in done]
        if writer is not None:
            writer.flush()  # the header is on disk from the start
        if todo:
            # both pools against the background once (sorted once), node-major as the scan reads them
            p_t = counted_pvalues_node_major(bg, np.concatenate([cl, an], axis=0), config.tail, preset=config.preset,
                                             column=0 if config.count_with == "pmin" else 1)
            args = (seed, p_t, cl.shape[0], clean_ssize, anom_ssize, config)
            chunks = _chunks(todo, n_jobs)
            for out in _execute(_run_chunk, chunks, args, n_jobs, progress, len(todo), "deepscan runs"):
                for run in out:
                    new_runs.append(run)
                    if writer is not None:
                        writer.add(run)
    finally:
        if writer is not None:
            writer.close()  # finished runs survive an error or an interrupt; the lock is released
    if writer is not None:
        rf = read_run_file(run_file)
        return ExperimentResult(header=rf.header, runs=rf.runs, run_file=Path(run_file))
    header = {"kind": "deepscan-run-file", "format_version": 1, "config": header_config, "inputs": fingerprints,
              "versions": package_versions(), "created": _now()}
    return ExperimentResult(header=header, runs=runs_frame(new_runs), run_file=None)


_RESERVED_INPUTS = ("background", "clean_pool", "anomalous_pool", "score")


def _input_fingerprints(bg, cl, an, config: ScanConfig, inputs, score_id) -> dict:
    """The header's ``inputs``: what the runs were computed from, beyond the configuration."""
    if not isinstance(inputs, (Mapping, type(None))):
        raise ValueError(f"inputs must be a mapping of fingerprints, got {type(inputs).__name__}")
    extra = {} if inputs is None else dict(inputs)
    clash = [k for k in extra if k in _RESERVED_INPUTS]
    if clash:
        raise ValueError(f"inputs keys {clash} are reserved (deepscan fills {list(_RESERVED_INPUTS)}); rename them")
    if score_id is not None and not callable(config.score):
        raise ValueError(f"score_id names a custom score function, but the score is the built-in {config.score!r}")
    out = {
        "background": array_fingerprint(bg),
        "clean_pool": array_fingerprint(cl),
        "anomalous_pool": array_fingerprint(an),
        "score": score_fingerprint(config.score, score_id) if callable(config.score) else None,
        **extra,
    }
    try:
        return _jsonable(out)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"inputs must be JSON serialisable: {exc}") from None


def _now() -> str:
    from .runfile import _now as now

    return now()


def _check_n_jobs(n_jobs: Any) -> int:
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or n_jobs == 0:
        raise ValueError(f"n_jobs must be a non-zero integer (1 = serial, -1 = all cores), got {n_jobs!r}")
    return int(n_jobs)


# ----------------------------------------------------------------------------- detection power


def _one_detection(run_id, seed, h0, anomalous, clean_ssize, anom_ssize, config) -> tuple:
    """Scores and chosen nodes of one mixed and one clean-only sample scanned against the same background."""
    rng = np.random.default_rng(run_seed(seed, run_id, stream=1))
    n = clean_ssize + anom_ssize
    perm = rng.permutation(h0.shape[0])
    null_idx, bg_idx = perm[:n], perm[n:]
    anom_idx = rng.choice(anomalous.shape[0], size=anom_ssize, replace=False)
    evaluated = np.concatenate([h0[null_idx], anomalous[anom_idx]], axis=0)
    p_t = counted_pvalues_node_major(h0[bg_idx], evaluated, config.tail, preset=config.preset,
                                     column=0 if config.count_with == "pmin" else 1)
    mixed = np.r_[0:clean_ssize, n : n + anom_ssize]
    r_mixed = scan_node_major(p_t.take(mixed, axis=1), config, seed=rng)
    r_null = scan_node_major(np.ascontiguousarray(p_t[:, :n]), config, seed=rng)
    return r_mixed.score, r_null.score, np.sort(r_mixed.nodes).astype(np.int64), np.sort(r_null.nodes).astype(np.int64)


def _detection_chunk(run_ids, seed, h0, anomalous, clean_ssize, anom_ssize, config):
    return [_one_detection(i, seed, h0, anomalous, clean_ssize, anom_ssize, config) for i in run_ids]


def detection_power(
    background,
    clean_pool,
    anomalous_pool,
    *,
    clean_ssize: int,
    anom_ssize: int,
    n_runs: int,
    seed: int,
    config: ScanConfig | str | dict | None = None,
    n_jobs: int = 1,
    progress: bool = True,
) -> DetectionPower:
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
    config = _config(config)
    bg, cl, an = _check_pools(background, clean_pool, anomalous_pool)
    h0 = np.concatenate([bg, cl], axis=0)
    clean_ssize, anom_ssize = _check_sizes(clean_ssize, anom_ssize, h0.shape[0], an.shape[0])
    n = clean_ssize + anom_ssize
    if h0.shape[0] - n < 1:
        raise ValueError(
            f"background ({bg.shape[0]}) + clean pool ({cl.shape[0]}) records leave no background after taking "
            f"a clean-only sample of {n}; use smaller samples or more H0 records"
        )
    n_runs = _check_int(n_runs, "n_runs", 1)
    seed = _check_int(seed, "seed", 0)
    n_jobs = _check_n_jobs(n_jobs)
    args = (seed, h0, an, clean_ssize, anom_ssize, config)
    pairs: list[tuple] = []
    for out in _execute(_detection_chunk, _chunks(list(range(n_runs)), n_jobs), args, n_jobs, progress, n_runs, "detection power"):
        pairs.extend(out)
    s_mixed = np.array([p[0] for p in pairs])
    s_null = np.array([p[1] for p in pairs])
    cfg = {"clean_ssize": clean_ssize, "anom_ssize": anom_ssize, "n_runs": n_runs, "seed": seed,
           "background_size": int(h0.shape[0] - n), **config.to_dict()}
    return DetectionPower(auc=roc_auc(s_mixed, s_null), scores_anomalous=s_mixed, scores_clean=s_null, config=cfg,
                          nodes_anomalous=[p[2] for p in pairs], nodes_clean=[p[3] for p in pairs])
