"""Run files: one experiment per file, written atomically, resumable, and read back.

Format (JSON Lines, UTF-8, ``.jsonl``): line 1 is the header
``{"kind": "deepscan-run-file", "format_version": 1, "config": {...}, "versions": {...}, "created": ...}``,
every further line one run ``{"kind": "run", "run_id": ..., ...}`` (see ``docs/run-files.md``).

Atomicity. The parent process is the only writer. It keeps the header and the
finished run lines in memory and, after each batch of finished runs (at most every
``flush_every`` seconds, always at the end and when the experiment stops on an
exception), rewrites the whole file through a temporary file in the same folder,
``fsync`` and ``os.replace``. The file on disk is therefore always a complete, valid
run file: a crash (even ``kill -9``) loses at most the runs finished since the last
flush, which a rerun recomputes identically because every run has its own seed.
Rewriting costs O(file size) per flush, negligible next to the scans themselves.

The temporary file is created with mode ``0o666`` minus the umask (as ``open()``
would), so the run file is as readable as any other file the user writes. While a
writer is open it holds an exclusive ``flock`` on ``.<name>.lock`` beside the run
file (removed on close): a second writer of the same file gets a ``RuntimeError``
instead of silently replacing the first one's runs.

Resuming. Opening an existing file with the same configuration and the same input
fingerprints (the header's ``inputs``: hashes of the data, of a custom score, and
any upstream fingerprint the caller adds) keeps its runs and lets the experiment
compute only the missing run ids; a different configuration or input raises a
``ValueError`` naming what differs, and the file is left untouched.

Reading is strict: a line that is meant as a run but does not parse (bad JSON,
a missing or mistyped field, counts that disagree with the lists, a node outside
``0..n_nodes-1``) is an error naming the file and the line. With ``strict=False`` such
lines are skipped and counted in ``n_damaged`` (apart from ``n_skipped``, the lines
that are not runs, such as ``hyperparams:``).

The reader also parses the published text format of the persona paper
(``adv_output_<persona>.out``: ``score precision recall n_records n_nodes alpha nodes records``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import numbers
import os
import platform
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .locking import FileLock

__all__ = [
    "FORMAT_VERSION",
    "RUN_COLUMNS",
    "RunFile",
    "RunFileWriter",
    "read_run_file",
    "read_published_run_file",
    "open_run_file",
    "make_node_layout",
    "node_to_layer_unit",
    "package_versions",
    "run_row",
    "runs_frame",
]

FORMAT_VERSION = 1
_HEADER_KIND = "deepscan-run-file"

#: Columns of ``RunFile.runs`` (and of ``ExperimentResult.runs``), in this order: the
#: contract's eleven, then ``seed``, ``sample_clean``, ``sample_anomalous`` (None for published files).
RUN_COLUMNS = [
    "run_id",
    "score",
    "alpha",
    "precision",
    "recall",
    "n_records",
    "n_nodes",
    "nodes",
    "records",
    "records_pool_index",
    "records_anomalous",
    "seed",
    "sample_clean",
    "sample_anomalous",
]


@dataclass(frozen=True)
class RunFile:
    """A run file read back.

    Attributes
    ----------
    path : Path
    format : str
        ``"jsonl"`` (this package) or ``"published"`` (paper text format).
    header : dict or None
        The header line (``config``, ``versions``, ``created``); None for published files.
    runs : pandas.DataFrame
        One row per run, sorted by ``run_id``, columns :data:`RUN_COLUMNS`.
        ``precision``/``recall`` are NaN where the file says null/None;
        ``records_pool_index``, ``records_anomalous``, ``seed``, ``sample_clean`` and
        ``sample_anomalous`` are None for published files.
    n_skipped : int
        Non-empty lines that are not runs (e.g. ``hyperparams:`` lines).
    n_damaged : int
        Lines meant as runs that did not parse, skipped because ``strict=False``
        (with ``strict=True``, the default, they are errors).
    damaged : tuple of str
        One ``"line <n>: <why>"`` per damaged line.
    """

    path: Path
    format: str
    header: dict | None
    runs: pd.DataFrame
    n_skipped: int
    n_damaged: int = 0
    damaged: tuple = ()

    @property
    def config(self) -> dict | None:
        """The header's configuration (None for published files)."""
        return None if self.header is None else self.header.get("config")


# --------------------------------------------------------------------------- helpers


def package_versions() -> dict:
    """Versions recorded in every header: deepscan, numpy, python."""
    from . import __version__

    return {"deepscan": __version__, "numpy": np.__version__, "python": platform.python_version()}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _jsonable(obj: Any) -> Any:
    """Normalise to plain JSON types (tuples -> lists, numpy -> python) for storage and comparison."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        raise TypeError(f"metadata value of type {type(o).__name__} is not JSON serialisable; convert it to str/int/float/list/dict")

    return json.loads(json.dumps(obj, default=default, allow_nan=False))


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` through a temporary file (mode 0o666 & ~umask), fsync, then rename onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise FileExistsError(f"could not create a temporary file beside {path}")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------- node layout


def make_node_layout(layers: Sequence[int], n_units: int | Sequence[int]) -> list[dict]:
    """Node layout for activations of several layers concatenated in ``layers`` order.

    Parameters
    ----------
    layers : sequence of int
    n_units : int or sequence of int
        Units per layer (one int for all layers, e.g. the hidden size).

    Returns
    -------
    list of dict
        ``[{"layer": int, "n_units": int}, ...]``; global node = offset of its layer + unit.
    """
    layers = [int(x) for x in layers]
    sizes = [int(n_units)] * len(layers) if np.ndim(n_units) == 0 else [int(x) for x in n_units]
    if len(sizes) != len(layers):
        raise ValueError(f"n_units has {len(sizes)} entries but layers has {len(layers)}; give one size per layer")
    if any(s <= 0 for s in sizes):
        raise ValueError(f"n_units must be positive, got {sizes}")
    return [{"layer": la, "n_units": s} for la, s in zip(layers, sizes)]


def _layout_arrays(node_layout: Any) -> tuple[np.ndarray, np.ndarray]:
    if node_layout is None:
        raise ValueError("node_layout is None: this run has no node layout; pass [{'layer': int, 'n_units': int}, ...]")
    layers, sizes = [], []
    for item in node_layout:
        if isinstance(item, Mapping):
            layers.append(int(item["layer"]))
            sizes.append(int(item["n_units"]))
        else:
            la, n = item
            layers.append(int(la))
            sizes.append(int(n))
    if not layers:
        raise ValueError("node_layout is empty; it needs one {'layer', 'n_units'} entry per concatenated layer")
    sizes_a = np.asarray(sizes, dtype=np.int64)
    if (sizes_a <= 0).any():
        raise ValueError(f"node_layout n_units must be positive, got {sizes}")
    return np.asarray(layers, dtype=np.int64), sizes_a


def node_to_layer_unit(nodes: Iterable[int], node_layout: Any) -> tuple[np.ndarray, np.ndarray]:
    """Map global node indices back to (layer, unit within that layer).

    Parameters
    ----------
    nodes : array-like of int, shape (n,)
        Global node indices (columns of the concatenated activation matrix).
    node_layout : list of {"layer": int, "n_units": int} (or (layer, n_units) pairs)
        Concatenation order, as stored in a run file header.

    Returns
    -------
    layers, units : ndarray of int64, shape (n,)
    """
    layers, sizes = _layout_arrays(node_layout)
    nodes_a = np.asarray(list(nodes) if not isinstance(nodes, np.ndarray) else nodes)
    if nodes_a.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not np.issubdtype(nodes_a.dtype, np.integer):
        raise ValueError(f"nodes must be integers, got dtype {nodes_a.dtype}")
    nodes_a = nodes_a.astype(np.int64).ravel()
    ends = np.cumsum(sizes)
    bad = (nodes_a < 0) | (nodes_a >= ends[-1])
    if bad.any():
        raise ValueError(
            f"node {int(nodes_a[bad][0])} is outside the node layout (0..{int(ends[-1]) - 1}); "
            "is this the layout of the run that produced these nodes?"
        )
    which = np.searchsorted(ends, nodes_a, side="right")
    starts = ends - sizes
    return layers[which], nodes_a - starts[which]


# --------------------------------------------------------------------------- reading


def _runs_frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=RUN_COLUMNS)
    if len(df):
        df = df.sort_values("run_id", kind="stable").reset_index(drop=True)
    df = df.astype({"run_id": "int64", "score": "float64", "alpha": "float64", "precision": "float64",
                    "recall": "float64", "n_records": "int64", "n_nodes": "int64"})
    return df


def _as_float(x: Any) -> float:
    return math.nan if x is None else float(x)


def run_row(run: Mapping) -> dict:
    """One run (a run-file line as a dict) as a row of ``RunFile.runs`` (columns :data:`RUN_COLUMNS`)."""
    nodes = [int(v) for v in run["nodes"]]
    records = [int(v) for v in run["records"]]
    pool = run.get("records_pool_index")
    anomalous = run.get("records_anomalous")
    return {
        "run_id": int(run["run_id"]),
        "score": float(run["score"]),
        "alpha": _as_float(run.get("alpha")),
        "precision": _as_float(run.get("precision")),
        "recall": _as_float(run.get("recall")),
        "n_records": len(records),
        "n_nodes": len(nodes),
        "nodes": nodes,
        "records": records,
        "records_pool_index": None if pool is None else [int(v) for v in pool],
        "records_anomalous": None if anomalous is None else [bool(v) for v in anomalous],
        "seed": None if run.get("seed") is None else int(run["seed"]),
        "sample_clean": None if run.get("sample_clean") is None else [int(v) for v in run["sample_clean"]],
        "sample_anomalous": None if run.get("sample_anomalous") is None else [int(v) for v in run["sample_anomalous"]],
    }


def runs_frame(runs: Iterable[Mapping]) -> pd.DataFrame:
    """Runs (run-file line dicts) as the ``RunFile.runs`` DataFrame, sorted by run id."""
    return _runs_frame([run_row(r) for r in runs])


def _is_int(v: Any) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v: Any) -> bool:
    return isinstance(v, (numbers.Real, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_))


def _index_list_problem(name: str, v: Any, limit: int | None = None, optional: bool = False) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, list):
        return f"{name} must be a list of ints, got {type(v).__name__}"
    bad = next((x for x in v if not _is_int(x) or x < 0), None)
    if bad is not None or (v and not all(_is_int(x) and x >= 0 for x in v)):
        return f"{name} must hold non-negative ints, got {bad!r}"
    if limit is not None and v and max(v) >= limit:
        return f"{name} holds {max(v)}, outside 0..{limit - 1}"
    return None


def _run_problem(obj: Mapping, config: Mapping) -> str | None:
    """Why a JSONL run object is malformed (None if it is fine): types, counts and ranges."""
    for key in ("run_id", "score", "nodes", "records"):
        if key not in obj:
            return f"field {key!r} is missing"
    if not _is_int(obj["run_id"]) or obj["run_id"] < 0:
        return f"run_id must be a non-negative int, got {obj['run_id']!r}"
    if not _is_real(obj["score"]):
        return f"score must be a number, got {obj['score']!r}"
    for key in ("alpha", "precision", "recall"):
        if obj.get(key) is not None and not _is_real(obj[key]):
            return f"{key} must be a number or null, got {obj[key]!r}"
    if obj.get("seed") is not None and not _is_int(obj["seed"]):
        return f"seed must be an int or null, got {obj['seed']!r}"
    n_nodes = config.get("n_nodes") if _is_int(config.get("n_nodes")) else None
    sizes = (config.get("clean_ssize"), config.get("anom_ssize"))
    n_sample = sum(sizes) if all(_is_int(x) for x in sizes) else None
    for problem in (
        _index_list_problem("nodes", obj["nodes"], n_nodes),
        _index_list_problem("records", obj["records"], n_sample),
        _index_list_problem("records_pool_index", obj.get("records_pool_index"), optional=True),
        _index_list_problem("sample_clean", obj.get("sample_clean"), optional=True),
        _index_list_problem("sample_anomalous", obj.get("sample_anomalous"), optional=True),
    ):
        if problem:
            return problem
    n_records = len(obj["records"])
    anomalous = obj.get("records_anomalous")
    if anomalous is not None and (not isinstance(anomalous, list) or not all(isinstance(x, bool) for x in anomalous)):
        return "records_anomalous must be a list of true/false"
    for key in ("records_pool_index", "records_anomalous"):
        if obj.get(key) is not None and len(obj[key]) != n_records:
            return f"{key} has {len(obj[key])} entries but records has {n_records}"
    for key, lst in (("n_records", "records"), ("n_nodes", "nodes")):
        if key in obj and (not _is_int(obj[key]) or obj[key] != len(obj[lst])):
            return f"{key} is {obj[key]!r} but {lst} has {len(obj[lst])} entries"
    return None


def _read_jsonl(path: Path, lines: list[str], strict: bool = True) -> RunFile:
    def parse(i: int, line: str) -> Any:
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {i + 1} is not valid JSON ({exc}); the run file is malformed") from exc

    header = parse(0, lines[0])
    if not isinstance(header, dict) or header.get("kind") != _HEADER_KIND:
        raise ValueError(f"{path}: line 1 is not a deepscan run-file header (kind {header.get('kind') if isinstance(header, dict) else None!r})")
    version = header.get("format_version")
    if not _is_int(version) or version > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version!r} is not supported (this deepscan reads <= {FORMAT_VERSION}); upgrade deepscan")
    config = header.get("config") if isinstance(header.get("config"), dict) else {}
    rows, n_skipped, seen, damaged = [], 0, set(), []
    for i, line in enumerate(lines[1:], start=1):
        if not line.strip():
            continue
        try:
            obj = parse(i, line)
        except ValueError as exc:
            if strict:
                raise
            damaged.append(f"line {i + 1}: not valid JSON ({exc.__cause__})")
            continue
        if not isinstance(obj, dict) or obj.get("kind") != "run":
            n_skipped += 1
            continue
        problem = _run_problem(obj, config)
        if problem is not None:
            if strict:
                raise ValueError(
                    f"{path}: line {i + 1} is a run with a missing or bad field ({problem}); "
                    "the file was damaged or edited (read_run_file(..., strict=False) skips such lines)"
                )
            damaged.append(f"line {i + 1}: {problem}")
            continue
        row = run_row(obj)
        run_id = row["run_id"]
        if run_id in seen:
            raise ValueError(f"{path}: run_id {run_id} appears twice (line {i + 1}); the file was edited or concatenated")
        seen.add(run_id)
        rows.append(row)
    return RunFile(path=path, format="jsonl", header=header, runs=_runs_frame(rows), n_skipped=n_skipped,
                   n_damaged=len(damaged), damaged=tuple(damaged))


def _parse_int_list(tok: str) -> list[int]:
    """Comma-separated non-negative ints (optionally in brackets); ValueError on anything else."""
    tok = tok.strip()
    if tok.startswith("[") != tok.endswith("]"):
        raise ValueError(f"unbalanced brackets in {tok!r}")
    tok = tok.strip("[]")
    if not tok:
        return []
    items = tok.split(",")
    if any(not v.strip().isdigit() for v in items):  # also rejects "1,2," (a line cut after a comma)
        raise ValueError(f"{tok!r} is not a comma-separated list of non-negative ints")
    return [int(v) for v in items]


def _parse_opt_float(tok: str) -> float:
    return math.nan if tok in ("None", "nan", "NaN", "null") else float(tok)


def _looks_like_run(line: str) -> bool:
    """A published line is meant as a run when its first field is a number (the score)."""
    fields = line.split()
    if not fields:
        return False
    try:
        float(fields[0])
    except ValueError:
        return False
    return True


def _parse_published_strict(line: str) -> dict:
    fields = line.rstrip("\r\n").split(" ")
    if len(fields) != 8:
        fields = line.split()
    if len(fields) < 6 or len(fields) > 8:
        raise ValueError(f"{len(fields)} fields, a run has 8 (score precision recall n_records n_nodes alpha nodes records)")
    score = float(fields[0])
    precision = _parse_opt_float(fields[1])
    recall = _parse_opt_float(fields[2])
    n_records = int(fields[3])
    n_nodes = int(fields[4])
    alpha = float(fields[5])
    if n_records < 0 or n_nodes < 0:
        raise ValueError(f"negative counts n_records={n_records}, n_nodes={n_nodes}")
    rest = fields[6:]
    if len(rest) == 2:
        nodes, records = _parse_int_list(rest[0]), _parse_int_list(rest[1])
    elif len(rest) == 1 and n_nodes == 0 and n_records > 0:  # empty node list lost in whitespace
        nodes, records = [], _parse_int_list(rest[0])
    elif len(rest) == 1 and n_records == 0:
        nodes, records = _parse_int_list(rest[0]), []
    elif len(rest) == 0 and n_nodes == 0 and n_records == 0:
        nodes, records = [], []
    else:
        raise ValueError(f"{len(fields)} fields but n_records={n_records} and n_nodes={n_nodes}: a list is missing")
    if len(nodes) != n_nodes or len(records) != n_records:
        raise ValueError(
            f"n_nodes={n_nodes} and n_records={n_records} but the lists hold {len(nodes)} nodes and {len(records)} records"
        )
    return {
        "score": score, "alpha": alpha, "precision": precision, "recall": recall,
        "n_records": n_records, "n_nodes": n_nodes, "nodes": nodes, "records": records,
        "records_pool_index": None, "records_anomalous": None,
        "seed": None, "sample_clean": None, "sample_anomalous": None,
    }


def _read_published(path: Path, lines: list[str], strict: bool = True) -> RunFile:
    rows, n_skipped, damaged, n_run_lines = [], 0, [], 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if not _looks_like_run(line):
            n_skipped += 1  # e.g. hyperparams: lines
            continue
        run_id = n_run_lines  # a damaged line keeps its id: later runs are not renumbered
        n_run_lines += 1
        try:
            row = _parse_published_strict(line)
        except ValueError as exc:
            if strict:
                raise ValueError(
                    f"{path}: line {i + 1} looks like a run but does not parse ({exc}); the file was damaged or cut "
                    "(read_run_file(..., strict=False) skips such lines and counts them in n_damaged)"
                ) from None
            damaged.append(f"line {i + 1}: {exc}")
            continue
        row["run_id"] = run_id
        rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no run lines found (neither a deepscan .jsonl run file nor the published text format)")
    return RunFile(path=path, format="published", header=None, runs=_runs_frame(rows), n_skipped=n_skipped,
                   n_damaged=len(damaged), damaged=tuple(damaged))


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (some editors add one) is not content
    except FileNotFoundError as exc:
        raise ValueError(f"run file {path} does not exist; check the path") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"run file {path} cannot be read as UTF-8 text ({exc})") from exc
    lines = text.splitlines()
    if not any(line.strip() for line in lines):
        raise ValueError(f"run file {path} is empty")
    return lines


def read_run_file(path: str | os.PathLike, *, strict: bool = True) -> RunFile:
    """Read a run file: this package's JSON Lines format or the published text format.

    The format is detected from the first non-empty line (``{`` means JSON Lines).
    In the published format every run line is kept (run_id = 0..n-1 in line order,
    a damaged line skipped with ``strict=False`` keeping its id),
    ``None`` precision/recall become NaN, and lines that do not start with a number
    (``hyperparams: ...``) are skipped and counted in ``n_skipped``.

    Parameters
    ----------
    path : path
    strict : bool
        True (default): a line meant as a run that does not parse (bad JSON, a
        missing or mistyped field such as ``run_id`` 2.7, counts that disagree with
        the lists, a node outside ``0..n_nodes-1``, a line cut short) is an error
        naming the file and line. False: such lines are skipped and counted in
        ``n_damaged`` (their reasons in ``damaged``).

    Raises
    ------
    ValueError
        If the file is missing, unreadable, empty or malformed (the message names the file).
    """
    path = Path(path)
    if not isinstance(strict, bool):
        raise TypeError(f"strict must be True or False, got {strict!r}")
    lines = _read_lines(path)
    first = next(i for i, line in enumerate(lines) if line.strip())
    if lines[first].lstrip().startswith("{"):
        return _read_jsonl(path, lines[first:], strict)
    return _read_published(path, lines, strict)


def read_published_run_file(path: str | os.PathLike, *, strict: bool = True) -> RunFile:
    """Read a file in the published text format (docs/deepscan.md, section 8), without auto-detection."""
    path = Path(path)
    return _read_published(path, _read_lines(path), strict)


# --------------------------------------------------------------------------- writing


def _config_diff(old: Mapping, new: Mapping) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: file has {old.get(k, '<missing>')!r}, now {new.get(k, '<missing>')!r}" for k in keys if old.get(k) != new.get(k)]


class RunFileWriter:
    """The single writer of one run file (state: header, finished run lines, last flush time).

    Use :func:`open_run_file` to create one (it handles resuming and takes the
    writer's lock). Call :meth:`add` for each finished run and :meth:`close` at the
    end; the file is rewritten atomically at most every ``flush_every`` seconds and
    always on close, which also releases the lock.
    """

    def __init__(self, path: Path, header: dict, lines: dict[int, str] | None = None, flush_every: float = 1.0,
                 _lock: FileLock | None = None):
        self.path = Path(path)
        self.header = header
        self._lines: dict[int, str] = dict(lines or {})
        self.flush_every = float(flush_every)
        self._last_flush = -math.inf
        self._dirty = True
        self._lock = _lock
        self._closed = False

    @property
    def done(self) -> set[int]:
        """Run ids already in the file (or added since)."""
        return set(self._lines)

    def add(self, run: Mapping) -> None:
        """Add one finished run (a dict with at least ``run_id``); flushes if due."""
        if self._closed:
            raise ValueError(f"the writer of {self.path} is closed; open the run file again to add runs")
        run_id = int(run["run_id"])
        if run_id in self._lines:
            raise ValueError(f"run {run_id} is already in {self.path}; a run is written once")
        self._lines[run_id] = json.dumps(_jsonable(dict(run)), separators=(",", ":"))
        self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Rewrite the file atomically: header, then runs sorted by run id."""
        if not self._dirty or self._closed:
            return
        parts = [json.dumps(self.header, separators=(",", ":"))]
        parts += [self._lines[k] for k in sorted(self._lines)]
        _atomic_write_text(self.path, "\n".join(parts) + "\n")
        self._last_flush = time.monotonic()
        self._dirty = False

    def close(self) -> None:
        """Flush and release the lock (safe to call twice)."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            if self._lock is not None:
                self._lock.release()

    def __enter__(self) -> "RunFileWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        # flush on errors too: finished runs survive an exception or Ctrl-C
        self.close()


def open_run_file(
    path: str | os.PathLike,
    config: Mapping,
    *,
    inputs: Mapping | None = None,
    overwrite: bool = False,
    flush_every: float = 1.0,
) -> RunFileWriter:
    """Open a run file for writing, resuming it when it already holds the same experiment.

    Parameters
    ----------
    path : path
        The ``.jsonl`` file.
    config : mapping
        The header's ``config`` (JSON-serialisable).
    inputs : mapping, optional
        The header's ``inputs``: fingerprints of what the runs were computed from
        (``run_experiment`` records hashes of the arrays and of a custom score). When
        given, resuming needs the file's ``inputs`` to be equal.
    overwrite : bool
        Start afresh even if the file exists (the old file stays until the first flush).
    flush_every : float
        Seconds between atomic rewrites while runs arrive.

    Returns
    -------
    RunFileWriter
        Its ``done`` property lists the run ids already present (to skip). It holds
        the file's writer lock until closed.

    Raises
    ------
    ValueError
        If the file exists with a different configuration or inputs (the message
        lists the differences; the file is untouched), or is not a valid deepscan
        run file.
    RuntimeError
        If another writer has the file open.
    """
    path = Path(path)
    config = _jsonable(dict(config))
    inputs = None if inputs is None else _jsonable(dict(inputs))
    versions = package_versions()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path.parent / f".{path.name}.lock", f"run file {path}")
    try:
        writer = _open_locked(path, config, inputs, versions, overwrite, flush_every, lock)
    except BaseException:
        lock.release()
        raise
    return writer


def _open_locked(path, config, inputs, versions, overwrite, flush_every, lock) -> RunFileWriter:
    if path.exists() and not overwrite:
        old = read_run_file(path)
        if old.format != "jsonl":
            raise ValueError(f"{path} exists and is not a deepscan .jsonl run file; choose another path or pass overwrite=True")
        diff = _config_diff(old.header.get("config", {}), config)
        if diff:
            raise ValueError(
                f"{path} holds an experiment with a different configuration ("
                + "; ".join(diff)
                + "); choose a new run file path or pass overwrite=True to replace it"
            )
        if inputs is not None:
            old_inputs = old.header.get("inputs")
            if not isinstance(old_inputs, dict):
                raise ValueError(
                    f"{path} records no input fingerprints (written by an older deepscan), so it cannot be checked "
                    "to hold runs on these data; pass overwrite=True to recompute it, or choose a new path"
                )
            diff = _config_diff(old_inputs, inputs)
            if diff:
                raise ValueError(
                    f"{path} holds runs computed from other inputs (" + "; ".join(diff)
                    + "); the same configuration on different data is a different experiment: choose a new run "
                    "file path or pass overwrite=True to replace it"
                )
        n_runs = int(config.get("n_runs", 0)) if config.get("n_runs") is not None else None
        lines: dict[int, str] = {}
        for raw in _read_lines(path)[1:]:
            if not raw.strip():
                continue
            obj = json.loads(raw)
            if isinstance(obj, dict) and obj.get("kind") == "run":
                rid = int(obj["run_id"])
                if n_runs is not None and not 0 <= rid < n_runs:
                    raise ValueError(f"{path}: run_id {rid} is outside 0..{n_runs - 1}; the file does not match this experiment")
                lines[rid] = raw
        header = dict(old.header)
        if header.get("versions") != versions:
            resumed = list(header.get("resumed", []))
            resumed.append({"time": _now(), "versions": versions})
            header["resumed"] = resumed
        writer = RunFileWriter(path, header, lines, flush_every=flush_every, _lock=lock)
        writer._dirty = False  # the file on disk already holds exactly this
        return writer
    header = {"kind": _HEADER_KIND, "format_version": FORMAT_VERSION, "config": config}
    if inputs is not None:
        header["inputs"] = inputs
    header.update(versions=versions, created=_now())
    return RunFileWriter(path, header, {}, flush_every=flush_every, _lock=lock)
