"""Stage reuse: a stage runs again only when what it reads, how it is set, or its code changed.

A *stage* is one step of the study (a notebook). Its *fingerprint* is a sha256 over

- its parameters (every value the study hands it),
- the fingerprint of the stage before it (so a change upstream reaches everything downstream),
- the sha256 of the input files the study names (the user's statements and topics), and
- its code: the source of the notebook and of every module of the packages it runs.

After a stage runs, :func:`record_stage` writes its fingerprint beside its artifacts in
``<out_dir>/stages.json``, with the size and sha256 of every file it wrote (or reused unchanged
from its previous run). :func:`reusable` says whether a stage can be skipped: same fingerprint,
and every recorded file still there with its size and checksum (a deleted or damaged artifact
makes the stage run again). Shared caches outside the folder (the activation store, DeepScan's
run files) keep their own reuse rules.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from personas._core.io import file_sha256, read_json, write_json

__all__ = ["STAGES_FILE", "StageRecord", "code_fingerprint", "stage_fingerprint", "reusable", "record_stage",
           "read_stages", "written_since"]

STAGES_FILE = "stages.json"
#: Files of a study folder that belong to no stage (the study's own files, the lock, the replicates).
_NOT_STAGE = {STAGES_FILE, "study.json", "report.md", "replicates.json", ".study.lock"}


@dataclass(frozen=True)
class StageRecord:
    """What one stage's last run left: its fingerprint, its seconds and its files.

    Attributes
    ----------
    fingerprint : str
        ``sha256:<hex>`` of the stage's inputs (:func:`stage_fingerprint`).
    seconds : float
        How long that run took.
    files : dict
        ``{path relative to the study folder: [size, "sha256:<hex>"]}``.
    created : str
        When it was recorded (UTC, ISO 8601).
    """

    fingerprint: str
    seconds: float
    files: dict = field(default_factory=dict)
    created: str = ""


def code_fingerprint(root: str | os.PathLike, paths: Iterable[str]) -> str:
    """sha256 over the bytes of the files at ``paths`` (relative to ``root``; a folder: its ``*.py``), sorted."""
    root = Path(root)
    digest = hashlib.sha256()
    files: list[Path] = []
    for rel in paths:
        p = root / rel
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    for p in sorted(set(files)):
        digest.update(str(p.relative_to(root)).encode("utf-8") + b"\0")
        digest.update(p.read_bytes() + b"\0")
    return "sha256:" + digest.hexdigest()


def stage_fingerprint(**parts: Any) -> str:
    """sha256 of ``parts`` as canonical JSON (keys sorted; paths and other objects by ``str``)."""
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode("utf-8")
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def read_stages(out_dir: str | os.PathLike) -> dict[str, StageRecord]:
    """``{stage: StageRecord}`` from ``<out_dir>/stages.json``; empty when absent or unreadable."""
    path = Path(out_dir) / STAGES_FILE
    try:
        raw = read_json(path)
        return {name: StageRecord(**rec) for name, rec in raw.get("stages", {}).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def _file_entry(path: Path) -> list:
    return [path.stat().st_size, file_sha256(path)]


def _intact(out_dir: Path, files: Mapping[str, list]) -> list[str]:
    """The recorded files that are missing or differ in size or checksum."""
    bad = []
    for rel, (size, digest) in files.items():
        p = out_dir / rel
        if not p.is_file() or p.stat().st_size != size or _file_entry(p)[1] != digest:
            bad.append(rel)
    return bad


def reusable(out_dir: str | os.PathLike, stage: str, fingerprint: str) -> tuple[bool, str]:
    """Whether ``stage`` can be skipped, and why (or why not), in a few words.

    Reusable when ``stages.json`` records the same fingerprint for it and each of its files is
    there, unchanged.
    """
    record = read_stages(out_dir).get(stage)
    if record is None:
        return False, "not run before"
    if record.fingerprint != fingerprint:
        return False, "its inputs, settings or code changed"
    bad = _intact(Path(out_dir), record.files)
    if bad:
        return False, f"{len(bad)} of its artifacts are missing or changed (e.g. {bad[0]})"
    return True, "inputs, settings and code unchanged"


def written_since(out_dir: str | os.PathLike, started_ns: int) -> list[str]:
    """Files under ``out_dir`` modified at or after ``started_ns`` (``time.time_ns()``), relative, sorted.

    The study's own files and other stages' temporary files are left out.
    """
    out_dir = Path(out_dir)
    found = []
    for p in out_dir.rglob("*"):
        rel = p.relative_to(out_dir)
        if not p.is_file() or rel.parts[0] == "replicates" or str(rel) in _NOT_STAGE or p.name.endswith(".tmp"):
            continue
        if p.stat().st_mtime_ns >= started_ns:
            found.append(str(rel))
    return sorted(found)


def record_stage(out_dir: str | os.PathLike, stage: str, fingerprint: str, *, started_ns: int,
                 seconds: float, extra: Iterable[str | os.PathLike] = ()) -> StageRecord:
    """Record ``stage``'s run in ``stages.json``: what it wrote since ``started_ns``, plus the files of its
    previous record that are still there unchanged (artifacts it reused without rewriting them).

    ``extra`` names files outside ``out_dir`` the stage's artifacts stand on (e.g. the activation
    store's manifests): recorded relative to ``out_dir``, so the stage runs again when they change.
    """
    out_dir = Path(out_dir)
    stages = read_stages(out_dir)
    files = {rel: _file_entry(out_dir / rel) for rel in written_since(out_dir, started_ns)}
    files.update({os.path.relpath(p, out_dir): _file_entry(Path(p)) for p in extra if Path(p).is_file()})
    previous = stages.get(stage)
    if previous is not None:
        kept = set(previous.files) - set(files) - set(_intact(out_dir, previous.files))
        files.update({rel: previous.files[rel] for rel in kept})
    record = StageRecord(fingerprint, round(float(seconds), 1), dict(sorted(files.items())),
                         time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    stages[stage] = record
    write_json(out_dir / STAGES_FILE, {"stages": {name: asdict(rec) for name, rec in stages.items()}})
    return record
