"""The published text format of the persona paper (read only; docs/deepscan.md, section 8).

``adv_output_<persona>.out``: one run per line, eight space-separated fields
``score precision recall n_records n_nodes alpha nodes records`` (``nodes`` and
``records`` comma-separated ints, precision and recall possibly ``None``). Every run
line is kept (the published reader dropped the last one); lines that are not runs
(``hyperparams: ...``) are skipped and counted.

- :func:`read_published_run_file`: read such a file;
- :func:`read_published_lines`: the same from its lines (``read_run_file`` detects the format).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ._util import read_lines
from .runs import RunFile, frame_from_rows

__all__ = ["read_published_run_file", "read_published_lines"]


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


def read_published_lines(path: Path, lines: list[str], strict: bool = True) -> RunFile:
    """Runs of a published text file given as its lines (``path`` names it in messages)."""
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
    return RunFile(path=path, format="published", header=None, runs=frame_from_rows(rows), n_skipped=n_skipped,
                   n_damaged=len(damaged), damaged=tuple(damaged))


def read_published_run_file(path: str | os.PathLike, *, strict: bool = True) -> RunFile:
    """Read a file in the published text format (docs/deepscan.md, section 8), without auto-detection."""
    path = Path(path)
    return read_published_lines(path, read_lines(path), strict)
