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

The reader also detects the published text format of the persona paper and reads it
with :mod:`deepscan.published`. Node layouts live in :mod:`deepscan.layout`, the runs
table (:class:`RunFile`) in :mod:`deepscan.runs`.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ._util import atomic_write_text, jsonable, now_utc, package_versions, read_lines
from .layout import make_node_layout, node_to_layer_unit
from .locking import FileLock
from .published import read_published_lines, read_published_run_file
from .runs import RUN_COLUMNS, RunFile, frame_from_rows, run_row, runs_frame

__all__ = [
    "FORMAT_VERSION",
    "HEADER_KIND",
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
    "new_header",
    "InputsChanged",
    "ConfigChanged",
]

FORMAT_VERSION = 1
#: The ``kind`` of a run file's header line.
HEADER_KIND = "deepscan-run-file"


class InputsChanged(ValueError):
    """A run file holds the same experiment computed from other inputs (the message names what differs)."""


class ConfigChanged(ValueError):
    """A run file holds an experiment with another configuration (the message names what differs)."""


def new_header(config: Mapping, inputs: Mapping | None = None, provenance: Mapping | None = None) -> dict:
    """The header of a new run file: kind, format version, config, inputs (if given), versions, creation time.

    ``provenance`` (e.g. the SHA-256 of the files the inputs were read from) is recorded as it
    was when the runs were computed, and never compared on resume: ``inputs`` check the data.
    """
    header = {"kind": HEADER_KIND, "format_version": FORMAT_VERSION, "config": config}
    if inputs is not None:
        header["inputs"] = inputs
    if provenance is not None:
        header["provenance"] = provenance
    header.update(versions=package_versions(), created=now_utc())
    return header


# --------------------------------------------------------------------------- reading


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
    if not isinstance(header, dict) or header.get("kind") != HEADER_KIND:
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
    return RunFile(path=path, format="jsonl", header=header, runs=frame_from_rows(rows), n_skipped=n_skipped,
                   n_damaged=len(damaged), damaged=tuple(damaged))


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
    lines = read_lines(path)
    first = next(i for i, line in enumerate(lines) if line.strip())
    if lines[first].lstrip().startswith("{"):
        return _read_jsonl(path, lines[first:], strict)
    return read_published_lines(path, lines, strict)


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
        self._lines[run_id] = json.dumps(jsonable(dict(run)), separators=(",", ":"))
        self._dirty = True
        if time.monotonic() - self._last_flush >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Rewrite the file atomically: header, then runs sorted by run id."""
        if not self._dirty or self._closed:
            return
        parts = [json.dumps(self.header, separators=(",", ":"))]
        parts += [self._lines[k] for k in sorted(self._lines)]
        atomic_write_text(self.path, "\n".join(parts) + "\n")
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
    provenance: Mapping | None = None,
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
    provenance : mapping, optional
        Recorded in a new file's header (``new_header``); a resumed file keeps its own.

    Returns
    -------
    RunFileWriter
        Its ``done`` property lists the run ids already present (to skip). It holds
        the file's writer lock until closed.

    Raises
    ------
    ValueError
        If the file exists with a different configuration (:class:`ConfigChanged`) or inputs
        (:class:`InputsChanged`): the message lists the differences, the file is untouched; or if
        it is not a valid deepscan run file.
    RuntimeError
        If another writer has the file open.
    """
    path = Path(path)
    config = jsonable(dict(config))
    inputs = None if inputs is None else jsonable(dict(inputs))
    versions = package_versions()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path.parent / f".{path.name}.lock", f"run file {path}")
    try:
        writer = _open_locked(path, config, inputs, versions, overwrite, flush_every, lock, provenance)
    except BaseException:
        lock.release()
        raise
    return writer


def _open_locked(path, config, inputs, versions, overwrite, flush_every, lock, provenance=None) -> RunFileWriter:
    if path.exists() and not overwrite:
        old = read_run_file(path)
        if old.format != "jsonl":
            raise ValueError(f"{path} exists and is not a deepscan .jsonl run file; choose another path or pass overwrite=True")
        diff = _config_diff(old.header.get("config", {}), config)
        if diff:
            raise ConfigChanged(
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
                raise InputsChanged(
                    f"{path} holds runs computed from other inputs (" + "; ".join(diff)
                    + "); the same configuration on different data is a different experiment: choose a new run "
                    "file path or pass overwrite=True to replace it"
                )
        n_runs = int(config.get("n_runs", 0)) if config.get("n_runs") is not None else None
        lines: dict[int, str] = {}
        for raw in read_lines(path)[1:]:
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
            resumed.append({"time": now_utc(), "versions": versions})
            header["resumed"] = resumed
        writer = RunFileWriter(path, header, lines, flush_every=flush_every, _lock=lock)
        writer._dirty = False  # the file on disk already holds exactly this
        return writer
    return RunFileWriter(path, new_header(config, inputs, provenance), {}, flush_every=flush_every, _lock=lock)
